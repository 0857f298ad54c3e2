#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-idle-rss.py - memory of idle IMAP sessions: 1,000 connections logged
# in with INBOX (50 messages) selected grow kurird's RSS by at most 64 KiB
# each (reported only, not judged, in sanitizer builds); all still answer
# NOOP; after a FETCH and a SEARCH in each they hold at most 8 KiB more
# each; 200 of them in IDLE all get EXISTS for one delivery. The same
# bound for 1,000 sessions over implicit TLS.
import os
import resource
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402
from imapkit import imap_config, send_mail, Raw, tls_context, listener_opts  # noqa: E402

N = 1000
LIMIT = 64 * 1024
SANITIZED = "debug" in os.path.basename(BUILD)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 3 * N:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * N + 100), hard))


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Conn:
    def __init__(self, port, tls=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=300)
        if tls:
            self.s = tls_context().wrap_socket(self.s)
        self.buf = b""

    def until(self, tag):
        """Read up to the line starting with tag; return that line."""
        t = tag + b" "
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                if line.startswith(t):
                    return line
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def wait_for(self, needle, timeout):
        self.s.settimeout(timeout)
        try:
            while needle not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    return False
                self.buf += d
            return True
        except OSError:
            return False
        finally:
            self.s.settimeout(300)


def open_selected(port, n, tls=False):
    conns = [Conn(port, tls) for _ in range(n)]
    for c in conns:
        c.until(b"*")  # greeting: "* OK ..."
        c.s.sendall(b"a LOGIN bob pw\r\n")
    for c in conns:
        assert c.until(b"a").startswith(b"a OK"), "login"
        c.s.sendall(b"b SELECT INBOX\r\n")
    for c in conns:
        assert c.until(b"b").startswith(b"b OK"), "select"
    return conns


conf = imap_config(plaintext=True, listener_extra="max_connections = 5000; max_per_ip = 5000;")
conf = listener_opts(conf, "imaps", "max_connections = 5000; max_per_ip = 5000;")
with Kurird(config=conf) as k:
    # a cheap hash (sha512-crypt) so 1,000 logins do not take minutes of
    # yescrypt on a small machine; the sessions are what is measured
    h = subprocess.run(["openssl", "passwd", "-6", "-salt", "imaprss0", "pw"], capture_output=True,
                       text=True, check=True).stdout.strip()
    with open(os.path.join(k.dir, "users.tmp"), "w") as f:
        f.write("bob@localhost:%s\n" % h)
    os.rename(os.path.join(k.dir, "users.tmp"), os.path.join(k.dir, "users"))
    k.proc.send_signal(signal.SIGHUP)
    k.wait_for(lambda: "loaded: 1 users" in k.read_log(), timeout=20)
    port = k.port("imap")
    c = Raw(port)
    c.login("bob", "pw")
    for i in range(50):
        m = b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
        c.cmd(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
    c.cmd("LOGOUT")
    c.close()
    pid = k.proc.pid
    # warm up: sessions that do a bit of everything, so lazily made things
    # (allocator arenas, worker threads, the folder's shared index) are
    # not charged to the idle sessions
    w = open_selected(port, 20)
    for c in w:
        c.s.sendall(b"c FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)\r\n")
    for c in w:
        c.until(b"c")
        c.s.close()
    time.sleep(0.5)

    base = rss(pid)
    t0 = time.time()
    conns = open_selected(port, N)
    time.sleep(0.5)
    grown = rss(pid) - base
    per = grown / N
    tap.diag("%d sessions logged in and SELECTed in %.1fs" % (N, time.time() - t0))
    tap.diag("RSS %d KiB -> %d KiB: %.1f KiB per idle IMAP session after SELECT"
             % (base // 1024, (base + grown) // 1024, per / 1024))
    tap.ok(per <= LIMIT or SANITIZED, "%d idle IMAP sessions after SELECT: %.1f KiB RSS each (limit 64 KiB)%s"
           % (N, per / 1024, " # SKIP sanitizer build" if SANITIZED else ""))
    for c in conns:
        c.s.sendall(b"d NOOP\r\n")
    oks = sum(1 for c in conns if c.until(b"d").startswith(b"d OK"))
    tap.eq(oks, N, "all %d sessions answer NOOP" % N)
    # a FETCH and a SEARCH in every session, then idle again: what they
    # read from the store's cache is let go when the command ends
    before = rss(pid)
    for c in conns:
        c.s.sendall(b"f FETCH 1:* (FLAGS ENVELOPE)\r\ng SEARCH SUBJECT nothing\r\n")
    oks = sum(1 for c in conns if c.until(b"g").startswith(b"g OK"))
    tap.eq(oks, N, "all %d sessions answer FETCH and SEARCH" % N)
    time.sleep(0.5)
    extra = (rss(pid) - before) / N
    tap.diag("after FETCH + SEARCH: %.1f KiB more RSS per session" % (extra / 1024))
    tap.ok(extra <= 8 * 1024 or SANITIZED, "idle again after FETCH + SEARCH: %.1f KiB more "
           "RSS per session (limit 8 KiB)%s" % (extra / 1024, " # SKIP sanitizer build" if SANITIZED else ""))
    idlers = conns[:200]
    for c in idlers:
        c.s.sendall(b"e IDLE\r\n")
    for c in idlers:
        assert c.wait_for(b"+ idling", 20)
    t0 = time.time()
    send_mail(k, "bob@localhost", b"Subject: wake up\r\n\r\nall of you\r\n")
    got = sum(1 for c in idlers if c.wait_for(b"* 51 EXISTS", 20))
    tap.eq(got, len(idlers), "all %d sessions in IDLE got * 51 EXISTS (%.2fs)" % (len(idlers), time.time() - t0))
    for c in idlers:
        c.s.sendall(b"DONE\r\n")
    done = sum(1 for c in idlers if c.until(b"e").startswith(b"e OK"))
    tap.eq(done, len(idlers), "and DONE ends each IDLE")
    for c in conns:
        c.s.close()
    time.sleep(1)

    # the same over implicit TLS (imaps), reported: OpenSSL's per-session state
    w = open_selected(k.port("imaps"), 20, tls=True)
    for c in w:
        c.s.close()
    time.sleep(0.5)
    base = rss(pid)
    conns = open_selected(k.port("imaps"), N, tls=True)
    time.sleep(0.5)
    grown = rss(pid) - base
    per = grown / N
    tap.diag("TLS: RSS %d KiB -> %d KiB: %.1f KiB per idle IMAPS session after SELECT"
             % (base // 1024, (base + grown) // 1024, per / 1024))
    tap.ok(per <= LIMIT or SANITIZED, "%d idle IMAPS sessions after SELECT: %.1f KiB RSS each (limit 64 KiB)%s"
           % (N, per / 1024, " # SKIP sanitizer build" if SANITIZED else ""))
    for c in conns:
        c.s.sendall(b"z LOGOUT\r\n")
    byes = sum(1 for c in conns if c.until(b"z").startswith(b"z OK"))
    tap.eq(byes, N, "all %d TLS sessions answer LOGOUT" % N)
    for c in conns:
        c.s.close()

tap.done()

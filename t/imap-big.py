#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-big.py - IMAP on a 100,000-message mailbox: the first SELECT (which
# indexes the Maildir), FETCH 1:* (UID FLAGS), SEARCH on flags and on a
# header, ENVELOPE of a range (parsed, then from the store's cache), STORE
# and EXPUNGE of 1,000 messages seen by a second session. Every answer is
# checked; timings are reported, and bounded (generously) outside
# sanitizer builds.
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402
from imapkit import imap_config, Raw  # noqa: E402

SANITIZED = "debug" in os.path.basename(BUILD)
# the sanitizer build is checked for correctness on a smaller mailbox
N = 20000 if SANITIZED else 100000

conf = imap_config(plaintext=True)
with Kurird(config=conf) as k:
    # a cheap password hash: this test is about the mailbox, not logins
    h = subprocess.run(["openssl", "passwd", "-6", "-salt", "imapbig0", "pw"], capture_output=True,
                       text=True, check=True).stdout.strip()
    with open(os.path.join(k.dir, "users.tmp"), "w") as f:
        f.write("bob@localhost:%s\n" % h)
    os.rename(os.path.join(k.dir, "users.tmp"), os.path.join(k.dir, "users"))
    k.proc.send_signal(signal.SIGHUP)
    k.wait_for(lambda: "loaded: 1 users" in k.read_log(), timeout=20)
    base = k.maildir("bob")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    t0 = time.time()
    for i in range(N):
        # every third message unseen; internal date = mtime
        name = "1700000000.M%dP1.host:2,%s" % (i, "" if i % 3 == 0 else "S")
        with open(os.path.join(base, "cur", name), "wb") as f:
            f.write(b"From: sender%d@example.org\nTo: bob@localhost\nSubject: message %d\n"
                    b"Date: Tue, 03 Feb 2026 10:00:00 +0100\n\nbody of message %d\n" % (i, i, i))
    tap.diag("wrote %d message files in %.1fs" % (N, time.time() - t0))

    c = Raw(k.port("imap"), timeout=300)
    c.login("bob", "pw")

    def timed(cmd, bound, conn=None):
        conn = conn or c
        t0 = time.time()
        u, t = conn.cmd(cmd)
        dt = time.time() - t0
        ok = t.split(b" ", 2)[1] == b"OK"
        tap.ok(ok and (SANITIZED or dt <= bound), "%s: %.2fs (bound %ds)%s" %
               (cmd[:50], dt, bound, " # bound not applied: sanitizer build" if SANITIZED else ""), t)
        return u

    u = timed("SELECT INBOX", 30)
    tap.ok(b"* %d EXISTS" % N in u, "SELECT: %d EXISTS" % N, u[:4])
    u = timed("FETCH 1:* (UID FLAGS)", 20)
    tap.eq(len(u), N, "FETCH 1:*: one response per message")
    unseen = sum(1 for x in u if b"\\Seen" not in x)
    tap.eq(unseen, (N + 2) // 3, "FETCH 1:*: the flags are the files' flags")
    u = timed("UID SEARCH RETURN (COUNT) UNSEEN", 5)
    tap.ok(u and u[0].endswith(b"COUNT %d" % ((N + 2) // 3)), "UID SEARCH UNSEEN count", u)
    u = timed("FETCH %d:* (ENVELOPE)" % (N - 1999), 30)
    subj = [re.search(rb'"message (\d+)"', x).group(1) for x in u]
    tap.eq(len(subj), 2000, "ENVELOPE of the last 2000 messages")
    u = timed("FETCH %d:* (ENVELOPE)" % (N - 1999), 10)
    tap.eq([re.search(rb'"message (\d+)"', x).group(1) for x in u], subj, "... again, from the cache")
    u = timed('SEARCH SUBJECT "message %d"' % (N * 7 // 9), 120)
    hits = u[0].split()[2:] if u else []
    tap.eq(len(hits), 1, "SEARCH SUBJECT over %d messages: one hit" % N)
    if hits:
        u, t = c.cmd("FETCH %s (BODY.PEEK[TEXT])" % hits[0].decode())
        tap.ok(b"body of message %d\r\n" % (N * 7 // 9) in u[0], "... the right one", u)

    d = Raw(k.port("imap"), timeout=300)
    d.login("bob", "pw")
    timed("SELECT INBOX", 30, d)
    timed("STORE 1:1000 +FLAGS.SILENT (\\Deleted)", 30)
    u = timed("EXPUNGE", 30)
    tap.eq(len([x for x in u if x.endswith(b" EXPUNGE")]), 1000, "EXPUNGE: 1000 responses")
    u = timed("NOOP", 30, d)
    tap.eq(len([x for x in u if x.endswith(b" EXPUNGE")]), 1000, "the other session sees the 1000 expunges")
    u = timed("NOOP", 5, d)
    tap.eq(u, [], "and a NOOP with nothing new says nothing")
    u = timed("STATUS INBOX (MESSAGES UNSEEN)", 10, d)
    tap.ok(u and b"MESSAGES %d" % (N - 1000) in u[0], "STATUS after the expunge", u)
    c.cmd("LOGOUT")
    d.cmd("LOGOUT")

tap.done()

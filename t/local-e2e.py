#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# local-e2e.py - local delivery end to end: users managed with `kurir user`,
# mail sent with smtplib to a real kurird, read back from the Maildir:
# Return-Path, Delivered-To, Received, Message-ID and Date present, LF line
# endings, ",S=" equal to the file size, ",W=" to the size with CRLF; a
# user deleted between RCPT and the end of DATA is not delivered (550 5.1.1
# at delivery, bounced); a full disk (a 64 KiB tmpfs mounted on the user's
# Maildir, when we may mount)
# defers the delivery, and the retry delivers once space is back.
import os
import re
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402
from smtpkit import config, set_group  # noqa: E402


def headers(msg):
    """Header block of a delivered message as a list of (name, value)."""
    head = msg.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            out.append((name, value.strip()))
    return out


def first(hs, name):
    for n, v in hs:
        if n.lower() == name.lower():
            return v
    return None


def new_files(k, user):
    d = os.path.join(k.maildir(user), "new")
    return sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []


conf = config()
conf = set_group(conf, "queue", min_backoff="1s", max_backoff="2s")
with Kurird(config=conf) as k:
    r = k.kurir("user", "add", "Alice", input="alice-pw\n")
    tap.eq(r.returncode, 0, "kurir user add Alice (bare name) succeeds")
    tap.ok("alice@localhost" in k.kurir("user", "list").stdout,
           "user list shows alice@localhost (default domain, canonical)")
    r = k.kurir("user", "add", "empty@localhost", input="\n")
    tap.ok(r.returncode != 0 and "empty" in r.stderr, "an empty password is refused", r.stderr)
    k.add_user("bob@localhost", "bob-pw")
    port = k.port("smtp")

    # --- a plain delivery -------------------------------------------------
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("client.example")
    body = (b"Subject: local test\r\nReturn-Path: <forged@example.com>\r\n"
            b"To: alice@localhost\r\n\r\nline one\r\nline two\r\n")
    s.sendmail("carol@example.com", ["alice@localhost"], body)
    s.quit()
    ok = k.wait_for(lambda: len(new_files(k, "alice")) >= 1)
    tap.ok(ok, "the message reached alice's Maildir new/", k.read_log()[-2000:])
    files = new_files(k, "alice")
    if files:
        with open(files[0], "rb") as f:
            msg = f.read()
        hs = headers(msg)
        names = [n for n, _ in hs]
        tap.eq(names[:3], ["Return-Path", "Delivered-To", "Received"],
               "Return-Path, Delivered-To, Received on top, in that order")
        tap.eq(first(hs, "Return-Path"), "<carol@example.com>",
               "Return-Path is the envelope sender")
        tap.eq(sum(1 for n in names if n == "Return-Path"), 1, "the forged Return-Path was removed")
        tap.eq(first(hs, "Delivered-To"), "alice@localhost", "Delivered-To is the recipient")
        rcv = first(hs, "Received")
        tap.ok(re.match(r"from client\.example \(unknown \[127\.0\.0\.1\]\) by \S+ \(kurir\) "
                        r"with ESMTP id \w+ for <alice@localhost>; \w{3}, \d+ \w{3} \d{4} ", rcv or ""),
               "Received names helo, address, us, protocol, id, recipient, date", rcv)
        tap.ok(re.match(r"<\w+@[^>]+>$", first(hs, "Message-ID") or ""),
               "a Message-ID was added", first(hs, "Message-ID"))
        tap.ok(first(hs, "Date") is not None, "a Date was added")
        tap.ok(b"\r" not in msg, "the file has LF line endings")
        tap.ok(msg.endswith(b"\n\nline one\nline two\n"), "the body is intact", msg[-60:])
        m = re.search(r",S=(\d+),W=(\d+)$", os.path.basename(files[0]))
        tap.ok(m and int(m.group(1)) == len(msg), ",S= is the file size", files[0])
        tap.ok(m and int(m.group(2)) == len(msg) + msg.count(b"\n"),
               ",W= is the size with CRLF line ends", files[0])
        tap.ok(re.search(r"to=<alice@localhost>, relay=local, delay=[\d.]+, status=sent "
                         r"\(delivered to maildir\)", k.read_log()),
               "the delivery is logged postfix-style")
        mode = os.stat(os.path.join(k.maildir("alice"), "new")).st_mode & 0o777
        tap.eq(oct(mode), oct(0o700), "Maildir directories are 0700")

    # --- sendmail: LF input, stored CRLF, delivered LF ------------------------
    r = k.kurir("sendmail", "-f", "bob@localhost", "alice@localhost",
                input="Subject: via sendmail\nTo: alice@localhost\n\nfirst\nsecond\n")
    tap.ok(r.returncode == 0, "sendmail queues an LF message", r.stderr)
    got = k.wait_for(lambda: any(b"via sendmail" in m for m in k.messages("alice")))
    tap.ok(got, "the sendmail message reached alice", k.read_log()[-2000:])
    sm = [m for m in k.messages("alice") if b"via sendmail" in m]
    if sm:
        hs = headers(sm[0])
        rcv = first(hs, "Received") or ""
        tap.ok(re.match(r"by \S+ \(kurir, from userid \d+\) with sendmail id \w+ "
                        r"for <alice@localhost>; ", rcv), "Received of a local submission", rcv)
        tap.eq(first(hs, "Return-Path"), "<bob@localhost>", "Return-Path is the -f sender")
        tap.ok(first(hs, "From") is not None, "the message has a From header")
        tap.ok(first(hs, "Message-ID") is not None and first(hs, "Date") is not None,
               "Message-ID and Date were added")
        tap.ok(b"\r" not in sm[0] and sm[0].endswith(b"\n\nfirst\nsecond\n"),
               "LF input delivered with LF line endings, body intact", sm[0][-80:])

    # --- user deleted between RCPT and delivery -> bounce --------------------
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("client.example")
    s.mail("alice@localhost")
    code, _ = s.rcpt("bob@localhost")
    tap.eq(code, 250, "RCPT bob accepted while bob exists")
    r = k.kurir("user", "del", "bob@localhost")
    tap.eq(r.returncode, 0, "kurir user del bob")
    code, _ = s.data(b"Subject: to a vanished user\r\n\r\nhello\r\n")
    tap.eq(code, 250, "the message is queued (accepted at RCPT)")
    s.quit()
    logged = k.wait_for(lambda: re.search(r"to=<bob@localhost>, relay=local, .*status=bounced "
                                          r"\(user unknown\)", k.read_log()))
    tap.ok(logged, "delivery to the deleted user fails: user unknown", k.read_log()[-2000:])
    tap.eq(new_files(k, "bob"), [], "nothing was written for bob")
    # The bounce goes back to the sender, alice (when the bounce module is built).
    if os.path.exists(os.path.join(BUILD, "modules", "bounce.so")):
        def bounce_arrived():
            for path in new_files(k, "alice"):
                with open(path, "rb") as f:
                    if b"multipart/report" in f.read():
                        return True
            return False
        got = k.wait_for(bounce_arrived)
        tap.ok(got, "alice got the bounce")
        dsn = b""
        for path in new_files(k, "alice"):
            with open(path, "rb") as f:
                data = f.read()
            if b"multipart/report" in data:
                dsn = data
        tap.ok(b"Final-Recipient: rfc822; bob@localhost" in dsn and b"5.1.1" in dsn,
               "the bounce is a DSN for bob@localhost with status 5.1.1", dsn[:3000])

    # --- full disk -> deferred, delivered after space frees -------------------
    k.add_user("full@localhost", "full-pw")
    home = k.maildir("full")
    os.makedirs(home, mode=0o700, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "kurir-e2e", home],
                             capture_output=True).returncode == 0
    if not mounted:
        tap.ok(True, "# SKIP cannot mount a tmpfs (needs root)")
    else:
        try:
            big = b"Subject: big\r\n\r\n" + b"0123456789" * 64 + b"\r\n"
            big = big + (b"x" * 78 + b"\r\n") * 2000  # ~160 KB: cannot fit in 64 KiB
            s = smtplib.SMTP("127.0.0.1", port, timeout=15)
            s.sendmail("carol@example.com", ["full@localhost"], big)
            s.quit()
            deferred = k.wait_for(lambda: re.search(r"to=<full@localhost>, relay=local, .*"
                                                    r"status=deferred \(maildir: .*No space left",
                                                    k.read_log()))
            tap.ok(deferred, "delivery to a full disk is deferred (ENOSPC)", k.read_log()[-2000:])
            tap.eq(new_files(k, "full"), [], "nothing half-written in new/")
            tmpd = os.path.join(home, "tmp")
            tap.eq(os.listdir(tmpd) if os.path.isdir(tmpd) else [], [], "nothing left in tmp/")
        finally:
            subprocess.run(["umount", "-l", home])
        got = k.wait_for(lambda: len(new_files(k, "full")) >= 1, timeout=30)
        tap.ok(got, "after space frees the retry delivers", k.read_log()[-2000:])
        if got:
            with open(new_files(k, "full")[0], "rb") as f:
                tap.ok(f.read().endswith(b"x" * 78 + b"\n"), "the deferred message is complete")

tap.done()

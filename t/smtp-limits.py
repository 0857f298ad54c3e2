#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# smtp-limits.py - the SMTP server's defences, end to end: the six SMTP
# smuggling end-of-data variants never make a second message; bare CR/LF
# and over-long text lines refused; a 1 MB command line; 10,000 RCPTs
# (max_recipients, 452); early talkers (greet_delay); pipelining before
# EHLO; HTTP requests; max_errors; command and data timeouts;
# connection limits (421); control and shell characters in addresses.
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from smtpkit import DELIVERY, Raw, config, delivered, listener_opts  # noqa: E402

SMUGGLE = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n"]

conf = config(command_timeout="2s", data_timeout="3s", max_errors=5)
with Kurird(config=conf) as k:
    k.add_user("alice@localhost", "pw")
    port = k.port("smtp")

    # --- SMTP smuggling -----------------------------------------------------------------
    for v in SMUGGLE:
        c = Raw(port, greeting=True)
        c.cmd("EHLO smuggler.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<alice@localhost>")
        tap.eq(c.cmd("DATA")[0], 354, "%r: DATA 354" % v)
        c.send(b"Subject: carrier\r\n\r\nbody" + v +
               b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
               b"Subject: smuggled\r\n\r\nevil\r\n.\r\n")
        r = c.reply()
        tap.eq((r[0], r[1][:5]), (554, "5.6.0"), "%r: the whole message refused (bare CR/LF)" % v)
        tap.eq(c.pending(0.3), b"", "%r: nothing after the single reply" % v)
        tap.eq(c.cmd("NOOP")[0], 250, "%r: session in sync" % v)
        c.cmd("QUIT")
    # a clean message afterwards proves delivery works and is the only one
    c = Raw(port, greeting=True)
    c.cmd("EHLO clean.example")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<alice@localhost>")
    c.cmd("DATA")
    c.send(b"Subject: clean\r\n\r\nclean\r\n.\r\n")
    tap.eq(c.reply()[0], 250, "a clean message after the smuggling attempts: 250")
    c.cmd("QUIT")
    msgs = delivered(k, "alice", 1)
    time.sleep(0.5)
    if msgs is not None:
        msgs = k.messages("alice")
        tap.eq(len(msgs), 1, "only the clean message was delivered")
        tap.ok(not any(b"smuggled" in m or b"carrier" in m for m in msgs), "no smuggled message")
    else:
        tap.eq(k.read_log().count("discarded by pipeline node"), 1, "only the clean message was accepted")

    # --- text lines over 1000 octets, and bare LF alone --------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO lines.example")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<alice@localhost>")
    c.cmd("DATA")
    c.send(b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
    r = c.reply()
    tap.eq((r[0], r[1][:5]), (554, "5.6.0"), "a 1001-octet text line: 554 5.6.0")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<alice@localhost>")
    c.cmd("DATA")
    c.send(b"Subject: ok\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
    tap.eq(c.reply()[0], 250, "a 1000-octet text line (998 + CRLF): accepted")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<alice@localhost>")
    chunk = b"Subject: x\n\nbare LF"
    c.send(b"BDAT %d LAST\r\n%s" % (len(chunk), chunk))
    r = c.reply()
    tap.eq((r[0], r[1][:5]), (554, "5.6.0"), "BDAT with bare LF: 554 5.6.0")
    tap.eq(c.cmd("NOOP")[0], 250, "in sync after the refused chunk")
    c.cmd("QUIT")

    # --- a 1 MB command line -----------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO long.example")
    c.send(b"NOOP " + b"x" * (1 << 20) + b"\r\nNOOP\r\n")
    r1 = c.reply()
    tap.eq((r1[0], r1[1][:5]), (500, "5.5.2"), "1 MB command line: 500 5.5.2")
    tap.eq(c.reply()[0], 250, "the next command is read normally")
    r = c.cmd("MAIL FROM:<" + "a" * 520 + "@example.com>")
    tap.eq(r[0], 500, "a 540-octet MAIL line: 500 (limit 512)")
    c.cmd("QUIT")

    # --- 10,000 RCPTs, pipelined ---------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO many.example")
    c.cmd("MAIL FROM:<many@example.com>")
    n = 10000
    payload = b"RCPT TO:<alice@localhost>\r\n" * n
    sender = threading.Thread(target=c.send, args=(payload,))
    t0 = time.time()
    sender.start()
    codes = [c.reply()[0] for _ in range(n)]
    sender.join()
    dt = time.time() - t0
    tap.eq(codes.count(250), 1000, "10,000 RCPTs: max_recipients (1000) accepted")
    tap.eq(codes.count(452), n - 1000, "... the other 9,000 get 452")
    tap.ok(codes[:1000] == [250] * 1000, "... the first 1000 are the accepted ones")
    tap.ok(dt < 20, "10,000 pipelined RCPTs answered in %.2fs" % dt)
    c.cmd("DATA")
    c.send(b"Subject: many\r\n\r\nmany\r\n.\r\n")
    tap.eq(c.reply()[0], 250, "DATA after 10,000 RCPTs: 250")
    c.cmd("QUIT")
    msgs = delivered(k, "alice", 3)
    if msgs is not None:
        time.sleep(0.5)
        tap.eq(sum(1 for m in k.messages("alice") if b"Subject: many" in m), 1,
               "one copy for the duplicated recipient")

    # --- pipelining before EHLO -----------------------------------------------------------
    c = Raw(port, greeting=True)
    c.send("HELO early.example\r\nMAIL FROM:<a@example.com>\r\n")
    r = c.reply()
    tap.eq((r[0], r[1][:5]), (554, "5.5.0"), "commands pipelined before EHLO: 554 5.5.0")
    tap.ok(c.eof(), "... and disconnected")
    c = Raw(port, greeting=True)
    tap.eq(c.cmd("HELO slow.example")[0], 250, "HELO one command at a time: fine")
    tap.eq(c.cmd("MAIL FROM:<a@example.com>")[0], 250, "MAIL after HELO: fine")
    c.cmd("QUIT")

    # --- HTTP request -------------------------------------------------------------------------
    c = Raw(port, greeting=True)
    c.send("POST / HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.reply()
    tap.eq(r[0], 421, "HTTP request: 421")
    tap.ok(c.eof(), "... and disconnected")

    # --- max_errors -----------------------------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO errors.example")
    codes = [c.cmd("BOGUS %d" % i)[0] for i in range(4)]
    tap.eq(codes, [502] * 4, "four errors: 502 each")
    r = c.cmd("BOGUS 5")
    tap.eq(r[0], 502, "fifth error: its reply")
    r = c.reply()
    tap.eq((r[0], r[1][:5]), (421, "4.7.0"), "... then 421 4.7.0 (max_errors = 5)")
    tap.ok(c.eof(), "... and disconnected")

    # --- control and shell characters in addresses --------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO shell.example")
    r = c.cmd("MAIL FROM:<a\tb@example.com>")
    tap.eq(r[0] // 100, 5, "TAB inside an address: refused")
    r = c.cmd("MAIL FROM:<\"a\x7fb\"@example.com>")
    tap.eq(r[0], 500, "DEL inside an address: 500")
    r = c.cmd("MAIL FROM:<`touch /tmp/kurir-pwned`;$(id)@example.com>")
    tap.eq(r[0], 501, "unquoted spaces, ';' and '()' in a local part: 501")
    r = c.cmd("MAIL FROM:<\"`touch /tmp/kurir-pwned`; $(id)\"@example.com>")
    tap.eq(r[0], 250, "the same, quoted: valid, kept as data (250)")
    c.cmd("RSET")
    r = c.cmd("MAIL FROM:<`id`|$HOME&{x}'y'@example.com>")
    tap.eq(r[0], 250, "shell metacharacters that are atext: just data (250)")
    r = c.cmd("RCPT TO:<\"|/bin/sh -c touch /tmp/kurir-pwned\"@localhost>")
    tap.eq(r[0], 550, "pipe 'address' for a local domain: unknown user 550")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 250, "a real recipient")
    c.cmd("DATA")
    c.send(b"Subject: shell sender\r\n\r\nx\r\n.\r\n")
    tap.eq(c.reply()[0], 250, "message from the odd sender queued")
    c.cmd("QUIT")
    c = Raw(port, greeting=True)
    c.cmd("EHLO traversal.example")
    c.cmd("MAIL FROM:<a@example.com>")
    r = c.cmd("RCPT TO:<../../etc/passwd@localhost>")
    tap.eq(r[0], 501, "path traversal 'address': not an address, 501")
    r = c.cmd("RCPT TO:<\"../../etc/passwd\"@localhost>")
    tap.eq(r[0], 550, "the same, quoted: unknown user, 550")
    c.cmd("QUIT")
    tap.ok(not os.path.exists("/tmp/kurir-pwned"), "nothing ran a shell")
    msgs = delivered(k, "alice", 4)

    # --- command timeout -----------------------------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO idle.example")
    t0 = time.time()
    r = c.reply()
    dt = time.time() - t0
    tap.eq((r[0], r[1][:5]), (421, "4.4.2"), "idle past command_timeout: 421 4.4.2")
    tap.ok(1.5 <= dt <= 6, "... after about 2s (%.2fs)" % dt)
    tap.ok(c.eof(), "... and disconnected")

    # --- data timeout: a stalled DATA loses its spool ---------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO stall.example")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<alice@localhost>")
    c.cmd("DATA")
    c.send(b"Subject: stalled\r\n\r\npartial")
    t0 = time.time()
    r = c.reply()
    dt = time.time() - t0
    tap.eq(r[0], 421, "stalled DATA: 421 after data_timeout")
    tap.ok(2.5 <= dt <= 8, "... after about 3s (%.2fs)" % dt)
    time.sleep(0.3)
    left = [f for d in ("incoming", "maildrop") for f in os.listdir(os.path.join(k.dir, "queue", d))
            if os.path.isdir(os.path.join(k.dir, "queue", d))] if os.path.isdir(os.path.join(k.dir, "queue")) else []
    tap.ok(not any(f.startswith(".tmp") for f in left), "no spool file left behind", left)

# --- early talkers, with a greeting delay --------------------------------------------
with Kurird(config=config(greet_delay="1s", trusted_networks=[])) as k:
    port = k.port("smtp")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"EHLO eager.example\r\n")
    data = b""
    t0 = time.time()
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    tap.ok(data.startswith(b"554 5.5.0"), "early talker: 554 5.5.0", data)
    tap.ok(b"220" not in data, "early talker never sees the greeting", data)
    tap.ok(time.time() - t0 < 3, "early talker dropped without waiting")
    s.close()
    t0 = time.time()
    c = Raw(port, greeting=True)
    dt = time.time() - t0
    tap.eq(c.greeting[0], 220, "patient client: 220")
    tap.ok(0.9 <= dt <= 3, "greeting after greet_delay (%.2fs)" % dt)
    tap.eq(c.cmd("EHLO patient.example")[0], 250, "patient client is served")
    c.cmd("QUIT")
    tap.ok("early talker 127.0.0.1" in k.read_log(), "early talker logged")

# Trusted networks (local submitters) are greeted without the delay.
with Kurird(config=config(greet_delay="2s", trusted_networks=["127.0.0.0/8"])) as k:
    t0 = time.time()
    c = Raw(k.port("smtp"), greeting=True)
    dt = time.time() - t0
    tap.eq(c.greeting[0], 220, "trusted client: 220")
    tap.ok(dt < 1.0, "trusted client greeted without greet_delay (%.2fs)" % dt)
    c.cmd("QUIT")

# --- connection limits (core) answered in SMTP ---------------------------------------------
conf = listener_opts(config(), "smtp", "max_per_ip = 3;")
with Kurird(config=conf) as k:
    port = k.port("smtp")
    conns = [Raw(port, greeting=True) for _ in range(3)]
    tap.ok(all(c.greeting[0] == 220 for c in conns), "three connections from one address: greeted")
    c4 = Raw(port)
    r = c4.reply()
    tap.eq((r[0], r[1][:5]), (421, "4.7.0"), "fourth from the same address: 421 4.7.0")
    tap.ok(c4.eof(), "... and closed")
    conns[0].cmd("QUIT")
    conns[0].eof()
    time.sleep(0.2)
    c5 = Raw(port, greeting=True)
    tap.eq(c5.greeting[0], 220, "after one leaves, a new one is greeted")
    for c in conns[1:] + [c5]:
        c.close()

if not DELIVERY:
    tap.diag("delivery modules not built: Maildir checks skipped")
tap.done()

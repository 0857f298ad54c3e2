#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# smtp-e2e.py - the SMTP server end to end, with real clients against a real
# kurird on ephemeral loopback ports: delivery to Maildir with Python's
# smtplib, swaks and curl (headers checked); PIPELINING (replies in order);
# BDAT/CHUNKING; 8-bit bodies and UTF-8 addresses (SMTPUTF8); SIZE at MAIL
# and during DATA; unknown local user 550 5.1.1 and postmaster; DSN
# parameters; the simple commands (VRFY 252, HELP, NOOP, RSET, unknown).
# See also smtp-tls.py (STARTTLS, AUTH, relay), smtp-limits.py (smuggling,
# long lines, early talkers, timeouts) and smtp-crash.py.
import os
import re
import smtplib
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from smtpkit import DELIVERY, Raw, config, delivered  # noqa: E402

if not DELIVERY:
    tap.diag("delivery modules not built: checking the receive side only")


def header(msg, name):
    """First header `name` of a delivered message (bytes), unfolded."""
    head = msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    out = None
    for line in head.split("\n"):
        if out is not None and line[:1] in (" ", "\t"):
            out += " " + line.strip()
            continue
        if out is not None:
            return out
        if line.lower().startswith(name.lower() + ":"):
            out = line.split(":", 1)[1].strip()
    return out


def body(msg):
    return msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


conf = config(max_message_size="64K")
with Kurird(config=conf) as k:
    k.add_user("alice@localhost", "alice-pw")
    k.add_user("bob@localhost", "bob-pw")
    port = k.port("smtp")
    n_alice = 0

    # --- smtplib: a plain message, headers added on the way ---------------
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    code, ehlo = s.ehlo("client.example")
    tap.eq(code, 250, "EHLO answered 250")
    feats = ehlo.decode().split("\n")[1:]
    for ext in ("PIPELINING", "SIZE 65536", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                "CHUNKING", "DSN", "STARTTLS"):
        tap.ok(ext in feats, "EHLO offers %s" % ext, feats)
    tap.ok(not any(f.startswith("AUTH") for f in feats), "no AUTH offered in clear", feats)
    msg = (b"From: Carol <carol@example.com>\r\nTo: alice@localhost\r\n"
           b"Subject: e2e smtplib\r\n\r\nHello Alice.\r\n.leading dot line\r\n")
    refused = s.sendmail("carol@example.com", ["alice@localhost"], msg)
    tap.eq(refused, {}, "smtplib: message accepted for alice")
    s.quit()
    n_alice += 1
    msgs = delivered(k, "alice", n_alice)
    if msgs is not None:
        m = msgs[-1]
        tap.eq(header(m, "Subject"), "e2e smtplib", "delivered: Subject kept")
        tap.ok(b"Hello Alice.\n.leading dot line\n" in body(m),
               "delivered: body intact, dot-unstuffed once", m)
        rcv = header(m, "Received") or ""
        tap.ok("client.example" in rcv and "127.0.0.1" in rcv, "Received: names HELO and client address", rcv)
        tap.ok("ESMTP" in rcv, "Received: protocol ESMTP", rcv)
        tap.ok(header(m, "Message-ID") is not None and header(m, "Date") is not None,
               "Message-ID and Date added")
        rp = header(m, "Return-Path")
        tap.ok(rp is None or "carol@example.com" in rp, "Return-Path (if any) is the sender", rp)

    # --- swaks ----------------------------------------------------------------------
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--from",
                        "dave@example.com", "--to", "bob@localhost", "--helo", "swaks.example",
                        "--header", "Subject: via swaks", "--body", "swaks body line"],
                       capture_output=True, text=True, timeout=60)
    tap.eq(p.returncode, 0, "swaks: exit 0", )
    tap.ok("250 2.0.0 Ok: queued as" in p.stdout, "swaks saw '250 2.0.0 Ok: queued as ID'", p.stdout)
    msgs = delivered(k, "bob", 1)
    if msgs is not None:
        tap.eq(header(msgs[-1], "Subject"), "via swaks", "swaks message delivered to bob")
        tap.ok(b"swaks body line" in msgs[-1], "swaks body delivered")

    # --- curl smtp:// -------------------------------------------------------------
    mailf = os.path.join(k.dir, "curl-mail.txt")
    with open(mailf, "wb") as f:
        f.write(b"From: erin@example.com\r\nTo: alice@localhost\r\nSubject: via curl\r\n\r\ncurl body\r\n")
    p = subprocess.run(["curl", "-sS", "--url", "smtp://127.0.0.1:%d/curl.example" % port,
                        "--mail-from", "erin@example.com", "--mail-rcpt", "alice@localhost",
                        "--upload-file", mailf], capture_output=True, text=True, timeout=60)
    tap.eq(p.returncode, 0, "curl smtp://: exit 0", )
    if p.returncode:
        tap.diag(p.stderr)
    n_alice += 1
    msgs = delivered(k, "alice", n_alice)
    if msgs is not None:
        tap.ok(any(header(m, "Subject") == "via curl" for m in msgs), "curl message delivered")

    # --- PIPELINING: one write, replies in order -----------------------------------
    c = Raw(port, greeting=True)
    tap.eq(c.greeting[0], 220, "raw client: 220 greeting")
    c.cmd("EHLO pipe.example")
    c.send("MAIL FROM:<pipe@example.com>\r\nRCPT TO:<alice@localhost>\r\n"
           "RCPT TO:<nosuchuser@localhost>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
    got = [c.reply()[:2] for _ in range(5)]
    tap.eq([g[0] for g in got], [250, 250, 550, 250, 354], "pipelined MAIL/RCPT*3/DATA: replies in order")
    tap.ok(got[2][1].startswith("5.1.1"), "unknown user in the pipeline: 5.1.1", got)
    # the message, the next transaction and QUIT in one write
    c.send("Subject: pipelined\r\n\r\nfirst\r\n.\r\n"
           "MAIL FROM:<pipe@example.com>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
    got = [c.reply() for _ in range(4)]
    tap.eq([g[0] for g in got], [250, 250, 250, 354], "end of data + next MAIL/RCPT/DATA: in order")
    tap.ok(got[0][1].startswith("2.0.0 Ok: queued as "), "250 names the queue id", got[0])
    c.send("Subject: pipelined 2\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
    r1, r2 = c.reply(), c.reply()
    tap.eq((r1[0], r2[0]), (250, 221), "second message queued, QUIT answered")
    tap.ok(c.eof(), "connection closed after QUIT")
    n_alice += 1
    delivered(k, "alice", n_alice)
    msgs = delivered(k, "bob", 3)
    if msgs is not None:
        subjects = sorted(header(m, "Subject") for m in msgs)
        tap.eq(subjects, ["pipelined", "pipelined 2", "via swaks"], "bob got both pipelined messages")

    # --- BDAT ------------------------------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO bdat.example")
    part1 = b"Subject: chunked\r\n\r\nline one\r"
    part2 = b"\nline two, 8-bit: \xc3\xa9\r\n.not stuffed\r\n"
    c.send(b"MAIL FROM:<bdat@example.com> BODY=8BITMIME\r\nRCPT TO:<alice@localhost>\r\n"
           b"BDAT %d\r\n%sBDAT %d LAST\r\n%s" % (len(part1), part1, len(part2), part2))
    got = [c.reply() for _ in range(4)]
    tap.eq([g[0] for g in got], [250, 250, 250, 250], "pipelined BDAT chunks: all 250")
    tap.eq(got[2][1], "2.0.0 %d octets received" % len(part1), "first chunk: octet count")
    tap.ok(got[3][1].startswith("2.0.0 Ok: queued as"), "BDAT LAST: queued", got[3])
    # BDAT without MAIL: the chunk is read and dropped, the session stays in sync
    c.send(b"BDAT 5 LAST\r\nHELLO")
    r = c.reply()
    tap.eq(r[0], 503, "BDAT without MAIL: 503 after the chunk")
    tap.eq(c.cmd("NOOP")[0], 250, "in sync after a refused chunk")
    # BDAT 0 LAST after one chunk
    chunk = b"Subject: zero last\r\n\r\nx\r\n"
    c.send(b"MAIL FROM:<bdat@example.com>\r\nRCPT TO:<alice@localhost>\r\nBDAT %d\r\n%s"
           b"BDAT 0 LAST\r\n" % (len(chunk), chunk))
    got = [c.reply()[0] for _ in range(4)]
    tap.eq(got, [250, 250, 250, 250], "BDAT n then BDAT 0 LAST")
    # DATA inside a BDAT transaction
    c.send(b"MAIL FROM:<bdat@example.com>\r\nRCPT TO:<alice@localhost>\r\nBDAT 3\r\nabcDATA\r\n")
    got = [c.reply()[0] for _ in range(4)]
    tap.eq(got, [250, 250, 250, 503], "DATA after BDAT: 503")
    c.cmd("QUIT")
    n_alice += 2
    msgs = delivered(k, "alice", n_alice)
    if msgs is not None:
        m = [m for m in msgs if header(m, "Subject") == "chunked"]
        tap.eq(len(m), 1, "BDAT message delivered once")
        if m:
            tap.ok(b"line one\nline two, 8-bit: \xc3\xa9\n.not stuffed\n" in m[0],
                   "BDAT content exact (no dot-unstuffing, 8-bit kept)", m[0])

    # --- 8BITMIME and SMTPUTF8 ------------------------------------------------------------
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("utf8.example")
    s.command_encoding = "utf-8"
    body8 = "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße, ñandú\r\n".encode()
    tap.eq(s.sendmail("sender@example.com", ["alice@localhost"], body8, mail_options=["BODY=8BITMIME"]),
           {}, "8BITMIME body accepted")
    code, text = s.docmd("MAIL FROM:<josé@example.com>")
    tap.eq((code, text[:5]), (553, b"5.6.7"), "UTF-8 sender without SMTPUTF8: 553 5.6.7")
    s.rset()
    tap.eq(s.sendmail("josé@exämple.com", ["alice@localhost"],
                      "Subject: utf8 sender\r\nFrom: josé@exämple.com\r\n\r\nhola\r\n".encode(),
                      mail_options=["SMTPUTF8", "BODY=8BITMIME"]), {}, "SMTPUTF8: UTF-8 sender accepted")
    code, text = s.docmd("MAIL FROM:<a@example.com> SMTPUTF8")
    tap.eq(code, 250, "MAIL with SMTPUTF8 parameter")
    code, text = s.docmd("RCPT TO:<ñoño@localhost>")
    tap.eq((code, text[:5]), (550, b"5.1.1"), "UTF-8 unknown local user: 550 5.1.1")
    s.rset()
    s.quit()
    n_alice += 2
    msgs = delivered(k, "alice", n_alice)
    if msgs is not None:
        m8 = [m for m in msgs if header(m, "Subject") == "8bit"]
        tap.ok(m8 and "Grüße, ñandú".encode() in m8[0], "8-bit body delivered intact")
        mu = [m for m in msgs if header(m, "Subject") == "utf8 sender"]
        tap.ok(mu and "josé@exämple.com".encode() in mu[0], "UTF-8 sender message delivered")
        rcv = header(mu[0], "Received") if mu else ""
        tap.ok("UTF8SMTP" in (rcv or ""), "Received: protocol UTF8SMTP", rcv)

    # --- SIZE ------------------------------------------------------------------------------
    c = Raw(port, greeting=True)
    c.cmd("EHLO size.example")
    r = c.cmd("MAIL FROM:<big@example.com> SIZE=70000")
    tap.eq((r[0], r[1][:5]), (552, "5.3.4"), "MAIL SIZE over max_message_size: 552 5.3.4")
    tap.eq(c.cmd("MAIL FROM:<big@example.com> SIZE=1000")[0], 250, "MAIL SIZE under the limit: 250")
    c.cmd("RCPT TO:<alice@localhost>")
    tap.eq(c.cmd("DATA")[0], 354, "DATA: 354")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 80 + b".\r\n"
    c.send(big)
    r = c.reply()
    tap.eq((r[0], r[1][:5]), (552, "5.3.4"), "DATA over max_message_size: 552 5.3.4")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 503, "transaction reset after the refused DATA")
    tap.eq(c.cmd("NOOP")[0], 250, "session goes on")
    c.cmd("QUIT")

    # --- recipients: unknown, postmaster, DSN --------------------------------------------
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("rcpt.example")
    s.mail("x@example.com")
    code, text = s.rcpt("nobody@localhost")
    tap.eq((code, text[:5]), (550, b"5.1.1"), "unknown local user: 550 5.1.1")
    code, _ = s.rcpt("<postmaster>")
    tap.eq(code, 250, "<postmaster> accepted (RFC 5321 4.5.1)")
    code, _ = s.rcpt("PostMaster@LOCALHOST")
    tap.eq(code, 250, "postmaster@domain accepted, any case")
    code, _ = s.rcpt("alice@LOCALHOST", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice+2Bx@localhost"])
    tap.eq(code, 250, "RCPT with DSN NOTIFY and ORCPT")
    code, _ = s.rcpt("bob@localhost", ["NOTIFY=NEVER,SUCCESS"])
    tap.eq(code, 501, "NOTIFY=NEVER with others: 501")
    code, _ = s.rcpt("bob@localhost", ["FOO=BAR"])
    tap.eq(code, 555, "unknown RCPT parameter: 555")
    code, _ = s.rcpt("bob@[127.0.0.1]")
    tap.eq(code, 250, "address literal from a trusted network (loopback): relayed, accepted")
    s.rset()
    code, _ = s.docmd("MAIL FROM:<dsn@example.com> RET=HDRS ENVID=QQ+2B1")
    tap.eq(code, 250, "MAIL with RET and ENVID")
    s.rset()
    code, _ = s.docmd("MAIL FROM:<dsn@example.com> RET=BOGUS")
    tap.eq(code, 501, "bad RET value: 501")
    code, text = s.docmd("MAIL FROM:<no-brackets@example.com")
    tap.eq(code, 501, "unbalanced path: 501")
    code, text = s.docmd("MAIL FROM:<a@b@example.com>")
    tap.eq(code // 100, 5, "two @: refused")
    s.quit()

    # --- simple commands --------------------------------------------------------------------
    c = Raw(port, greeting=True)
    tap.eq(c.cmd("MAIL FROM:<a@example.com>")[0], 503, "MAIL before HELO: 503")
    tap.eq(c.cmd("HELO simple.example")[0], 250, "HELO: 250")
    tap.eq(c.cmd("MAIL FROM:<a@example.com> SIZE=10")[0], 555, "after HELO no ESMTP parameters: 555")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 503, "RCPT without MAIL: 503")
    tap.eq(c.cmd("DATA")[0], 503, "DATA without MAIL: 503")
    tap.eq(c.cmd("EHLO simple.example")[0], 250, "EHLO after HELO")
    tap.eq(c.cmd("MAIL FROM:<a@example.com>")[0], 250, "MAIL")
    tap.eq(c.cmd("MAIL FROM:<a@example.com>")[0], 503, "nested MAIL: 503")
    tap.eq(c.cmd("DATA")[0], 554, "DATA with no valid recipients: 554")
    r = c.cmd("VRFY alice")
    tap.eq((r[0], r[1][:5]), (252, "2.0.0"), "VRFY: 252 by default (no user disclosure)")
    tap.eq(c.cmd("EXPN staff")[0], 502, "EXPN: 502")
    code, _, lines = c.cmd("HELP")
    tap.ok(code == 214 and "STARTTLS" in " ".join(lines), "HELP: 214 with the command list", lines)
    tap.eq(c.cmd("NOOP")[0], 250, "NOOP: 250")
    tap.eq(c.cmd("RSET")[0], 250, "RSET: 250")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 503, "RSET ended the transaction")
    r = c.cmd("FROB nicate")
    tap.eq((r[0], r[1][:5]), (502, "5.5.2"), "unknown command: 502 5.5.2")
    r = c.cmd("MAIL FROM:<a@example.com>\x01")
    tap.eq(r[0], 500, "control character in a command: 500")
    tap.eq(c.cmd("STARTTLS now")[0], 501, "STARTTLS with an argument: 501")
    tap.eq(c.cmd("QUIT")[0], 221, "QUIT: 221")

    # --- concurrent sessions -----------------------------------------------------------------
    errors = []

    def worker(i):
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=30)
            for j in range(5):
                s.sendmail("load@example.com", ["bob@localhost"],
                           b"Subject: load %d-%d\r\n\r\nx\r\n" % (i, j))
            s.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tap.eq(errors, [], "20 concurrent sessions x 5 messages: no errors")
    msgs = delivered(k, "bob", 103, timeout=60)
    if msgs is not None:
        tap.eq(len(msgs), 103, "all 100 concurrent messages delivered exactly once")


# --- VRFY when enabled, banner, HELO-only sessions ------------------------------------------
with Kurird(config=config(vrfy=True, banner="Hello from the tests")) as k:
    k.add_user("alice@localhost", "alice-pw")
    c = Raw(k.port("smtp"), greeting=True)
    tap.ok(c.greeting[1].endswith(" Hello from the tests"), "banner setting in the greeting", c.greeting)
    c.cmd("EHLO vrfy.example")
    r = c.cmd("VRFY alice")
    tap.eq(r, (250, "2.1.5 <alice@localhost>", ["2.1.5 <alice@localhost>"]), "vrfy = true: bare local user 250")
    tap.eq(c.cmd("VRFY <alice@LOCALHOST>")[0], 250, "vrfy = true: <user@DOMAIN> 250")
    r = c.cmd("VRFY nobody")
    tap.eq((r[0], r[1][:5]), (550, "5.1.1"), "vrfy = true: unknown user 550 5.1.1")
    tap.eq(c.cmd("VRFY postmaster")[0], 250, "vrfy = true: postmaster 250")
    tap.eq(c.cmd("VRFY someone@example.org")[0], 252, "vrfy = true: remote address 252")
    tap.eq(c.cmd("VRFY")[0], 501, "VRFY without an argument: 501")
    c.cmd("QUIT")

# --- DSN parameters end up in the queue file (kept there by a delivery side that defers) ----
if DELIVERY:
    conf = config()
    # The default pipeline with a delivery side that only defers.
    conf = re.sub(r"^pipeline = \{.*?^\};",
                  'pipeline = {\n'
                  '  maildrop = { type = "maildrop"; next = "cleanup"; };\n'
                  '  cleanup  = { type = "cleanup";  next = "incoming"; };\n'
                  '  incoming = { type = "enqueue"; };\n'
                  '  qmgr     = { type = "qmgr"; next = "later"; };\n'
                  '  later    = { type = "reject"; code = 450; ecode = "4.3.0"; text = "not now"; };\n'
                  '  bounce   = { type = "bounce"; };\n};', conf, flags=re.S | re.M)
    with Kurird(config=conf) as k:
        k.add_user("alice@localhost", "alice-pw")
        c = Raw(k.port("smtp"), greeting=True)
        c.cmd("EHLO dsn.example")
        c.cmd("MAIL FROM:<dsn@example.com> RET=HDRS ENVID=QQ+2B1 BODY=8BITMIME")
        r1 = c.cmd("RCPT TO:<alice@localhost> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;alice+2Bx@localhost")
        r2 = c.cmd("RCPT TO:<postmaster@localhost> NOTIFY=NEVER")
        c.cmd("DATA")
        c.send(b"Subject: dsn\r\n\r\nx\r\n.\r\n")
        r = c.reply()
        tap.eq((r1[0], r2[0], r[0]), (250, 250, 250), "DSN transaction accepted")
        qid = r[1].rsplit(" ", 1)[-1]
        k.wait_for(lambda: os.path.exists(os.path.join(k.dir, "queue", "deferred", qid)))
        out = k.kurir("queue", "show", qid).stdout
        tap.ok("envid: QQ+1" in out, "ENVID stored, xtext-decoded", out)
        tap.ok("ret: HDRS" in out, "RET stored", out)
        tap.ok("body: 8BITMIME" in out, "BODY stored", out)
        tap.ok("orcpt rfc822;alice+x@localhost" in out, "ORCPT stored as type;address, decoded", out)
        tap.ok("notify success delay" in out, "NOTIFY=SUCCESS,DELAY stored", out)
        tap.ok("notify never" in out, "NOTIFY=NEVER stored", out)
        tap.ok("protocol: ESMTP" in out and "helo: dsn.example" in out, "protocol and helo stored", out)
        c.cmd("QUIT")

tap.done()

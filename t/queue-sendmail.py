#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-sendmail.py - the sendmail command end to end (build/sendmail and
# `kurir sendmail`), against a kurird whose delivery stage is the test
# stage qtest (t/lib/queuekit.py): recipient arguments and -t (To/Cc/Bcc,
# Bcc removed, Resent-*), -f/-F/-i/-oi and the default sender, LF -> CRLF,
# the lone-dot end of input, the mbox "From " line, exit codes from
# sysexits.h with nothing left in maildrop/ after a refusal, mail written
# while kurird is down (picked up at start), and -bp.
import email
import email.header
import os
import pwd
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import (datadir, deliveries, delivered, qconfig, queue_empty, queue_ids,  # noqa: E402
                      sendmail)

EX_USAGE, EX_DATAERR = 64, 65


def wait_n(k, n):
    return k.wait_for(lambda: len(deliveries(k)) >= n and queue_empty(k))


def only(d):
    return list(d.values())[0] if len(d) == 1 else b""


def crlf_only(b):
    return b.count(b"\n") == b.count(b"\r\n") and b.count(b"\r") == b.count(b"\r\n")


with Kurird(config=qconfig(), data_dir=datadir()) as k:
    # --- recipients as arguments -------------------------------------------
    r = sendmail(k, ["-f", "alice@localhost", "bob@a.test", "Carol@B.TEST"],
                 "Subject: args\n\nline 1\nline 2\n")
    tap.eq(r.returncode, 0, "sendmail with recipient arguments exits 0")
    tap.eq(r.stdout + r.stderr, b"", "and says nothing")
    tap.ok(wait_n(k, 2), "both recipients delivered", deliveries(k))
    ds = deliveries(k)
    tap.eq(sorted(d[2] for d in ds), ["Carol@b.test", "bob@a.test"],
           "recipients as given (domain lowercased)")
    tap.ok(all(d[1] == "alice@localhost" for d in ds), "envelope sender from -f", ds)
    tap.eq(len({d[0] for d in ds}), 1, "one message, one queue ID")
    msg = only(delivered(k, "bob@a.test"))
    tap.ok(crlf_only(msg), "stored with CRLF line endings", msg)
    tap.ok(b"From: alice@localhost\r\n" in msg, "a From header was added", msg)
    tap.ok(msg.endswith(b"\r\n\r\nline 1\r\nline 2\r\n"), "the body is intact", msg)
    qid = ds[0][0]
    log = k.read_log()
    tap.ok("%s: from=<alice@localhost>, size=%d, nrcpt=2 (queue active)" % (qid, len(
        msg)) in log, "the queue logs from, size and nrcpt", log[-1500:])
    tap.ok(k.wait_for(lambda: "%s: removed" % qid in k.read_log()),
           "the queue file is removed once all are delivered")

    # --- -t: recipients from the header -------------------------------------
    n = len(deliveries(k))
    text = ("From: Alice <alice@localhost>\n"
            "To: \"Bob, B.\" <bob@a.test>, carol@b.test\n"
            "Cc: dave@c.test (Dave),\n"
            "  erin@a.test\n"
            "Bcc: eve@a.test\n"
            "Subject: extract\n"
            "\n"
            "hello\n")
    r = sendmail(k, ["-t", "-f", "alice@localhost"], text)
    tap.ok(r.returncode == 0, "sendmail -t exits 0", r.stderr)
    tap.ok(wait_n(k, n + 5), "five recipients delivered")
    new = deliveries(k)[n:]
    tap.eq(sorted(d[2] for d in new),
           ["bob@a.test", "carol@b.test", "dave@c.test", "erin@a.test", "eve@a.test"],
           "To, Cc (folded) and Bcc recipients, display names and comments dropped")
    tid = new[0][0] if new else ""
    copies = [delivered(k, a).get(tid, b"") for a in ("eve@a.test", "bob@a.test")]
    tap.ok(all(b"Bcc" not in c and b"eve@" not in c for c in copies),
           "the Bcc header is removed from every copy", copies[0])
    tap.ok(b"Cc: dave@c.test (Dave),\r\n  erin@a.test\r\n" in copies[1],
           "other headers kept as written (folding too)", copies[1])
    tap.eq(copies[1].count(b"From:"), 1, "no From added when there is one")

    # -t plus arguments, Resent- headers
    n = len(deliveries(k))
    r = sendmail(k, ["-t", "-f", "alice@localhost", "extra@c.test"],
                 "To: x@a.test\nSubject: both\n\nb\n")
    tap.ok(r.returncode == 0 and wait_n(k, n + 2), "-t with arguments: both kinds delivered")
    tap.eq(sorted(d[2] for d in deliveries(k)[n:]), ["extra@c.test", "x@a.test"],
           "header and argument recipients")
    n = len(deliveries(k))
    r = sendmail(k, ["-t", "-f", "alice@localhost"],
                 "To: old@a.test\nResent-To: new@b.test\nResent-Bcc: hidden@b.test\n\nr\n")
    tap.ok(r.returncode == 0 and wait_n(k, n + 2), "-t with Resent- headers")
    tap.eq(sorted(d[2] for d in deliveries(k)[n:]), ["hidden@b.test", "new@b.test"],
           "Resent-To/Resent-Bcc are used instead of To")
    tap.ok(b"Resent-Bcc" not in only(delivered(k, "new@b.test")), "Resent-Bcc removed")

    # --- the end of input -----------------------------------------------------
    n = len(deliveries(k))
    sendmail(k, ["-f", "alice@localhost", "dot1@a.test"], "Subject: d\n\nbefore\n.\nafter\n")
    sendmail(k, ["-i", "-f", "alice@localhost", "dot2@a.test"], "Subject: d\n\nbefore\n.\nafter\n")
    sendmail(k, ["-oi", "-f", "alice@localhost", "dot3@a.test"],
             "Subject: d\n\nbefore\n.\nafter\n..\n")
    tap.ok(wait_n(k, n + 3), "three dot messages delivered")
    tap.ok(only(delivered(k, "dot1@a.test")).endswith(b"\r\nbefore\r\n"),
           "without -i a lone dot ends the input", delivered(k, "dot1@a.test"))
    tap.ok(only(delivered(k, "dot2@a.test")).endswith(b"before\r\n.\r\nafter\r\n"),
           "with -i the dot line is content", delivered(k, "dot2@a.test"))
    tap.ok(only(delivered(k, "dot3@a.test")).endswith(b"before\r\n.\r\nafter\r\n..\r\n"),
           "with -oi too; no dot unstuffing", delivered(k, "dot3@a.test"))

    # --- From, full names, default sender, mbox line, CRLF input ------------
    n = len(deliveries(k))
    sendmail(k, ["-F", "Jane Q. Doe", "-f", "jane@localhost", "fn1@a.test"], "Subject: f\n\nx\n")
    sendmail(k, ["-FJürgen Müller", "-fjurgen@localhost", "fn2@a.test"], "Subject: f\n\nx\n")
    sendmail(k, ["fn3@a.test"], "From nobody Mon Jan  1 00:00:00 2024\nSubject: mbox\r\n\r\ncrlf\r\n")
    tap.ok(wait_n(k, n + 3), "full-name messages delivered")
    m1 = only(delivered(k, "fn1@a.test"))
    tap.ok(b'From: "Jane Q. Doe" <jane@localhost>\r\n' in m1, "-F: quoted display name", m1)
    m2 = email.message_from_bytes(only(delivered(k, "fn2@a.test")))
    name, addr = email.utils.parseaddr(str(email.header.make_header(
        email.header.decode_header(m2["From"]))))
    tap.eq((name, addr), ("Jürgen Müller", "jurgen@localhost"),
           "-F non-ASCII: RFC 2047 encoded word; attached option values")
    me = pwd.getpwuid(os.getuid()).pw_name
    d3 = [d for d in deliveries(k) if d[2] == "fn3@a.test"]
    tap.eq(d3[0][1] if d3 else None, "%s@localhost" % me,
           "default sender: login name @ default domain")
    m3 = only(delivered(k, "fn3@a.test"))
    tap.ok(m3.startswith(b"Subject: mbox\r\n") and b"From nobody" not in m3,
           "the mbox From_ line is dropped", m3)
    tap.ok(crlf_only(m3) and m3.endswith(b"\r\n\r\ncrlf\r\n"), "CRLF input is not doubled", m3)

    # --- kurir sendmail, -bp ------------------------------------------------------
    n = len(deliveries(k))
    r = k.kurir("sendmail", "-f", "alice@localhost", "viakurir@a.test", input="Subject: k\n\nk\n")
    tap.ok(r.returncode == 0, "`kurir sendmail` works too", r.stderr)
    tap.ok(wait_n(k, n + 1), "and its message is delivered")
    r = sendmail(k, ["-bp"], "")
    tap.ok(r.returncode == 0 and b"queue is empty" in r.stdout, "sendmail -bp lists the queue",
           r.stdout)

    # --- refusals: exit codes, nothing queued ---------------------------------------
    n = len(deliveries(k))
    cases = [
        (["-f", "a@localhost"], "x\n", EX_USAGE, "no recipients"),
        (["-Z", "x@a.test"], "x\n", EX_USAGE, "an unknown option"),
        (["-f"], "x\n", EX_USAGE, "-f without a value"),
        (["-bs"], "x\n", EX_USAGE, "an unsupported mode (-bs)"),
        (["-N", "sometimes", "x@a.test"], "x\n", EX_USAGE, "a bad -N"),
        (["a b@a.test"], "x\n", EX_DATAERR, "a recipient with a space"),
        (["x\x01y@a.test"], "x\n", EX_DATAERR, "a recipient with a control character"),
        (["x@a..test"], "x\n", EX_DATAERR, "a malformed domain"),
        (["-f", "<a@@b>", "x@a.test"], "x\n", EX_DATAERR, "a malformed sender"),
        (["-f", "a\r\nb@x", "x@a.test"], "x\n", EX_DATAERR, "a sender with CR LF"),
        (["-t"], "Subject: none\n\nx\n", EX_DATAERR, "-t and no recipient header"),
        (["-t"], "To: John Doe john@a.test\n\nx\n", EX_DATAERR, "-t and a broken To"),
    ]
    for args, text, want, what in cases:
        r = sendmail(k, args, text)
        tap.eq(r.returncode, want, "refused with %d: %s" % (want, what))
        tap.ok(r.stderr.startswith(b"sendmail: "), "with a message on stderr (%s)" % what,
               r.stderr)
    md = os.path.join(k.dir, "queue", "maildrop")
    tap.eq(os.listdir(md), [], "nothing left in maildrop/ (no file, no .tmp-)")
    r = sendmail(k, ["-odb", "-oem", "-f", "a@localhost", "opt@a.test"], "x\n")
    tap.eq(r.returncode, 0, "-oX options are accepted ...")
    tap.ok(b"-odb ignored" in r.stderr, "... with a note", r.stderr)
    tap.ok(wait_n(k, n + 1), "... and the mail goes out")

    # --- kurird down: the file waits in maildrop/, then is picked up --------
    k.stop()
    r = sendmail(k, ["-f", "alice@localhost", "later@a.test"], "Subject: later\n\nz\n")
    tap.eq(r.returncode, 0, "sendmail succeeds while kurird is down")
    tap.eq(len(queue_ids(k, "maildrop")), 1, "the message waits in maildrop/")
    n = len(deliveries(k))
    k.start()
    tap.ok(wait_n(k, n + 1), "picked up and delivered once kurird starts")
    tap.ok(only(delivered(k, "later@a.test")).endswith(b"\r\nz\r\n"), "intact")

tap.done()

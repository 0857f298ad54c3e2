#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-diskfull.py - a full queue disk (a small tmpfs mounted on
# DATA_DIR/queue, when we may mount): SMTP gets a 4xx (the client keeps
# the message), sendmail exits EX_TEMPFAIL (75), nothing half-written is
# left behind, and once space is back mail flows again. Mail that was
# acknowledged before is not lost.
import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, deliveries, qconfig, queue_empty, sendmail  # noqa: E402

EX_TEMPFAIL = 75


def files(k, qdir):
    return os.listdir(os.path.join(k.dir, "queue", qdir))


d = datadir()
qroot = os.path.join(d, "queue")
os.makedirs(qroot, mode=0o700)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "kurir-queue", qroot],
                  capture_output=True).returncode != 0:
    print("1..0 # SKIP cannot mount a tmpfs (needs root)")
    sys.exit(0)
try:
    with Kurird(config=qconfig(smtp=True), data_dir=d) as k:
        port = k.port("smtp")
        s = smtplib.SMTP("127.0.0.1", port, timeout=15)
        s.sendmail("a@example.org", ["small@remote.test"], b"Subject: small\r\n\r\nhi\r\n")
        tap.ok(k.wait_for(lambda: len(deliveries(k)) == 1 and queue_empty(k)),
               "a small message goes through")

        big = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 5000  # 400 KB > 256 KiB
        try:
            s.sendmail("a@example.org", ["big@remote.test"], big)
            code = 250
        except smtplib.SMTPDataError as e:
            code = e.smtp_code
        except smtplib.SMTPException as e:
            code = str(e)
        tap.ok(isinstance(code, int) and 400 <= code < 500,
               "SMTP: a message that does not fit gets a temporary error (%s)" % code)
        tap.eq(files(k, "incoming"), [], "SMTP: no spool left behind")
        s.sendmail("a@example.org", ["after@remote.test"], b"Subject: after\r\n\r\nok\r\n")
        s.quit()
        tap.ok(k.wait_for(lambda: any(x[2] == "after@remote.test" for x in deliveries(k))),
               "SMTP: the session goes on and the next message is delivered")

        r = sendmail(k, ["-f", "a@localhost", "bigsm@a.test"], big)
        tap.eq(r.returncode, EX_TEMPFAIL, "sendmail: EX_TEMPFAIL when the queue is full")
        tap.ok(b"No space left" in r.stderr, "sendmail: says why", r.stderr)
        tap.eq(files(k, "maildrop"), [], "sendmail: nothing left in maildrop/")
        r = sendmail(k, ["-f", "a@localhost", "smallsm@a.test"], "Subject: s\n\nsmall\n")
        tap.eq(r.returncode, 0, "sendmail: a small one still fits")
        tap.ok(k.wait_for(lambda: any(x[2] == "smallsm@a.test" for x in deliveries(k))),
               "and is delivered")
        tap.ok(not any(x[2] in ("big@remote.test", "bigsm@a.test") for x in deliveries(k)),
               "nothing of the refused messages was delivered")
finally:
    subprocess.run(["umount", "-l", qroot])

tap.done()

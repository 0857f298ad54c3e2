#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# pop3-fetchmail.py - fetchmail against a real kurird over STLS: fetches
# every message (content intact), with `keep` and UIDLs a second run
# fetches nothing, nor does a run after a kurird restart (UIDL stable),
# a newly delivered message is fetched alone, and a run without `keep`
# empties the maildrop. Skipped when fetchmail is not installed.
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from pop3kit import eq, maildir_files, pop3_config, send_mail  # noqa: E402

if not shutil.which("fetchmail"):
    print("1..0 # SKIP fetchmail not installed")
    sys.exit(0)

work = tempfile.mkdtemp(prefix="kurir-fetchmail-")
out = os.path.join(work, "out")
os.makedirs(out)
mda = os.path.join(work, "mda.sh")
with open(mda, "w") as f:
    f.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\ncat > "%s/msg.$n.$$"\n' % (out, out))
os.chmod(mda, 0o755)


def fetch(k, keep=True):
    rc = os.path.join(work, "fetchmailrc")
    with open(rc, "w") as f:
        f.write('set no syslog\nset no bouncemail\n'
                'poll 127.0.0.1 service %d protocol pop3 uidl\n'
                '  user "bob" there with password "bob-pw" is "root" here\n'
                '  options %s sslproto "TLS1.2+" no sslcertck\n'
                '  mda "%s"\n' % (k.port("pop3"), "keep" if keep else "no keep fetchall", mda))
    os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)
    env = dict(os.environ, HOME=work)
    p = subprocess.run(["fetchmail", "--nodetach", "-f", rc, "-i", os.path.join(work, "ids"),
                        "--pidfile", os.path.join(work, "pid")],
                       capture_output=True, text=True, env=env, timeout=120)
    return p


def fetched():
    return sorted(os.listdir(out))


with Kurird(config=pop3_config(plaintext=False)) as k:
    k.add_user("bob@localhost", "bob-pw")
    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n.leading dot\r\n" % (i, i) for i in range(3)]
    for i, b in enumerate(bodies):
        send_mail(k, "bob@localhost", b)
        k.wait_for(lambda: len(maildir_files(k, "bob")) > i, timeout=20)

    p = fetch(k)
    eq(p.returncode, 0, "fetchmail over STLS fetches mail (exit 0)", p.stdout + p.stderr)
    eq(len(fetched()), 3, "3 messages fetched")
    texts = [open(os.path.join(out, n), "rb").read() for n in fetched()]
    for i in range(3):
        want = b"body %d\n.leading dot\n" % i
        tap.ok(any(t.endswith(want) for t in texts), "message %d arrived intact (dot line kept)" % i,
               texts)
    eq(len(maildir_files(k, "bob")), 3, "keep: the messages stay on the server")

    p = fetch(k)
    eq(p.returncode, 1, "a second run: no new mail (exit 1)", p.stdout + p.stderr)
    eq(len(fetched()), 3, "nothing fetched twice")

    k.restart()
    p = fetch(k)
    eq(p.returncode, 1, "after a kurird restart: still no new mail (UIDL stable)",
           p.stdout + p.stderr)

    send_mail(k, "bob@localhost", b"Subject: later\r\n\r\nthe fourth\r\n")
    k.wait_for(lambda: len(maildir_files(k, "bob")) == 4, timeout=20)
    p = fetch(k)
    eq(p.returncode, 0, "a new message is fetched", p.stdout + p.stderr)
    eq(len(fetched()), 4, "exactly one more message")

    p = fetch(k, keep=False)
    eq(p.returncode, 0, "fetchmail without keep (fetchall) fetches everything", p.stdout + p.stderr)
    eq(len(fetched()), 8, "all 4 fetched again")
    eq(len(maildir_files(k, "bob")), 0, "without keep the maildrop is emptied (DELE + QUIT)")

shutil.rmtree(work, ignore_errors=True)
tap.done()

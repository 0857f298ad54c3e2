#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# smtp-crash.py - "250 Ok: queued" means durable: kurird is SIGKILLed the
# moment the last of a burst of messages gets its 250 (several sessions
# at once, so commits overlap); after a restart on the same data dir every
# acknowledged message is delivered (at least once), and nothing that was
# still being received when the process died is delivered.
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from smtpkit import DELIVERY, Raw, config  # noqa: E402

if not DELIVERY:
    print("1..0 # SKIP delivery modules (queue, local, maildir) not built")
    sys.exit(0)

SESSIONS = 4
PER = 10


def subjects(k):
    out = []
    for m in k.messages("alice"):
        for line in m.split(b"\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].strip().decode())
                break
    return out


for round_ in range(3):
    with Kurird(config=config()) as k:
        k.add_user("alice@localhost", "pw")
        port = k.port("smtp")
        acked = []
        lock = threading.Lock()
        done = threading.Barrier(SESSIONS + 1)
        partial = Raw(port, greeting=True)
        partial.cmd("EHLO partial.example")
        partial.cmd("MAIL FROM:<p@example.com>")
        partial.cmd("RCPT TO:<alice@localhost>")
        partial.cmd("DATA")
        partial.send(b"Subject: never acknowledged\r\n\r\nhalf a message")

        def session(i):
            try:
                c = Raw(port, greeting=True)
                c.cmd("EHLO crash%d.example" % i)
                for j in range(PER):
                    subj = "crash %d-%d-%d" % (round_, i, j)
                    c.send("MAIL FROM:<s@example.com>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
                    codes = [c.reply()[0] for _ in range(3)]
                    c.send("Subject: %s\r\n\r\nbody %s\r\n.\r\n" % (subj, subj))
                    r = c.reply()
                    if codes == [250, 250, 354] and r[0] == 250:
                        with lock:
                            acked.append(subj)
            except (EOFError, OSError, ValueError):
                pass
            done.wait()

        threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
        for t in threads:
            t.start()
        done.wait()
        k.kill()  # SIGKILL right after the last 250
        before = len(subjects(k))
        for t in threads:
            t.join()
        partial.close()
        tap.eq(len(acked), SESSIONS * PER, "round %d: %d messages acknowledged before the kill" % (round_, len(acked)))
        tap.diag("round %d: %d of %d delivered before the kill" % (round_, before, len(acked)))
        k.start()
        k.wait_for(lambda: set(acked) <= set(subjects(k)), timeout=30)
        got = subjects(k)
        missing = sorted(set(acked) - set(got))
        tap.eq(missing, [], "round %d: every acknowledged message delivered after the restart" % round_)
        tap.ok("never acknowledged" not in got, "round %d: the half-received message was not delivered" % round_)
        # the daemon works normally after recovery
        c = Raw(port=k.port("smtp"), greeting=True)
        c.cmd("EHLO after.example")
        c.cmd("MAIL FROM:<s@example.com>")
        c.cmd("RCPT TO:<alice@localhost>")
        c.cmd("DATA")
        c.send("Subject: after restart %d\r\n\r\nx\r\n.\r\n" % round_)
        tap.eq(c.reply()[0], 250, "round %d: accepting mail after the restart" % round_)
        c.cmd("QUIT")
        k.wait_for(lambda: "after restart %d" % round_ in subjects(k))
        tap.ok("after restart %d" % round_ in subjects(k), "round %d: and delivering it" % round_)
        spool = [f for d in os.listdir(os.path.join(k.dir, "queue"))
                 for f in os.listdir(os.path.join(k.dir, "queue", d)) if f.startswith(".tmp")]
        tap.diag("round %d: temporary spool files left by the crash: %d" % (round_, len(spool)))

tap.done()

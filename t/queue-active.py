#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-active.py - the bound on active messages, and the enqueue stage's
# shortcut of committing a new message straight into active/ when the
# queue manager has a free slot and nothing waits:
#   - with max_active 2, one delivery slot and a slow delivery stage, six
#     messages injected at once: never more than two files in active/,
#     the others wait in incoming/, all six are delivered once;
#   - a message committed straight into active/ survives SIGKILL: after
#     the restart it is delivered and the queue is empty.
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, deliveries, qconfig, queue_empty, queue_ids, sendmail  # noqa: E402


def inject(k, n, rcpt="m%d@a.test"):
    ids = []
    for i in range(n):
        r = sendmail(k, ["-v", "-f", "s@localhost", rcpt % i], "Subject: a%d\n\nx\n" % i)
        m = re.search(rb"queued as (\w+)", r.stderr)
        tap.ok(r.returncode == 0 and m, "sendmail %d" % i, r.stderr)
        ids.append(m.group(1).decode() if m else "?")
    return ids


conf = qconfig(policy="fifo", queue={"max_active": 2, "max_deliveries": 1},
               deliver={"delay_ms": 400})
with Kurird(config=conf, data_dir=datadir()) as k:
    k.stop()
    ids = inject(k, 6)  # picked up together at the start
    k.start()
    most_active, saw_waiting = 0, False
    deadline = time.time() + 30
    while time.time() < deadline and not (len(deliveries(k)) >= 6 and queue_empty(k)):
        most_active = max(most_active, len(queue_ids(k, "active")))
        saw_waiting |= len(queue_ids(k, "incoming")) > 0 and len(deliveries(k)) > 0
        time.sleep(0.02)
    got = [d[0] for d in deliveries(k)]
    tap.eq(sorted(got), sorted(ids), "all six delivered once")
    tap.ok(queue_empty(k), "the queue is empty afterwards")
    tap.ok(1 <= most_active <= 2, "never more than max_active (2) files in active/ (saw %d)"
           % most_active)
    tap.ok(saw_waiting, "the others waited in incoming/ while two were active")

conf = qconfig(policy="fifo", deliver={"delay_ms": 3000})
with Kurird(config=conf, data_dir=datadir()) as k:
    before = len(deliveries(k))
    qid = inject(k, 1, rcpt="crash%d@a.test")[0]
    ok = k.wait_for(lambda: qid in queue_ids(k, "active"), timeout=15)
    tap.ok(ok, "a new message with a free slot is in active/ (%s)" % qid,
           {d: queue_ids(k, d) for d in ("maildrop", "incoming", "active")})
    k.kill()
    tap.ok(qid in queue_ids(k, "active") and not deliveries(k)[before:],
           "killed during its delivery: still in active/, not delivered yet")
    k.start()
    ok = k.wait_for(lambda: len(deliveries(k)) > before and queue_empty(k), timeout=30)
    tap.ok(ok, "after the restart it is delivered and the queue is empty")
    tap.eq([d[0] for d in deliveries(k)[before:]], [qid], "delivered exactly the message")

tap.done()

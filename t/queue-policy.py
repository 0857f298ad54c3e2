#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-policy.py - swapping the queue policy by config. With one delivery
# slot and a slow delivery stage, eight queued messages (four to a.test,
# then four to b.test, written while kurird is down) come out:
#   fifo - oldest first (by queue ID): all of a.test, then b.test
#   fair - alternating between the two destinations
#   lifo - newest first; lifo comes from a separate module
#          (t/modules/queue-lifo.c, the example of docs/queue-policies.md)
# The first delivery starts as soon as the first message is in, so only
# the order of the other seven is checked. Also: an unknown policy name
# stops start-up and --check-config, and the doc quotes the module file.
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, ROOT, Kurird, tap  # noqa: E402
from queuekit import datadir, deliveries, qconfig, queue_empty, queue_ids, sendmail  # noqa: E402


def run(policy):
    mods = ("queue-lifo",) if policy == "lifo" else ()
    conf = qconfig(policy=policy, modules=mods, queue={"max_deliveries": 1},
                   deliver={"delay_ms": 300})
    with Kurird(config=conf, data_dir=datadir()) as k:
        r = k.kurir("queue", "status")
        tap.ok("policy %s\n" % policy in r.stdout, "%s: kurir queue status names it" % policy,
               r.stdout + r.stderr)
        k.stop()
        sent = []
        for dom in ("a.test", "b.test"):
            for i in range(4):
                r = sendmail(k, ["-v", "-f", "s@localhost", "m%d@%s" % (i, dom)], "Subject: p\n\nx\n")
                sent.append((re.search(rb"queued as (\w+)", r.stderr).group(1).decode(), dom))
        tap.eq(len(queue_ids(k, "maildrop")), 8, "%s: eight messages wait in maildrop/" % policy)
        k.start()
        ok = k.wait_for(lambda: len(deliveries(k)) >= 8 and queue_empty(k), timeout=30)
        tap.ok(ok, "%s: all eight delivered" % policy, deliveries(k))
        got = [d[0] for d in deliveries(k)]
        dom = dict(sent)
        return got, [dom.get(g, "?") for g in got]


def switches(seq):
    return sum(1 for a, b in zip(seq, seq[1:]) if a != b)


ids, doms = run("fifo")
rest = ids[1:]
tap.eq(rest, sorted(rest), "fifo: after the first, oldest first")
tap.ok(switches(doms[1:]) <= 1, "fifo: one destination after the other", doms)

ids, doms = run("fair")
tap.ok(switches(doms[1:]) >= 5, "fair: the destinations alternate", doms)

ids, doms = run("lifo")
rest = ids[1:]
tap.eq(rest, sorted(rest, reverse=True), "lifo (a third-party module): newest first")

# --- an unknown policy ---------------------------------------------------------
conf = qconfig(policy="nosuch")
k = Kurird(config=conf, data_dir=datadir())
with open(k.conf_path, "w") as f:
    f.write(k.config)
p = subprocess.run([os.path.join(BUILD, "kurird"), "--check-config", "-c", k.conf_path,
                    "--data-dir", k.dir], capture_output=True, text=True)
tap.ok(p.returncode == 1 and "no queue policy named 'nosuch'" in p.stderr,
       "--check-config refuses an unknown policy", p.stderr)
try:
    k.start(timeout=10)
    started = True
except RuntimeError:
    started = False
tap.ok(not started, "kurird does not start with an unknown policy")
tap.ok("nosuch" in k.read_log(), "and says why", k.read_log())
k.stop()
k.__exit__(None, None, None)

# --- the doc quotes the example module ----------------------------------------------
with open(os.path.join(ROOT, "docs", "queue-policies.md")) as f:
    doc = f.read()
with open(os.path.join(ROOT, "t", "modules", "queue-lifo.c")) as f:
    src = f.read()
tap.ok("```c\n" + src + "```" in doc, "docs/queue-policies.md quotes t/modules/queue-lifo.c as is")

tap.done()

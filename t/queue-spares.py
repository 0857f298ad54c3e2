#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-spares.py - finished queue files are kept as spares and reused
# (docs/queue-format.md, "Durability"), end to end over SMTP:
#   - after a burst, active/ holds .spare-ID files (at most 64 KiB each)
#     and no queue file;
#   - a second burst reuses them: few new inodes for many messages;
#   - SIGKILL with spares on disk: the restart removes them, nothing is
#     corrupt;
#   - SIGKILL while sessions commit and spares are being reused: every
#     acknowledged message is delivered after the restart, no queue file is
#     empty or corrupt.
import os
import smtplib
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, deliveries, qconfig, queue_empty, queue_ids  # noqa: E402

QDIRS = ("maildrop", "incoming", "active", "deferred", "hold")


def spares(k):
    """{path: (inode, size)} of every .spare- file in the queue dirs."""
    out = {}
    for d in QDIRS:
        p = os.path.join(k.dir, "queue", d)
        for n in os.listdir(p) if os.path.isdir(p) else []:
            if n.startswith(".spare-"):
                st = os.stat(os.path.join(p, n))
                out[os.path.join(d, n)] = (st.st_ino, st.st_size)
    return out


def burst(k, tag, n, sessions=4, stop_after=None, on_stop=None):
    """Send n messages over `sessions` parallel SMTP sessions, one
    connection each; returns {queue id: recipient} of those acknowledged.
    With stop_after, on_stop() runs once that many were acknowledged, and
    sending stops."""
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w):
        for i in range(w, n, sessions):
            if stop.is_set():
                return
            rcpt = "%s-%d@remote.test" % (tag, i)
            try:
                s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
                s.ehlo("spares.example")
                s.mail("sender@localhost")
                s.rcpt(rcpt)
                code, resp = s.data(("Subject: %s %d\r\n\r\n" % (tag, i) + ("x" * 70 + "\r\n") * 40)
                                    .encode())
                s.quit()
            except (smtplib.SMTPException, OSError):
                return
            if code != 250:
                continue
            qid = resp.decode().split()[-1]
            with lock:
                acked[qid] = rcpt
                if stop_after and len(acked) == stop_after and not stop.is_set():
                    stop.set()
                    on_stop()

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return acked


def delivered_all(k, acked):
    got = {(q, r) for q, _, r in deliveries(k)}
    return all((q, r) in got for q, r in acked.items())


conf = qconfig(smtp=True, queue={"max_deliveries": 8})
with Kurird(config=conf, data_dir=datadir()) as k:
    a1 = burst(k, "one", 24)
    tap.eq(len(a1), 24, "burst 1: every message acknowledged")
    tap.ok(k.wait_for(lambda: delivered_all(k, a1) and queue_empty(k)),
           "burst 1: delivered, queue empty", deliveries(k))
    s1 = spares(k)
    tap.ok(0 < len(s1) <= 24, "burst 1: finished files kept as spares (%d)" % len(s1))
    tap.ok(all(p.startswith("active/") for p in s1), "spares are where the files finished", s1)
    tap.ok(all(size <= 65536 for _, size in s1.values()), "spares are small (keep <= 64 KiB)", s1)

    a2 = burst(k, "two", 24)
    tap.ok(k.wait_for(lambda: delivered_all(k, a2) and queue_empty(k)),
           "burst 2: delivered, queue empty")
    s2 = spares(k)
    old = {ino for ino, _ in s1.values()}
    new = {ino for ino, _ in s2.values()} - old
    tap.ok(len(new) < 12, "burst 2 reused the spares: %d new inodes for 24 messages" % len(new),
           (s1, s2))
    tap.eq(len(deliveries(k)), 48, "each message delivered once")

    k.kill()
    tap.ok(len(spares(k)) > 0, "killed with spares on disk")
    k.start()
    tap.ok(k.wait_for(lambda: "queue recovery" in k.read_log().split("started")[-1]),
           "restarted: recovery ran")
    tap.eq(spares(k), {}, "restart: the spares are removed")
    tap.eq(queue_ids(k, "corrupt"), [], "restart: nothing corrupt")

    # Kill while 4 sessions commit and earlier files are reused.
    a3 = burst(k, "three", 200, stop_after=40, on_stop=k.kill)
    tap.ok(len(a3) >= 40, "burst 3: %d acknowledged before the kill" % len(a3))
    empty = [os.path.join(d, n) for d in QDIRS for n in queue_ids(k, d)
             if os.path.getsize(os.path.join(k.dir, "queue", d, n)) < 128]
    tap.eq(empty, [], "after the kill: no queue file is empty or short")
    k.start()
    tap.ok(k.wait_for(lambda: delivered_all(k, a3) and queue_empty(k), timeout=30),
           "after the restart: every acknowledged message delivered",
           sorted(set(a3.items()) - {(q, r) for q, _, r in deliveries(k)}))
    tap.eq(queue_ids(k, "corrupt"), [], "after the restart: nothing corrupt")
    n3 = [d for d in deliveries(k) if d[2].startswith("three-")]
    tap.ok(len(n3) <= len(a3) + 4 + 8, "no more repeats than messages in flight (%d deliveries)" %
           len(n3))

tap.done()

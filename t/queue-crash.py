#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-crash.py - an acknowledged message is never lost. kurird is
# SIGKILLed at many points and restarted on the same data dir; every
# message that was acknowledged (SMTP 250, sendmail exit 0) is then
# delivered at least once, nothing ends up in corrupt/, and mail that was
# never acknowledged leaves no trace:
#   - exact points inside the queue (KURIR_CRASH_POINT, see
#     modules/queue/queue.c): enqueue-durable, active, delivered, saved,
#     bounce-queued;
#   - during DATA (nothing acknowledged: not delivered, spool removed);
#   - right after a burst of 250s;
#   - during a (slow) delivery;
#   - with mail deferred (recovered from deferred/ and retried);
#   - a move interrupted between link and unlink (one file, two names);
#   - repeatedly at random moments while mail flows.
import os
import random
import re
import smtplib
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, deliveries, qconfig, queue_empty, queue_ids, sendmail  # noqa: E402


def died(k, timeout=15):
    """Wait for kurird to die on its own (a crash point); True if it did."""
    try:
        k.proc.wait(timeout)
    except Exception:
        return False
    k.proc = None
    k.log.close()
    return True


def delivered_to(k):
    return {(d[0], d[2]) for d in deliveries(k)}


def settled(k, want, timeout=20):
    """Every (queue id, rcpt) in want delivered, and the queue empty."""
    return k.wait_for(lambda: want <= delivered_to(k) and queue_empty(k), timeout=timeout)


def queued_id(r):
    m = re.search(rb"queued as (\w{14})", r.stderr)
    return m.group(1).decode() if m else None


# --- exact points inside the queue ---------------------------------------------------
POINTS = ["enqueue-durable", "active", "delivered", "saved"]
for point in POINTS:
    conf = qconfig(deliver={"fail_match": "^nobody@"})
    with Kurird(config=conf, data_dir=datadir(), env={"KURIR_CRASH_POINT": point}) as k:
        r = sendmail(k, ["-v", "-f", "alice@localhost", "x@a.test", "y@b.test"],
                     "Subject: crash at %s\n\nbody\n" % point)
        qid = queued_id(r)
        tap.ok(r.returncode == 0 and qid, "%s: sendmail accepted the message" % point)
        tap.ok(died(k), "%s: kurird died at the crash point" % point, k.read_log()[-1500:])
        tap.ok("crash point '%s' reached" % point in k.read_log(), "%s: reached" % point)
        k.env.pop("KURIR_CRASH_POINT")
        k.start()
        want = {(qid, "x@a.test"), (qid, "y@b.test")}
        tap.ok(settled(k, want), "%s: after restart both recipients are delivered" % point,
               deliveries(k))
        tap.eq(queue_ids(k, "corrupt"), [], "%s: nothing corrupt" % point)
        n = len(deliveries(k))
        tap.ok(n <= 4, "%s: at most one repeat per recipient (%d deliveries)" % (point, n))

# bounce-queued: the DSN is durable, the recipients not yet marked BOUNCED.
conf = qconfig(deliver={"fail_match": "^nobody@"})
with Kurird(config=conf, data_dir=datadir(), env={"KURIR_CRASH_POINT": "bounce-queued"}) as k:
    r = sendmail(k, ["-v", "-f", "alice@localhost", "nobody@a.test"], "Subject: b\n\nb\n")
    qid = queued_id(r)
    tap.ok(died(k), "bounce-queued: kurird died after queueing the DSN")
    k.env.pop("KURIR_CRASH_POINT")
    k.start()
    tap.ok(k.wait_for(lambda: [d for d in deliveries(k) if d[1] == "" and
                                d[2] == "alice@localhost"] and queue_empty(k)),
           "bounce-queued: the sender gets the DSN (at least once)", deliveries(k))
    dsns = [d for d in deliveries(k) if d[1] == "" and d[2] != "postmaster@localhost"]
    tap.ok(1 <= len(dsns) <= 2, "bounce-queued: one DSN, or one repeat (%d)" % len(dsns))
    tap.ok(qid not in queue_ids(k, "deferred") + queue_ids(k, "active"),
           "bounce-queued: the failed message is gone")

# --- SMTP: during DATA, after 250, at enqueue-durable -------------------------------------
conf = qconfig(smtp=True)


def smtp_send(port, rcpt, subject):
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("crash.example")
    s.mail("sender@example.org")
    s.rcpt(rcpt)
    code, resp = s.data(("Subject: %s\r\n\r\nbody of %s\r\n" % (subject, subject)).encode())
    s.quit()
    m = re.search(rb"queued as (\w{14})", resp)
    return code, (m.group(1).decode() if m else None)


with Kurird(config=conf, data_dir=datadir()) as k:
    port = k.port("smtp")
    code, first = smtp_send(port, "warm@remote.test", "warm-up")
    tap.eq(code, 250, "smtp: a message is accepted")
    tap.ok(first and settled(k, {(first, "warm@remote.test")}), "smtp: and delivered")

    # During DATA: half a message, then the crash.
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = c.makefile("rb")
    f.readline()
    for line in (b"EHLO crash.example", b"MAIL FROM:<s@example.org>", b"RCPT TO:<half@remote.test>",
                 b"DATA"):
        c.sendall(line + b"\r\n")
        while True:
            resp = f.readline()
            if resp[3:4] != b"-":
                break
    tap.ok(resp.startswith(b"354"), "during DATA: 354", resp)
    c.sendall(b"Subject: half\r\n\r\n" + b"x" * 100000 + b"\r\n")
    time.sleep(0.3)
    spools = [n for n in os.listdir(os.path.join(k.dir, "queue", "incoming"))
              if n.startswith(".tmp-")]
    tap.eq(len(spools), 1, "during DATA: a spool file is being written")
    k.kill()
    c.close()
    k.start()
    tap.ok(k.wait_for(lambda: "queue recovery" in k.read_log().split("started")[-1]),
           "during DATA: restarted")
    time.sleep(0.5)
    tap.eq([d for d in deliveries(k) if d[2] == "half@remote.test"], [],
           "during DATA: the unacknowledged message is not delivered")
    tap.eq([n for n in os.listdir(os.path.join(k.dir, "queue", "incoming"))], [],
           "during DATA: its spool was removed at recovery")

    # A burst acknowledged, then SIGKILL right after the last 250.
    port = k.port("smtp")
    acked = set()
    for i in range(12):
        code, qid = smtp_send(port, "burst%d@remote.test" % i, "burst %d" % i)
        if code == 250 and qid:
            acked.add((qid, "burst%d@remote.test" % i))
    k.kill()
    tap.eq(len(acked), 12, "after 250: twelve messages acknowledged")
    k.start()
    tap.ok(settled(k, acked), "after 250: every acknowledged message is delivered",
           sorted(acked - delivered_to(k)))

with Kurird(config=conf, data_dir=datadir(), env={"KURIR_CRASH_POINT": "enqueue-durable"}) as k:
    port = k.port("smtp")
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("crash.example")
    s.mail("sender@example.org")
    s.rcpt("durable@remote.test")
    try:
        code, _ = s.data(b"Subject: durable\r\n\r\nbody\r\n")
    except (smtplib.SMTPException, OSError):
        code = None
    tap.ok(code != 250, "enqueue-durable over SMTP: the client got no 250 (%s)" % code)
    tap.ok(died(k), "enqueue-durable over SMTP: kurird died")
    k.env.pop("KURIR_CRASH_POINT")
    k.start()
    tap.ok(k.wait_for(lambda: [d for d in deliveries(k) if d[2] == "durable@remote.test"]),
           "enqueue-durable over SMTP: the durable message is still delivered (at least once)")

# --- during a slow delivery; with deferred mail -------------------------------------------
conf = qconfig(queue={"min_backoff": "1s", "max_backoff": "1s"},
               deliver={"delay_ms": 1500, "defer_match": "^later@", "defer_count": 2})
with Kurird(config=conf, data_dir=datadir()) as k:
    r = sendmail(k, ["-v", "-f", "a@localhost", "slow@a.test"], "Subject: slow\n\nx\n")
    qid = queued_id(r)
    tap.ok(k.wait_for(lambda: qid in queue_ids(k, "active")), "during delivery: in active/")
    time.sleep(0.3)
    k.kill()
    tap.eq(deliveries(k), [], "during delivery: killed before the delivery finished")
    k.start()
    tap.ok(settled(k, {(qid, "slow@a.test")}), "during delivery: delivered after the restart")
    tap.ok("1 message(s) to deliver" in k.read_log(), "during delivery: resumed from active/")

    r = sendmail(k, ["-v", "-f", "a@localhost", "later@a.test"], "Subject: later\n\nx\n")
    qid = queued_id(r)
    tap.ok(k.wait_for(lambda: qid in queue_ids(k, "deferred"), timeout=10),
           "deferred: waiting in deferred/")
    k.kill()
    k.start()
    tap.ok(k.wait_for(lambda: "0 message(s) to deliver, 1 deferred" in k.read_log()),
           "deferred: found by the recovery scan")
    tap.ok(settled(k, {(qid, "later@a.test")}, timeout=30), "deferred: retried and delivered")
    tap.eq(len([d for d in deliveries(k) if d[2] == "later@a.test"]), 1, "deferred: once")

# --- a move interrupted between link and unlink: one file, two names -------------------
conf = qconfig(queue={"min_backoff": "1h", "max_backoff": "2h"}, deliver={"stuck_match": "^stuck"})
with Kurird(config=conf, data_dir=datadir()) as k:
    qid = queued_id(sendmail(k, ["-v", "-f", "a@localhost", "stuck@a.test"], "Subject: s\n\nx\n"))
    # A move is link + unlink: wait until the file has only its deferred/ name.
    tap.ok(k.wait_for(lambda: qid in queue_ids(k, "deferred") and qid not in queue_ids(k, "active")),
           "two names: a deferred message")
    k.kill()
    q = os.path.join(k.dir, "queue")
    if not os.path.exists(os.path.join(q, "active", qid)):
        os.link(os.path.join(q, "deferred", qid), os.path.join(q, "active", qid))
    os.link(os.path.join(q, "deferred", qid), os.path.join(q, "maildrop", qid))
    k.start()
    tap.ok(k.wait_for(lambda: "recovery: %s: in deferred/ and active/ (an interrupted move): "
                              "kept deferred/" % qid in k.read_log()), "two names: logged")
    tap.ok(k.wait_for(lambda: queue_ids(k, "active") == [] and queue_ids(k, "maildrop") == []),
           "two names: the second names are gone")
    tap.eq(queue_ids(k, "deferred"), [qid], "two names: the file stays deferred")
    time.sleep(1.5)
    tap.eq([d for d in deliveries(k) if d[0] == qid], [], "two names: not picked up again")
    r = k.kurir("queue", "show", qid)
    tap.ok("1 attempt," in r.stdout, "two names: not retried early", r.stdout)
    tap.eq(queue_ids(k, "corrupt"), [], "two names: nothing corrupt")

# --- random crashes while mail flows ---------------------------------------------------------
conf = qconfig(queue={"min_backoff": "1s", "max_backoff": "1s", "max_deliveries": 4},
               deliver={"delay_ms": 30, "defer_match": "^d", "defer_count": 1})
rng = random.Random(1234)
with Kurird(config=conf, data_dir=datadir()) as k:
    want = set()
    for rnd in range(4):
        for i in range(15):
            rcpt = "%s%d-%d@%s" % ("d" if i % 3 == 0 else "m", rnd, i, "abc"[i % 3] + ".test")
            r = sendmail(k, ["-v", "-f", "a@localhost", rcpt], "Subject: r\n\nx\n")
            if r.returncode == 0:
                want.add((queued_id(r), rcpt))
        time.sleep(rng.uniform(0.05, 0.6))
        k.kill()
        k.start()
    tap.eq(len(want), 60, "random crashes: sixty messages acknowledged")
    tap.ok(settled(k, want, timeout=60), "random crashes: every one delivered",
           sorted(want - delivered_to(k))[:5])
    tap.eq(queue_ids(k, "corrupt"), [], "random crashes: nothing corrupt")
    extra = len(deliveries(k)) - len(want)
    tap.ok(extra <= 4 * 4, "random crashes: few repeats (%d)" % extra)

tap.done()

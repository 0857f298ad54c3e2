#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# queue-e2e.py - the queue manager end to end, with the test delivery stage
# qtest (t/lib/queuekit.py) deciding per recipient:
#   - retry after deferral: deferred twice, delivered on the third attempt,
#     after the backoff, the file in deferred/ meanwhile;
#   - a permanent failure: an RFC 3464 DSN to the sender (parsed back with
#     Python's email package), sent with the null sender, and the other
#     recipients delivered;
#   - expiry after max_lifetime: DSN with Status 4.4.7 and the headers only
#     when RET=HDRS; NOTIFY=NEVER and the null sender get no DSN;
#   - kurir queue list/show/flush/hold/release/delete, with kurird running
#     and without it;
#   - a garbage file in incoming/ (and a stray name) moves to corrupt/ with
#     a log line; the rest is delivered; stale .tmp- spools are removed.
import email
import email.policy
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import (datadir, deliveries, delivered, qconfig, queue_empty, queue_ids,  # noqa: E402
                      sendmail)


def dsns_for(k, qid):
    """DSNs qtest delivered that report on queue ID qid: [(envelope, msg)].
    Postmaster's copies and reports (t/bounce-e2e.py) are left out."""
    out = []
    for (dqid, frm, to) in deliveries(k):
        if to == "postmaster@localhost":
            continue
        raw = delivered(k, to).get(dqid, b"")
        if b"X-Kurir-Queue-ID: " + qid.encode() in raw:
            out.append(((dqid, frm, to), email.message_from_bytes(raw, policy=email.policy.compat32)))
    return out


def status_groups(msg):
    """The message/delivery-status part as [per-message dict, per-rcpt dicts...]."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            return [dict(g.items()) for g in part.get_payload()]
    return []


def parts(msg):
    return [p.get_content_type() for p in msg.get_payload()] if msg.is_multipart() else []


def send(k, args, text="Subject: test\n\nbody\n"):
    """sendmail -v ARGS; returns the queue ID."""
    r = sendmail(k, ["-v"] + list(args), text)
    tap.ok(r.returncode == 0, "sendmail %s" % " ".join(args), r.stderr)
    m = re.search(rb"queued as (\w{14})", r.stderr)
    return m.group(1).decode() if m else None


# --- retries, failures, bounces, expiry -----------------------------------------
conf = qconfig(queue={"min_backoff": "1s", "max_backoff": "1s", "max_lifetime": "4s"},
               deliver={"defer_match": "^retry@", "defer_count": 2, "fail_match": "^nobody@",
                        "stuck_match": "^stuck"})
with Kurird(config=conf, data_dir=datadir()) as k:
    t0 = time.time()
    rid = send(k, ["-f", "alice@localhost", "retry@a.test"])
    tap.ok(k.wait_for(lambda: rid in queue_ids(k, "deferred"), timeout=5),
           "a deferred message waits in deferred/")
    r = k.kurir("queue", "list")
    tap.ok(rid in r.stdout and "deferred" in r.stdout and
           re.search(r"<retry@a.test>, [12] attempts?, next ", r.stdout) and
           "451 4.2.0 mailbox busy" in r.stdout, "queue list shows it deferred", r.stdout)
    tap.ok(k.wait_for(lambda: any(d[2] == "retry@a.test" for d in deliveries(k)), timeout=15),
           "delivered after the retries")
    took = time.time() - t0
    tap.ok(took >= 1.5, "not before the backoff (took %.1fs)" % took)
    log = k.read_log()
    tap.eq(len(re.findall(r"%s: to=<retry@a.test>.*status=deferred.*retry in 1s" % rid, log)), 2,
           "two deferrals logged with their retry time")
    tap.ok(k.wait_for(lambda: "%s: removed" % rid in k.read_log() and queue_empty(k)),
           "then the queue file is removed")
    tap.eq(len([d for d in deliveries(k) if d[2] == "retry@a.test"]), 1, "delivered once")

    # A permanent failure among good recipients: one DSN, to the sender, from <>.
    fid = send(k, ["-f", "alice@localhost", "-V", "env-42", "ok@b.test", "nobody@a.test"],
         "Subject: partly\nMessage-ID: <orig@example>\n\nsome text\n")
    tap.ok(k.wait_for(lambda: dsns_for(k, fid)), "a DSN was delivered")
    ds = dsns_for(k, fid)
    tap.eq(len(ds), 1, "exactly one DSN")
    if ds:
        (dqid, frm, to), m = ds[0]
        tap.eq((frm, to), ("", "alice@localhost"), "from the null sender to the envelope sender")
        tap.eq(m.get_content_type(), "multipart/report", "multipart/report")
        tap.eq(m.get_param("report-type"), "delivery-status", "report-type=delivery-status")
        tap.eq(parts(m), ["text/plain", "message/delivery-status", "message/rfc822"],
               "text, delivery-status, and the returned message")
        tap.ok(m["From"].startswith("Mail Delivery System <MAILER-DAEMON@"), "From MAILER-DAEMON",
               m["From"])
        tap.eq(m["To"], "<alice@localhost>", "To the sender")
        tap.eq(m["Auto-Submitted"], "auto-replied", "Auto-Submitted: auto-replied")
        g = status_groups(m)
        tap.eq(len(g), 2, "one per-message group and one recipient group (ok@b.test not reported)")
        if len(g) == 2:
            tap.ok(g[0].get("Reporting-MTA", "").startswith("dns; "), "Reporting-MTA", g[0])
            tap.eq(g[0].get("Original-Envelope-Id"), "env-42", "Original-Envelope-Id from -V")
            tap.ok(email.utils.parsedate_tz(g[0].get("Arrival-Date", "")), "Arrival-Date is a date")
            tap.eq(g[0].get("X-Kurir-Queue-ID"), fid, "the original queue ID")
            tap.eq(g[1].get("Final-Recipient"), "rfc822; nobody@a.test", "Final-Recipient")
            tap.eq(g[1].get("Action"), "failed", "Action: failed")
            tap.eq(g[1].get("Status"), "5.1.1", "Status: 5.1.1")
            tap.eq(g[1].get("Diagnostic-Code"), "smtp; 550 5.1.1 user unknown (qtest)",
                   "Diagnostic-Code")
        orig = m.get_payload()[2].get_payload()[0]
        tap.eq(orig["Message-ID"], "<orig@example>", "the returned message is the original")
        tap.ok("some text" in orig.get_payload(), "with its body")
        text = m.get_payload()[0].get_payload()
        tap.ok("<nobody@a.test>: user unknown (qtest)" in text, "the text part names the failure",
               text)
    tap.eq([d[2] for d in deliveries(k) if d[0] == fid], ["ok@b.test"], "ok@b.test delivered")
    tap.ok(k.wait_for(lambda: queue_empty(k)), "queue empty after the bounce")
    tap.ok(re.search(r"%s: sender non-delivery notification: \w{14}" % fid, k.read_log()),
           "the bounce is logged")

    # Expiry: still deferred after max_lifetime -> DSN, Status 4.4.7, headers only.
    xid = send(k, ["-f", "alice@localhost", "-R", "hdrs", "stuck@a.test"],
         "Subject: expire me\n\nbody that stays home\n")
    qid_quiet = send(k, ["-f", "alice@localhost", "-N", "never", "stuck-quiet@a.test"])
    qid_null = send(k, ["-f", "<>", "stuck-null@a.test"])
    tap.ok(k.wait_for(lambda: dsns_for(k, xid), timeout=20), "an expired message bounces")
    ds = dsns_for(k, xid)
    if ds:
        m = ds[0][1]
        g = status_groups(m)
        tap.eq(g[1].get("Status") if len(g) > 1 else None, "4.4.7", "Status: 4.4.7 (expired)")
        tap.eq(g[1].get("Action") if len(g) > 1 else None, "failed", "Action: failed")
        tap.ok(len(g) > 1 and "mailbox busy" in g[1].get("Diagnostic-Code", ""),
               "Diagnostic-Code carries the last error", g)
        tap.eq(parts(m)[2:], ["text/rfc822-headers"], "RET=HDRS: only the headers come back")
        tap.ok(b"body that stays home" not in m.as_bytes(), "without the body")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=20),
           "expired messages leave the queue")
    log = k.read_log()
    tap.ok(re.search(r"%s: to=<stuck@a.test>.*status=expired" % xid, log), "expiry is logged")
    time.sleep(1)
    tap.eq(dsns_for(k, qid_quiet), [], "NOTIFY=NEVER: no DSN")
    tap.ok("%s: to=<stuck-quiet@a.test>: undeliverable; no notification (NOTIFY=NEVER)" % qid_quiet
           in log, "NOTIFY=NEVER logged")
    tap.eq(dsns_for(k, qid_null), [], "null sender: no DSN, ever")
    tap.ok("%s: to=<stuck-null@a.test>: undeliverable mail from <>: not returned" % qid_null
           in log, "the bounce that is not sent is logged")
    tap.ok(not [d for d in deliveries(k) if d[2] == ""], "nothing was ever sent to <>")

# --- DSN parameters given over SMTP: ORCPT, ENVID, RET, NOTIFY ---------------------
with Kurird(config=qconfig(smtp=True, deliver={"fail_match": "^(nobody|quiet)@"}),
            data_dir=datadir()) as k:
    import smtplib
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
    s.ehlo("client.example")
    s.mail("alice@localhost", ["RET=HDRS", "ENVID=smtp-env-7"])
    s.rcpt("nobody@remote.test", ["ORCPT=rfc822;Original+2BAddr@remote.test", "NOTIFY=FAILURE"])
    s.rcpt("quiet@remote.test", ["NOTIFY=NEVER"])
    s.rcpt("fine@remote.test")
    code, resp = s.data(b"Subject: over smtp\r\n\r\nsecret smtp body\r\n")
    s.quit()
    sid = re.search(rb"queued as (\w{14})", resp).group(1).decode()
    tap.ok(k.wait_for(lambda: dsns_for(k, sid) and queue_empty(k)), "smtp: a DSN comes back")
    ds = dsns_for(k, sid)
    g = status_groups(ds[0][1]) if ds else []
    tap.eq(g[0].get("Original-Envelope-Id") if g else None, "smtp-env-7", "smtp: ENVID returned")
    tap.eq(g[1].get("Original-Recipient") if len(g) > 1 else None,
           "rfc822; Original+Addr@remote.test", "smtp: ORCPT returned (xtext decoded)")
    tap.eq(len(g), 2, "smtp: only the recipient that asked for it is reported")
    tap.eq(parts(ds[0][1])[2:] if ds else None, ["text/rfc822-headers"], "smtp: RET=HDRS")
    tap.eq([d[2] for d in deliveries(k) if d[0] == sid], ["fine@remote.test"],
           "smtp: the good recipient is delivered")

# --- kurir queue list/show/flush/hold/release/delete ---------------------------------
conf = qconfig(queue={"min_backoff": "1h", "max_backoff": "2h"},
               deliver={"stuck_match": "^stuck", "fail_match": "^nobody@"})


def attempts(k, qid):
    r = k.kurir("queue", "show", qid)
    m = re.search(r"(\d+) attempts?", r.stdout)
    return int(m.group(1)) if m else 0


with Kurird(config=conf, data_dir=datadir()) as k:
    qid = send(k, ["-f", "alice@localhost", "stuck@a.test", "stuck2@b.test"],
         "Subject: held back\n\nthe body\n")
    tap.ok(k.wait_for(lambda: qid in queue_ids(k, "deferred")), "deferred after one attempt")
    r = k.kurir("queue", "list")
    tap.ok(r.returncode == 0 and re.search(r"^%s deferred\s+\d+ \S+ \S+ <alice@localhost>$" % qid,
                                           r.stdout, re.M), "list: id, queue, size, sender",
           r.stdout)
    tap.ok("deferred  <stuck2@b.test>, 1 attempt, next " in r.stdout, "list: recipients", r.stdout)
    tap.ok(re.search(r"^-- 1 message, \d+ bytes$", r.stdout, re.M), "list: summary line",
           r.stdout)
    r = k.kurir("queue", "show", qid)
    tap.ok(r.returncode == 0 and "sender: <alice@localhost>" in r.stdout and
           "queue: deferred" in r.stdout and "\nSubject: held back\n" in r.stdout and
           r.stdout.endswith("\nthe body\n"), "show: envelope, status and content", r.stdout)
    tap.eq(attempts(k, qid), 1, "one attempt so far")

    r = k.kurir("queue", "flush")
    tap.ok(r.returncode == 0 and "flushed: 1 deferred" in r.stdout, "flush", r.stdout + r.stderr)
    tap.ok(k.wait_for(lambda: attempts(k, qid) == 2), "flush: tried again at once")

    r = k.kurir("queue", "hold", qid)
    tap.eq((r.returncode, r.stdout), (0, "%s: held\n" % qid), "hold")
    tap.eq(queue_ids(k, "hold"), [qid], "the file is in hold/")
    r = k.kurir("queue", "list")
    tap.ok("%s hold" % qid in r.stdout, "list shows it on hold", r.stdout)
    k.kurir("queue", "flush")
    time.sleep(1)
    tap.eq(attempts(k, qid), 2, "flush does not touch held mail")
    r = k.kurir("queue", "hold", qid)
    tap.eq(r.returncode, 0, "hold again is harmless")
    r = k.kurir("queue", "release", qid)
    tap.eq((r.returncode, r.stdout), (0, "%s: released\n" % qid), "release")
    tap.ok(k.wait_for(lambda: attempts(k, qid) == 3), "released mail is tried at once")
    r = k.kurir("queue", "release", qid)
    tap.ok(r.returncode == 1 and "not on hold" in r.stderr, "release of a queued message: error",
           r.stderr)

    r = k.kurir("queue", "delete", qid)
    tap.eq((r.returncode, r.stdout), (0, "%s: deleted\n" % qid), "delete")
    tap.ok(all(qid not in queue_ids(k, d) for d in ("deferred", "hold", "incoming", "active")),
           "the file is gone")
    tap.ok(k.wait_for(lambda: "%s: removed (queue delete)" % qid in k.read_log()),
           "delete is logged")
    tap.eq(dsns_for(k, qid), [], "delete sends no bounce")

    r = k.kurir("queue", "hold", "00000000000000")
    tap.ok(r.returncode == 1 and "no such message" in r.stderr, "hold of an unknown ID: error",
           r.stderr)
    r = k.kurir("queue", "show", "../etc/passwd")
    tap.eq(r.returncode, 64, "show of something that is not a queue ID: usage error")
    r = k.kurir("queue", "bogus")
    tap.eq(r.returncode, 64, "unknown subcommand: usage error")
    r = k.kurir("queue", "status")
    tap.ok(r.returncode == 0 and "policy fair" in r.stdout, "status", r.stdout)

    # Held while a delivery is still to come: nothing delivered.
    q2 = send(k, ["-f", "alice@localhost", "stuck@c.test"])
    k.wait_for(lambda: q2 in queue_ids(k, "deferred"))

    # Without kurird: hold/release/delete act on the files; flush refuses.
    k.stop()
    r = k.kurir("queue", "flush")
    tap.ok(r.returncode == 1 and "not running" in r.stderr, "flush needs kurird", r.stderr)
    r = k.kurir("queue", "hold", q2)
    tap.eq((r.returncode, queue_ids(k, "hold")), (0, [q2]), "hold without kurird moves the file")
    k.start()
    time.sleep(1)
    tap.eq(attempts(k, q2), 1, "held mail stays held across a restart")
    tap.eq(queue_ids(k, "hold"), [q2], "still in hold/")
    k.stop()
    r = k.kurir("queue", "release", q2)
    tap.eq((r.returncode, queue_ids(k, "incoming")), (0, [q2]),
           "release without kurird: back to incoming/")
    k.start()
    tap.ok(k.wait_for(lambda: attempts(k, q2) == 2), "and delivery resumes at start")
    k.stop()
    r = k.kurir("queue", "delete", q2)
    tap.eq(r.returncode, 0, "delete without kurird")
    tap.ok(all(not queue_ids(k, d) for d in ("incoming", "deferred", "hold", "active")),
           "nothing left")
    r = k.kurir("queue", "list")
    tap.eq(r.stdout, "queue is empty\n", "list: queue is empty")

# --- corrupt files, stale spools ---------------------------------------------------------
with Kurird(config=qconfig(), data_dir=datadir()) as k:
    send(k, ["-f", "alice@localhost", "before@a.test"])
    tap.ok(k.wait_for(lambda: deliveries(k)), "delivery works")
    k.stop()
    inc = os.path.join(k.dir, "queue", "incoming")
    bad = "0000000BADBAD0"
    with open(os.path.join(inc, bad), "wb") as f:
        f.write(b"this is not a queue file\n" * 10)
    with open(os.path.join(inc, "stray-name"), "wb") as f:
        f.write(b"junk")
    with open(os.path.join(inc, ".tmp-0000000TMPTMP"), "wb") as f:
        f.write(b"half a spool")
    short = "0000000SHORT00"
    with open(os.path.join(k.dir, "queue", "deferred", short), "wb") as f:
        f.write(b"KRQ1")
    for i in range(3):
        r = sendmail(k, ["-f", "alice@localhost", "after%d@a.test" % i], "Subject: after\n\nx\n")
    k.start()
    tap.ok(k.wait_for(lambda: len(deliveries(k)) >= 4 and queue_empty(k)),
           "the good messages are delivered", deliveries(k))
    corrupt = queue_ids(k, "corrupt")
    tap.ok(bad in corrupt and short in corrupt and "stray-name" in corrupt,
           "bad files moved to corrupt/", corrupt)
    log = k.read_log()
    tap.ok(re.search(r"%s: queue file in incoming is unreadable, moved to corrupt/" % bad, log),
           "with a log line naming the file", log[-3000:])
    tap.ok(not os.path.exists(os.path.join(inc, ".tmp-0000000TMPTMP")),
           "a stale .tmp- spool in incoming/ is removed")
    tap.ok("removed unfinished spool incoming/.tmp-0000000TMPTMP" in log, "and that is logged")
    r = k.kurir("queue", "list")
    tap.ok("%s corrupt  (unreadable)" % bad in r.stdout, "list shows corrupt files", r.stdout)

tap.done()

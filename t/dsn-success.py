#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# dsn-success.py - success notifications (RFC 3461 NOTIFY=SUCCESS, RFC 3464
# Action delivered / relayed / expanded) end to end, with the default
# pipeline; the sender's domain is a loopback sink, DSNs are parsed back
# with Python's email package.
#   - NOTIFY=SUCCESS,FAILURE to a local user: one DSN, multipart/report with
#     message/delivery-status, Action delivered, Status 2.0.0, ORCPT as
#     Original-Recipient, ENVID as Original-Envelope-Id, headers only; two
#     such recipients share one DSN;
#   - NOTIFY=FAILURE only: no success DSN; the null sender: none;
#   - an alias with several targets: Action expanded, and the targets'
#     copies get no success DSN of their own;
#   - relayed to a server without DSN: Action relayed; to a server that
#     offers DSN (NOTIFY passed on): no DSN from us.
import email
import email.policy
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, queue_empty  # noqa: E402
from smtpkit import config, set_group  # noqa: E402
from smtpsink import Sink  # noqa: E402
from smtpsink import DEFAULT_EXT  # noqa: E402
from clientkit import inject  # noqa: E402

SUCCESS = "Successful Mail Delivery Report"


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def groups(e):
    for part in e.walk():
        if part.get_content_type() == "message/delivery-status":
            return [dict(g.items()) for g in part.get_payload()]
    return []


def parts(e):
    return [p.get_content_type() for p in e.get_payload()] if e.is_multipart() else []


def reports(sink, qid):
    out = []
    for m in list(sink.messages):
        if ("X-Kurir-Queue-ID: %s" % qid).encode() in m.data:
            out.append((m, parse(m.data)))
    return out


def all_success(sink):
    return [(m, parse(m.data)) for m in list(sink.messages)
            if parse(m.data)["Subject"] == SUCCESS]


def qid_of(k, rcpt):
    m = re.search(r"(\w{14}): to=<%s>" % re.escape(rcpt), k.read_log())
    return m.group(1) if m else "none"


home = Sink(name="sender.test")
nodsn = Sink(name="plain.test", extensions=[x for x in DEFAULT_EXT if x != "DSN"])
withdsn = Sink(name="dsn.test")
for s in (home, nodsn, withdsn):
    s.__enter__()
routes = {"sender.test": home.port, "plain.test": nodsn.port, "dsn.test": withdsn.port}

conf = config()
conf = set_group(conf, "queue", min_backoff="1s", max_backoff="1s", pickup_interval="1s")
over = ", ".join('"%s = 127.0.0.1:%d"' % (n, p) for n, p in routes.items())
conf, n = re.subn(r'smtp-out = \{ type = "smtp-client";',
                  'smtp-out = { type = "smtp-client"; dns = false; resolver_override = [ %s ]; '
                  'connect_timeout = "2s"; command_timeout = "3s";' % over, conf)
assert n == 1

d = datadir()
with open(os.path.join(d, "aliases"), "w") as f:
    f.write("team: alice, carol\n")

with Kurird(config=conf, data_dir=d) as k:
    for u in ("alice", "bob", "carol"):
        k.add_user(u + "@localhost", "pw")

    # --- NOTIFY=SUCCESS,FAILURE to local users: one DSN, Action delivered ------------------
    inject(k, "snd@sender.test", ["alice@localhost", "bob@localhost"],
           "Subject: hello\nMessage-ID: <s-1@sender.test>\n\nsecret body\n",
           mail_options=["ENVID=env-s1"],
           rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Alice+2Bx@localhost"])
    q1 = qid_of(k, "alice@localhost") if k.wait_for(
        lambda: re.search(r"to=<alice@localhost>", k.read_log())) else "none"
    ds = home.wait(lambda: reports(home, q1), timeout=15)
    tap.ok(ds, "a success DSN reaches the sender")
    if ds:
        env, e = ds[0]
        tap.eq(env.sender, "", "from the null sender")
        tap.eq(env.rcpt_addrs(), ["snd@sender.test"], "to the envelope sender")
        tap.eq(e["Subject"], SUCCESS, "subject")
        tap.eq(e.get_content_type(), "multipart/report", "multipart/report")
        tap.eq(e.get_param("report-type"), "delivery-status", "report-type=delivery-status")
        tap.eq(parts(e), ["text/plain", "message/delivery-status", "text/rfc822-headers"],
               "text, delivery-status, the headers (no RET)")
        tap.ok(b"secret body" not in e.as_bytes(), "without the body")
        g = groups(e)
        if tap.ok(len(g) == 3, "one per-message and two per-recipient groups", g):
            tap.eq(g[0].get("Original-Envelope-Id"), "env-s1", "ENVID as Original-Envelope-Id")
            tap.eq(g[1].get("Final-Recipient"), "rfc822; alice@localhost", "Final-Recipient")
            tap.eq(g[1].get("Original-Recipient"), "rfc822; Alice+x@localhost",
                   "ORCPT as Original-Recipient (decoded)")
            tap.eq(g[1].get("Action"), "delivered", "Action: delivered")
            tap.eq(g[1].get("Status"), "2.0.0", "Status: 2.0.0")
            tap.eq(g[2].get("Final-Recipient"), "rfc822; bob@localhost", "second recipient")
            tap.eq(g[2].get("Action"), "delivered", "its Action: delivered")
    tap.ok(len(k.messages("alice")) == 1 and len(k.messages("bob")) == 1, "both delivered")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=15), "the queue empties")
    time.sleep(1.5)
    tap.eq(len(reports(home, q1)), 1, "exactly one success DSN for the message")

    # --- NOTIFY=FAILURE only, and the null sender: none ---------------------------------------
    n0 = len(all_success(home))
    inject(k, "snd2@sender.test", ["carol@localhost"], "Subject: f\n\nx\n",
           rcpt_options=["NOTIFY=FAILURE"])
    inject(k, "", ["bob@localhost"], "Subject: null\n\nx\n", rcpt_options=["NOTIFY=SUCCESS"])
    tap.ok(k.wait_for(lambda: len(k.messages("carol")) == 1 and len(k.messages("bob")) == 2),
           "both delivered")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=15), "the queue empties")
    tap.ok(k.wait_for(lambda: "NOTIFY=SUCCESS from <>: no notification" in k.read_log()),
           "null sender: logged, no notification")
    time.sleep(1.5)
    tap.eq(len(all_success(home)), n0, "NOTIFY=FAILURE and the null sender: no success DSN")

    # --- alias with several targets: Action expanded --------------------------------------------
    n0 = len(all_success(home))
    inject(k, "snd3@sender.test", ["team@localhost"], "Subject: team\n\nx\n",
           rcpt_options=["NOTIFY=SUCCESS"])
    tap.ok(k.wait_for(lambda: len(k.messages("alice")) == 2 and len(k.messages("carol")) == 2),
           "the alias is expanded and delivered")
    q3 = qid_of(k, "team@localhost")
    ds = home.wait(lambda: reports(home, q3), timeout=15)
    if tap.ok(ds, "a success DSN for the alias"):
        g = groups(ds[0][1])
        tap.ok(len(g) == 2 and g[1].get("Action") == "expanded" and
               g[1].get("Final-Recipient") == "rfc822; team@localhost" and
               g[1].get("Status") == "2.0.0", "Action: expanded, Status 2.0.0", g)
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=15), "the queue empties")
    time.sleep(1.5)
    tap.eq(len(all_success(home)), n0 + 1,
           "only that one: the expansion's copies carry no NOTIFY=SUCCESS")

    # --- relayed: without DSN at the next hop -> relayed; with DSN -> none from us -------------
    n0 = len(all_success(home))
    inject(k, "snd4@sender.test", ["x@plain.test"], "Subject: r\n\nx\n",
           rcpt_options=["NOTIFY=SUCCESS"])
    tap.ok(nodsn.wait(lambda: nodsn.received_for("x@plain.test")), "relayed to plain.test")
    q4 = qid_of(k, "x@plain.test")
    ds = home.wait(lambda: reports(home, q4), timeout=15)
    if tap.ok(ds, "a success DSN for the relayed recipient"):
        g = groups(ds[0][1])
        tap.ok(len(g) == 2 and g[1].get("Action") == "relayed" and
               g[1].get("Status") == "2.0.0" and g[1].get("Remote-MTA") == "dns; plain.test",
               "Action: relayed, Status 2.0.0, Remote-MTA", g)
    inject(k, "snd5@sender.test", ["y@dsn.test"], "Subject: r2\n\nx\n",
           rcpt_options=["NOTIFY=SUCCESS"])
    got = withdsn.wait(lambda: withdsn.received_for("y@dsn.test"))
    tap.ok(got, "relayed to dsn.test")
    tap.ok(any("NOTIFY=SUCCESS" in c.upper() for c in withdsn.commands if "y@dsn.test" in c),
           "the NOTIFY went along", withdsn.commands)
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=15), "the queue empties")
    tap.ok(k.wait_for(lambda: "NOTIFY=SUCCESS passed on" in k.read_log()), "logged: passed on")
    time.sleep(1.5)
    tap.eq(len(all_success(home)), n0 + 1, "no success DSN when the next hop took the NOTIFY")

for s in (home, nodsn, withdsn):
    s.close()
tap.done()

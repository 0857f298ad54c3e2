#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# bounce-e2e.py - delivery status notifications end to end, with the
# default pipeline (resolve -> local | smtp-out | bounce): local users in
# Maildir, remote domains on scripted loopback sinks (resolver_override,
# no DNS). DSNs are parsed back with Python's email package.
#   - an unknown local user: a DSN to the (remote) sender, from <>, with
#     the per-recipient status, the original's headers, and the whole
#     original or only its headers (RET=FULL / RET=HDRS); the other
#     recipient is delivered; ENVID and ORCPT come back;
#   - postmaster gets a copy of every DSN (headers only, no body);
#   - a DSN that cannot be delivered goes to postmaster only, once;
#   - a destination that refuses connections: one delay warning
#     (Action: delayed) after delay_warning, then at expiry a failure
#     DSN (4.4.7); NOTIFY=FAILURE gets no warning; mail from <> that
#     expires goes to postmaster only;
#   - with postmaster itself undeliverable, a report to postmaster that
#     fails is dropped: nothing loops; postmaster_copy = false sends no
#     copies.
import email
import email.policy
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402
from queuekit import datadir, queue_empty  # noqa: E402
from smtpkit import config, set_group  # noqa: E402
from smtpsink import Sink, refused_port  # noqa: E402
from clientkit import inject  # noqa: E402


def bconf(routes, bounce=None, node_extra=""):
    conf = config()
    conf = set_group(conf, "queue", min_backoff="1s", max_backoff="1s", max_lifetime="10s",
                     pickup_interval="1s")
    b = {"delay_warning": "3s"}
    b.update(bounce or {})
    conf = set_group(conf, "bounce", **b)
    over = ", ".join('"%s = 127.0.0.1:%d"' % (n, p) for n, p in routes.items())
    node = ('smtp-out = { type = "smtp-client"; dns = false; resolver_override = [ %s ]; '
            'connect_timeout = "2s"; command_timeout = "3s"; cache_time = "1s"; %s' % (over, node_extra))
    conf, n = re.subn(r'smtp-out = \{ type = "smtp-client";', node, conf)
    assert n == 1
    return conf


def sendmail(k, args, text):
    e = dict(os.environ, KURIR_DATA_DIR=k.dir, KURIR_CONFIG=k.conf_path)
    r = subprocess.run([os.path.join(BUILD, "sendmail"), "-v"] + list(args), input=text.encode(),
                       capture_output=True, env=e, timeout=60)
    tap.ok(r.returncode == 0, "sendmail %s" % " ".join(args), r.stderr)
    m = re.search(rb"queued as (\w{14})", r.stderr)
    return m.group(1).decode() if m else None


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def reports(sink, qid, subject=None):
    """DSNs a sink received about queue ID qid: [(Message, email)]."""
    out = []
    for m in list(sink.messages):
        if ("X-Kurir-Queue-ID: %s" % qid).encode() in m.data:
            e = parse(m.data)
            if subject is None or e["Subject"] == subject:
                out.append((m, e))
    return out


def mailbox_reports(k, user, qid, subject=None):
    out = []
    for raw in k.messages(user):
        if ("X-Kurir-Queue-ID: %s" % qid).encode() in raw:
            e = parse(raw)
            if subject is None or e["Subject"] == subject:
                out.append(e)
    return out


def groups(e):
    for part in e.walk():
        if part.get_content_type() == "message/delivery-status":
            return [dict(g.items()) for g in part.get_payload()]
    return []


def parts(e):
    return [p.get_content_type() for p in e.get_payload()] if e.is_multipart() else []


FAILED = "Undelivered Mail Returned to Sender"
DELAYED = "Delayed Mail (still being retried)"
COPY = "Postmaster Copy: Undelivered Mail"
NULLFAIL = "Undeliverable mail from the null sender"

home = Sink(name="sender.test", rcpt={"^dead@": "550 5.1.1 mailbox gone"})
remote = Sink(name="remote.test", rcpt={"^nobody@": "550 5.1.1 no such user"})
for s in (home, remote):
    s.__enter__()
dead = refused_port()
routes = {"sender.test": home.port, "remote.test": remote.port, "dead.test": dead}

with Kurird(config=bconf(routes), data_dir=datadir()) as k:
    k.add_user("alice@localhost", "pw")
    k.add_user("postmaster@localhost", "pw")
    body = "Subject: to nobody\nMessage-ID: <orig-1@sender.test>\n\nthe secret body\n"

    # --- unknown local user, RET=FULL ------------------------------------------------
    q1 = sendmail(k, ["-f", "bob@sender.test", "-R", "full", "-V", "env-77",
                      "nosuch@localhost", "alice@localhost"], body)
    ds = home.wait(lambda: reports(home, q1, FAILED))
    tap.ok(ds, "a DSN reaches the sender's domain")
    tap.ok(k.wait_for(lambda: len(k.messages("alice")) == 1), "the other recipient is delivered")
    if ds:
        env, e = ds[0]
        tap.eq(env.sender, "", "envelope sender is the null sender")
        tap.eq(env.rcpt_addrs(), ["bob@sender.test"], "to the envelope sender")
        tap.ok(e["From"].startswith("Mail Delivery System <MAILER-DAEMON@"), "From MAILER-DAEMON")
        tap.eq(e.get_content_type(), "multipart/report", "multipart/report")
        tap.eq(e.get_param("report-type"), "delivery-status", "report-type=delivery-status")
        tap.eq(parts(e), ["text/plain", "message/delivery-status", "message/rfc822"],
               "RET=FULL: text, delivery-status, the whole message")
        g = groups(e)
        tap.eq(len(g), 2, "one per-message and one per-recipient group (alice was delivered)")
        if len(g) == 2:
            tap.eq(g[0].get("Original-Envelope-Id"), "env-77", "ENVID comes back")
            tap.eq(g[0].get("X-Kurir-Queue-ID"), q1, "the original's queue ID")
            tap.eq(g[1].get("Final-Recipient"), "rfc822; nosuch@localhost", "Final-Recipient")
            tap.eq(g[1].get("Action"), "failed", "Action: failed")
            tap.eq(g[1].get("Status"), "5.1.1", "Status: 5.1.1 (unknown user)")
            tap.ok("user unknown" in g[1].get("Diagnostic-Code", ""), "Diagnostic-Code",
                   g[1].get("Diagnostic-Code"))
        orig = e.get_payload()[2].get_payload()[0]
        tap.eq(orig["Message-ID"], "<orig-1@sender.test>", "the original's headers")
        tap.ok("the secret body" in orig.get_payload(), "and its body (RET=FULL)")
        tap.ok("<nosuch@localhost>" in e.get_payload()[0].get_payload(),
               "the text part names the recipient")

    # --- postmaster's copy ------------------------------------------------------------
    cp = k.wait_for(lambda: mailbox_reports(k, "postmaster", q1, COPY))
    tap.ok(cp, "postmaster gets a copy")
    if cp:
        e = cp[0]
        tap.eq(parts(e), ["text/plain", "message/delivery-status", "text/rfc822-headers"],
               "the copy has the original's headers only")
        tap.ok(b"the secret body" not in e.as_bytes(), "not its body")
        tap.ok("bob@sender.test" in e.get_payload()[0].get_payload(), "it says who was told")
        g = groups(e)
        tap.ok(len(g) == 2 and g[1].get("Final-Recipient") == "rfc822; nosuch@localhost",
               "same recipient status as the DSN")

    # --- RET=HDRS, ORCPT, a remote 550 -----------------------------------------------
    inject(k, "bob@sender.test", ["nobody@remote.test", "fine@remote.test"],
           "Subject: hdrs\n\nbody that stays home\n",
           mail_options=["RET=HDRS"], rcpt_options=["ORCPT=rfc822;first+2Bnobody@remote.test"])
    got = remote.wait(lambda: remote.received_for("fine@remote.test"))
    tap.ok(got, "the good remote recipient is delivered")
    m = re.search(r"(\w{14}): to=<nobody@remote\.test>.*status=bounced", k.read_log())
    q2 = m.group(1) if m else "none"
    ds = home.wait(lambda: reports(home, q2, FAILED))
    tap.ok(ds, "a DSN for the remote 550")
    if ds:
        e = ds[0][1]
        tap.eq(parts(e), ["text/plain", "message/delivery-status", "text/rfc822-headers"],
               "RET=HDRS: headers only")
        tap.ok(b"body that stays home" not in e.as_bytes(), "without the body")
        g = groups(e)
        if tap.ok(len(g) == 2, "one recipient reported", g):
            tap.eq(g[1].get("Original-Recipient"), "rfc822; first+nobody@remote.test",
                   "ORCPT comes back (decoded)")
            tap.eq(g[1].get("Remote-MTA"), "dns; remote.test", "Remote-MTA")
            tap.eq(g[1].get("Diagnostic-Code"),
                   "smtp; 550 5.1.1 no such user (in reply to RCPT TO command)",
                   "the remote's reply")
        tap.ok("host remote.test said: 550 5.1.1 no such user" in e.get_payload()[0].get_payload(),
               "the text part says which host said what")

    # --- a DSN that cannot be delivered: postmaster only, once ---------------------------
    q3 = sendmail(k, ["-f", "dead@sender.test", "nosuch@localhost"], "Subject: doomed\n\nx\n")
    # The report to postmaster is about the failed DSN (its own queue ID), so
    # look for it by the doomed DSN's recipient instead.
    pm = k.wait_for(lambda: [e for e in (parse(r) for r in k.messages("postmaster"))
                             if e["Subject"] == NULLFAIL and
                             "dead@sender.test" in str(groups(e))], timeout=20)
    tap.ok(pm, "the undeliverable DSN is reported to postmaster")
    if pm:
        g = groups(pm[0])
        tap.ok(len(g) == 2 and g[1].get("Final-Recipient") == "rfc822; dead@sender.test" and
               g[1].get("Status") == "5.1.1", "with the DSN's recipient and status", g)
        tap.eq(parts(pm[0])[2:], ["text/rfc822-headers"], "headers only")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=20), "nothing left in the queue")
    time.sleep(1.5)
    tap.eq(len([m for m in home.messages if "dead@sender.test" in m.rcpt_addrs()]), 0,
           "the sink never accepted mail for dead@sender.test")
    tap.eq(len([e for e in (parse(r) for r in k.messages("postmaster"))
                if e["Subject"] == NULLFAIL]), 1, "exactly one report to postmaster")
    tap.ok(re.search(r"\w{14}: to=<dead@sender\.test>: undeliverable mail from <>: not returned",
                     k.read_log()), "logged: not returned")

    # --- refused connections: delay warning, then expiry -------------------------------
    t0 = time.time()
    q4 = sendmail(k, ["-f", "bob@sender.test", "carl@dead.test"], "Subject: slowly\n\nwait\n")
    q5 = sendmail(k, ["-f", "bob@sender.test", "-N", "failure", "dora@dead.test"],
                  "Subject: no warning\n\nwait\n")
    q6 = sendmail(k, ["-f", "<>", "ed@dead.test"], "Subject: from nobody\n\nwait\n")
    w = home.wait(lambda: reports(home, q4, DELAYED), timeout=15)
    t_warn = time.time() - t0
    tap.ok(w, "a delay warning arrives")
    if w:
        env, e = w[0]
        tap.eq(env.sender, "", "from <>")
        tap.ok(2.5 <= t_warn <= 9, "after delay_warning, before expiry (%.1fs)" % t_warn)
        g = groups(e)
        if tap.ok(len(g) == 2, "one recipient in it", g):
            tap.eq(g[1].get("Action"), "delayed", "Action: delayed")
            tap.eq(g[1].get("Status"), "4.4.1", "Status: 4.4.1 (no connection)")
            tap.eq(g[1].get("Final-Recipient"), "rfc822; carl@dead.test", "Final-Recipient")
        tap.eq(parts(e)[2:], ["text/rfc822-headers"], "a warning carries the headers only")
        tap.ok("THIS IS A WARNING ONLY" in e.get_payload()[0].get_payload(), "says it is a warning")
    f = home.wait(lambda: reports(home, q4, FAILED), timeout=20)
    tap.ok(f, "then, at expiry, a failure DSN")
    if f:
        g = groups(f[0][1])
        tap.ok(len(g) == 2 and g[1].get("Status") == "4.4.7" and g[1].get("Action") == "failed",
               "Status 4.4.7, Action failed", g)
        tap.ok("Connection refused" in g[1].get("Diagnostic-Code", "") if len(g) == 2 else False,
               "with the last error")
    tap.eq(len(reports(home, q4, DELAYED)), 1, "exactly one delay warning")
    tap.ok(home.wait(lambda: reports(home, q5, FAILED), timeout=15), "NOTIFY=FAILURE: failure DSN")
    tap.eq(reports(home, q5, DELAYED), [], "NOTIFY=FAILURE: no delay warning")
    pm6 = k.wait_for(lambda: mailbox_reports(k, "postmaster", q6, NULLFAIL), timeout=15)
    tap.ok(pm6, "mail from <> that expires is reported to postmaster")
    tap.eq(reports(home, q6), [], "and to no one else")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=20), "the queue is empty at the end")
    log = k.read_log()
    tap.ok(re.search(r"%s: sender delay notification: \w{14}" % q4, log), "the warning is logged")

# --- postmaster undeliverable: reports about reports are dropped; no copies ---------------
conf = bconf(routes, bounce={"postmaster": "dead@sender.test", "postmaster_copy": False})


def mails():
    return len([c for c in home.commands if c.upper().startswith("MAIL")])


n0 = mails()
with Kurird(config=conf, data_dir=datadir()) as k:
    q7 = sendmail(k, ["-f", "dead@sender.test", "nosuch@localhost"], "Subject: doomed\n\nx\n")
    tap.ok(k.wait_for(lambda: re.search(r"undeliverable report to postmaster: dropped",
                                        k.read_log()), timeout=20),
           "a report to postmaster that fails is dropped (logged)")
    tap.ok(k.wait_for(lambda: queue_empty(k), timeout=20), "and the queue empties")
    n = mails()
    time.sleep(3)
    tap.eq(mails(), n, "no more attempts afterwards (no loop)")
    tap.eq(n - n0, 2, "two attempts in all: the DSN, then the report to postmaster")
    tap.eq(len(re.findall(r"postmaster copy", k.read_log())), 0, "postmaster_copy = false: no copies")
    tap.eq(len(re.findall(r"non-delivery notification: ", k.read_log())), 2,
           "two notifications in all: to the sender, then to postmaster")

for s in (home, remote):
    s.close()
tap.done()

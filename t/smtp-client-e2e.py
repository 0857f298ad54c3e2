#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# smtp-client-e2e.py - remote delivery end to end: kurird's SMTP client
# (stage smtp-client) delivering to scripted loopback sinks
# (t/lib/smtpsink.py) found through resolver_override (no DNS):
#   - delivery: envelope, content (dot-stuffing round trip), PIPELINING,
#     DSN parameters passed on (RET, ENVID, NOTIFY, ORCPT), connection
#     reuse (one connection for several messages);
#   - 4xx then 250: deferred, retried, delivered once; 5xx for one
#     recipient: only that one bounces (DSN to the sender), the other
#     is delivered;
#   - a refused connection: deferred, and the next address is tried
#     (fallback); a dead destination does not hold up other mail;
#   - a slow destination does not hold up another (fair policy with two
#     delivery slots) and never gets more than max_per_destination
#     connections;
#   - STARTTLS when offered; SIZE limit -> bounce; a failed TLS handshake
#     is retried without TLS; relayhost with AUTH only over TLS (a relay
#     without STARTTLS gets no AUTH: deferred);
#   - bad remotes: no greeting, garbage greeting, garbage reply to MAIL,
#     connection closed in the middle of the content, no reply after the
#     content, an over-long reply line, a remote that stops reading in
#     the middle of a big message: each is deferred with a clear
#     reason in the log, kurird stays responsive, and once the remote
#     behaves the mail is delivered (nothing lost).
import email
import email.policy
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from queuekit import datadir, queue_ids  # noqa: E402
from smtpsink import Sink, refused_port  # noqa: E402
from clientkit import client_config, inject, make_cert  # noqa: E402


def msg(subject, body="hello\n"):
    return "From: alice@sender.test\nTo: someone\nSubject: %s\n\n%s" % (subject, body)


def dsns(home, about):
    """DSNs the sender's sink received that report on recipient `about`."""
    out = []
    for m in list(home.messages):
        if m.sender == "" and about.encode() in m.data and b"multipart/report" in m.data:
            out.append(email.message_from_bytes(m.data, policy=email.policy.compat32))
    return out


def status_groups(m):
    for part in m.walk():
        if part.get_content_type() == "message/delivery-status":
            return [dict(g.items()) for g in part.get_payload()]
    return []


ok = Sink(name="ok.test", rcpt={"^retry@": ["451 4.3.0 busy, try later", "250 2.1.5 ok"],
                                "^nobody@": "550 5.1.1 no such user here"})
home = Sink(name="sender.test")
slow = Sink(name="slow.test", delay=0.7)
tlss = Sink(name="tls.test", tls=make_cert())
small = Sink(name="small.test", extensions=["PIPELINING", "SIZE 300", "8BITMIME"])
nopipe = Sink(name="nopipe.test", extensions=["8BITMIME"])
bad = {
    "hang.test": Sink(name="hang.test", mode="hang"),
    "garbage.test": Sink(name="garbage.test", mode="garbage"),
    "badmail.test": Sink(name="badmail.test", mode="garbage_after", hang_at="MAIL"),
    "cut.test": Sink(name="cut.test", mode="close_after", hang_at="CONTENT"),
    "nodot.test": Sink(name="nodot.test", mode="hang_after", hang_at="DOT"),
    "longline.test": Sink(name="longline.test",
                          rcpt={".": "250 2.1.5 " + "x" * 5000}),
    "stall.test": Sink(name="stall.test", mode="stall_after", hang_at="CONTENT",
                       extensions=["PIPELINING", "8BITMIME"]),
}
sinks = [ok, home, slow, tlss, small, nopipe] + list(bad.values())
for s in sinks:
    s.__enter__()
dead = refused_port()
routes = {"ok.test": ok.port, "sender.test": home.port, "kurir.test": home.port,
          "slow.test": slow.port, "tls.test": tlss.port, "small.test": small.port,
          "nopipe.test": nopipe.port, "dead.test": dead,
          "fallback.test": "127.0.0.1:%d, 127.0.0.1:%d" % (dead, ok.port)}
for name, s in bad.items():
    routes[name] = s.port

conf = client_config(routes, node={"max_per_destination": 2, "cache_time": "3s"},
                     queue={"max_deliveries": 4, "policy": "fair"})
with Kurird(config=conf, data_dir=datadir()) as k:
    # --- plain delivery, DSN parameters, pipelining ---------------------------
    body = "line one\n.leading dot\n..two dots\n.\nlast line\n"
    inject(k, "alice@sender.test", ["bob@ok.test", "carol@ok.test"], msg("first", body),
           mail_options=["RET=HDRS", "ENVID=env+2B42"],
           rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;orig+2Bbob@ok.test"])
    got = ok.wait(lambda: ok.received_for("bob@ok.test"))
    tap.ok(got, "delivered to the remote sink")
    if got:
        m = got[0]
        tap.eq(m.sender, "alice@sender.test", "envelope sender kept")
        tap.eq(m.rcpt_addrs(), ["bob@ok.test", "carol@ok.test"],
               "both recipients in one transaction")
        tap.ok("RET=HDRS" in m.mail_params and "ENVID=env+2B42" in m.mail_params,
               "RET and ENVID passed on (DSN offered)", m.mail_params)
        tap.ok("SIZE=" in m.mail_params, "SIZE given", m.mail_params)
        tap.ok("NOTIFY=FAILURE,DELAY" in m.rcpts[0][1] and
               "ORCPT=rfc822;orig+2Bbob@ok.test" in m.rcpts[0][1],
               "NOTIFY and ORCPT passed on", m.rcpts[0][1])
        text = m.data.decode()
        tap.ok(text.endswith(body.replace("\n", "\r\n")),
               "content arrives byte for byte (dots unstuffed by the sink)", text[-120:])
        tap.ok("Subject: first\r\n" in text and "Received: " in text, "with its headers")
        tap.ok(not m.tls, "no TLS where none is offered")
    conn_reads = [v for (n, v) in ok.reads if "MAIL" in v]
    tap.ok(conn_reads and conn_reads[0][:4] == ["MAIL", "RCPT", "RCPT", "DATA"],
           "PIPELINING: MAIL, RCPT, RCPT, DATA in one go", ok.reads)
    log = k.read_log()
    tap.ok(re.search(r"\w{14}: to=<bob@ok\.test>, relay=ok\.test\[127\.0\.0\.1\]:%d, delay=[\d.]+, "
                     r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as SINK0\)" % ok.port,
                     log), "delivery logged postfix-style")

    # connection reuse: the next message to ok.test within cache_time
    conns = ok.connections
    inject(k, "alice@sender.test", ["dave@ok.test"], msg("second"))
    tap.ok(ok.wait(lambda: ok.received_for("dave@ok.test")), "second message delivered")
    tap.eq(ok.connections, conns, "over the cached connection (no new connection)")

    # without PIPELINING: lock-step, also fine
    inject(k, "alice@sender.test", ["x@nopipe.test", "y@nopipe.test"], msg("lockstep"))
    got = nopipe.wait(lambda: nopipe.messages)
    tap.ok(got and got[0].rcpt_addrs() == ["x@nopipe.test", "y@nopipe.test"],
           "delivered without PIPELINING")
    tap.ok(all(len(v) <= 1 for (n, v) in nopipe.reads), "one command at a time", nopipe.reads)
    tap.ok(got and "RET=" not in got[0].mail_params and "NOTIFY" not in got[0].rcpts[0][1],
           "no DSN parameters where DSN is not offered", got and got[0].mail_params)

    # --- 4xx then 250; 5xx for one recipient ----------------------------------
    inject(k, "alice@sender.test", ["retry@ok.test"], msg("retry me"))
    tap.ok(k.wait_for(lambda: re.search(r"to=<retry@ok\.test>.*status=deferred \(busy, try later "
                                        r"\(in reply to RCPT TO command\)\)", k.read_log())),
           "451 -> deferred, with the remote's reason")
    tap.ok(ok.wait(lambda: ok.received_for("retry@ok.test"), timeout=15),
           "retried and delivered")
    time.sleep(0.5)
    tap.eq(len(ok.received_for("retry@ok.test")), 1, "delivered exactly once")

    inject(k, "alice@sender.test", ["nobody@ok.test", "erin@ok.test"], msg("partly bad"))
    tap.ok(ok.wait(lambda: ok.received_for("erin@ok.test")), "the good recipient is delivered")
    tap.ok(not ok.received_for("nobody@ok.test"), "the refused one is not")
    ds = home.wait(lambda: dsns(home, "nobody@ok.test"))
    tap.ok(ds, "a DSN goes back to the sender's domain (through the client too)")
    if ds:
        g = status_groups(ds[0])
        tap.eq(len(g), 2, "one recipient reported (erin@ok.test was delivered)")
        if len(g) == 2:
            tap.eq(g[1].get("Final-Recipient"), "rfc822; nobody@ok.test", "Final-Recipient")
            tap.eq(g[1].get("Status"), "5.1.1", "Status from the remote's enhanced code")
            tap.eq(g[1].get("Remote-MTA"), "dns; ok.test", "Remote-MTA")
            tap.eq(g[1].get("Diagnostic-Code"),
                   "smtp; 550 5.1.1 no such user here (in reply to RCPT TO command)",
                   "Diagnostic-Code is the remote's reply")

    # --- refused connections; address fallback ------------------------------
    inject(k, "alice@sender.test", ["zed@dead.test"], msg("to a dead host"))
    inject(k, "alice@sender.test", ["fred@ok.test"], msg("meanwhile"))
    tap.ok(ok.wait(lambda: ok.received_for("fred@ok.test")), "other mail flows meanwhile")
    tap.ok(k.wait_for(lambda: re.search(r"to=<zed@dead\.test>, relay=dead\.test\[127\.0\.0\.1\]:%d,"
                                        r".*dsn=4\.4\.1, status=deferred \(connect to .*refused"
                                        % dead, k.read_log())),
           "refused connection: deferred (4.4.1) with the reason")
    inject(k, "alice@sender.test", ["gina@fallback.test"], msg("fallback"))
    tap.ok(ok.wait(lambda: ok.received_for("gina@fallback.test")),
           "the next address is tried when the first refuses")

    # --- slow destination, fairness, concurrency limit --------------------------
    # Three messages to slow.test (max_per_destination 2: one waits for a
    # session) take three of the four delivery slots; the fair policy
    # gives the last one to ok.test.
    t0 = time.time()
    for i in range(3):
        inject(k, "alice@sender.test", ["s%d@slow.test" % i], msg("slow %d" % i))
    time.sleep(0.3)
    inject(k, "alice@sender.test", ["quick@ok.test"], msg("quick"))
    tap.ok(ok.wait(lambda: ok.received_for("quick@ok.test"), timeout=20),
           "mail to a fast destination gets through")
    t_quick = time.time() - t0
    tap.ok(slow.wait(lambda: len(slow.messages) == 3, timeout=40), "all slow mail delivered")
    t_slow = time.time() - t0
    tap.ok(t_quick < 2 and t_slow > 5, "the fast one was not held up behind the slow ones "
           "(%.1fs vs %.1fs)" % (t_quick, t_slow))
    tap.ok(slow.max_active <= 2, "never more than max_per_destination connections to one "
           "destination (%d)" % slow.max_active)

    # --- STARTTLS, SIZE ----------------------------------------------------------
    inject(k, "alice@sender.test", ["t@tls.test"], msg("secret"))
    got = tlss.wait(lambda: tlss.messages)
    tap.ok(got and got[0].tls, "STARTTLS used when offered")
    tap.ok(re.search(r"TLS connection established to tls\.test\[127\.0\.0\.1\]:%d: TLSv1\.[23]"
                     % tlss.port, k.read_log()), "TLS logged")

    inject(k, "alice@sender.test", ["big@small.test"], msg("big", "x" * 400 + "\n"))
    tap.ok(home.wait(lambda: dsns(home, "big@small.test")), "over the remote SIZE limit: bounced")
    tap.ok(re.search(r"to=<big@small\.test>.*dsn=5\.3\.4, status=bounced \(message size \d+ "
                     r"exceeds the size limit 300", k.read_log()), "with a clear reason")
    tap.eq(small.connections and [c for c in small.commands if c.startswith("MAIL")], [],
           "nothing was sent")

    # --- bad remotes ------------------------------------------------------------
    reasons = {
        "hang.test": r"timed out while receiving the initial server greeting",
        "garbage.test": r"sent a malformed reply \(malformed reply line\) while receiving the "
                        r"initial server greeting",
        "badmail.test": r"sent a malformed reply \(malformed reply line\) while waiting for the "
                        r"reply to MAIL FROM",
        "cut.test": r"lost connection with cut\.test\[127\.0\.0\.1\]:\d+ while sending the "
                    r"message content",
        "nodot.test": r"timed out while waiting for the reply to the end of the content",
        "longline.test": r"sent a malformed reply \(reply line longer than 4096 octets\)",
        "stall.test": r"timed out while sending the message content",
    }
    big = "".join("line %07d of a big message that the remote stops reading\n" % i
                  for i in range(300000))  # about 17 MB
    for name in bad:
        inject(k, "alice@sender.test", ["u@" + name],
               msg("to " + name, big if name == "stall.test" else "hello\n"))
    t0 = time.time()
    inject(k, "alice@sender.test", ["during@ok.test"], msg("during the trouble"))
    tap.ok(ok.wait(lambda: ok.received_for("during@ok.test"), timeout=10),
           "other mail is delivered while the bad remotes misbehave")
    for name, why in reasons.items():
        tap.ok(k.wait_for(lambda: re.search(r"to=<u@%s>.*status=deferred \(.*%s"
                                            % (re.escape(name), why), k.read_log()), timeout=20),
               "%s: deferred with a clear reason" % name)
    tap.ok(k.proc.poll() is None, "kurird still running")
    # The remotes get well: everything arrives, once.
    for s in bad.values():
        s.mode = "normal"
        s.rcpt = {}
    for name, s in bad.items():
        tap.ok(s.wait(lambda: s.received_for("u@" + name), timeout=30),
               "%s: delivered once the remote behaves" % name)
    tap.ok(k.wait_for(lambda: not any("@%s" % n in k.kurir("queue", "list").stdout for n in bad),
                      timeout=20), "none of it is left in the queue: nothing lost")
    tap.eq(len(bad["nodot.test"].received_for("u@nodot.test")), 1,
           "nodot.test: one delivery (the first attempt's content never got a 250)")

    # --- shutdown with an idle cached connection and a hanging one ---------------
    bad["hang.test"].mode = "hang"
    inject(k, "alice@sender.test", ["again@hang.test"], msg("hang again"))
    time.sleep(0.5)
    t0 = time.time()
    rc = k.stop()
    tap.eq(rc, 0, "kurird stops cleanly with sessions open")
    tap.ok(time.time() - t0 < 10, "and promptly (%.1fs)" % (time.time() - t0))

for s in sinks:
    s.close()

# --- relayhost with AUTH (only over TLS), TLS handshake failure ---------------------------
relay = Sink(name="relay.test", tls=make_cert(), auth=("kurir", "s3cret pw"))
clear = Sink(name="clear.test", auth=("kurir", "s3cret pw"))
broken = Sink(name="broken.test", tls=make_cert())
broken.tls_broken = True
for s in (relay, clear, broken):
    s.__enter__()
d = datadir()
with open(os.path.join(d, "relay-password"), "w") as f:
    f.write("s3cret pw\n")
conf = client_config({"relay.test": relay.port, "broken.test": broken.port},
                     node={"relayhost": "[relay.test]", "relay_user": "kurir",
                           "cache_time": "1s"})
with Kurird(config=conf, data_dir=d) as k:
    inject(k, "alice@sender.test", ["x@anywhere.test", "y@elsewhere.test"], msg("via relay"))
    got = relay.wait(lambda: len(relay.messages) >= 2, timeout=15)
    tap.ok(got, "everything goes to the relayhost")
    tap.ok(got and all(m.auth_user == "kurir" and m.tls for m in relay.messages),
           "authenticated, over TLS")
    cmds = [c.split(" ")[0] for c in relay.commands]
    tap.ok("AUTH" in cmds and "STARTTLS" in cmds and cmds.index("STARTTLS") < cmds.index("AUTH"),
           "STARTTLS before AUTH", relay.commands)
    tap.ok("s3cret" not in k.read_log() and "czNjcmV0" not in k.read_log(),
           "the password is never logged")
    # AUTH LOGIN when PLAIN is not offered (a new session: the cached one
    # is closed after cache_time)
    relay.auth_mechs = "LOGIN"
    time.sleep(2.5)
    n = len(relay.messages)
    inject(k, "alice@sender.test", ["w@anywhere.test"], msg("login"))
    got = relay.wait(lambda: len(relay.messages) > n, timeout=15)
    tap.ok(got and relay.messages[-1].auth_user == "kurir", "AUTH LOGIN works too")

d2 = datadir()
with open(os.path.join(d2, "relay-password"), "w") as f:
    f.write("s3cret pw\n")
conf = client_config({"clear.test": clear.port, "broken.test": broken.port},
                     node={"relayhost": "[clear.test]", "relay_user": "kurir"})
with Kurird(config=conf, data_dir=d2) as k:
    inject(k, "alice@sender.test", ["z@anywhere.test"], msg("never in clear"))
    tap.ok(k.wait_for(lambda: re.search(r"to=<z@anywhere\.test>.*status=deferred \(TLS is required, "
                                        r"but host clear\.test\[127\.0\.0\.1\]:\d+ offered no "
                                        r"STARTTLS\)", k.read_log())),
           "a relay without STARTTLS: deferred, AUTH is never sent in clear")
    tap.ok(not [c for c in clear.commands if c.startswith("AUTH")] and not clear.messages,
           "no AUTH, no mail", clear.commands)

conf = client_config({"broken.test": broken.port})
with Kurird(config=conf, data_dir=datadir()) as k:
    inject(k, "alice@sender.test", ["t@broken.test"], msg("tls fails"))
    got = broken.wait(lambda: broken.messages, timeout=15)
    tap.ok(got and not got[0].tls, "TLS handshake fails (tls = may): delivered without TLS")
    tap.ok(re.search(r"TLS handshake with broken\.test\[127\.0\.0\.1\]:\d+ failed; trying again "
                     r"without TLS", k.read_log()), "logged")

for s in (relay, clear, broken):
    s.close()
tap.done()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# rewrite-e2e.py - trivial-rewrite end to end: `kurir resolve` says what
# happens to local, remote, relayed and refused addresses and why;
# canonical and virtual maps change where mail is delivered (and make
# mapped addresses acceptable at RCPT); the transport map refuses
# addresses with its own reply (bounced to the sender); maps are reloaded
# when they change, a broken map is reported and the previous one kept;
# a broken map at start-up stops kurird with FILE:LINE.
import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402
from smtpkit import config, set_group  # noqa: E402


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def resolve(k, *addrs):
    r = k.kurir("resolve", *addrs)
    out = {}
    cur = None
    for line in r.stdout.splitlines():
        if not line.startswith(" "):
            cur = out.setdefault(line, {})
        elif cur is not None and ":" in line:
            key, val = line.strip().split(":", 1)
            cur[key] = val.strip()
    return r, out


def rcpt_code(k, rcpt):
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
    s.ehlo("client.example")
    s.mail("alice@localhost")
    code, _ = s.rcpt(rcpt)
    s.quit()
    return code


def send(k, rcpts, subject, sender="alice@localhost"):
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
    s.ehlo("client.example")
    s.sendmail(sender, rcpts, "Subject: %s\r\n\r\nbody\r\n" % subject)
    s.quit()


def msgs_with(k, user, needle, domain="localhost"):
    return [m for m in k.messages(user, domain) if needle.encode() in m]


conf = config()
conf = re.sub(r'domains = \[ "localhost" \];', 'domains = [ "localhost", "example.org" ];', conf)
conf = set_group(conf, "queue", min_backoff="1s", max_backoff="2s")
conf = set_group(conf, "rewrite", canonical_map="canonical", virtual_map="virtual",
                 transport_map="transport")
k = Kurird(config=conf)
d = k.dir
write(os.path.join(d, "canonical"), "# canonical\nBob.Smith@Example.ORG  bob@localhost\n"
                                    "@old.example.org  @example.org\n")
write(os.path.join(d, "virtual"), "sales@example.org   carol@localhost\n"
                                  "info                carol\n")
write(os.path.join(d, "transport"), "spam.test   error:5.7.1 we do not accept mail for spam.test\n"
                                    "gone@example.org  error:5.1.6 gone, try carol\n"
                                    ".corp.test  relay:[gw.corp.test]:2525\n")
k.start()
try:
    for u in ("alice", "bob", "carol"):
        k.add_user(u + "@localhost", u + "-pw")

    # --- kurir resolve --------------------------------------------------------------------
    r, out = resolve(k, "Alice", "BOB.SMITH@example.org", "x@Remote.TEST.", "@a.test:y@b.test",
                     "z@deep.corp.test", "anyone@SPAM.test", "gone@example.org",
                     "bad\taddress@x.test", "nobody@localhost")
    tap.ok(r.returncode == 0, "kurir resolve exits 0", r.stderr)
    a = out.get("Alice", {})
    tap.eq((a.get("address"), a.get("transport"), a.get("nexthop")),
           ("Alice@localhost", "local", "localhost"), "resolve: bare name -> local, default domain")
    tap.ok("default domain localhost appended" in a.get("why", ""), "resolve says why", a)
    tap.ok(a.get("exists", "").startswith("yes"), "resolve: alice exists")
    b = out.get("BOB.SMITH@example.org", {})
    tap.eq((b.get("address"), b.get("transport")), ("bob@localhost", "local"),
           "resolve: the canonical map rewrites Bob.Smith@example.org")
    tap.ok(re.search(r"canonical map \S+/canonical:2: bob.smith@example.org -> bob@localhost",
                     b.get("why", "")), "resolve names the map line", b)
    x = out.get("x@Remote.TEST.", {})
    tap.eq((x.get("address"), x.get("transport"), x.get("nexthop")),
           ("x@remote.test", "smtp", "remote.test"), "resolve: remote -> smtp to the domain")
    y = out.get("@a.test:y@b.test", {})
    tap.eq(y.get("address"), "y@b.test", "resolve: the source route is stripped")
    z = out.get("z@deep.corp.test", {})
    tap.eq((z.get("transport"), z.get("nexthop")), ("relay", "[gw.corp.test]:2525"),
           "resolve: the transport map relays a subdomain")
    s = out.get("anyone@SPAM.test", {})
    tap.eq((s.get("transport"), s.get("reply")),
           ("error", "550 5.7.1 we do not accept mail for spam.test"),
           "resolve: the transport map refuses a domain with its reply")
    bad = out.get("bad\\taddress@x.test", {})
    tap.eq(bad.get("transport"), "error", "resolve: a control character is refused")
    tap.ok("5.1.3" in bad.get("reply", ""), "... with 5.1.3")
    n = out.get("nobody@localhost", {})
    tap.ok(n.get("exists", "").startswith("no"), "resolve: nobody@ does not exist")
    r = k.kurir("resolve")
    tap.eq(r.returncode, 64, "kurir resolve without an address is a usage error")

    # relayhost: remote mail goes to the relay host
    conf_rh = set_group(open(k.conf_path).read(), "rewrite", relayhost="[smarthost.test]:587")
    rh_path = os.path.join(d, "relayhost.conf")
    with open(rh_path, "w") as f:
        f.write(conf_rh)
    r = subprocess.run([os.path.join(BUILD, "kurir"), "-c", rh_path, "--data-dir", d,
                        "resolve", "x@remote.test", "a@localhost"], capture_output=True, text=True)
    tap.ok(re.search(r"x@remote.test\n.*\n  transport: relay\n  nexthop:   \[smarthost.test\]:587",
                     r.stdout), "relayhost: remote mail goes to the relay host", r.stdout)
    tap.ok(re.search(r"a@localhost\n.*\n  transport: local", r.stdout),
           "relayhost: local mail stays local")

    # --- RCPT and delivery through the maps ----------------------------------------------
    tap.eq(rcpt_code(k, "bob.smith@example.org"), 250,
           "RCPT accepts an address the canonical map sends to a user")
    tap.eq(rcpt_code(k, "sales@example.org"), 250, "RCPT accepts a virtual address")
    tap.eq(rcpt_code(k, "info@localhost"), 250, "RCPT accepts a bare virtual key")
    tap.eq(rcpt_code(k, "nobody@example.org"), 550, "RCPT refuses an unknown address")
    send(k, ["bob.smith@example.org"], "canonical delivery")
    m = k.wait_for(lambda: msgs_with(k, "bob", "canonical delivery"))
    tap.ok(m, "the canonical map delivers Bob.Smith@example.org to bob", k.read_log()[-2000:])
    if m:
        tap.ok(b"Delivered-To: bob@localhost" in m[0], "Delivered-To is the rewritten address")
    tap.ok(re.search(r"to=<bob.smith@example.org>, rewritten to <bob@localhost>, "
                     r"transport=local:localhost", k.read_log()), "the rewrite is logged")
    send(k, ["sales@example.org", "info@example.org"], "virtual delivery")
    tap.ok(k.wait_for(lambda: len(msgs_with(k, "carol", "virtual delivery")) >= 2),
           "the virtual map delivers sales@ and info@ to carol")
    tap.eq(rcpt_code(k, "gone@example.org"), 550,
           "RCPT refuses a served address the transport map refuses")
    send(k, ["someone@spam.test"], "to a refused domain")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"to a refused domain" in m
                              and b"5.7.1" in m])
    tap.ok(dsn, "a transport map error bounces to the sender", k.read_log()[-2000:])
    if dsn:
        tap.ok(b"we do not accept mail for spam.test" in dsn[0], "... with the map's text")
    r = k.kurir("sendmail", "-f", "alice@localhost", "gone@example.org",
                input="Subject: local submission refused\n\nx\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"local submission refused" in m
                              and b"5.1.6" in m and b"gone, try carol" in m])
    tap.ok(dsn, "sendmail to a refused address bounces with the map's code and text")

    # --- reload on change, broken maps while running -------------------------------------
    write(os.path.join(d, "virtual"), "sales@example.org   bob@localhost\n")
    tap.ok(k.wait_for(lambda: "virtual_map" in k.read_log() and "reloaded" in k.read_log()),
           "a changed map is reloaded")
    _, out = resolve(k, "sales@example.org")
    tap.eq(out.get("sales@example.org", {}).get("address"), "bob@localhost",
           "kurir resolve sees the new map")
    send(k, ["sales@example.org"], "after the reload")
    tap.ok(k.wait_for(lambda: msgs_with(k, "bob", "after the reload")),
           "the daemon delivers with the new map")
    write(os.path.join(d, "virtual"), "sales@example.org   bob@localhost\nbroken\n")
    tap.ok(k.wait_for(lambda: "virtual_map not reloaded" in k.read_log()),
           "a broken map is reported while running")
    tap.ok(re.search(r"virtual:2: \"broken\" has no value", k.read_log()), "... with FILE:LINE")
    time.sleep(2.5)
    tap.eq(k.read_log().count("virtual_map not reloaded"), 1, "... once, not every second")
    send(k, ["sales@example.org"], "old map kept")
    tap.ok(k.wait_for(lambda: msgs_with(k, "bob", "old map kept")), "... and the old map is kept")
    tap.ok(k.proc.poll() is None, "kurird is still running")
finally:
    k.stop()

# --- a broken map at start-up ----------------------------------------------------------------
try:
    k.start(timeout=10)
    tap.ok(False, "kurird refuses to start with a broken map")
    k.stop()
except RuntimeError as e:
    tap.ok(re.search(r"virtual:2: \"broken\" has no value", str(e)),
           "kurird refuses to start with a broken map, naming FILE:LINE", str(e)[-500:])
r = k.kurir("resolve", "a@localhost")
tap.ok(r.returncode != 0 and "virtual:2:" in r.stderr, "kurir refuses the broken map too")
if not k.keep:
    import shutil
    shutil.rmtree(k.dir, ignore_errors=True)
tap.done()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# pop3-tls.py - POP3 and TLS against a real kurird (default config: no
# plaintext logins without TLS): CAPA before and after STLS; USER/PASS and
# AUTH PLAIN refused in clear; STLS with a command pipelined behind it in
# the same packet (that plaintext is discarded, not run inside TLS);
# poplib stls() and POP3_SSL (implicit TLS on the pop3s listener); curl
# pop3:// with --ssl-reqd and pop3s://, and curl without TLS refused.
import os
import poplib
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from pop3kit import eq, Raw, pop3_config, send_mail, tls_context, maildir_files, wire  # noqa: E402

conf = pop3_config(plaintext=False)
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "bob-pw")
    body = (b"Subject: over tls\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n")
    send_mail(k, "bob@localhost", body)
    k.wait_for(lambda: maildir_files(k, "bob"), timeout=20)
    stored = open(maildir_files(k, "bob")[0], "rb").read()

    # --- in clear: no plaintext login ------------------------------------
    c = Raw(k.port("pop3"))
    c.cmd("CAPA")
    caps = c.multi()
    tap.ok("STLS" in caps, "CAPA in clear offers STLS", caps)
    tap.ok("USER" not in caps and not any(x.startswith("SASL") for x in caps),
           "CAPA in clear offers no USER and no SASL", caps)
    r = c.cmd("USER bob")
    tap.ok(r.startswith("-ERR [AUTH]"), "USER in clear: -ERR [AUTH]", r)
    tap.ok(c.cmd("PASS bob-pw").startswith("-ERR"), "PASS in clear: -ERR")
    tap.ok(c.cmd("AUTH PLAIN AGJvYgBib2ItcHc=").startswith("-ERR [AUTH]"),
           "AUTH PLAIN in clear: -ERR [AUTH]")

    # --- STLS with a pipelined command behind it -----------------------------
    c.send("STLS\r\nUSER bob\r\n")
    tap.ok(c.line().startswith("+OK"), "STLS: +OK")
    eq(c.buf, b"", "nothing more in clear after +OK")
    c.starttls()
    tap.ok(c.sock.version() is not None, "TLS handshake done (%s)" % c.sock.version())
    r = c.cmd("PASS bob-pw")
    eq(r, "-ERR No username given.", "the USER pipelined after STLS was discarded")
    c.cmd("CAPA")
    caps = c.multi()
    tap.ok("USER" in caps and "SASL PLAIN" in caps, "CAPA under TLS offers USER and SASL PLAIN")
    tap.ok("STLS" not in caps, "CAPA under TLS no longer offers STLS")
    tap.ok(c.cmd("STLS").startswith("-ERR"), "a second STLS: -ERR")
    eq(c.cmd("USER bob"), "+OK", "USER under TLS")
    tap.ok(c.cmd("PASS bob-pw").startswith("+OK"), "PASS under TLS logs in")
    tap.ok(c.cmd("RETR 1").startswith("+OK"), "RETR 1 under TLS")
    eq(c.raw_multi(), wire(stored), "RETR under TLS: the exact bytes")
    tap.ok(c.cmd("QUIT").startswith("+OK"), "QUIT under TLS")
    c.close()

    # --- poplib: stls() and POP3_SSL ------------------------------------------
    p = poplib.POP3("127.0.0.1", k.port("pop3"), timeout=20)
    p.stls(context=tls_context())
    p.user("bob")
    p.pass_("bob-pw")
    eq(p.stat()[0], 1, "poplib stls(): logged in, 1 message")
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", k.port("pop3s"), context=tls_context(), timeout=20)
    tap.ok(p.getwelcome().startswith(b"+OK"), "pop3s (implicit TLS): greeting")
    caps = p.capa()
    tap.ok("USER" in caps and "STLS" not in caps, "pop3s CAPA: USER, no STLS", caps)
    p.user("bob@localhost")
    p.pass_("bob-pw")
    resp, lines, _ = p.retr(1)
    eq(b"".join(x + b"\r\n" for x in lines), wire(stored).replace(b"\r\n..", b"\r\n."),
           "pop3s RETR returns the message")
    p.quit()

    # --- curl ---------------------------------------------------------------------
    def curl(*args):
        return subprocess.run(["curl", "-s", "-S", "-k", "--max-time", "20"] + list(args),
                              capture_output=True, timeout=60)

    url = "pop3://127.0.0.1:%d/" % k.port("pop3")
    r = curl("--ssl-reqd", "-u", "bob:bob-pw", url)
    eq(r.returncode, 0, "curl pop3:// --ssl-reqd (STLS) lists", r.stderr)
    eq(r.stdout.strip(), b"1 %d" % len(wire(stored).replace(b"\r\n..", b"\r\n.")), "curl LIST output: the CRLF size")
    r = curl("--ssl-reqd", "-u", "bob:bob-pw", url + "1")
    eq(r.stdout, wire(stored).replace(b"\r\n..", b"\r\n."), "curl pop3:// RETR 1: the message")
    r = curl("-u", "bob:bob-pw", "pop3s://127.0.0.1:%d/1" % k.port("pop3s"))
    eq((r.returncode, r.stdout), (0, wire(stored).replace(b"\r\n..", b"\r\n.")),
           "curl pop3s:// RETR 1: the message")
    r = curl("-u", "bob:bob-pw", "-X", "UIDL", "pop3s://127.0.0.1:%d/" % k.port("pop3s"))
    name = os.path.basename(maildir_files(k, "bob")[0]).split(":")[0]
    eq(r.stdout.strip(), b"1 " + name.encode(), "curl UIDL: the file name")
    r = curl("-u", "bob:bob-pw", url + "1")
    tap.ok(r.returncode != 0 and b"over tls" not in r.stdout,
           "curl pop3:// without TLS cannot log in (exit %d)" % r.returncode, r.stderr)
    r = curl("--ssl-reqd", "-u", "bob:wrong", url)
    tap.ok(r.returncode != 0, "curl with a wrong password fails (exit %d)" % r.returncode)
    tap.ok("bob-pw" not in k.read_log(), "no password in the log")

tap.done()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# smtp-tls.py - STARTTLS, implicit TLS, AUTH and relay control end to end:
# AUTH not offered (538) before TLS; STARTTLS discards plaintext pipelined
# behind it (CVE-2011-0411) and resets the session; AUTH PLAIN and LOGIN
# after STARTTLS on submission; bad password 535 only after
# auth_fail_delay; the per-address failure limit (421); submission needs
# AUTH for MAIL (530); relay denied without AUTH (554 5.7.1 at RCPT) and
# allowed after STARTTLS+AUTH; TLS 1.2+ only; smtplib, swaks --tls and
# curl smtps:// (-k) on the implicit-TLS port.
import base64
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from smtpkit import Raw, config, delivered, tls_context  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


# No trusted networks: loopback clients are strangers here.
conf = config(trusted_networks=[], auth_fail_delay="1s", auth_fail_limit=4)
with Kurird(config=conf) as k:
    k.add_user("alice@localhost", "alice-pw")
    smtp_port, sub_port, smtps_port = k.port("smtp"), k.port("submission"), k.port("smtps")

    # --- relay control on the MX port ------------------------------------------------
    c = Raw(smtp_port, greeting=True)
    c.cmd("EHLO relay.example")
    c.cmd("MAIL FROM:<spammer@example.com>")
    r = c.cmd("RCPT TO:<victim@example.org>")
    tap.eq((r[0], r[1][:5]), (554, "5.7.1"), "relay without AUTH: 554 5.7.1")
    tap.ok("Relay access denied" in r[1], "... 'Relay access denied'", r)
    r = c.cmd("RCPT TO:<victim@[192.0.2.1]>")
    tap.eq(r[0], 554, "relay to an address literal: 554")
    r = c.cmd("RCPT TO:<@localhost:victim@example.org>")
    tap.eq(r[0], 554, "source route to a remote domain: still relay, 554")
    r = c.cmd("RCPT TO:<\"victim@example.org\"@localhost>")
    tap.eq(r[0], 550, "quoted remote address as a local part: unknown local user, 550")
    r = c.cmd("RCPT TO:<victim%example.org@localhost>")
    tap.eq(r[0], 550, "percent hack: unknown local user, 550")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 250, "local user still accepted from a stranger")
    tap.eq(c.cmd("DATA")[0], 354, "DATA with the local recipient only")
    c.send("Subject: relay test\r\n\r\nx\r\n.\r\n")
    tap.eq(c.reply()[0], 250, "message for the local user queued")
    c.cmd("QUIT")

    # --- AUTH is not offered before TLS -----------------------------------------------------
    c = Raw(sub_port, greeting=True)
    code, _, lines = c.cmd("EHLO sub.example")
    tap.ok(code == 250 and not any(l.startswith("AUTH") for l in lines), "submission: no AUTH before TLS", lines)
    tap.ok("STARTTLS" in lines, "submission: STARTTLS offered", lines)
    r = c.cmd("AUTH PLAIN " + b64("\0alice@localhost\0alice-pw"))
    tap.eq((r[0], r[1][:6]), (538, "5.7.11"), "AUTH in clear: 538 5.7.11 (no password check)")
    r = c.cmd("MAIL FROM:<alice@localhost>")
    tap.eq((r[0], r[1][:5]), (530, "5.7.0"), "submission: MAIL without AUTH: 530 5.7.0")
    # STARTTLS with a command pipelined behind it: the plaintext must be dropped
    c.send("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
    r = c.reply()
    tap.eq(r[0], 220, "STARTTLS: 220")
    c.starttls()
    tap.ok(c.sock.version() in ("TLSv1.2", "TLSv1.3"), "TLS 1.2 or newer negotiated", c.sock.version())
    tap.eq(c.pending(0.3), b"", "no reply to the injected plaintext command")
    code, _, lines = c.cmd("EHLO sub.example")
    tap.eq(code, 250, "EHLO after STARTTLS")
    tap.ok("AUTH PLAIN LOGIN" in lines, "AUTH PLAIN LOGIN offered under TLS", lines)
    tap.ok("STARTTLS" not in lines, "STARTTLS no longer offered", lines)
    tap.eq(c.cmd("STARTTLS")[0], 503, "second STARTTLS: 503")
    r = c.cmd("AUTH PLAIN " + b64("\0alice@localhost\0alice-pw"))
    tap.eq((r[0], r[1][:5]), (235, "2.7.0"), "AUTH PLAIN with initial response: 235")
    tap.eq(c.cmd("AUTH PLAIN " + b64("\0alice@localhost\0alice-pw"))[0], 503, "AUTH twice: 503")
    r = c.cmd("MAIL FROM:<alice@localhost>")
    tap.eq(r[0], 250, "MAIL after AUTH (no injected transaction is open)")
    r = c.cmd("RCPT TO:<friend@example.org>")
    tap.eq(r[0], 250, "relay allowed after STARTTLS+AUTH")
    c.cmd("RCPT TO:<alice@localhost>")
    c.cmd("DATA")
    c.send("Subject: authed\r\n\r\nsent by alice\r\n.\r\n")
    r = c.reply()
    tap.ok(r[0] == 250 and "queued as" in r[1], "authenticated relay message queued", r)
    c.cmd("QUIT")
    msgs = delivered(k, "alice", 2)
    if msgs is not None:
        m = [m for m in msgs if b"Subject: authed" in m]
        tap.ok(m and b"ESMTPSA" in m[0], "Received: says ESMTPSA", m[:1])

    # --- injection attempt on the smtp port too, with a TLS check of the session reset --
    c = Raw(smtp_port, greeting=True)
    c.cmd("EHLO inj.example")
    c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\n")
    tap.eq(c.reply()[0], 220, "smtp port: STARTTLS 220")
    c.starttls()
    tap.eq(c.cmd("MAIL FROM:<a@example.com>")[0], 503, "after STARTTLS the session starts over: MAIL needs EHLO")
    c.cmd("EHLO inj.example")
    tap.eq(c.cmd("RCPT TO:<alice@localhost>")[0], 503, "no injected MAIL survived the handshake")
    c.cmd("QUIT")

    # --- AUTH LOGIN, PLAIN with a challenge, cancel, bad password -------------------------
    s = smtplib.SMTP("127.0.0.1", sub_port, timeout=15)
    s.starttls(context=tls_context())
    s.ehlo("login.example")
    code, text = s.docmd("AUTH LOGIN")
    tap.eq((code, text), (334, b"VXNlcm5hbWU6"), "AUTH LOGIN: 334 Username:")
    code, text = s.docmd(b64("alice@localhost"))
    tap.eq((code, text), (334, b"UGFzc3dvcmQ6"), "AUTH LOGIN: 334 Password:")
    code, text = s.docmd(b64("alice-pw"))
    tap.eq(code, 235, "AUTH LOGIN: 235")
    s.quit()

    s = smtplib.SMTP("127.0.0.1", sub_port, timeout=15)
    s.starttls(context=tls_context())
    s.ehlo("plain.example")
    code, text = s.docmd("AUTH PLAIN")
    tap.eq(code, 334, "AUTH PLAIN without initial response: 334")
    code, text = s.docmd("*")
    tap.eq(code, 501, "'*' cancels the exchange: 501")
    code, text = s.docmd("AUTH PLAIN")
    code, text = s.docmd("not base64!")
    tap.eq(code, 501, "bad base64 in a response: 501")
    code, text = s.docmd("AUTH CRAM-MD5")
    tap.eq(code, 504, "unknown mechanism: 504")
    t0 = time.time()
    code, text = s.docmd("AUTH PLAIN " + b64("\0alice@localhost\0wrong"))
    dt = time.time() - t0
    tap.eq((code, text[:5]), (535, b"5.7.8"), "bad password: 535 5.7.8")
    tap.ok(dt >= 0.9, "535 only after auth_fail_delay (1s): %.2fs" % dt)
    code, text = s.docmd("AUTH PLAIN " + b64("\0nobody@localhost\0wrong"))
    tap.eq(code, 535, "unknown user: the same 535")
    code, text = s.docmd("AUTH PLAIN " + b64("bob@localhost\0alice@localhost\0alice-pw"))
    tap.eq(code, 535, "PLAIN with another authorization identity: 535")
    s.close()

    # a fourth failure, on the implicit-TLS port
    s = smtplib.SMTP_SSL("127.0.0.1", smtps_port, timeout=15, context=tls_context())
    s.ehlo("smtps.example")
    code, text = s.docmd("AUTH PLAIN " + b64("\0alice@localhost\0wrong-again"))
    tap.eq(code, 535, "smtps: bad password 535")
    # 4 failures from 127.0.0.1 now (auth_fail_limit = 4): AUTH is refused, 421
    code, text = s.docmd("AUTH PLAIN " + b64("\0alice@localhost\0alice-pw"))
    tap.eq((code, text[:5]), (421, b"4.7.0"), "past auth_fail_limit: 421 4.7.0, even with the right password")
    s.close()

with Kurird(config=config(trusted_networks=[], auth_fail_delay="0")) as k:
    k.add_user("alice@localhost", "alice-pw")
    smtp_port, sub_port, smtps_port = k.port("smtp"), k.port("submission"), k.port("smtps")

    # smtplib's login() with a bad password (it tries PLAIN, then LOGIN)
    s = smtplib.SMTP_SSL("127.0.0.1", smtps_port, timeout=15, context=tls_context())
    try:
        s.login("alice@localhost", "wrong")
        err = None
    except smtplib.SMTPAuthenticationError as e:
        err = e.smtp_code
    tap.eq(err, 535, "smtps: smtplib login with a bad password raises 535")
    s.close()

    # smtplib: the whole submission dance
    s = smtplib.SMTP("127.0.0.1", sub_port, timeout=15)
    s.starttls(context=tls_context())
    s.login("alice", "alice-pw")  # bare user name: default domain
    tap.eq(s.sendmail("alice@localhost", ["alice@localhost", "far@example.net"],
                      b"Subject: smtplib submission\r\n\r\nhi\r\n"), {},
           "smtplib STARTTLS + login (bare user name) + relay")
    s.quit()

    # swaks with STARTTLS and AUTH
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(sub_port), "--tls",
                        "--auth", "PLAIN", "--auth-user", "alice@localhost", "--auth-password", "alice-pw",
                        "--from", "alice@localhost", "--to", "alice@localhost",
                        "--header", "Subject: swaks tls"], capture_output=True, text=True, timeout=60)
    tap.eq(p.returncode, 0, "swaks --tls --auth PLAIN: exit 0")
    tap.ok("Authentication succeeded" in p.stdout or "235 2.7.0" in p.stdout, "swaks: authenticated", p.stdout[-2000:])
    tap.ok("250 2.0.0 Ok: queued" in p.stdout, "swaks: queued", p.stdout[-1000:])

    # swaks without TLS cannot authenticate
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(sub_port),
                        "--auth", "PLAIN", "--auth-user", "alice@localhost", "--auth-password", "alice-pw",
                        "--from", "alice@localhost", "--to", "alice@localhost"],
                       capture_output=True, text=True, timeout=60)
    tap.ok(p.returncode != 0, "swaks AUTH without TLS fails", p.stdout[-1000:])

    # curl smtps:// with -k on the implicit-TLS port
    mailf = os.path.join(k.dir, "curl-tls.txt")
    with open(mailf, "wb") as f:
        f.write(b"From: alice@localhost\r\nTo: alice@localhost\r\nSubject: curl smtps\r\n\r\nvia smtps\r\n")
    p = subprocess.run(["curl", "-sS", "-k", "--url", "smtps://127.0.0.1:%d/curl.example" % smtps_port,
                        "--user", "alice@localhost:alice-pw", "--mail-from", "alice@localhost",
                        "--mail-rcpt", "alice@localhost", "--upload-file", mailf],
                       capture_output=True, text=True, timeout=60)
    tap.eq(p.returncode, 0, "curl smtps:// -k with --user: exit 0")
    if p.returncode:
        tap.diag(p.stderr)
    # curl smtp:// with --ssl-reqd (STARTTLS) on submission
    p = subprocess.run(["curl", "-sS", "-k", "--ssl-reqd", "--url", "smtp://127.0.0.1:%d/curl.example" % sub_port,
                        "--user", "alice@localhost:alice-pw", "--mail-from", "alice@localhost",
                        "--mail-rcpt", "alice@localhost", "--upload-file", mailf],
                       capture_output=True, text=True, timeout=60)
    tap.eq(p.returncode, 0, "curl smtp:// --ssl-reqd (STARTTLS) + AUTH: exit 0")
    # curl without credentials on submission: refused
    p = subprocess.run(["curl", "-sS", "-k", "--url", "smtps://127.0.0.1:%d/curl.example" % smtps_port,
                        "--mail-from", "alice@localhost", "--mail-rcpt", "alice@localhost",
                        "--upload-file", mailf], capture_output=True, text=True, timeout=60)
    tap.ok(p.returncode != 0, "curl smtps:// without AUTH on submission: refused", p.stderr)

    # TLS 1.1 is refused
    ctx = tls_context()
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        old_ok = True
        try:
            with socket.create_connection(("127.0.0.1", smtps_port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as t:
                    t.recv(100)
        except (ssl.SSLError, OSError):
            old_ok = False
        tap.ok(not old_ok, "TLS 1.1 handshake refused on smtps")
    except (ValueError, ssl.SSLError) as e:
        tap.ok(True, "TLS 1.1 not even available to the client (%s) # SKIP" % e)

    msgs = delivered(k, "alice", 4)
    if msgs is not None:
        subj = sorted(m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip() for m in msgs)
        tap.eq(subj, [b"curl smtps", b"curl smtps", b"smtplib submission", b"swaks tls"],
               "all four authenticated messages delivered to alice")

tap.done()

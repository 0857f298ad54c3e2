#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-safety.py - what a hostile or broken IMAP client gets: literals
# checked before anything is read (non-synchronising literals over 4096
# octets refused before login, APPEND before login, literals past
# max_literal, absurd sizes), long lines, NULs and junk answered with BAD
# while the session stays usable, too many bad commands -> BYE; plaintext
# logins only under TLS (LOGINDISABLED, PRIVACYREQUIRED, STARTTLS with
# pipelined plaintext discarded, AUTHENTICATE PLAIN with SASL-IR and with a
# continuation), implicit TLS on imaps, failed-login limits per address,
# and clients that vanish mid-command.
import imaplib
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from imapkit import imap_config, Raw, find, tls_context  # noqa: E402


def status_of(tagged):
    return tagged.split(b" ", 2)[1].decode()


def plain(authz, user, pw):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, pw)).encode()).decode()


# ---------------------------------------------------------------------------
# loopback plaintext allowed: literal and line abuse
conf = imap_config(plaintext=True, max_literal="1M", max_bad_commands=12)
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    port = k.port("imap")

    c = Raw(port)
    c.send("a1 LOGIN {5000+}\r\n" + "x" * 5000 + " pw\r\n")
    u, t = c.until_tagged("a1")
    tap.ok(t.startswith(b"a1 BAD [TOOBIG]"), "before login: {5000+} -> BAD [TOOBIG] (LITERAL-)", t)
    tap.eq(status_of(c.cmd("NOOP")[1]), "OK", "... its 5000 octets were skipped, the session goes on")
    c.send("a2 LOGIN {100000}\r\n")
    t = c.line()
    tap.ok(t.startswith(b"a2 NO [TOOBIG]"), "before login: a large synchronising literal -> NO [TOOBIG], no '+'", t)
    c.send("a3 APPEND INBOX {10}\r\n")
    t = c.line()
    tap.ok(t.startswith(b"a3 NO"), "APPEND before login: NO, no '+'", t)
    c.send("a4 NOOP " + "y" * 9000 + "\r\n")
    u, t = c.until_tagged("a4")
    tap.ok(t.startswith(b"a4 BAD") and b"too long" in t, "before login: a 9000-octet line -> BAD", t)
    tap.eq(status_of(c.cmd("CAPABILITY")[1]), "OK", "still usable")
    c.send("a5 LOGIN {3}\r\n")
    tap.ok(c.line().startswith(b"+"), "a small synchronising literal gets '+'")
    c.send("bob {2}\r\n")
    tap.ok(c.line().startswith(b"+"), "... and the second one")
    c.send("pw\r\n")
    u, t = c.until_tagged("a5")
    tap.eq(status_of(t), "OK", "LOGIN with two literals")

    c.send("b1 APPEND INBOX {2000000}\r\n")
    t = c.line()
    tap.ok(t.startswith(b"b1 NO [TOOBIG]"), "APPEND over max_literal: NO [TOOBIG] before any data", t)
    c.send(b"b2 APPEND INBOX {2000000+}\r\n" + b"z" * 2000000 + b"\r\n")
    u, t = c.until_tagged("b2")
    tap.ok(t.startswith(b"b2 BAD [TOOBIG]"), "non-synchronising APPEND over max_literal: BAD [TOOBIG]", t)
    tap.eq(status_of(c.cmd("NOOP")[1]), "OK", "... its 2 MB were skipped")
    c.send("b3 APPEND INBOX {99999999999999999999999}\r\n")
    t = c.line()
    tap.ok(t.startswith(b"b3 NO [TOOBIG]"), "an absurd literal size: NO [TOOBIG]", t)
    c.send("b4 SELECT {5}\r\n")
    c.line()
    c.send(b"IN\x00OX\r\n")
    u, t = c.until_tagged("b4")
    tap.eq(status_of(t), "BAD", "a NUL inside a literal argument: BAD")
    u, t = c.cmd(b"FETCH \xff\xfe (FLAGS)")
    tap.eq(status_of(t), "BAD", "8-bit junk: BAD")
    u, t = c.cmd("FETCH 1 (BODY[" + "1." * 40 + "1])")
    tap.ok(status_of(t) == "BAD", "a section nested 41 deep: BAD", t)
    u, t = c.cmd("SEARCH " + "NOT " * 100 + "ALL")
    tap.ok(status_of(t) in ("BAD",), "a search nested 100 deep: BAD", t)
    u, t = c.cmd("SELECT INBOX")
    tap.eq(status_of(t), "OK", "the session is consistent after all that")
    body = b"Subject: ok\r\n\r\nfine\r\n"
    u, t = c.cmd(b"APPEND INBOX {%d+}\r\n" % len(body) + body)
    tap.ok(status_of(t) == "OK" and find(u, "* 1 EXISTS"), "APPEND still works", (u, t))
    c.cmd("LOGOUT")
    z = Raw(port)
    z.login("bob", "pw")
    for i in range(11):
        z.cmd("BOGUS%d" % i)
    z.send("z9 BOGUS\r\nz10 NOOP\r\n")
    rest = b""
    try:
        while True:
            d = z.sock.recv(4096)
            if not d:
                break
            rest += d
    except OSError:
        pass
    tap.ok(b"* BYE Too many invalid commands." in rest and b"z10" not in rest,
           "too many bad commands: BYE and closed, nothing more read", rest)

    # trickle: one octet per packet; pipelining: many commands in one
    tr = Raw(port)
    for ch in b"p1 LOGIN bob pw\r\n":
        tr.send(bytes([ch]))
    u, t = tr.until_tagged("p1")
    tap.eq(status_of(t), "OK", "LOGIN sent one octet at a time")
    body = b"Subject: trickle\r\n\r\nslowly\r\n"
    for ch in b"p2 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n":
        tr.send(bytes([ch]))
    u, t = tr.until_tagged("p2")
    tap.eq(status_of(t), "OK", "APPEND with its literal sent one octet at a time")
    tr.send("q1 NOOP\r\nq2 SELECT INBOX\r\nq3 FETCH * (BODY.PEEK[TEXT])\r\nq4 BOGUS\r\nq5 NOOP\r\n")
    tags = []
    for tag in ("q1", "q2", "q3", "q4", "q5"):
        u, t = tr.until_tagged(tag)
        tags.append((tag, status_of(t)))
        if tag == "q3":
            tap.ok(u and u[-1].endswith(b"{8}\r\nslowly\r\n)"), "pipelined FETCH answered", u)
    tap.eq(tags, [("q1", "OK"), ("q2", "OK"), ("q3", "OK"), ("q4", "BAD"), ("q5", "OK")],
           "five pipelined commands answered in order")
    tr.cmd("LOGOUT")

    # clients that vanish mid-command
    big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 40000
    d = Raw(port)
    d.login("bob", "pw")
    u, t = d.cmd(b"APPEND INBOX {%d+}\r\n" % len(big) + big)
    tap.eq(status_of(t), "OK", "APPEND of %d octets" % len(big))
    d.cmd("SELECT INBOX")
    d.send("f1 FETCH 1:* (BODY[])\r\n")
    d.sock.recv(100)
    d.close()  # mid-FETCH
    e = Raw(port)
    e.login("bob", "pw")
    e.send(b"f2 APPEND INBOX {%d+}\r\n" % len(big) + big[:400000])
    e.close()  # mid-literal
    g = Raw(port)
    g.login("bob", "pw")
    g.cmd("SELECT INBOX")
    g.send("f3 IDLE\r\n")
    g.line()
    g.close()  # mid-IDLE
    time.sleep(0.5)
    h = Raw(port)
    h.login("bob", "pw")
    u, t = h.cmd("STATUS INBOX (MESSAGES)")
    tap.eq(u, [b"* STATUS INBOX (MESSAGES 3)"], "kurird fine after clients vanished mid-FETCH, mid-literal, mid-IDLE;"
           " the half-sent APPEND stored nothing")
    h.cmd("LOGOUT")

# ---------------------------------------------------------------------------
# the default: no plaintext logins without TLS
conf = imap_config(plaintext=False, auth_fail_limit=3)
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    port = k.port("imap")
    c = Raw(port)
    u, t = c.cmd("CAPABILITY")
    caps = u[0].split()
    tap.ok(b"LOGINDISABLED" in caps and b"STARTTLS" in caps and b"AUTH=PLAIN" not in caps,
           "in clear: LOGINDISABLED, STARTTLS, no AUTH=PLAIN", u)
    u, t = c.cmd("LOGIN bob pw")
    tap.ok(t.startswith(b"t2 NO [PRIVACYREQUIRED]"), "LOGIN in clear: NO [PRIVACYREQUIRED]", t)
    u, t = c.cmd("AUTHENTICATE PLAIN " + plain("", "bob", "pw"))
    tap.ok(b"NO [PRIVACYREQUIRED]" in t, "AUTHENTICATE PLAIN in clear: NO [PRIVACYREQUIRED]", t)
    c.send("s1 STARTTLS\r\ns2 LOGIN bob pw\r\n")
    t = c.line()
    tap.eq(t, b"s1 OK Begin TLS negotiation now.", "STARTTLS: OK")
    tap.eq(c.buf, b"", "nothing more in clear")
    c.starttls()
    u, t = c.cmd("CAPABILITY")
    caps = u[0].split()
    tap.ok(b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps,
           "under TLS: AUTH=PLAIN, no STARTTLS", u)
    u, t = c.cmd("NOOP")
    tap.ok(not find(u, "s2"), "the LOGIN pipelined behind STARTTLS was discarded", u)
    tap.eq(status_of(c.cmd("STARTTLS")[1]), "BAD", "a second STARTTLS: BAD")
    tag = c.tag()
    c.send("%s AUTHENTICATE PLAIN\r\n" % tag)
    tap.eq(c.line(), b"+ ", "AUTHENTICATE PLAIN without SASL-IR: continuation")
    c.send("*\r\n")
    u, t = c.until_tagged(tag)
    tap.eq(status_of(t), "BAD", "'*' cancels AUTHENTICATE")
    u, t = c.cmd("AUTHENTICATE PLAIN " + plain("someone", "bob", "pw"))
    tap.ok(b"NO" in t, "a different authorization identity: NO", t)
    tag = c.tag()
    c.send("%s AUTHENTICATE PLAIN\r\n" % tag)
    c.line()
    c.send(plain("bob", "bob", "pw") + "\r\n")
    u, t = c.until_tagged(tag)
    tap.ok(status_of(t) == "OK" and b"[CAPABILITY" in t, "AUTHENTICATE PLAIN with a continuation: OK", t)
    c.cmd("LOGOUT")

    s = imaplib.IMAP4_SSL("127.0.0.1", k.port("imaps"), ssl_context=tls_context())
    tap.ok("AUTH=PLAIN" in s.capabilities and "STARTTLS" not in s.capabilities,
           "imaps: implicit TLS, AUTH=PLAIN offered")
    typ, _ = s.authenticate("PLAIN", lambda _: b"\0bob\0pw")
    tap.eq(typ, "OK", "imaps: imaplib AUTHENTICATE PLAIN (SASL-IR)")
    typ, data = s.select("INBOX")
    tap.eq((typ, data), ("OK", [b"0"]), "imaps: SELECT INBOX")
    s.logout()

    # failed-login limit per address (auth_fail_limit = 3)
    t2 = Raw(k.port("imaps"), tls=True)
    for i in range(3):
        u, t = t2.cmd("LOGIN bob wrong%d" % i)
        assert status_of(t) == "NO", t
    u, t = t2.cmd("LOGIN bob pw")
    tap.ok(t.startswith(b"t4 NO [AUTHENTICATIONFAILED]"),
           "after auth_fail_limit failures even the right password fails", t)
    tap.ok("too many failures" in k.read_log(), "the refusal is logged")
    t2.close()

# ---------------------------------------------------------------------------
# idle timeout (30m by default; 10s here), and a shutdown with sessions open
conf = imap_config(plaintext=True, idle_timeout="10s")
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    port = k.port("imap")
    c = Raw(port)
    c.login("bob", "pw")
    c.cmd("SELECT INBOX")
    t0 = time.time()
    c.sock.settimeout(30)
    rest = b""
    try:
        while True:
            d = c.sock.recv(4096)
            if not d:
                break
            rest += d
    except OSError:
        pass
    dt = time.time() - t0
    tap.ok(b"* BYE" in rest and 9 <= dt <= 20, "a silent session gets BYE after idle_timeout (%.1fs)" % dt, rest)
    a = Raw(port)
    a.login("bob", "pw")
    a.cmd("SELECT INBOX")
    b = Raw(port)
    b.login("bob", "pw")
    b.cmd("SELECT INBOX")
    b.send("i IDLE\r\n")
    b.line()
    rc = k.stop()
    tap.eq(rc, 0, "kurird stops cleanly with sessions selected and in IDLE")

tap.done()

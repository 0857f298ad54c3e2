#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# pop3-session.py - the POP3 server end to end against a real kurird, with
# Python's poplib and a raw client: login variants (USER/PASS with bare and
# full names, AUTH PLAIN with and without an initial response), wrong
# passwords and unknown users (same answer, delayed); STAT/LIST/UIDL agree
# with each other and with the Maildir; RETR returns the delivered bytes
# exactly (dot-stuffed on the wire, dot-unstuffed by poplib), also for a
# 300 KB message and a file written by another program; TOP n; DELE+QUIT
# removes, DELE then a dropped connection keeps, RSET; [IN-USE] for a
# second session; mail delivered during a session appears in the next
# one; a message removed behind the session's back; UIDL stable across
# sessions and after a restart; pipelined commands; long lines, unknown
# commands, commands in the wrong state, too many bad commands; 70 RETRs
# pipelined against the read-ahead, interleaved with DELE/LIST/TOP/UIDL;
# files changed in place after the login (read to their end, not to the
# indexed size); QUIT in the same write as RETRs; the per-address limit
# on failed logins.
import imaplib
import os
import poplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from pop3kit import Raw, listener_opts, maildir_files, pop3_config, put_file, send_mail, wire  # noqa: E402


def pop(k, user="bob", pw="bob-pw"):
    p = poplib.POP3("127.0.0.1", k.port("pop3"), timeout=20)
    p.user(user)
    p.pass_(pw)
    return p


def wait_msgs(k, user, n):
    k.wait_for(lambda: len(maildir_files(k, user)) >= n, timeout=20)
    return maildir_files(k, user)


conf = pop3_config(auth_fail_delay="1s")
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "bob-pw")
    k.add_user("carol@localhost", "carol pw with spaces")

    # --- greeting, CAPA, login variants ---------------------------------
    c = Raw(k.port("pop3"))
    tap.ok(c.greeting.startswith("+OK"), "greeting is +OK", c.greeting)
    tap.ok(c.cmd("CAPA").startswith("+OK"), "CAPA answers +OK")
    caps = c.multi()
    for cap in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "USER", "SASL PLAIN", "STLS",
                "IMPLEMENTATION kurir", "AUTH-RESP-CODE"):
        tap.ok(cap in caps, "CAPA lists %s" % cap, caps)
    tap.ok(c.cmd("STAT").startswith("-ERR"), "STAT before login: -ERR")
    tap.ok(c.cmd("PASS bob-pw").startswith("-ERR"), "PASS without USER: -ERR")
    tap.eq(c.cmd("USER bob"), "+OK", "USER bob: +OK (bare name)")
    r = c.cmd("PASS bob-pw")
    tap.ok(r.startswith("+OK"), "PASS: logged in as bare 'bob' (default domain)", r)
    tap.ok(c.cmd("USER bob").startswith("-ERR"), "USER after login: -ERR (wrong state)")
    tap.ok(c.cmd("STLS").startswith("-ERR"), "STLS after login: -ERR")
    tap.ok(c.cmd("QUIT").startswith("+OK"), "QUIT")
    c.close()

    p = pop(k, "bob@localhost")
    tap.eq(p.stat(), (0, 0), "bob@localhost logs in; empty maildrop: STAT 0 0")
    p.quit()
    p = pop(k, "carol", "carol pw with spaces")
    tap.eq(p.stat()[0], 0, "a password with spaces works")
    p.quit()

    c = Raw(k.port("pop3"))
    tap.eq(c.cmd("AUTH"), "+OK", "AUTH alone lists mechanisms")
    tap.eq(c.multi(), ["PLAIN"], "the one mechanism is PLAIN")
    tap.ok(c.cmd("AUTH CRAM-MD5").startswith("-ERR"), "an unknown mechanism: -ERR")
    import base64
    ir = base64.b64encode(b"\0bob\0bob-pw").decode()
    r = c.cmd("AUTH PLAIN " + ir)
    tap.ok(r.startswith("+OK"), "AUTH PLAIN with an initial response logs in", r)
    c.cmd("QUIT")
    c.close()
    c = Raw(k.port("pop3"))
    tap.eq(c.cmd("AUTH PLAIN"), "+ ", "AUTH PLAIN without one: continuation '+ '")
    r = c.cmd(base64.b64encode(b"\0bob@localhost\0bob-pw").decode())
    tap.ok(r.startswith("+OK"), "... and the response logs in", r)
    c.cmd("QUIT")
    c.close()
    c = Raw(k.port("pop3"))
    c.cmd("AUTH PLAIN")
    tap.ok(c.cmd("*").startswith("-ERR"), "AUTH PLAIN cancelled with '*': -ERR")
    c.cmd("QUIT")
    c.close()

    # --- wrong passwords, unknown users: same answer, delayed ------------
    c = Raw(k.port("pop3"))
    c.cmd("USER bob")
    t0 = time.time()
    r_wrong = c.cmd("PASS nope")
    dt = time.time() - t0
    tap.ok(r_wrong.startswith("-ERR [AUTH]"), "a wrong password: -ERR [AUTH]", r_wrong)
    tap.ok(dt >= 0.9, "the failure is answered after auth_fail_delay (%.2fs)" % dt)
    tap.eq(c.cmd("USER nobody-here"), "+OK", "USER of an unknown user: +OK all the same")
    r_unknown = c.cmd("PASS nope")
    tap.eq(r_unknown, r_wrong, "unknown user and wrong password: the same reply")
    tap.ok(c.cmd("USER bob").startswith("+OK") and c.cmd("PASS bob-pw").startswith("+OK"),
           "a right password after failures still logs in")
    c.cmd("QUIT")
    c.close()
    try:
        pop(k, "bob", "wrong")
        tap.ok(False, "poplib: wrong password raises")
    except poplib.error_proto as e:
        tap.ok(b"[AUTH]" in e.args[0], "poplib: wrong password raises error_proto [AUTH]", e)

    # --- mail: by SMTP (delivery through the store) and by another tool -----
    m1 = (b"From: a@example.org\r\nTo: bob@localhost\r\nSubject: one\r\n\r\n"
          b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n")
    big = b"Subject: big\r\n\r\n" + b"".join(b"%06d %s\r\n" % (i, b"x" * 70) for i in range(4000))
    m3 = b"Subject: three\r\n\r\nshort\r\n"
    for m in (m1, big, m3):
        send_mail(k, "bob@localhost", m)
        wait_msgs(k, "bob", [m1, big, m3].index(m) + 1)
    other = b"Subject: other tool\r\nX: crlf file\r\n\r\nwritten\r\n.by another\r\n"
    put_file(k, "bob", "new", "1500000000.other.host", other)
    files = maildir_files(k, "bob")
    tap.eq(len(files), 4, "four messages in the Maildir")

    p = pop(k)
    n, size = p.stat()
    tap.eq(n, 4, "STAT counts 4 messages")
    resp, lst, _ = p.list()
    sizes = {int(a): int(b) for a, b in (x.split() for x in lst)}
    tap.eq(sorted(sizes), [1, 2, 3, 4], "LIST lists 1..4")
    tap.eq(sum(sizes.values()), size, "LIST sizes add up to STAT's")
    resp, ul, _ = p.uidl()
    uidls = {int(a): b.decode() for a, b in (x.split() for x in ul)}
    tap.eq(sorted(uidls), [1, 2, 3, 4], "UIDL lists 1..4")
    tap.eq(len(set(uidls.values())), 4, "UIDLs are unique")
    tap.ok(all(1 <= len(u) <= 70 and all(0x21 <= ord(ch) <= 0x7e for ch in u)
               for u in uidls.values()), "UIDLs are 1..70 printable characters")
    tap.eq(p.uidl(2).split()[2].decode(), uidls[2], "UIDL n agrees with the listing")
    tap.eq(int(p.list(3).split()[2]), sizes[3], "LIST n agrees with the listing")

    # map message numbers to stored files via the UIDL (= file name base)
    by_uidl = {os.path.basename(f).split(":")[0]: f for f in files}
    tap.ok(set(uidls.values()) == set(by_uidl), "UIDL is the Maildir file name", (uidls, list(by_uidl)))
    for i in range(1, 5):
        stored = open(by_uidl[uidls[i]], "rb").read()
        resp, lines, octets = p.retr(i)
        got = b"".join(ln + b"\r\n" for ln in lines)
        want = wire(stored).replace(b"\r\n..", b"\r\n.")
        if want.startswith(b".."):
            want = want[1:]
        tap.eq(got, want, "RETR %d returns the stored bytes (dot-unstuffed, CRLF)" % i)
        tap.eq(len(got), sizes[i], "RETR %d: LIST size equals the bytes sent" % i)
    def num_of(marker):
        return [i for i in uidls if marker in open(by_uidl[uidls[i]], "rb").read()][0]

    tap.eq(num_of(b"other tool"), 1, "the other tool's file (oldest name) is message 1")
    resp, lines, _ = p.top(1, 0)
    tap.eq(lines, [b"Subject: other tool", b"X: crlf file", b""], "TOP n 0: the header only")
    resp, lines, _ = p.top(num_of(b"first line"), 2)
    tap.eq(lines[-3:], [b"", b"first line", b".starts with a dot"], "TOP 1 2: header + 2 lines")
    p.quit()

    # exact wire bytes (dot-stuffing) with the raw client
    c = Raw(k.port("pop3"))
    c.cmd("USER bob")
    c.cmd("PASS bob-pw")
    num1 = num_of(b"first line")
    r = c.cmd("RETR %d" % num1)
    body = c.raw_multi()
    tap.eq(r, "+OK %d octets" % sizes[num1], "RETR reply line gives the size")
    tap.eq(body, wire(open(by_uidl[uidls[num1]], "rb").read()),
           "on the wire: CRLF and dot-stuffed exactly")
    tap.ok(b"\r\n..starts with a dot\r\n...two dots\r\n..\r\nlast\r\n" in body,
           "lines starting with '.' are doubled")
    r = c.cmd("TOP %d 1" % num1)
    tap.eq(c.raw_multi().split(b"\r\n\r\n", 1)[1], b"first line\r\n", "TOP n 1 on the wire")
    for bad in ("RETR 0", "RETR 5", "TOP 9 1", "DELE 99", "LIST 7", "UIDL 0"):
        tap.ok(c.cmd(bad).startswith("-ERR"), "%s: -ERR (no such message)" % bad)

    # --- DELE / RSET / [IN-USE] ------------------------------------------------
    tap.ok(c.cmd("DELE 3").startswith("+OK"), "DELE 3")
    tap.ok(c.cmd("DELE 3").startswith("-ERR"), "DELE 3 again: -ERR")
    tap.ok(c.cmd("RETR 3").startswith("-ERR"), "RETR of a deleted message: -ERR")
    tap.eq(c.cmd("STAT"), "+OK 3 %d" % (size - sizes[3]), "STAT leaves deleted messages out")
    c.cmd("LIST")
    tap.ok("3 %d" % sizes[3] not in c.multi(), "LIST leaves it out")
    tap.ok(c.cmd("RSET").startswith("+OK"), "RSET")
    tap.eq(c.cmd("STAT"), "+OK 4 %d" % size, "after RSET all 4 are back")

    c2 = Raw(k.port("pop3"))
    c2.cmd("USER bob")
    r = c2.cmd("PASS bob-pw")
    tap.ok(r.startswith("-ERR [IN-USE]"), "a second session: -ERR [IN-USE]", r)
    c2.cmd("QUIT")
    c2.close()

    tap.ok(c.cmd("DELE 1").startswith("+OK"), "DELE 1, then the connection drops")
    c.close()
    time.sleep(0.3)
    p = pop(k)
    tap.eq(p.stat()[0], 4, "DELE then a dropped connection: nothing removed")
    # the dropped session's lock is gone, or pop() would have failed
    p.dele(2)
    p.quit()
    p = pop(k)
    tap.eq(p.stat()[0], 3, "DELE + QUIT removed one message")
    tap.eq(len(maildir_files(k, "bob")), 3, "... and its file")
    tap.ok(uidls[2] not in [u.split()[1].decode() for u in p.uidl()[1]], "... the right one")
    uid_before = p.uidl()[1]

    # --- delivered during a session: next session; removed behind its back ----
    send_mail(k, "bob@localhost", b"Subject: during\r\n\r\nnew one\r\n")
    wait_msgs(k, "bob", 4)
    tap.eq(p.stat()[0], 3, "mail delivered during a session does not appear in it")
    p.quit()
    p = pop(k)
    tap.eq(p.stat()[0], 4, "... it appears in the next session")
    tap.eq(p.uidl()[1][:3], uid_before, "UIDLs of the old messages unchanged in a new session")
    victim = maildir_files(k, "bob")[0]
    vname = os.path.basename(victim).split(":")[0]
    vnum = [int(x.split()[0]) for x in p.uidl()[1] if x.split()[1].decode() == vname][0]
    os.unlink(victim)
    try:
        p.retr(vnum)
        tap.ok(False, "RETR of a message removed by another program: -ERR")
    except poplib.error_proto as e:
        tap.ok(e.args[0].startswith(b"-ERR"), "RETR of a message removed by another program: -ERR", e)
    tap.ok(p.noop().startswith(b"+OK"), "the session goes on after that")
    all_uidl = p.uidl()[1]
    p.quit()

    # --- UIDL stable after a restart -------------------------------------------
    k.restart()
    p = pop(k)
    after = p.uidl()[1]
    tap.eq(len(after), 3, "after a restart: 3 messages")
    gone = [x for x in all_uidl if x.split()[1].decode() == vname]
    tap.eq([x.split()[1] for x in after], [x.split()[1] for x in all_uidl if x not in gone],
           "UIDLs are the same after a restart")
    p.quit()

    # --- pipelining, long lines, unknown commands ------------------------------
    c = Raw(k.port("pop3"))
    c.send("USER bob\r\nPASS bob-pw\r\nSTAT\r\nLIST\r\nUIDL 1\r\nNOOP\r\n")
    rs = [c.line() for _ in range(4)]
    tap.ok(rs[0] == "+OK" and rs[1].startswith("+OK") and rs[2].startswith("+OK 3 ")
           and rs[3].startswith("+OK"), "pipelined USER/PASS/STAT/LIST answered in order", rs)
    tap.eq(len(c.multi()), 3, "pipelined LIST body")
    tap.ok(c.line().startswith("+OK 1 "), "pipelined UIDL 1")
    tap.eq(c.line(), "+OK", "pipelined NOOP")
    tap.eq(c.cmd("NOOP " + "x" * 5000), "-ERR Line too long.", "a 5000-byte line: -ERR Line too long")
    tap.eq(c.cmd("NOOP"), "+OK", "the connection works after a long line")
    tap.ok(c.cmd("XYZZY").startswith("-ERR"), "an unknown command: -ERR")
    tap.ok(c.cmd("RETR abc").startswith("-ERR"), "RETR abc: -ERR")
    tap.ok(c.cmd("TOP 1").startswith("-ERR"), "TOP without a line count: -ERR")
    tap.ok(c.cmd("STAT extra").startswith("-ERR"), "STAT with an argument: -ERR")
    tap.ok(c.cmd("APOP bob 0123").startswith("-ERR"), "APOP: -ERR")
    for i in range(30):
        try:
            r = c.cmd("BOGUS%d" % i)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            break
    tap.ok(c.eof(), "too many bad commands: the server closes the connection")
    c.close()
    p = pop(k)
    tap.eq(p.stat()[0], 3, "that session removed nothing (no QUIT)")
    p.quit()

    log = k.read_log()
    tap.ok("login failed: user=<nobody-here>" in log, "failed logins are logged")
    tap.ok("bob-pw" not in log and "nope" not in log, "passwords never reach the log")

# --- many messages: read-ahead against pipelining, DELE, TOP, LIST, order ------
with Kurird(config=pop3_config()) as k:
    k.add_user("eve@localhost", "eve-pw")
    msgs = []
    for i in range(70):
        body = b"Subject: n%d\n\n" % i + b"".join(
            b"%sline %d of %d\n" % (b"." if j % 7 == 0 else b"", j, i) for j in range(i * 3 % 50))
        put_file(k, "eve", "cur", "1600%04d.many.host:2," % i, body)
        msgs.append(body)
    c = Raw(k.port("pop3"))
    c.cmd("USER eve")
    c.cmd("PASS eve-pw")
    c.send("".join("RETR %d\r\n" % i for i in range(1, 71)))
    ok = True
    for i in range(1, 71):
        r = c.line()
        body = c.raw_multi()
        ok = ok and r.startswith("+OK") and body == wire(msgs[i - 1])
    tap.ok(ok, "70 RETRs pipelined in one write: every body exact, in order")
    # interleaved: DELE, LIST, TOP, UIDL, RETR of a deleted one, backwards
    c.send("RETR 1\r\nDELE 2\r\nRETR 2\r\nLIST\r\nRETR 3\r\nTOP 4 1\r\nUIDL\r\nRETR 5\r\n")
    r1 = c.line(); b1 = c.raw_multi()
    r2 = c.line(); r3 = c.line()
    r4 = c.line(); l4 = c.multi()
    r5 = c.line(); b5 = c.raw_multi()
    r6 = c.line(); b6 = c.raw_multi()
    r7 = c.line(); l7 = c.multi()
    r8 = c.line(); b8 = c.raw_multi()
    tap.ok(r1.startswith("+OK") and b1 == wire(msgs[0]), "interleaved: RETR 1")
    tap.ok(r2.startswith("+OK") and r3.startswith("-ERR"), "interleaved: DELE 2, then RETR 2 refused")
    tap.ok(r4.startswith("+OK") and len(l4) == 69 and not any(x.startswith("2 ") for x in l4),
           "interleaved: LIST without 2", l4[:3])
    tap.ok(b5 == wire(msgs[2]), "interleaved: RETR 3 after a skipped deleted one")
    tap.ok(r6 == "+OK" and b6.startswith(b"Subject: n3\r\n\r\n") and b6.count(b"\r\n") <= 3,
           "interleaved: TOP 4 1", b6)
    tap.ok(len(l7) == 69, "interleaved: UIDL")
    tap.ok(b8 == wire(msgs[4]), "interleaved: RETR 5")
    back = True
    for i in (70, 40, 10, 9, 8):
        r = c.cmd("RETR %d" % i)
        back = back and r.startswith("+OK") and c.raw_multi() == wire(msgs[i - 1])
    tap.ok(back, "RETRs out of order and backwards: exact")
    tap.ok(c.cmd("QUIT").startswith("+OK"), "QUIT removes the DELE'd one")
    c.close()
    tap.eq(len(maildir_files(k, "eve")), 69, "69 messages left")

# --- read-ahead checks each file against its indexed size ---------------------
# Files changed in place after the login (longer, shorter, same length but
# with CRLF instead of LF, so a different wire size) do not match the index:
# RETR still sends what the file holds, read to its end, and the messages
# around them are exact; a CRLF file that matches is read ahead as usual.
with Kurird(config=pop3_config()) as k:
    k.add_user("fay@localhost", "fay-pw")
    msgs = []
    for i in range(12):
        body = b"Subject: f%d\n\n" % i + b"".join(b".dot %d\nline %d\n" % (j, j) for j in range(i * 5))
        if i == 9:
            body = body.replace(b"\n", b"\r\n")
        put_file(k, "fay", "cur", "1700%04d.fay.host:2," % i, body)
        msgs.append(body)
    c = Raw(k.port("pop3"))
    c.cmd("USER fay")
    tap.ok(c.cmd("PASS fay-pw").startswith("+OK"), "changed files: login (index built)")
    files = {os.path.basename(f).split(".")[0]: f for f in maildir_files(k, "fay")}
    changed = {4: msgs[4] + b"an added line\n" * 40, 6: msgs[6][:len(msgs[6]) // 2],
               8: msgs[8].replace(b"\n", b"\r\n")[:len(msgs[8])]}
    for i, new in changed.items():
        with open(files["1700%04d" % i], "r+b") as f:
            f.write(new)
            f.truncate(len(new))
        msgs[i] = new
    c.send("".join("RETR %d\r\n" % i for i in range(1, 13)))
    bad = []
    for i in range(1, 13):
        r = c.line()
        if not r.startswith("+OK") or c.raw_multi() != wire(msgs[i - 1]):
            bad.append(i)
    tap.eq(bad, [], "changed files: every RETR sends the file as it is now, in order")
    tap.ok(c.cmd("QUIT").startswith("+OK"), "changed files: QUIT")
    c.close()
    # QUIT right behind RETRs, in one write: the read-ahead they start must
    # not outlive the mailbox (the server stays up and serves the next one)
    for rounds in range(3):
        c = Raw(k.port("pop3"))
        c.send("USER fay\r\nPASS fay-pw\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\nQUIT\r\n")
        rs = [c.line(), c.line()]
        bodies = []
        for i in range(3):
            rs.append(c.line())
            bodies.append(c.raw_multi())
        rs.append(c.line())
        c.close()
        if bodies != [wire(m) for m in msgs[:3]]:
            rs.append("bodies differ")
        if not all(r.startswith("+OK") for r in rs):
            break
    tap.ok(rounds == 2 and all(r.startswith("+OK") for r in rs),
           "RETR, RETR, RETR, QUIT pipelined: answered, three times over", rs)
    p = pop(k, "fay", "fay-pw")
    tap.eq(p.stat()[0], 12, "and the next session is served")
    p.quit()

# --- POP3 leaves \Recent to IMAP ----------------------------------------------
# A POP3 session that saw (and read) new mail claims no \Recent: the first
# IMAP session afterwards still gets the messages as recent.
conf = listener_opts(pop3_config(), "imap", "allow_plaintext_loopback = true;")
with Kurird(config=conf) as k:
    k.add_user("gus@localhost", "gus-pw")
    for i in range(2):
        send_mail(k, "gus@localhost", b"Subject: r%d\r\n\r\nrecent %d\r\n" % (i, i))
    p = pop(k, "gus", "gus-pw")
    tap.eq(p.stat()[0], 2, "recent: POP3 sees both messages")
    p.retr(1)
    p.quit()
    m = imaplib.IMAP4("127.0.0.1", k.port("imap"))
    m.login("gus", "gus-pw")
    typ, _ = m.select("INBOX")
    recent = m.untagged_responses.get("RECENT", [b"0"])[-1]
    tap.eq((typ, recent), ("OK", b"2"), "recent: the first IMAP SELECT after it has both as RECENT")
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", k.port("imap"))
    m.login("gus", "gus-pw")
    m.select("INBOX")
    tap.eq(m.untagged_responses.get("RECENT", [b"0"])[-1], b"0", "recent: a second IMAP SELECT has none")
    m.logout()

# --- per-address limit on failed logins ---------------------------------------
with Kurird(config=pop3_config(auth_fail_limit=3)) as k:
    k.add_user("dan@localhost", "dan-pw")
    for i in range(3):
        try:
            pop(k, "dan", "wrong%d" % i)
        except poplib.error_proto:
            pass
    try:
        pop(k, "dan", "dan-pw")
        tap.ok(False, "after auth_fail_limit failures even the right password fails")
    except poplib.error_proto as e:
        tap.ok(b"-ERR" in e.args[0], "after auth_fail_limit failures even the right password fails", e)
    tap.ok("too many failures" in k.read_log(), "the refusal is logged")

tap.done()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-sessions.py - IMAP sessions seeing each other: two sessions on one
# mailbox see each other's flag changes, expunges and appends (NOOP), IDLE
# gets EXISTS for a message delivered over SMTP at once and EXPUNGE / FETCH
# from another session, and files added behind kurird's back (idle_poll);
# CONDSTORE (MODSEQ rising, CHANGEDSINCE, UNCHANGEDSINCE -> MODIFIED);
# QRESYNC (SELECT ... QRESYNC -> VANISHED (EARLIER) and changed FETCHes,
# VANISHED instead of EXPUNGE, UID FETCH ... VANISHED); the rule that
# FETCH/STORE/SEARCH send no EXPUNGE; \Recent (the first session to see
# a message has it: FETCH FLAGS, * n RECENT at SELECT and with EXISTS,
# STATUS RECENT, SEARCH RECENT / NEW / OLD; EXAMINE claims nothing;
# IMAP4rev2 has none); INTERNALDATE and BEFORE/ON/SINCE in kurird's zone.
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from imapkit import imap_config, Raw, find, send_mail  # noqa: E402


def status_of(tagged):
    return tagged.split(b" ", 2)[1].decode()


def append(c, n, box="INBOX"):
    for i in range(n):
        body = b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
        u, t = c.cmd(b"APPEND %s {%d+}\r\n" % (box.encode(), len(body)) + body)
        assert status_of(t) == "OK", t


def modseq_of(resp):
    m = re.search(rb"MODSEQ \((\d+)\)", resp)
    return int(m.group(1)) if m else None


def wait_untagged(c, pred, timeout=10):
    """Read untagged responses (during IDLE) until pred(resp)."""
    c.sock.settimeout(timeout)
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = c.response()
        except OSError:
            break
        seen.append(r)
        if pred(r):
            c.sock.settimeout(20)
            return seen
    c.sock.settimeout(20)
    return seen


conf = imap_config(plaintext=True, idle_poll="1s")
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    port = k.port("imap")
    a = Raw(port)
    b = Raw(port)
    a.login("bob", "pw")
    b.login("bob", "pw")
    append(a, 4)
    u, t = a.cmd("SELECT INBOX")
    tap.ok(find(u, "* 4 EXISTS"), "A: SELECT INBOX, 4 messages", u)
    u, t = b.cmd("SELECT INBOX")
    tap.ok(find(u, "* 4 EXISTS"), "B: SELECT INBOX, 4 messages", u)

    # --- flags, expunges, appends between sessions --------------------------
    b.cmd("STORE 2 +FLAGS (\\Flagged)")
    u, t = a.cmd("NOOP")
    tap.ok(any(re.match(rb"\* 2 FETCH \(.*FLAGS \(\\Flagged \\Recent\)", x) for x in u),
           "A sees B's flag change on NOOP (\\Recent: A selected first)", u)
    b.cmd("STORE 3 +FLAGS.SILENT (\\Deleted)")
    b.cmd("EXPUNGE")
    u, t = a.cmd("NOOP")
    tap.eq(find(u, "* 3 EXPUNGE"), [b"* 3 EXPUNGE"], "A sees B's expunge on NOOP")
    append(b, 1)
    u, t = a.cmd("NOOP")
    tap.eq(find(u, "* 4 EXISTS"), [b"* 4 EXISTS"], "A sees B's APPEND as EXISTS")
    u, t = a.cmd("UID FETCH 1:* (UID)")
    tap.eq([int(re.search(rb"UID (\d+)", x).group(1)) for x in u], [1, 2, 4, 5],
           "A's view: UIDs 1 2 4 5")

    # --- no EXPUNGE during FETCH / STORE / SEARCH ----------------------------
    b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("EXPUNGE")
    u, t = a.cmd("FETCH 1:* (UID)")
    tap.ok(not any(b"EXPUNGE" in x for x in u) and len(find(u, "* 1 FETCH")) == 1 and
           len(u) == 4, "FETCH sends no EXPUNGE (still 4 messages in A's view)", u)
    u, t = a.cmd("SEARCH ALL")
    tap.eq(u, [b"* SEARCH 1 2 3 4"], "SEARCH sends no EXPUNGE either")
    u, t = a.cmd("UID SEARCH ALL")
    tap.ok(find(u, "* 1 EXPUNGE") and find(u, "* SEARCH 2 4 5"),
           "UID SEARCH may: * 1 EXPUNGE, then the result", u)

    # --- IDLE: delivery over SMTP, another session's changes -----------------
    tag = a.tag()
    a.send("%s IDLE\r\n" % tag)
    tap.ok(a.line().startswith(b"+ "), "IDLE: continuation")
    t0 = time.time()
    send_mail(k, "bob@localhost", b"From: x@example.org\r\nSubject: pushed\r\n\r\nhi\r\n")
    seen = wait_untagged(a, lambda r: r.endswith(b" EXISTS"), timeout=15)
    tap.ok(seen and seen[-1] == b"* 4 EXISTS", "IDLE: * 4 EXISTS for a message delivered over SMTP "
           "(%.2fs)" % (time.time() - t0), seen)
    b.cmd("NOOP")
    b.cmd("STORE 1 +FLAGS (\\Answered)")
    seen = wait_untagged(a, lambda r: b"FETCH" in r, timeout=10)
    tap.ok(seen and re.match(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Answered \\Flagged \\Recent\)\)", seen[-1]),
           "IDLE: FETCH FLAGS for B's STORE", seen)
    b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.cmd("EXPUNGE")
    seen = wait_untagged(a, lambda r: b"EXPUNGE" in r, timeout=10)
    tap.ok(seen and seen[-1] == b"* 2 EXPUNGE", "IDLE: EXPUNGE for B's expunge", seen)
    # a file dropped into new/ by another program: found by the idle poll
    base = k.maildir("bob")
    with open(os.path.join(base, "tmp", "1.outside.host"), "wb") as f:
        f.write(b"Subject: outside\r\n\r\nfrom another program\r\n")
    os.rename(os.path.join(base, "tmp", "1.outside.host"), os.path.join(base, "new", "1.outside.host"))
    seen = wait_untagged(a, lambda r: r.endswith(b" EXISTS"), timeout=10)
    tap.ok(seen and seen[-1] == b"* 4 EXISTS", "IDLE: a file added behind kurird's back (idle_poll)", seen)
    a.send("DONE\r\n")
    u, t = a.until_tagged(tag)
    tap.ok(t == tag.encode() + b" OK IDLE terminated.", "DONE ends IDLE", t)
    tag = a.tag()
    a.send("%s IDLE\r\n" % tag)
    a.line()
    a.send("NOT-DONE\r\n")
    u, t = a.until_tagged(tag)
    tap.eq(status_of(t), "BAD", "IDLE ended by anything but DONE: BAD")
    tap.eq(status_of(a.cmd("NOOP")[1]), "OK", "the session goes on after IDLE")
    a.cmd("CLOSE")
    b.cmd("CLOSE")

    # --- CONDSTORE -------------------------------------------------------------
    c = Raw(port)
    c.login("bob", "pw")
    c.cmd("CREATE cs")
    append(c, 3, "cs")
    u, t = c.cmd("SELECT cs (CONDSTORE)")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(u)).group(1))
    tap.ok(hms > 0, "SELECT (CONDSTORE): HIGHESTMODSEQ %d" % hms)
    u, t = c.cmd("FETCH 1:3 (MODSEQ)")
    ms = [modseq_of(x) for x in u]
    tap.ok(all(m is not None and 0 < m <= hms for m in ms), "FETCH MODSEQ", u)
    u, t = c.cmd("STORE 2 +FLAGS (\\Seen)")
    m2 = modseq_of(u[0])
    tap.ok(m2 is not None and m2 > hms, "STORE: MODSEQ rises above the old HIGHESTMODSEQ (%s > %d)" % (m2, hms), u)
    u, t = c.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % hms)
    tap.ok(len(u) == 1 and u[0].startswith(b"* 2 FETCH") and b"MODSEQ" in u[0],
           "FETCH CHANGEDSINCE: only the changed message, with MODSEQ", u)
    u, t = c.cmd("STORE 2,3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % hms)
    tap.ok(b"[MODIFIED 2]" in t and any(x.startswith(b"* 3 FETCH") for x in u),
           "STORE UNCHANGEDSINCE: message 2 changed since -> [MODIFIED 2], 3 stored", (u, t))
    u, t = c.cmd("SEARCH MODSEQ %d" % (m2 + 1))
    tap.ok(u and re.match(rb"\* SEARCH 3 \(MODSEQ \d+\)", u[0]), "SEARCH MODSEQ", u)
    u, t = c.cmd("STATUS cs (HIGHESTMODSEQ)")
    tap.ok(u and int(re.search(rb"HIGHESTMODSEQ (\d+)", u[0]).group(1)) > m2, "STATUS HIGHESTMODSEQ", u)
    c.cmd("LOGOUT")

    # --- QRESYNC ----------------------------------------------------------------
    q = Raw(port)
    q.login("bob", "pw")
    q.cmd("CREATE qr")
    append(q, 5, "qr")
    u, t = q.cmd("SELECT qr")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(u)).group(1))
    ms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(u)).group(1))
    q.cmd("CLOSE")
    # another session changes things meanwhile
    o = Raw(port)
    o.login("bob", "pw")
    o.cmd("SELECT qr")
    o.cmd("STORE 1 +FLAGS (\\Flagged)")
    o.cmd("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    o.cmd("EXPUNGE")
    u, t = q.cmd("SELECT qr (QRESYNC (%d %d))" % (uv, ms))
    tap.eq(status_of(t), "BAD", "SELECT (QRESYNC ...) before ENABLE QRESYNC: BAD")
    u, t = q.cmd("ENABLE QRESYNC")
    tap.eq(u, [b"* ENABLED QRESYNC"], "ENABLE QRESYNC")
    u, t = q.cmd("SELECT qr (QRESYNC (%d %d 1:5))" % (uv, ms))
    tap.ok(find(u, "* VANISHED (EARLIER) 2,4"), "SELECT QRESYNC: * VANISHED (EARLIER) 2,4", u)
    tap.ok(any(re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", x) for x in u),
           "SELECT QRESYNC: the changed message's flags and MODSEQ", u)
    tap.eq(len(find(u, "* VANISHED")) + len([x for x in u if b"FETCH" in x]), 2,
           "nothing else changed is reported")
    o.cmd("STORE 3 +FLAGS.SILENT (\\Deleted)")
    o.cmd("EXPUNGE")
    u, t = q.cmd("NOOP")
    tap.eq(find(u, "* VANISHED"), [b"* VANISHED 5"], "QRESYNC session: VANISHED (UID 5), not EXPUNGE")
    tap.ok(not find(u, "* 2 EXPUNGE"), "no EXPUNGE with QRESYNC", u)
    o.cmd("STORE 1 -FLAGS (\\Flagged)")
    u, t = q.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % ms)
    tap.ok(find(u, "* VANISHED (EARLIER) 2,4:5"), "UID FETCH CHANGEDSINCE VANISHED: 2,4:5", u)
    tap.ok(any(re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\) MODSEQ", x) for x in u),
           "... and the changed flags", u)
    u, t = q.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    tap.eq(status_of(t), "BAD", "VANISHED without UID FETCH: BAD")
    q.cmd("LOGOUT")
    o.cmd("LOGOUT")

    # --- the store loses its index: UIDVALIDITY changes, the session ends -------
    z = Raw(port)
    z.login("bob", "pw")
    z.cmd("SELECT qr")
    os.unlink(os.path.join(k.maildir("bob", folder="qr"), "kurir-index"))
    z.send("n1 NOOP\r\n")
    closed = z.eof(10)
    tap.ok(b"* BYE" in z.buf and b"n1 OK" not in z.buf, "index lost under a session: * BYE", z.buf)
    tap.ok(closed, "... and the connection is closed")
    y = Raw(port)
    y.login("bob", "pw")
    u, t = y.cmd("SELECT qr")
    tap.ok(status_of(t) == "OK" and find(u, "* 2 EXISTS"), "a new session sees the rebuilt mailbox", u)
    y.cmd("LOGOUT")

# --- \Recent: a message is recent in the first session that sees it ---------
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    port = k.port("imap")
    w = Raw(port)
    w.login("bob", "pw")
    w.cmd("CREATE rc")
    append(w, 3, "rc")
    u, t = w.cmd("STATUS rc (MESSAGES RECENT)")
    tap.eq(u, [b"* STATUS rc (MESSAGES 3 RECENT 3)"], "STATUS RECENT: none claimed yet")
    x = Raw(port)
    x.login("bob", "pw")
    u, t = x.cmd("EXAMINE rc")
    tap.ok(find(u, "* 3 RECENT"), "EXAMINE sees them recent ...", u)
    u, t = x.cmd("FETCH 1 FLAGS")
    tap.ok(u and b"FLAGS (\\Recent)" in u[0], "... with \\Recent in FETCH FLAGS", u)
    u, t = w.cmd("SELECT rc")
    tap.ok(find(u, "* 3 RECENT"), "the first SELECT: * 3 RECENT (EXAMINE claimed nothing)", u)
    tap.ok(find(u, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)"),
           "FLAGS list as RFC 3501 shows it (\\Recent is no flag a client sets)", u)
    tap.ok(any(x_.startswith(b"* OK [PERMANENTFLAGS") and b"\\Recent" not in x_ for x_ in u),
           "PERMANENTFLAGS without \\Recent", u)
    u, t = w.cmd("FETCH 1:* FLAGS")
    tap.eq(len([r for r in u if b"FLAGS (\\Recent)" in r]), 3, "FETCH FLAGS: \\Recent on all three")
    y = Raw(port)
    y.login("bob", "pw")
    u, t = y.cmd("SELECT rc")
    tap.ok(find(u, "* 0 RECENT"), "a second SELECT: * 0 RECENT", u)
    u, t = y.cmd("FETCH 1:* FLAGS")
    tap.ok(len(u) == 3 and not any(b"\\Recent" in r for r in u), "... and no \\Recent in its FETCH FLAGS", u)
    u, t = y.cmd("STATUS rc (RECENT)")
    tap.eq(u, [b"* STATUS rc (RECENT 0)"], "STATUS RECENT of the selected mailbox: its own view")
    u, t = w.cmd("STATUS rc (RECENT)")
    tap.eq(u, [b"* STATUS rc (RECENT 3)"], "... and in the session that has them")
    v = Raw(port)
    v.login("bob", "pw")
    u, t = v.cmd('LIST "" "rc" RETURN (STATUS (MESSAGES RECENT))')
    tap.ok(b"* STATUS rc (MESSAGES 3 RECENT 0)" in u, "LIST-STATUS RECENT: all claimed by the first SELECT", u)
    u, t = x.cmd("STATUS rc (RECENT)")
    tap.eq(u, [b"* STATUS rc (RECENT 3)"], "STATUS RECENT in the EXAMINE session: its own view")
    v.cmd("LOGOUT")
    tap.eq(status_of(w.cmd("STORE 1 +FLAGS (\\Recent)")[1]), "BAD", "STORE \\Recent: BAD")
    u, t = w.cmd("STORE 1 FLAGS (\\Seen)")
    tap.ok(u and b"FLAGS (\\Seen \\Recent)" in u[0], "STORE FLAGS leaves \\Recent alone", u)
    u, t = w.cmd("SEARCH RECENT")
    tap.eq(u, [b"* SEARCH 1 2 3"], "SEARCH RECENT")
    u, t = w.cmd("SEARCH NEW")
    tap.eq(u, [b"* SEARCH 2 3"], "SEARCH NEW: recent and unseen")
    u, t = w.cmd("SEARCH OLD")
    tap.eq(u, [b"* SEARCH"], "SEARCH OLD: none")
    u, t = y.cmd("SEARCH OLD")
    tap.eq(u, [b"* SEARCH 1 2 3"], "SEARCH OLD in the other session: all")
    u, t = y.cmd("SEARCH RECENT")
    tap.eq(u, [b"* SEARCH"], "SEARCH RECENT in the other session: none")
    # a new message: recent in the session whose sync sees it first
    append(x, 1, "rc")
    u, t = w.cmd("NOOP")
    tap.ok(find(u, "* 4 EXISTS") and find(u, "* 4 RECENT"), "NOOP: * 4 EXISTS and * 4 RECENT", u)
    u, t = y.cmd("NOOP")
    tap.ok(find(u, "* 4 EXISTS") and find(u, "* 0 RECENT"), "the other session: EXISTS, * 0 RECENT", u)
    # IMAP4rev2: no \Recent anywhere
    z = Raw(port)
    z.login("bob", "pw")
    z.cmd("ENABLE IMAP4rev2")
    append(z, 1, "rc")
    u, t = z.cmd("SELECT rc")
    tap.ok(not find(u, "* 1 RECENT") and not any(r.endswith(b" RECENT") for r in u),
           "IMAP4rev2 SELECT: no RECENT", u)
    u, t = z.cmd("FETCH 5 FLAGS")
    tap.ok(u and b"FLAGS ()" in u[0], "IMAP4rev2: no \\Recent in FETCH FLAGS (though this session has it)", u)
    u, t = z.cmd("SEARCH RECENT")
    tap.ok(u and u[0].endswith(b" ALL 5"), "... yet SEARCH RECENT still finds it", u)
    for c_ in (w, x, y, z):
        c_.cmd("LOGOUT")

# --- INTERNALDATE in kurird's zone (TZ), DST included ----------------------------
for tz, want in (("XXX-5:30", [b'"05-Jan-2026 12:41:05 +0530"', b'"10-Jul-2026 17:30:00 +0530"']),
                 ("EST5EDT,M3.2.0,M11.1.0", [b'"05-Jan-2026 02:11:05 -0500"', b'"10-Jul-2026 08:00:00 -0400"'])):
    with Kurird(config=conf, env={"TZ": tz}) as k:
        k.add_user("bob@localhost", "pw")
        c = Raw(k.port("imap"))
        c.login("bob", "pw")
        for d in ("05-Jan-2026 08:11:05 +0100", "10-Jul-2026 12:00:00 +0000"):
            u, t = c.cmd('APPEND INBOX "%s" {4+}\r\nx\r\n\r\n' % d)
            assert status_of(t) == "OK", t
        c.cmd("SELECT INBOX")
        u, t = c.cmd("FETCH 1:2 INTERNALDATE")
        got = [re.search(rb'INTERNALDATE ("[^"]*")', r).group(1) for r in u]
        tap.eq(got, want, "TZ=%s: INTERNALDATE in the server's zone" % tz)
        # 05-Jan 02:11 -0500 is the 5th in New York, the 5th in UTC too; the
        # +0530 zone moves 10-Jul 12:00Z to 17:30 the same day: day is local
        u, t = c.cmd("SEARCH ON 5-Jan-2026")
        tap.eq(u, [b"* SEARCH 1"], "TZ=%s: SEARCH ON by the local day" % tz)
        c.cmd("LOGOUT")

tap.done()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-e2e.py - the IMAP server against a real kurird, with Python's imaplib
# and a raw client: every command of IMAP4rev1/rev2 and the extensions kurir
# offers; APPEND then FETCH byte-exact (small and streamed); BODYSTRUCTURE
# of multipart/alternative, multipart/mixed with attachments,
# message/rfc822 and malformed MIME; SEARCH keys and ESEARCH; STORE, COPY,
# MOVE, EXPUNGE with UIDPLUS; mailbox names (hierarchy, dots, mUTF-7,
# UTF8=ACCEPT) and path traversal refused; special-use folders for a new
# user; LIST-EXTENDED / LIST-STATUS / LSUB; top-level header sections (a
# mail client's folder listing) the same as the full parse's.
import imaplib
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from imapkit import imap_config, Raw, lits, find, imaplib_client  # noqa: E402

CRLF = b"\r\n"


def msg(*lines):
    return CRLF.join(l.encode() if isinstance(l, str) else l for l in lines) + CRLF


PLAIN = msg("From: Alice Example <alice@example.org>", "To: bob@localhost",
            "Subject: plain one", "Date: Tue, 03 Feb 2026 10:00:00 +0100",
            "Message-ID: <p1@example.org>", "", "hello world", "second line")

ALT = msg("From: carol@example.org", "To: bob@localhost", "Subject: alternative",
          "MIME-Version: 1.0", 'Content-Type: multipart/alternative; boundary="b1"', "",
          "--b1", "Content-Type: text/plain; charset=utf-8", "", "plain text", "--b1",
          "Content-Type: text/html; charset=utf-8", "", "<p>html text</p>", "--b1--", "")

MIXED = msg("From: dave@example.org", "To: bob@localhost", "Subject: with attachment",
            "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="m1"', "",
            "--m1", "Content-Type: text/plain", "", "see attached", "--m1",
            'Content-Type: application/octet-stream; name="a.bin"',
            'Content-Disposition: attachment; filename="a.bin"',
            "Content-Transfer-Encoding: base64", "", "AAECAwQFBgc=", "--m1",
            "Content-Type: text/plain; charset=iso-8859-1",
            "Content-Transfer-Encoding: quoted-printable", "", "caf=E9 au lait", "--m1--", "")

INNER = msg("From: erin@example.org", "Subject: inner", "", "inner body")
RFC822 = msg("From: frank@example.org", "To: bob@localhost", "Subject: forwarded",
             "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="f1"', "",
             "--f1", "Content-Type: text/plain", "", "fwd:", "--f1",
             "Content-Type: message/rfc822", "", INNER.decode(), "--f1--", "")

BROKEN = msg("From: broken@example.org", "Subject: broken mime", "MIME-Version: 1.0",
             'Content-Type: multipart/mixed; boundary="never"', "", "no delimiter at all",
             "just text")


def items(resp):
    """FETCH response -> {section name: literal data}."""
    out = {}
    i = 0
    while True:
        m = re.compile(rb"((?:BODY|BINARY)\[[^\]]*\](?:<\d+>)?) ~?\{(\d+)\}\r\n").search(resp, i)
        if not m:
            return out
        n = int(m.group(2))
        out[m.group(1)] = resp[m.end():m.end() + n]
        i = m.end() + n


def status_of(tagged):
    return tagged.split(b" ", 2)[1].decode()


conf = imap_config(plaintext=True, auth_fail_delay="0", max_literal="2M")
# INTERNALDATE is shown in kurird's zone: UTC here (imap-sessions.py tries others)
with Kurird(config=conf, env={"TZ": "UTC"}) as k:
    k.add_user("bob@localhost", "pw")
    k.add_user("eve@localhost", "pw2")
    port = k.port("imap")

    # --- greeting, capabilities, login ------------------------------------
    c = Raw(port)
    tap.ok(c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
           "greeting carries CAPABILITY with IMAP4rev1 and IMAP4rev2", c.greeting)
    u, t = c.cmd("CAPABILITY")
    caps = u[0].split()[2:]
    tap.ok(b"AUTH=PLAIN" in caps and b"STARTTLS" in caps and b"LITERAL-" in caps
           and b"LOGINDISABLED" not in caps, "pre-login CAPABILITY (loopback plaintext allowed)", u)
    tap.eq(status_of(c.cmd("SELECT INBOX")[1]), "BAD", "SELECT before login: BAD")
    u, t = c.cmd('LOGIN bob wrong')
    tap.ok(t.startswith(b"t3 NO [AUTHENTICATIONFAILED]"), "wrong password: NO [AUTHENTICATIONFAILED]", t)
    u, t = c.login("bob", "pw")
    tap.ok(t.startswith(b"t4 OK [CAPABILITY IMAP4rev1 IMAP4rev2") and b"LITERAL+" in t and
           b"CONDSTORE" in t and b"QRESYNC" in t and b"MOVE" in t and b"UIDPLUS" in t, "LOGIN: OK with the new capabilities", t)
    tap.eq(status_of(c.cmd("LOGIN bob pw")[1]), "BAD", "second LOGIN: BAD")

    # --- special-use folders, LIST, LSUB, NAMESPACE ----------------------
    u, t = c.cmd('LIST "" "*"')
    names = {re.search(rb'"/" (.*)$', x).group(1): x for x in u}
    tap.eq(sorted(names), [b"Archive", b"Drafts", b"INBOX", b"Junk", b"Sent", b"Trash"],
           "a new user gets INBOX + the special-use folders")
    tap.ok(b"\\Sent" in names[b"Sent"] and b"\\Trash" in names[b"Trash"] and
           b"\\Drafts" in names[b"Drafts"] and b"\\Junk" in names[b"Junk"] and
           b"\\Archive" in names[b"Archive"], "special-use attributes in LIST", u)
    tap.ok(os.path.isdir(os.path.join(k.maildir("bob"), ".Sent", "cur")),
           "Sent is a Maildir++ folder on disk")
    u, t = c.cmd('LSUB "" "*"')
    tap.eq(sorted(re.search(rb'"/" (.*)$', x).group(1) for x in u),
           [b"Archive", b"Drafts", b"INBOX", b"Junk", b"Sent", b"Trash"], "they are subscribed (LSUB)")
    u, t = c.cmd('LIST (SPECIAL-USE) "" "*"')
    tap.eq(len(u), 5, "LIST (SPECIAL-USE): the five special-use folders")
    u, t = c.cmd("NAMESPACE")
    tap.eq(u, [b'* NAMESPACE (("" "/")) NIL NIL'], "NAMESPACE: one personal namespace, '/'")
    u, t = c.cmd('LIST "" ""')
    tap.eq(u, [b'* LIST (\\Noselect) "/" ""'], 'LIST "" "": the separator')
    u, t = c.cmd("ID NIL")
    tap.ok(u and u[0].startswith(b'* ID ("name" "kurir"'), "ID", u)

    # --- CREATE / RENAME / DELETE, names ------------------------------------
    tap.eq(status_of(c.cmd("CREATE Work/Projects")[1]), "OK", "CREATE Work/Projects")
    tap.ok(os.path.isdir(os.path.join(k.maildir("bob"), ".Work.Projects")),
           "stored as Maildir++ .Work.Projects")
    tap.eq(status_of(c.cmd('CREATE "v1.2"')[1]), "OK", 'CREATE "v1.2" (a dot inside a name)')
    u, t = c.cmd('LIST "" "*"')
    listed = [re.search(rb'"/" (.*)$', x).group(1) for x in u]
    tap.ok(b'"v1.2"' in listed or b"v1.2" in listed, "v1.2 listed as one level", listed)
    tap.ok(any(x.endswith(b'"/" Work') and b"\\NonExistent" not in x and b"\\Noselect" in x
               for x in u), "Work (never created) listed \\Noselect \\HasChildren", u)
    tap.ok(any(x.endswith(b'"/" Work/Projects') and b"\\HasNoChildren" in x for x in u),
           "Work/Projects listed with \\HasNoChildren", u)
    u, t = c.cmd('LIST "" "%"')
    tap.ok(any(x.endswith(b'"/" Work') for x in u) and not any(b"Work/Projects" in x for x in u),
           "LIST %: one level, Work as the level above", u)
    tap.eq(status_of(c.cmd("CREATE Entw&APw-rfe")[1]), "OK", "CREATE a modified UTF-7 name")
    tap.ok(os.path.isdir(os.path.join(k.maildir("bob"), ".Entwürfe")), "stored as UTF-8 on disk")
    tap.eq(status_of(c.cmd("CREATE Work/Projects")[1]), "NO", "CREATE existing: NO")
    tap.ok(b"[ALREADYEXISTS]" in c.cmd("CREATE Sent")[1], "CREATE Sent again: NO [ALREADYEXISTS]")
    tap.eq(status_of(c.cmd("CREATE INBOX")[1]), "NO", "CREATE INBOX: NO")
    tap.eq(status_of(c.cmd("RENAME Work/Projects Work/Done")[1]), "OK", "RENAME")
    tap.ok(os.path.isdir(os.path.join(k.maildir("bob"), ".Work.Done")) and
           not os.path.exists(os.path.join(k.maildir("bob"), ".Work.Projects")), "renamed on disk")
    tap.ok(b"[NONEXISTENT]" in c.cmd("DELETE Nope")[1], "DELETE of a missing mailbox: NO [NONEXISTENT]")
    tap.eq(status_of(c.cmd("DELETE INBOX")[1]), "NO", "DELETE INBOX: NO")
    tap.eq(status_of(c.cmd("DELETE Work/Done")[1]), "OK", "DELETE")
    tap.ok(not os.path.exists(os.path.join(k.maildir("bob"), ".Work.Done")), "deleted on disk")
    tap.eq(status_of(c.cmd("SUBSCRIBE v1.2")[1]), "OK", "SUBSCRIBE")
    tap.ok(any(b"v1.2" in x for x in c.cmd('LSUB "" "*"')[0]), "LSUB shows it")
    tap.eq(status_of(c.cmd("UNSUBSCRIBE v1.2")[1]), "OK", "UNSUBSCRIBE")
    tap.ok(not any(b"v1.2" in x for x in c.cmd('LSUB "" "*"')[0]), "LSUB no longer shows it")

    # --- path traversal and bad names -------------------------------------------
    home = k.maildir("bob")
    before = sorted(os.listdir(os.path.dirname(home)))
    bad = ['"../eve"', '"a/../../eve"', '".."', '"~root"', '"a/~b"', '"/etc"', '"a//b"', '"a/"x',
           '"&AC4-&AC4-"', '"&AC8-etc"', '"x&AC8-y"', '"bad&-name&"', '{3}', '"tab\tname"']
    for name in bad:
        if name == "{3}":
            c.send("%s CREATE {3}\r\n" % c.tag())
            c.line()  # "+ Ready"
            c.send(b"..\x00\r\n")
            u, t = c.until_tagged("t%d" % c.n)
        else:
            u, t = c.cmd("CREATE " + name)
        tap.ok(status_of(t) in ("NO", "BAD"), "CREATE %s refused (%s)" % (name, t.decode("latin-1")))
    for name in ['"../eve"', '"../../localhost/eve"', '"&AC4-&AC4-/eve"']:
        tap.eq(status_of(c.cmd("SELECT " + name)[1]), "NO", "SELECT %s refused" % name)
        tap.eq(status_of(c.cmd("RENAME INBOX/x " + name)[1]), "NO", "RENAME to %s refused" % name)
    tap.eq(sorted(os.listdir(os.path.dirname(home))), before, "nothing created next to the user's Maildir")
    tap.ok(not os.path.exists(os.path.join(k.dir, "mail", "eve")) and
           not any(n.startswith("..") for n in os.listdir(home) if n not in ("..",)),
           "no '..' folders in the Maildir")

    # --- UTF8=ACCEPT --------------------------------------------------------------
    c2 = Raw(port)
    c2.login("bob", "pw")
    u, t = c2.cmd("ENABLE UTF8=ACCEPT CONDSTORE")
    tap.eq(u, [b"* ENABLED UTF8=ACCEPT CONDSTORE"], "ENABLE UTF8=ACCEPT CONDSTORE")
    u, t = c2.cmd('LIST "" "Entw*"')
    tap.ok(u and u[0].endswith('"Entwürfe"'.encode()), "UTF-8 mode: names in UTF-8", u)
    tap.eq(status_of(c2.cmd("CREATE \"Résumé\"".encode("utf-8") if False else 'CREATE "Résumé"')[1]), "OK",
           "UTF-8 mode: CREATE a UTF-8 name")
    u, t = c.cmd('LIST "" "R*"')
    tap.ok(u and u[0].endswith(b"R&AOk-sum&AOk-"), "mUTF-7 session sees it in modified UTF-7", u)
    c2.cmd("LOGOUT")
    c2.close()

    # --- APPEND, FETCH byte-exact ----------------------------------------------
    u, t = c.cmd("SELECT INBOX")
    tap.ok(t.startswith(b"t") and b"OK [READ-WRITE]" in t, "SELECT INBOX: READ-WRITE", t)
    tap.ok(find(u, "* 0 EXISTS") and find(u, "* OK [UIDVALIDITY") and find(u, "* OK [UIDNEXT 1]")
           and find(u, "* FLAGS (") and find(u, "* OK [PERMANENTFLAGS (") and find(u, "* 0 RECENT")
           and find(u, "* OK [HIGHESTMODSEQ"), "SELECT untagged responses", u)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(u)).group(1))
    tag = c.tag()
    c.send('%s APPEND INBOX (\\Flagged $Label1) "05-Jan-2026 08:11:05 +0100" {%d}\r\n' % (tag, len(PLAIN)))
    cont = c.line()
    tap.ok(cont.startswith(b"+"), "APPEND: continuation for the synchronising literal", cont)
    c.send(PLAIN + CRLF)
    u, t = c.until_tagged(tag)
    tap.ok(re.match(rb"t\d+ OK \[APPENDUID %d 1\]" % uidvalidity, t), "APPEND: OK [APPENDUID v 1]", t)
    tap.ok(find(u, "* 1 EXISTS"), "APPEND to the selected mailbox: * 1 EXISTS", u)
    for m in (ALT, MIXED, RFC822, BROKEN):
        tag = c.tag()
        c.send(b"%s APPEND INBOX {%d+}\r\n" % (tag.encode(), len(m)) + m + CRLF)
        u, t = c.until_tagged(tag)
        tap.eq(status_of(t), "OK", "APPEND with LITERAL+ (%d octets)" % len(m))
    big = b"".join(b"Line %06d of a large message, padded to be long enough....\r\n" % i
                   for i in range(8000))
    big = b"Subject: big\r\n\r\n" + big
    tag = c.tag()
    c.send(b"%s APPEND INBOX (\\Seen) {%d+}\r\n" % (tag.encode(), len(big)) + big + CRLF)
    u, t = c.until_tagged(tag)
    tap.ok(status_of(t) == "OK" and b"APPENDUID" in t, "APPEND of %d octets (streamed to a file)" % len(big), t)

    u, t = c.cmd("FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    tap.eq(lits(u[0]), [PLAIN], "FETCH BODY.PEEK[] returns the appended bytes exactly")
    tap.ok(b"RFC822.SIZE %d" % len(PLAIN) in u[0], "RFC822.SIZE is the octet count", u[0][:200])
    tap.ok(b'INTERNALDATE "05-Jan-2026 07:11:05 +0000"' in u[0], "INTERNALDATE as given to APPEND", u[0][:200])
    tap.ok(b"FLAGS (\\Flagged \\Recent $Label1)" in u[0], "APPEND flags and keyword kept (\\Recent: this session saw it first)", u[0][:200])
    u, t = c.cmd("FETCH 6 (BODY.PEEK[] BODY.PEEK[]<100.50>)")
    got = items(u[0])
    tap.ok(got.get(b"BODY[]") == big, "big message: BODY[] (streamed), exact")
    tap.ok(got.get(b"BODY[]<100>") == big[100:150], "big message: BODY[]<100.50>, exact")
    u, t = c.cmd("FETCH 6 RFC822.SIZE")
    tap.ok(b"RFC822.SIZE %d" % len(big) in u[0], "big message RFC822.SIZE", u)

    M = imaplib_client(k)
    M.select("INBOX", readonly=True)
    typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (Subject From)])")
    tap.eq(data[0][1], b"From: Alice Example <alice@example.org>\r\nSubject: plain one\r\n\r\n",
           "imaplib: BODY.PEEK[HEADER.FIELDS (Subject From)]")
    typ, data = M.fetch("1", "(BODY.PEEK[TEXT]<6.5>)")
    tap.eq(data[0][1], b"world", "imaplib: BODY.PEEK[TEXT]<6.5>")
    typ, data = M.fetch("1", "(ENVELOPE)")
    tap.ok(b'"Tue, 03 Feb 2026 10:00:00 +0100" "plain one" (("Alice Example" NIL "alice" "example.org"))'
           in data[0] and b'"<p1@example.org>"' in data[0], "ENVELOPE", data)
    M.logout()

    # --- BODYSTRUCTURE and sections of MIME messages ------------------------------
    u, t = c.cmd("FETCH 2:5 (BODYSTRUCTURE)")
    bs = {int(x.split()[1]): x for x in u}
    tap.ok(re.search(rb'BODYSTRUCTURE \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "7BIT" 10 0 '
                     rb'.*\)\("text" "html" \("charset" "utf-8"\) NIL NIL "7BIT" 16 0 .*\) "alternative"',
                     bs[2]), "multipart/alternative BODYSTRUCTURE", bs[2])
    tap.ok(b'"application" "octet-stream" ("name" "a.bin") NIL NIL "base64" 12' in bs[3] and
           b'("attachment" ("filename" "a.bin"))' in bs[3] and b'"mixed"' in bs[3],
           "multipart/mixed with an attachment", bs[3])
    tap.ok(b'"message" "rfc822"' in bs[4] and b'"inner"' in bs[4], "message/rfc822 with its ENVELOPE", bs[4])
    tap.ok(b'BODYSTRUCTURE ("text" "plain"' in bs[5], "malformed multipart (no delimiter): described as text/plain", bs[5])
    u, t = c.cmd("FETCH 3 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[3] BODY.PEEK[9])")
    L = lits(u[0])
    tap.eq(L[0], b"see attached", "BODY[1]")
    tap.eq(L[1], b'Content-Type: application/octet-stream; name="a.bin"\r\n'
                 b'Content-Disposition: attachment; filename="a.bin"\r\n'
                 b"Content-Transfer-Encoding: base64\r\n\r\n", "BODY[2.MIME]")
    tap.eq(L[2], bytes(range(8)), "BINARY[2]: base64 decoded (NUL included, literal8)")
    tap.ok(b"~{8}" in u[0] and b"BINARY.SIZE[2] 8" in u[0], "literal8 and BINARY.SIZE", u[0])
    tap.eq(L[3], "café au lait".encode("latin-1"), "BINARY[3]: quoted-printable decoded")
    tap.ok(b'BODY[9] ""' in u[0], "a part that is not there: empty string", u[0])
    u, t = c.cmd("FETCH 4 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY[2.1])")
    L = lits(u[0])
    tap.eq(L[:2], [INNER.split(b"\r\n\r\n")[0] + b"\r\n\r\n", b"inner body\r\n"],
           "message/rfc822: BODY[2.HEADER] and BODY[2.TEXT]")
    u, t = c.cmd("FETCH 4 (BODY BODYSTRUCTURE)")
    tap.ok(b"BODY ((" in u[0] and b"BODYSTRUCTURE ((" in u[0], "BODY and BODYSTRUCTURE together", u)
    tap.ok(b"FLAGS (\\Seen \\Recent)" in c.cmd("FETCH 4 FLAGS")[0][0], "a non-PEEK section set \\Seen")
    tap.ok(b"\\Seen" not in c.cmd("FETCH 2 FLAGS")[0][0], "BODY.PEEK left \\Seen alone")

    # --- STORE, keywords, SEARCH -------------------------------------------------
    u, t = c.cmd("STORE 2 +FLAGS (\\Answered Work)")
    tap.ok(u and b"FLAGS (\\Answered \\Recent Work)" in u[0], "STORE +FLAGS with a keyword", u)
    u, t = c.cmd("STORE 2 -FLAGS.SILENT (\\Answered)")
    tap.eq(u, [], "STORE -FLAGS.SILENT: no FETCH response")
    u, t = c.cmd("UID STORE 3 FLAGS ($Forwarded)")
    tap.ok(u and b"UID 3" in u[0] and b"FLAGS (\\Recent $Forwarded)" in u[0],
           "UID STORE FLAGS replaces (\\Recent stays); UID in the reply", u)
    tap.eq(status_of(c.cmd("STORE 1 +FLAGS (\\Recent)")[1]), "BAD", "STORE \\Recent: BAD")
    tap.eq(status_of(c.cmd("STORE 99 +FLAGS (\\Seen)")[1]), "BAD", "STORE past the last message: BAD")

    def search(q, uid=False):
        u, t = c.cmd(("UID " if uid else "") + "SEARCH " + q)
        if status_of(t) != "OK":
            return t
        s = find(u, "* SEARCH")
        return [int(x) for x in s[0].split()[2:]] if s else u

    tap.eq(search("ALL"), [1, 2, 3, 4, 5, 6], "SEARCH ALL")
    tap.eq(search("FLAGGED"), [1], "SEARCH FLAGGED")
    tap.eq(search("KEYWORD Work"), [2], "SEARCH KEYWORD")
    tap.eq(search("UNKEYWORD Work UNFLAGGED"), [3, 4, 5, 6], "SEARCH UNKEYWORD UNFLAGGED")
    tap.eq(search("SEEN"), [4, 6], "SEARCH SEEN")
    tap.eq(search('SUBJECT "PLAIN one"'), [1], "SEARCH SUBJECT (case-insensitive)")
    tap.eq(search("FROM dave"), [3], "SEARCH FROM")
    tap.eq(search("TO bob NOT FROM alice"), [2, 3, 4], "SEARCH TO, NOT")
    tap.eq(search('BODY "html text"'), [2], "SEARCH BODY")
    tap.eq(search('TEXT "café"'), [3], "SEARCH TEXT matches decoded quoted-printable (UTF-8)")
    tap.eq(search('CHARSET UTF-8 BODY "CAFÉ"'), [3], "SEARCH CHARSET UTF-8 with 8-bit text, case-folded")
    tap.eq(search('HEADER Message-ID "p1@"'), [1], "SEARCH HEADER")
    tap.eq(search("OR FROM carol FROM frank"), [2, 4], "SEARCH OR")
    tap.eq(search("LARGER 10000"), [6], "SEARCH LARGER")
    sizes = [len(x) for x in (PLAIN, ALT, MIXED, RFC822, BROKEN, big)]
    tap.eq(search("SMALLER %d" % (len(BROKEN) + 1)),
           [i + 1 for i, n in enumerate(sizes) if n < len(BROKEN) + 1], "SEARCH SMALLER")
    tap.eq(search("SENTON 3-Feb-2026"), [1], "SEARCH SENTON (Date: header)")
    tap.eq(search("BEFORE 6-Jan-2026"), [1], "SEARCH BEFORE (internal date)")
    tap.eq(search("2:4 UNSEEN"), [2, 3], "SEARCH sequence set and UNSEEN")
    tap.eq(search("UID 2:3", uid=True), [2, 3], "UID SEARCH UID")
    tap.eq(search("(OR SEEN FLAGGED) NOT LARGER 5000"), [1, 4], "SEARCH parenthesised")
    tap.eq(search("YOUNGER 3600"), [2, 3, 4, 5, 6], "SEARCH YOUNGER (WITHIN)")
    t = search("CHARSET KOI8-R ALL")
    tap.ok(isinstance(t, bytes) and b"[BADCHARSET" in t, "unknown charset: NO [BADCHARSET]", t)
    u, t = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) NOT SEEN")
    tap.ok(u and re.search(rb'^\* ESEARCH \(TAG "t\d+"\) MIN 1 MAX 5 COUNT 4 ALL 1:3,5$', u[0]),
           "ESEARCH RETURN (MIN MAX COUNT ALL)", u)
    u, t = c.cmd("UID SEARCH RETURN (COUNT) ALL")
    tap.ok(u and re.search(rb"^\* ESEARCH \(TAG \"t\d+\"\) UID COUNT 6$", u[0]), "UID SEARCH RETURN (COUNT)", u)

    # Header keys come from the cached ENVELOPE: after FETCH ENVELOPE, a
    # message file rewritten in place (same size, other Subject/From) is not
    # read again by SUBJECT / FROM / HEADER Message-ID.
    u, t = c.cmd("FETCH 1:* (ENVELOPE)")
    tap.eq(status_of(t), "OK", "FETCH 1:* ENVELOPE fills the cache")
    inbox = k.maildir("bob")
    patched = []
    for sub in ("cur", "new"):
        for name in os.listdir(os.path.join(inbox, sub)):
            path = os.path.join(inbox, sub, name)
            with open(path, "rb") as f:
                data = f.read()
            if b"Subject: plain one" in data:
                with open(path, "r+b") as f:
                    f.write(data.replace(b"Subject: plain one", b"Subject: XXXXX one")
                            .replace(b"Alice Example <alice@", b"Zzzzz Example <zzzzz@").replace(b"<p1@", b"<q9@"))
                patched.append((path, data))
    tap.eq(len(patched), 1, "the first message's file found and rewritten")
    tap.eq(search('SUBJECT "PLAIN one"'), [1], "SEARCH SUBJECT after FETCH ENVELOPE: from the cache")
    tap.eq(search("SUBJECT XXXXX"), [], "SEARCH SUBJECT does not read the rewritten file")
    tap.eq(search("FROM ALICE"), [1], "SEARCH FROM from the cached ENVELOPE (case-insensitive)")
    tap.eq(search('HEADER Message-ID "p1@"'), [1], "SEARCH HEADER Message-ID from the cache")
    for path, data in patched:
        with open(path, "r+b") as f:
            f.write(data)

    # --- COPY, MOVE, EXPUNGE -----------------------------------------------------
    u, t = c.cmd("COPY 1:2 Archive")
    tap.ok(re.search(rb"OK \[COPYUID \d+ 1:2 1:2\]", t), "COPY: OK [COPYUID v 1:2 1:2]", t)
    tap.ok(b"[TRYCREATE]" in c.cmd("COPY 1 Nowhere")[1], "COPY to a missing mailbox: NO [TRYCREATE]")
    u, t = c.cmd("UID MOVE 5 Trash")
    tap.ok(find(u, "* OK [COPYUID") and find(u, "* 5 EXPUNGE") and status_of(t) == "OK",
           "UID MOVE: COPYUID, then * 5 EXPUNGE", u)
    u, t = c.cmd("STATUS Trash (MESSAGES UIDNEXT UNSEEN SIZE)")
    tap.ok(u and re.search(rb"\* STATUS Trash \(MESSAGES 1 UIDNEXT 2 UNSEEN 1 SIZE %d\)" % len(BROKEN), u[0]),
           "STATUS of the target", u)
    u, t = c.cmd('LIST "" "Archive" RETURN (STATUS (MESSAGES))')
    tap.ok(len(u) == 2 and u[1] == b"* STATUS Archive (MESSAGES 2)", "LIST RETURN (STATUS (MESSAGES))", u)
    c.cmd("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    u, t = c.cmd("UID EXPUNGE 2")
    tap.eq(u, [b"* 2 EXPUNGE"], "UID EXPUNGE 2 removes only UID 2")
    u, t = c.cmd("EXPUNGE")
    tap.eq(u, [b"* 1 EXPUNGE"], "EXPUNGE removes the other \\Deleted one")
    tap.eq(search("ALL"), [1, 2, 3], "three messages left")
    u, t = c.cmd("UID COPY 4 Junk")
    tap.ok(re.search(rb"OK \[COPYUID \d+ 4 1\]", t), "UID COPY: COPYUID", t)
    u, t = c.cmd("MOVE 3 Junk")
    tap.ok(find(u, "* OK [COPYUID") and u[-1] == b"* 3 EXPUNGE", "MOVE (sequence number): COPYUID, * 3 EXPUNGE", u)
    u, t = c.cmd("STATUS Junk (MESSAGES)")
    tap.eq(u, [b"* STATUS Junk (MESSAGES 2)"], "both arrived in Junk")
    c.cmd("UID MOVE 1:* INBOX")  # nothing to move from INBOX to INBOX
    c.cmd("SELECT Junk")
    u, t = c.cmd("MOVE 1:* INBOX")
    tap.ok(len([x for x in u if x.endswith(b" EXPUNGE")]) == 2, "MOVE 1:* back to INBOX: two expunges", u)
    c.cmd("SELECT INBOX")
    tap.eq(search("ALL"), [1, 2, 3, 4], "INBOX has them again")

    # --- EXAMINE is read-only; CLOSE expunges, UNSELECT does not --------------
    u, t = c.cmd("EXAMINE Archive")
    tap.ok(b"[READ-ONLY]" in t and find(u, "* 2 EXISTS"), "EXAMINE: READ-ONLY", t)
    tap.ok(b"[READ-ONLY]" in c.cmd("STORE 1 +FLAGS (\\Deleted)")[1], "STORE in EXAMINE: NO [READ-ONLY]")
    c.cmd("FETCH 1 BODY[]")
    tap.ok(b"\\Seen" not in c.cmd("FETCH 1 FLAGS")[0][0], "EXAMINE: BODY[] does not set \\Seen")
    c.cmd("SELECT Archive")
    c.cmd("STORE 1 +FLAGS (\\Deleted)")
    tap.eq(status_of(c.cmd("UNSELECT")[1]), "OK", "UNSELECT")
    tap.eq(status_of(c.cmd("FETCH 1 FLAGS")[1]), "BAD", "FETCH after UNSELECT: BAD (no mailbox)")
    u, t = c.cmd("SELECT Archive")
    tap.ok(find(u, "* 2 EXISTS"), "UNSELECT did not expunge", u)
    u, t = c.cmd("CLOSE")
    tap.eq((u, status_of(t)), ([], "OK"), "CLOSE: silent")
    u, t = c.cmd("STATUS Archive (MESSAGES)")
    tap.eq(u, [b"* STATUS Archive (MESSAGES 1)"], "CLOSE expunged the \\Deleted message")
    tap.eq(status_of(c.cmd("CHECK")[1]), "BAD", "CHECK without a mailbox: BAD")
    c.cmd("SELECT INBOX")
    tap.eq(status_of(c.cmd("CHECK")[1]), "OK", "CHECK")
    tap.eq(status_of(c.cmd("NOOP")[1]), "OK", "NOOP")

    # --- APPEND errors ---------------------------------------------------------
    tap.ok(b"[TRYCREATE]" in c.cmd('APPEND Nowhere {5+}\r\nhello')[1], "APPEND to a missing mailbox: NO [TRYCREATE]")
    tap.eq(status_of(c.cmd('APPEND INBOX (\\Bogus) {5+}\r\nhello')[1]), "BAD", "APPEND with an unknown system flag: BAD")
    tap.eq(status_of(c.cmd('APPEND INBOX "31-Feb-2026 00:00:00 +0000" {5+}\r\nhello')[1]), "BAD",
           "APPEND with an impossible date: BAD")
    c.cmd("LOGOUT")
    c.close()

    # --- a big attachment: its section is streamed, BINARY decodes it -------------
    import base64
    blob = bytes((i * 7 + i // 251) % 256 for i in range(300000))
    b64 = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    att = (b'Subject: attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="z"\r\n\r\n'
           b"--z\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n--z\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64 + b"--z--\r\n")
    c = Raw(port)
    c.login("bob", "pw")
    c.cmd("CREATE Big")
    u, t = c.cmd(b"APPEND Big {%d+}\r\n" % len(att) + att)
    c.cmd("SELECT Big")
    u, t = c.cmd("FETCH 1 (BODY.PEEK[2] UID BODY.PEEK[1] BINARY.SIZE[2])")
    got = items(u[0]) if u else {}
    tap.ok(got.get(b"BODY[2]") == b64[:-2], "a 400 KB attachment: BODY[2] (streamed last) byte-exact")
    tap.ok(got.get(b"BODY[1]") == b"see the file" and b"UID 1" in u[0] and
           b"BINARY.SIZE[2] %d" % len(blob) in u[0], "... with the other items of the message", u[0][:200])
    u, t = c.cmd("FETCH 1 (BINARY.PEEK[2])")
    got = items(u[0]) if u else {}
    tap.ok(got.get(b"BINARY[2]") == blob, "BINARY[2]: the %d decoded octets, exact" % len(blob))
    u, t = c.cmd("FETCH 1 (BINARY.PEEK[2]<1000.2000> BODY.PEEK[2]<100000.300000>)")
    got = items(u[0]) if u else {}
    tap.ok(got.get(b"BINARY[2]<1000>") == blob[1000:3000] and
           got.get(b"BODY[2]<100000>") == b64[100000:400000 - 2 if len(b64) - 2 < 400000 else 400000],
           "partials of both, exact")
    u, t = c.cmd("FETCH 1 (BODY.PEEK[2] BINARY.PEEK[2] BODY.PEEK[2] BODY.PEEK[1] BODY.PEEK[] FLAGS)")
    r = u[0] if u else b""
    L = lits(r)
    tap.ok(len(L) == 5 and L[0] == b64[:-2] and L[1] == blob and L[2] == b64[:-2] and
           L[3] == b"see the file" and L[4] == att and r.startswith(b"* 1 FETCH (FLAGS (\\Recent) BODY[2] {")
           and r.endswith(b"\r\n)"), "several big sections in one response, each streamed in turn", r[:100])
    c.cmd("LOGOUT")

    # --- RENAME INBOX, DELETE of the selected mailbox --------------------------
    c = Raw(port)
    c.login("bob", "pw")
    u, t = c.cmd("STATUS INBOX (MESSAGES)")
    n_inbox = int(re.search(rb"MESSAGES (\d+)", u[0]).group(1))
    tap.eq(status_of(c.cmd("RENAME INBOX Old-Inbox")[1]), "OK", "RENAME INBOX")
    u, t = c.cmd("STATUS Old-Inbox (MESSAGES)")
    tap.eq(u, [b"* STATUS Old-Inbox (MESSAGES %d)" % n_inbox], "RENAME INBOX moved its %d messages" % n_inbox)
    u, t = c.cmd("STATUS INBOX (MESSAGES)")
    tap.eq(u, [b"* STATUS INBOX (MESSAGES 0)"], "... and INBOX is there, empty")
    c.cmd("SELECT Old-Inbox")
    u, t = c.cmd("DELETE Old-Inbox")
    tap.ok(status_of(t) == "OK" and find(u, "* OK [CLOSED]"), "DELETE of the selected mailbox: OK, [CLOSED]", (u, t))
    tap.eq(status_of(c.cmd("FETCH 1 FLAGS")[1]), "BAD", "... and no mailbox is selected any more")

    # --- IMAP4rev2 -----------------------------------------------------------------
    u, t = c.cmd("ENABLE IMAP4rev2")
    tap.eq(u, [b"* ENABLED IMAP4rev2"], "ENABLE IMAP4rev2")
    c.cmd("CREATE Deep/Down/Below")
    u, t = c.cmd("SELECT Sent")
    tap.ok(not find(u, "* 0 RECENT") and find(u, "* 0 EXISTS"), "IMAP4rev2 SELECT: no RECENT", u)
    tap.ok(find(u, '* LIST (\\Sent) "/" Sent'), "IMAP4rev2 SELECT: the mailbox's LIST response", u)
    u, t = c.cmd("SEARCH ALL")
    tap.ok(u and re.match(rb'\* ESEARCH \(TAG "t\d+"\)$', u[0]), "IMAP4rev2 SEARCH answers ESEARCH", u)
    u, t = c.cmd('LIST "" "Deep/*"')
    tap.ok(any(x.endswith(b'"/" Deep/Down') and b"\\NonExistent" in x for x in u),
           "IMAP4rev2 LIST: a missing level is \\NonExistent", u)
    c.cmd("SUBSCRIBE Deep/Down/Below")
    u, t = c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "Deep/%"')
    tap.eq(u, [b'* LIST (\\NonExistent \\HasChildren) "/" Deep/Down ("CHILDINFO" ("SUBSCRIBED"))'],
           "LIST (SUBSCRIBED RECURSIVEMATCH): CHILDINFO")
    u, t = c.cmd('LIST "" "Deep/Down/*" RETURN (SUBSCRIBED CHILDREN)')
    tap.eq(u, [b'* LIST (\\HasNoChildren \\Subscribed) "/" Deep/Down/Below'], "LIST RETURN (SUBSCRIBED CHILDREN)")
    u, t = c.cmd('LSUB "" "Deep/%"')
    tap.eq(u, [b'* LSUB (\\Noselect) "/" Deep/Down'], "LSUB %: the unsubscribed level above is \\Noselect")

    # --- MIME bombs: nesting and part counts are bounded ----------------------
    depth = 300
    nest = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
                    for i in range(depth))
    bomb1 = b"Subject: deep\r\nMIME-Version: 1.0\r\n" + nest + b"Content-Type: text/plain\r\n\r\ncore\r\n"
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(5000))
    bomb2 = (b'Subject: wide\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
             + parts + b"--p--\r\n")
    c.cmd("SELECT INBOX")
    for name, m in (("300 nested multiparts", bomb1), ("5000 parts", bomb2)):
        c.cmd(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
        t0 = time.time()
        u, t = c.cmd("FETCH * (BODYSTRUCTURE BODY.PEEK[1.1.1])")
        dt = time.time() - t0
        bs = u[0] if u else b""
        tap.ok(status_of(t) == "OK" and bs.count(b"(") == bs.count(b")") and len(bs) < 1000000 and dt < 10,
               "%s: a bounded, balanced BODYSTRUCTURE (%d octets, %.2fs)" % (name, len(bs), dt), bs[:300])
    c.cmd("LOGOUT")

    # --- envelope-only cache, upgraded to the full structure on demand ---------
    # FETCH ENVELOPE reads only the header and caches the ENVELOPE alone; the
    # first BODYSTRUCTURE parses the whole message (its file as it is then) and
    # caches everything; after that neither is read from the file again.
    c = Raw(port)
    c.login("bob", "pw")
    c.cmd("CREATE Up")
    c.cmd(b"APPEND Up {%d+}\r\n" % len(MIXED) + MIXED)
    c.cmd("SELECT Up")
    u, t = c.cmd("FETCH 1 (ENVELOPE)")
    tap.ok(u and b'"with attachment"' in u[0], "envelope-only: FETCH ENVELOPE", u)
    up_dir = os.path.join(k.maildir("bob"), ".Up")
    up_files = [os.path.join(up_dir, d, n) for d in ("cur", "new") for n in os.listdir(os.path.join(up_dir, d))]
    tap.eq(len(up_files), 1, "the message's file")

    def rewrite(frm, to):
        with open(up_files[0], "rb") as f:
            data = f.read()
        with open(up_files[0], "r+b") as f:
            f.write(data.replace(frm[0], to[0]).replace(frm[1], to[1], 1))

    rewrite((b"Subject: with attachment", b"Content-Type: text/plain"),  # the first part's
            (b"Subject: WITH ATTACHMENT", b"Content-Type: text/x-abc"))
    u, t = c.cmd("FETCH 1 (ENVELOPE)")
    tap.ok(u and b'"with attachment"' in u[0], "envelope-only: the ENVELOPE comes from the cache", u)
    u, t = c.cmd("FETCH 1 (BODYSTRUCTURE ENVELOPE)")
    tap.ok(u and b'("text" "x-abc"' in u[0] and b'"WITH ATTACHMENT"' in u[0],
           "upgrade: BODYSTRUCTURE parses the whole message (the file as it is now)", u)
    u, t = c.cmd("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME])")
    tap.ok(u and lits(u[0])[0] == b"see attached", "upgrade: sections from the new part table", u)
    rewrite((b"Subject: WITH ATTACHMENT", b"Content-Type: text/x-abc"),
            (b"Subject: with attachment", b"Content-Type: text/plain"))
    u, t = c.cmd("FETCH 1 (ENVELOPE BODY)")
    tap.ok(u and b'"WITH ATTACHMENT"' in u[0] and b'("text" "x-abc"' in u[0],
           "upgraded: ENVELOPE and BODY from the full cache blob, the file not read again", u)
    # SEARCH on address fields: the fast path (plain ASCII) and the decoding
    # path (encoded words, 8-bit needles) give the same answers; groups and
    # missing parts as the ENVELOPE has them
    GRP = msg("From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.org>",
              "To: undisclosed-recipients:;", "Cc: Team: a@x.org, Bee <b@y.org>;",
              "Bcc: nodomain", "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?= and more", "", "x")
    c.cmd(b"APPEND Up {%d+}\r\n" % len(GRP) + GRP)
    c.cmd("NOOP")
    for rnd in ("first (header parsed)", "again (from the cache)"):
        tap.eq(search("FROM jm@example"), [2], "SEARCH FROM plain part, %s" % rnd)
        tap.eq(search('CHARSET UTF-8 FROM "jürgen müller"'), [2], "SEARCH FROM decoded name, %s" % rnd)
        tap.eq(search('FROM "=?utf-8"'), [], "SEARCH FROM does not match the encoded form, %s" % rnd)
        tap.eq(search('FROM "Jm@Example.ORG"'), [2], "SEARCH FROM ignores ASCII case, %s" % rnd)
        tap.eq(search('CC "team:a@x.org, bee <b@y.org>;"'), [2], "SEARCH CC over a whole group, %s" % rnd)
        tap.eq(search('TO "undisclosed-recipients:;"'), [2], "SEARCH TO an empty group, %s" % rnd)
        tap.eq(search('BCC "nodomain@"'), [2], "SEARCH BCC: missing domain, %s" % rnd)
        tap.eq(search('BCC "MISSING"'), [], "SEARCH BCC: MISSING_DOMAIN is not text, %s" % rnd)
        tap.eq(search('CHARSET UTF-8 SUBJECT "GRÜSSE"'), [2], "SEARCH SUBJECT decoded and folded, %s" % rnd)
        tap.eq(search('SUBJECT "and MORE"'), [2], "SEARCH SUBJECT with an encoded word, ASCII needle, %s" % rnd)
        tap.eq(search("OR FROM dave FROM jm"), [1, 2], "SEARCH OR over two messages, %s" % rnd)

    # --- top-level header sections (read from the header alone) ---------------
    # Each message is also stored as the message/rfc822 body of a wrapper (same
    # line ends), whose BODY[1.HEADER...] goes through the full MIME parse: the
    # two must be byte for byte the same.
    def with_nl(nl, *lines):
        return nl.join(lines).encode()

    big = "".join("Received: from h%d by mx\r\n\tid %d;\r\n" % (i, i) for i in range(600))
    huge = "".join("X-Pad-%d: %s\r\n" % (i, "y" * 60) for i in range(4500))
    HDRS = [
        ("plain", PLAIN),
        ("folded, duplicates, odd case", with_nl("\r\n", "From: a@example.org", "Subject: one",
                                                 "\tfolded", "X-Empty:", "subject: two", "TO : t@x",
                                                 "", "body", "")),
        ("LF only", with_nl("\n", "From: a@example.org", "Subject: lf", "  folded", "Date: x",
                            "", "body", "")),
        ("no blank line, no line end", b"From: a@example.org\r\nSubject: end"),
        ("no body", b"From: a@example.org\r\nSubject: nobody\r\n\r\n"),
        ("header past the first read window", ("From: a@example.org\r\nSubject: big\r\n" + big +
                                                "Message-ID: <m@x>\r\n\r\nbody\r\n").encode()),
        ("header over 256 KiB", ("Subject: huge\r\n" + huge + "From: z@x\r\n\r\nbody\r\n").encode()),
        ("multipart", MIXED),
    ]
    tap.eq(status_of(c.cmd("CREATE Hdr")[1]), "OK", "CREATE Hdr")
    for name, m in HDRS:
        nl = b"\n" if b"\r\n" not in m else b"\r\n"
        wrap = b"Subject: wrapper" + nl + b"Content-Type: message/rfc822" + nl + nl + m
        for x in (m, wrap):
            u, t = c.cmd(b"APPEND Hdr {%d+}\r\n" % len(x) + x)
            tap.ok(status_of(t) == "OK", "APPEND %s (%d octets)" % (name, len(x)), t)
    c.cmd("SELECT Hdr")
    probes = [("BODY.PEEK[%sHEADER]", ""),
              ("BODY.PEEK[%sHEADER.FIELDS (From To Subject Date Message-ID)]", ""),
              ("BODY.PEEK[%sHEADER.FIELDS (subject x-empty RECEIVED)]", ""),
              ("BODY.PEEK[%sHEADER.FIELDS.NOT (Subject Received x-pad-7)]", ""),
              ("BODY.PEEK[%sHEADER]", "<7.9000>"),
              ("BODY.PEEK[%sHEADER.FIELDS (Subject)]", "<3.5>"),
              ("BODY.PEEK[%sHEADER]", "<400000.5>")]
    for i, (name, m) in enumerate(HDRS):
        seq = 2 * i + 1
        q = " ".join(p % "" + part for p, part in probes)
        w = " ".join(p % "1." + part for p, part in probes)
        u1, t1 = c.cmd("FETCH %d (%s RFC822.HEADER)" % (seq, q))
        u2, t2 = c.cmd("FETCH %d (%s BODY.PEEK[1.HEADER])" % (seq + 1, w))
        a, b = lits(b"".join(u1)), lits(b"".join(u2))
        tap.ok(status_of(t1) == "OK" and len(a) == len(probes) + 1 and a == b,
               "%s: top-level header sections == the full parse's BODY[1.HEADER...]" % name,
               [(x[:80], y[:80]) for x, y in zip(a, b) if x != y] or (t1, t2, len(a), len(b)))
        hdr = m[:m.find(b"\n\n") + 2] if b"\n\n" in m else m[:m.find(b"\r\n\r\n") + 4] \
            if b"\r\n\r\n" in m else m
        wire = re.sub(rb"(?<!\r)\n", b"\r\n", hdr)
        tap.ok(a and a[0] == wire and a[-1] == wire,
               "%s: BODY[HEADER] and RFC822.HEADER are the header in wire form" % name, a[:1])
    u, t = c.cmd("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT to)])")
    tap.eq(lits(u[0]), [b"Subject: one\r\n\tfolded\r\nsubject: two\r\nTO : t@x\r\n\r\n"],
           "HEADER.FIELDS: every occurrence, folded as it was, names without case")
    tap.ok(b"\\Seen" not in c.cmd("FETCH 1 FLAGS")[0][0], "BODY.PEEK[HEADER] / RFC822.HEADER left \\Seen alone")
    u, t = c.cmd("FETCH 1 (BODY[HEADER.FIELDS (Subject)])")
    tap.ok(b"FLAGS (\\Seen" in u[0] and b"Subject: plain one\r\n\r\n" in u[0],
           "BODY[HEADER.FIELDS] (not PEEK) set \\Seen and said so", u)
    u, t = c.cmd("FETCH 3 (BODY[HEADER]<0.4>)")
    tap.ok(b"FLAGS (\\Seen" in u[0] and lits(u[0]) == [b"From"], "BODY[HEADER]<0.4> set \\Seen", u)
    c.cmd("LOGOUT")

    # --- users are separate ---------------------------------------------------
    e = Raw(port)
    e.login("eve", "pw2")
    u, t = e.cmd("SELECT INBOX")
    tap.ok(find(u, "* 0 EXISTS"), "another user sees an empty INBOX", u)
    u, t = e.cmd('LIST "" "*"')
    tap.ok(not any(b"Entw" in x or b"v1.2" in x for x in u), "... and none of bob's folders", u)
    e.cmd("LOGOUT")

    # --- SELECT: RECENT and [UNSEEN n] ------------------------------------------
    # The first session claims the new messages (RECENT 4), the next sees
    # none; [UNSEEN n] is the first message without \Seen, after the
    # session's own flag changes too, and absent when all are seen.
    e = Raw(port)
    e.login("eve", "pw2")
    for i in range(4):
        m = b"Subject: u%d\r\n\r\nx\r\n" % i
        e.cmd(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
    e.cmd("LOGOUT")
    e = Raw(port)
    e.login("eve", "pw2")
    u, t = e.cmd("SELECT INBOX")
    tap.ok(find(u, "* 4 RECENT") and find(u, "* OK [UNSEEN 1]"), "first SELECT: RECENT 4, UNSEEN 1", u)
    e.cmd("STORE 1:2 +FLAGS.SILENT (\\Seen)")
    u, t = e.cmd("SELECT INBOX")
    tap.ok(find(u, "* 0 RECENT") and find(u, "* OK [UNSEEN 3]"),
           "SELECT again after \\Seen on 1:2: RECENT 0, UNSEEN 3", u)
    f = Raw(port)
    f.login("eve", "pw2")
    u, t = f.cmd("EXAMINE INBOX")
    tap.ok(find(u, "* 0 RECENT") and find(u, "* OK [UNSEEN 3]"), "another session: RECENT 0, UNSEEN 3", u)
    e.cmd("STORE 3:4 +FLAGS.SILENT (\\Seen)")
    u, t = e.cmd("SELECT INBOX")
    tap.ok(not any(b"[UNSEEN" in x for x in u), "all seen: no [UNSEEN n]", u)
    f.cmd("LOGOUT")
    e.cmd("LOGOUT")

tap.done()

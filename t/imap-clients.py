#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# imap-clients.py - real IMAP clients against kurird (default config: logins
# only under TLS): curl imap:// with STARTTLS (list, fetch byte-exact,
# search, upload) and imaps://, curl in clear refused; mbsync (isync)
# syncing every folder to a local Maildir over STARTTLS and back again
# (flags, deletions and new messages both ways); mutt in batch mode sending
# a message over SMTP and saving its copy in the IMAP Sent folder.
import imaplib
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from imapkit import imap_config, send_mail, tls_context  # noqa: E402


def have(tool):
    return shutil.which(tool) is not None


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=120, **kw)


def curl(*args):
    return run(["curl", "-s", "-S", "--max-time", "30", "-u", "bob:pw"] + list(args))


def imaps(k):
    M = imaplib.IMAP4_SSL("127.0.0.1", k.port("imaps"), ssl_context=tls_context())
    M.login("bob", "pw")
    return M


def wire(b):
    """Stored bytes as IMAP sends them (bare LF -> CRLF), without the
    X-TUID header mbsync adds to the messages it copies."""
    b = re.sub(rb"(?<!\r)\n", b"\r\n", b)
    return re.sub(rb"(?m)^X-TUID: [^\r]*\r\n", b"", b)


M1 = b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: first\r\n\r\nfirst body\r\n"
M2 = b"From: carol@example.org\r\nTo: bob@localhost\r\nSubject: second\r\n\r\nsecond body\r\n"
M3 = b"From: dave@example.org\r\nTo: bob@localhost\r\nSubject: third\r\n\r\nthird body\r\n"

conf = imap_config(plaintext=False)
with Kurird(config=conf) as k:
    k.add_user("bob@localhost", "pw")
    for m in (M1, M2, M3):
        send_mail(k, "bob@localhost", m)
    k.wait_for(lambda: len(k.messages("bob")) >= 3, timeout=20)
    stored = k.messages("bob")
    port, sport = k.port("imap"), k.port("imaps")
    cert = os.path.join(k.dir, "tls", "cert.pem")

    # --- curl ----------------------------------------------------------------
    r = curl("imap://127.0.0.1:%d/" % port)
    tap.ok(r.returncode != 0, "curl imap:// in clear: refused (LOGINDISABLED)", r.stderr)
    r = curl("--ssl-reqd", "-k", "imap://127.0.0.1:%d/" % port)
    tap.ok(r.returncode == 0 and b'"/" INBOX' in r.stdout and b"\\Sent" in r.stdout,
           "curl imap:// with STARTTLS: LIST", r.stdout + r.stderr)
    r = curl("--ssl-reqd", "-k", "imap://127.0.0.1:%d/INBOX;UID=2" % port)
    bodies = {wire(s) for s in stored}
    tap.ok(r.returncode == 0 and r.stdout in bodies and b"Subject: " in r.stdout,
           "curl imap://.../INBOX;UID=2: a whole message, byte-exact", r.stdout + r.stderr)
    r = curl("--ssl-reqd", "-k", "imap://127.0.0.1:%d/INBOX?SUBJECT%%20third" % port)
    m = re.match(rb"\* SEARCH (\d+)\r?\n?$", r.stdout)
    hit = curl("--ssl-reqd", "-k", "imap://127.0.0.1:%d/INBOX;MAILINDEX=%s" % (port, m.group(1).decode())) if m else None
    tap.ok(r.returncode == 0 and m and b"Subject: third" in hit.stdout, "curl imap:// SEARCH finds the message",
           r.stdout + r.stderr)
    r = curl("-k", "imaps://127.0.0.1:%d/INBOX;UID=1;SECTION=HEADER.FIELDS%%20(SUBJECT)" % sport)
    tap.ok(r.returncode == 0 and r.stdout.strip() in (b"Subject: first", b"Subject: second", b"Subject: third"),
           "curl imaps:// (implicit TLS): a header section", r.stdout + r.stderr)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        up = b"From: curl@example.org\r\nSubject: uploaded by curl\r\n\r\nup\r\n"
        f.write(up)
    r = curl("-k", "-T", f.name, "imaps://127.0.0.1:%d/Drafts" % sport)
    os.unlink(f.name)
    M = imaps(k)
    M.select("Drafts")
    typ, data = M.fetch("1", "(BODY.PEEK[])")
    tap.ok(r.returncode == 0 and data[0][1] == up, "curl -T imaps://.../Drafts: APPEND, byte-exact",
           (r.stderr, data))
    M.logout()

    # --- mbsync ------------------------------------------------------------------
    if not have("mbsync"):
        tap.ok(True, "# SKIP mbsync not installed")
    else:
        work = tempfile.mkdtemp(prefix="kurir-mbsync-")
        local = os.path.join(work, "mail") + "/"
        os.makedirs(local)
        rc = os.path.join(work, "mbsyncrc")
        with open(rc, "w") as f:
            f.write("""IMAPAccount kurir
Host 127.0.0.1
Port %d
User bob
Pass pw
SSLType STARTTLS
CertificateFile %s
SystemCertificates no

IMAPStore remote
Account kurir

MaildirStore local
Path %s
Inbox %sINBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Remove None
Expunge Both
SyncState *
""" % (port, cert, local, local))
        M = imaps(k)
        M.create("Work/Projects")
        M.append("Work/Projects", "(\\Flagged)", None, M2)
        M.logout()

        def sync():
            return run(["mbsync", "-c", rc, "-a"], cwd=work)

        def local_files(box):
            out = {}
            for sub in ("cur", "new"):
                d = os.path.join(local, box, sub)
                if os.path.isdir(d):
                    for n in os.listdir(d):
                        out[n] = open(os.path.join(d, n), "rb").read()
            return out

        r = sync()
        tap.ok(r.returncode == 0, "mbsync -a (STARTTLS): exit 0", r.stderr.decode(errors="replace"))
        inbox = local_files("INBOX")
        tap.eq(sorted(wire(b) for b in inbox.values()), sorted(wire(s) for s in stored),
               "mbsync: INBOX synced, every message byte-exact")
        proj = local_files("Work/Projects")
        tap.ok(len(proj) == 1 and any(re.search(r":2,.*F", n) for n in proj),
               "mbsync: Work/Projects synced with its \\Flagged flag", proj.keys())
        tap.ok(all(os.path.isdir(os.path.join(local, b)) for b in ("Sent", "Trash", "Drafts", "Junk", "Archive")),
               "mbsync: the special-use folders too", os.listdir(local))
        # local changes: mark one seen, delete one, add one
        names = sorted(n for n in os.listdir(os.path.join(local, "INBOX", "cur")))
        seen_name, gone_name = names[0], names[1]
        d = os.path.join(local, "INBOX", "cur")
        seen_body = open(os.path.join(d, seen_name), "rb").read()
        gone_body = open(os.path.join(d, gone_name), "rb").read()
        os.rename(os.path.join(d, seen_name), os.path.join(d, seen_name.split(":2,")[0] + ":2,S"))
        os.rename(os.path.join(d, gone_name), os.path.join(d, gone_name.split(":2,")[0] + ":2,T"))
        new = b"From: bob@localhost\nSubject: written locally\n\nlocal body\n"
        with open(os.path.join(local, "Work", "Projects", "new", "123.local.host"), "wb") as f:
            f.write(new)
        r = sync()
        tap.ok(r.returncode == 0, "mbsync again after local changes", r.stderr.decode(errors="replace"))
        M = imaps(k)
        M.select("INBOX")
        typ, data = M.fetch("1:*", "(FLAGS BODY.PEEK[])")
        server = [(x[0], x[1]) for x in data if isinstance(x, tuple)]
        tap.eq(len(server), 2, "the message deleted locally was expunged on the server")
        tap.ok(all(wire(gone_body) != b for _, b in server), "... the right one")
        tap.ok(any(b"\\Seen" in h and b == wire(seen_body) for h, b in server),
               "the message marked seen locally is \\Seen on the server", server)
        M.select("Work/Projects")
        typ, data = M.fetch("1:*", "(BODY.PEEK[])")
        bodies = [x[1] for x in data if isinstance(x, tuple)]
        tap.ok(wire(new) in [wire(b) for b in bodies],
               "the message written locally was appended to Work/Projects", bodies)
        # server-side change, synced down
        M.select("INBOX")
        M.store("1", "+FLAGS", "(\\Flagged)")
        M.logout()
        r = sync()
        inbox = local_files("INBOX")
        tap.ok(r.returncode == 0 and any(re.search(r":2,F", n) for n in inbox),
               "a flag set on the server reaches the local Maildir", inbox.keys())
        shutil.rmtree(work, ignore_errors=True)

    # --- mutt (batch mode) -----------------------------------------------------------
    if not have("mutt"):
        tap.ok(True, "# SKIP mutt not installed")
    else:
        work = tempfile.mkdtemp(prefix="kurir-mutt-")
        rc = os.path.join(work, "muttrc")
        with open(rc, "w") as f:
            f.write("""set from="bob@localhost"
set realname="Bob"
set smtp_url="smtp://127.0.0.1:%d/"
set ssl_starttls=yes
set ssl_force_tls=yes
set certificate_file="%s/certs"
set ssl_verify_host=no
set imap_user="bob"
set imap_pass="pw"
set folder="imaps://127.0.0.1:%d/"
set record="=Sent"
set copy=yes
set spoolfile="+INBOX"
set header_cache=""
set message_cachedir=""
""" % (k.port("smtp"), work, sport))
        # mutt trusts certificates found in certificate_file
        shutil.copy(cert, os.path.join(work, "certs"))
        r = run(["mutt", "-n", "-F", rc, "-s", "sent by mutt", "--", "bob@localhost"],
                input=b"Hello from mutt.\n", env=dict(os.environ, HOME=work, TERM="dumb"))
        tap.ok(r.returncode == 0, "mutt -s (batch): exit 0", r.stdout + r.stderr)
        M = imaps(k)
        typ, data = M.select("Sent")
        typ, data = M.search(None, 'SUBJECT "sent by mutt"')
        tap.ok(data and data[0].split(), "mutt saved its copy in Sent over IMAP (APPEND)", data)
        if data and data[0].split():
            typ, body = M.fetch(data[0].split()[0], "(BODY.PEEK[TEXT])")
            tap.ok(b"Hello from mutt." in body[0][1], "... with its body", body)
        M.logout()
        tap.ok(k.wait_for(lambda: any(b"sent by mutt" in m for m in k.messages("bob")), timeout=20),
               "and the message itself was delivered over SMTP")
        shutil.rmtree(work, ignore_errors=True)

tap.done()

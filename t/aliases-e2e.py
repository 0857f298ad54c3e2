#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# aliases-e2e.py - aliases, :include:, forward files end to end, through a
# real kurird: an alias to two users (one copy each, Delivered-To added,
# owner-NAME as the copy's sender); :include: lists; alias loops and
# Delivered-To loops bounce with 5.4.6 (never loop); postmaster and
# MAILER-DAEMON work without a user; RCPT accepts alias names and refuses
# unknown names; a virtual user's forward file and a system user's
# ~/.forward (passwd_file) redirect mail, and one that is group/world
# writable, owned by someone else or a symlink is ignored and logged;
# commands are refused unless allowed, run as default_user when allowed,
# and a failing command's output reaches the bounce; huge expansions
# bounce with 5.5.3; include loops bounce; the file is reloaded when it
# changes; `kurir aliases check` reports FILE:LINE.
import os
import re
import smtplib
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import Kurird, tap  # noqa: E402
from smtpkit import config, set_group  # noqa: E402

IS_ROOT = os.geteuid() == 0


def send(k, rcpts, body=None, sender="alice@localhost", headers=""):
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
    s.ehlo("client.example")
    if body is None:
        body = "Subject: test %s\r\n%s\r\nhello\r\n" % (",".join(rcpts), headers)
    refused = s.sendmail(sender, rcpts, body)
    s.quit()
    return refused


def rcpt_code(k, rcpt):
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=15)
    s.ehlo("client.example")
    s.mail("alice@localhost")
    code, _ = s.rcpt(rcpt)
    s.quit()
    return code


def msgs_with(k, user, needle, domain="localhost"):
    return [m for m in k.messages(user, domain) if needle.encode() in m]


def header(msg, name):
    head = msg.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    return [line.split(":", 1)[1].strip() for line in head.split("\n")
            if line.lower().startswith(name.lower() + ":")]


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


conf = config()
conf = set_group(conf, "queue", min_backoff="1s", max_backoff="2s")
# --- the main run: aliases, includes, loops, postmaster, forward files ------------------------
k = Kurird(config=conf)
d = k.dir
lists = os.path.join(d, "lists")
os.makedirs(lists)
write(os.path.join(lists, "staff"), "# staff\ncarol\n\ndave, alice\n")
write(os.path.join(lists, "loop-a"), ":include:%s/loop-b\n" % lists)
write(os.path.join(lists, "loop-b"), "bob, :include:%s/loop-a\n" % lists)
passwd = os.path.join(d, "passwd")
home = os.path.join(d, "home", "sysuser")
os.makedirs(home)
write(passwd, "sysuser:x:12345:12345:System User:%s:/bin/sh\n" % home)
many = ", ".join("u%d@localhost" % i for i in range(60))
write(os.path.join(d, "aliases"), """# kurir test aliases
team: alice,
      bob
owner-team: carol
staff: :include:%s/staff
loop1: loop2
loop2: loop3
loop3: loop1
keepcopy: keepcopy, bob
"Big List": carol
piped: "|/bin/echo this command must not run"
huge: %s
incloop: :include:%s/loop-a
redirect: dave
""" % (lists, many, lists))
k.config = set_group(k.config, "aliases", passwd_file=passwd, max_expansion=50)
k.start()
try:
    for u in ("alice", "bob", "carol", "dave", "sysuser", "erin"):
        k.add_user(u + "@localhost", u + "-pw")
    r = k.kurir("aliases", "check")
    tap.eq(r.returncode, 1, "aliases check: the loops are errors (exit 1)")
    tap.ok(re.search(r"/aliases:6: alias loop: loop1@localhost -> loop2@localhost -> "
                     r"loop3@localhost -> loop1@localhost", r.stderr),
           "aliases check: the loop is reported as FILE:LINE with its path", r.stderr)
    tap.ok(re.search(r"/aliases:\d+: warning: \|/bin/echo .*disabled", r.stderr),
           "aliases check: a disabled command is a warning", r.stderr)

    # --- RCPT: alias names exist, unknown ones do not --------------------------------------
    tap.eq(rcpt_code(k, "team@localhost"), 250, "RCPT accepts an alias name (no such user)")
    tap.eq(rcpt_code(k, "Team@LOCALHOST"), 250, "RCPT accepts an alias name in any case")
    tap.eq(rcpt_code(k, "team-request@localhost"), 250,
           "RCPT accepts NAME-request when owner-NAME exists")
    tap.eq(rcpt_code(k, "MAILER-DAEMON@localhost"), 250, "RCPT accepts MAILER-DAEMON")
    tap.eq(rcpt_code(k, "nosuchalias@localhost"), 550, "RCPT refuses an unknown name")

    # --- an alias to two users -------------------------------------------------------------
    send(k, ["team@localhost"], "Subject: to the team\r\n\r\nteam body\r\n")
    a = k.wait_for(lambda: msgs_with(k, "alice", "to the team"))
    b = k.wait_for(lambda: msgs_with(k, "bob", "to the team"))
    tap.ok(a and b, "team@ reached alice and bob", k.read_log()[-3000:])
    if a and b:
        tap.eq(header(a[0], "Delivered-To"), ["alice@localhost", "team@localhost"],
               "alice's copy: Delivered-To alice, then team (the expansion)")
        tap.eq(header(b[0], "Return-Path"), ["<owner-team@localhost>"],
               "owner-team is the copy's sender (Return-Path)")
    time.sleep(0.5)
    tap.eq(len(msgs_with(k, "alice", "to the team")), 1, "alice got exactly one copy")
    tap.ok(re.search(r"to=<team@localhost>, relay=aliases, status=expanded \(alias team "
                     r"\(\S+:2\): 2 recipient\(s\), queued as \w+\)", k.read_log()),
           "the log says team was expanded into a queued copy")
    tap.eq(msgs_with(k, "carol", "to the team"), [], "owner-team did not get the message itself")

    # --- include lists, quoted names, self copies, redirects -------------------------------
    send(k, ["staff@localhost"], "Subject: staff memo\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "carol", "staff memo") and
                      msgs_with(k, "dave", "staff memo") and msgs_with(k, "alice", "staff memo")),
           ":include: list delivered to carol, dave and alice")
    send(k, ["\"big list\"@localhost"], "Subject: quoted name\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "carol", "quoted name")),
           "a quoted alias name (\"Big List\") works")
    send(k, ["keepcopy@localhost"], "Subject: keep a copy\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "keepcopy", "keep a copy") and
                      msgs_with(k, "bob", "keep a copy")),
           "keepcopy: keepcopy, bob - its own mailbox and bob")
    send(k, ["redirect@localhost"], "Subject: redirected\r\n\r\nx\r\n")
    m = k.wait_for(lambda: msgs_with(k, "dave", "redirected"))
    tap.ok(m, "redirect: dave - delivered to dave")
    if m:
        tap.eq(header(m[0], "Delivered-To"), ["dave@localhost"],
               "a one-mailbox alias is delivered in place (no copy)")

    # --- postmaster and MAILER-DAEMON without a user ---------------------------------------
    send(k, ["postmaster@localhost"], "Subject: for the postmaster\r\n\r\nx\r\n",
         sender="someone@example.com")
    pm = k.wait_for(lambda: msgs_with(k, "postmaster", "for the postmaster"))
    tap.ok(pm, "postmaster@ is delivered to the postmaster mailbox without a user",
           k.read_log()[-2000:])
    send(k, ["MAILER-DAEMON@localhost"], "Subject: for the daemon\r\n\r\nx\r\n",
         sender="someone@example.com")
    tap.ok(k.wait_for(lambda: msgs_with(k, "postmaster", "for the daemon")),
           "MAILER-DAEMON@ goes to the postmaster mailbox too")

    # --- loops bounce, they never loop -----------------------------------------------------
    send(k, ["loop1@localhost"], "Subject: round and round\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"round and round" in m and
                              b"Delivery Status" in m.replace(b"delivery-status", b"Delivery Status")])
    tap.ok(dsn, "an alias loop bounces to the sender", k.read_log()[-3000:])
    if dsn:
        tap.ok(b"5.4.6" in dsn[0] and b"alias loop" in dsn[0],
               "the bounce says 5.4.6 alias loop", dsn[0][:1500])
    send(k, ["bob@localhost"], "Subject: been here\r\nDelivered-To: bob@localhost\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"been here" in m and
                              b"forwarding loop" in m])
    tap.ok(dsn, "Delivered-To: bob already present: bounced as a forwarding loop")
    tap.eq(msgs_with(k, "bob", "been here"), [], "... and not delivered to bob")
    send(k, ["incloop@localhost"], "Subject: include loop\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"include loop" in m])
    tap.ok(dsn and b"5.4.6" in dsn[0], "an :include: loop bounces with 5.4.6")

    # --- huge expansions and disabled commands ---------------------------------------------
    send(k, ["huge@localhost"], "Subject: too many\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"too many" in m and
                              b"5.5.3" in m])
    tap.ok(dsn, "an expansion past max_expansion bounces with 5.5.3")
    send(k, ["piped@localhost"], "Subject: no commands\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"no commands" in m and
                              b"allow_pipe" in m])
    tap.ok(dsn, "a command target bounces while allow_pipe is off")

    # --- a virtual user's forward file, and its permission checks --------------------------
    erin_dir = k.maildir("erin")
    os.makedirs(erin_dir, exist_ok=True)
    fwd = os.path.join(erin_dir, ".forward")
    write(fwd, "# erin is away\ncarol\n", 0o644)
    send(k, ["erin@localhost"], "Subject: fwd one\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "carol", "fwd one")),
           "erin's forward file sends her mail to carol")
    time.sleep(0.3)
    tap.eq(msgs_with(k, "erin", "fwd one"), [], "... and erin keeps no copy")
    os.chmod(fwd, 0o666)
    send(k, ["erin@localhost"], "Subject: fwd two\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "erin", "fwd two")),
           "a world-writable forward file is ignored: erin gets the mail")
    tap.ok("ignored: group or world writable" in k.read_log(), "... and it is logged")
    os.chmod(fwd, 0o644)
    if IS_ROOT:
        os.chown(fwd, 4242, 4242)
        send(k, ["erin@localhost"], "Subject: fwd three\r\n\r\nx\r\n")
        tap.ok(k.wait_for(lambda: msgs_with(k, "erin", "fwd three")),
               "a forward file owned by someone else is ignored")
        tap.ok("ignored: owned by someone else" in k.read_log(), "... and it is logged")
        os.chown(fwd, 0, 0)
    os.unlink(fwd)
    target = os.path.join(d, "elsewhere")
    write(target, "carol\n")
    os.symlink(target, fwd)
    send(k, ["erin@localhost"], "Subject: fwd four\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "erin", "fwd four")),
           "a symlinked forward file is ignored")
    tap.ok("ignored: a symbolic link" in k.read_log(), "... and it is logged")
    os.unlink(fwd)

    # --- a system user's ~/.forward (accounts from passwd_file) ----------------------------
    sfwd = os.path.join(home, ".forward")
    write(sfwd, "dave, \\sysuser\n", 0o644)
    if IS_ROOT:
        os.chown(sfwd, 12345, 12345)
    else:
        tap.diag("not root: the system user's .forward is owned by us (uid %d)" % os.geteuid())
    send(k, ["sysuser@localhost"], "Subject: system fwd\r\n\r\nx\r\n")
    ok = k.wait_for(lambda: msgs_with(k, "dave", "system fwd") and
                    msgs_with(k, "sysuser", "system fwd"))
    if IS_ROOT:
        tap.ok(ok, "~sysuser/.forward: to dave and (\\sysuser) to sysuser's own mailbox",
               k.read_log()[-2000:])
        os.chmod(sfwd, 0o664)
        send(k, ["sysuser@localhost"], "Subject: system fwd 2\r\n\r\nx\r\n")
        tap.ok(k.wait_for(lambda: msgs_with(k, "sysuser", "system fwd 2")), "a group-writable "
               "~/.forward is ignored")
        time.sleep(0.3)
        tap.eq(msgs_with(k, "dave", "system fwd 2"), [], "... dave gets nothing")

    # --- the file is reloaded when it changes ----------------------------------------------
    with open(os.path.join(d, "aliases"), "a") as f:
        f.write("newcomer: bob\n")
    tap.ok(k.wait_for(lambda: "aliases file" in k.read_log() and "reloaded" in k.read_log()),
           "a changed aliases file is reloaded")
    tap.eq(rcpt_code(k, "newcomer@localhost"), 250, "the new alias exists at once")
    send(k, ["newcomer@localhost"], "Subject: hello newcomer\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "bob", "hello newcomer")), "... and delivers")
    with open(os.path.join(d, "aliases"), "a") as f:
        f.write("broken line without colon\n")
    tap.ok(k.wait_for(lambda: "aliases file not reloaded" in k.read_log()),
           "a broken aliases file is reported while running")
    tap.ok(re.search(r"aliases:\d+: no ':' after the alias name", k.read_log()),
           "... with FILE:LINE")
    tap.eq(rcpt_code(k, "newcomer@localhost"), 250, "... and the previous aliases stay")
    tap.ok(k.proc.poll() is None, "kurird is still running")
finally:
    k.stop()
    if not k.keep:
        import shutil
        shutil.rmtree(k.dir, ignore_errors=True)

# --- commands: off by default above; on here, run as default_user -------------------------
conf2 = set_group(conf, "aliases", allow_pipe=True, allow_file=True, command_timeout="5s")
k = Kurird(config=conf2)
d = k.dir
out = os.path.join(d, "out")
os.makedirs(out)
os.chmod(d, 0o755)
os.chmod(out, 0o777)
write(os.path.join(d, "aliases"), """
saver: "|/bin/sh -c 'cat > %s/saved; id -un > %s/whoami'"
failer: "|/bin/sh -c 'echo this is the oops output; exit 3'"
retry: "|/bin/sh -c 'exit 75'"
sleeper: "|/bin/sleep 30"
filed: %s/mbox
mixed: bob, "|/bin/sh -c 'echo half; exit 1'"
""" % (out, out, out))
k.start()
try:
    for u in ("alice", "bob"):
        k.add_user(u + "@localhost", u + "-pw")
    send(k, ["saver@localhost"], "Subject: piped in\r\n\r\npipe body\r\n")
    saved = os.path.join(out, "saved")
    tap.ok(k.wait_for(lambda: os.path.exists(os.path.join(out, "whoami"))),
           "the command ran", k.read_log()[-2000:])
    if os.path.exists(saved):
        with open(saved) as f:
            text = f.read()
        tap.ok("Delivered-To: saver@localhost" in text and "pipe body" in text,
               "the command read the message (with Delivered-To) on stdin")
    if IS_ROOT and os.path.exists(os.path.join(out, "whoami")):
        with open(os.path.join(out, "whoami")) as f:
            tap.eq(f.read().strip(), "nobody", "it ran as default_user, not as root")
    send(k, ["failer@localhost"], "Subject: will fail\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"will fail" in m and
                              b"oops output" in m])
    tap.ok(dsn, "a failing command bounces, with its output in the bounce",
           k.read_log()[-2000:])
    send(k, ["sleeper@localhost"], "Subject: too slow\r\n\r\nx\r\n")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"too slow" in m and
                              b"time limit" in m], timeout=30)
    tap.ok(dsn, "a command past command_timeout is killed and bounced")
    send(k, ["retry@localhost"], "Subject: try later\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: re.search(r"to=<retry@localhost>, relay=aliases, "
                                        r"status=deferred \(command .*exit status 75",
                                        k.read_log())),
           "exit 75 (EX_TEMPFAIL) defers")
    send(k, ["filed@localhost"], "Subject: into a file\r\n\r\nFrom me\r\nfile body\r\n")
    mbox = os.path.join(out, "mbox")
    tap.ok(k.wait_for(lambda: os.path.exists(mbox) and b"file body" in open(mbox, "rb").read()),
           "a file target gets the message appended")
    if os.path.exists(mbox):
        data = open(mbox, "rb").read()
        tap.ok(data.startswith(b"From alice@localhost ") and b"\n>From me\n" in data and
               data.endswith(b"\n\n"), "mbox format: From line, >From quoting, empty last line")
        if IS_ROOT:
            tap.eq(os.stat(mbox).st_uid, 65534, "the file was written as nobody")
    send(k, ["mixed@localhost"], "Subject: half and half\r\n\r\nx\r\n")
    tap.ok(k.wait_for(lambda: msgs_with(k, "bob", "half and half")),
           "mixed: the address target is delivered")
    dsn = k.wait_for(lambda: [m for m in k.messages("alice") if b"half and half" in m and
                              b"exit status 1" in m])
    tap.ok(dsn, "... and the failed command is bounced with its output")
    tap.ok(k.proc.poll() is None, "kurird is still running")
finally:
    k.stop()
    if not k.keep:
        import shutil
        shutil.rmtree(k.dir, ignore_errors=True)

# --- aliases check: good and bad files --------------------------------------------------------
with Kurird(config=conf) as k:
    good = os.path.join(k.dir, "good")
    write(good, "a: b\nc: d, e@x.test,\n  \\f\n")
    r = k.kurir("aliases", "check", good)
    tap.eq(r.returncode, 0, "aliases check: a good file passes")
    tap.ok("3 alias(es) ok" not in r.stdout and "2 alias(es) ok" in r.stdout,
           "aliases check counts the aliases", r.stdout)
    bad = os.path.join(k.dir, "bad")
    write(bad, "ok: fine\n  \nno colon here\nx: a b\n  continued, \"unterminated\n"
               "ok: again\nctl: a\x01b\n")
    r = k.kurir("aliases", "check", bad)
    tap.eq(r.returncode, 1, "aliases check: a bad file fails")
    for line, what in ((3, "no ':'"), (4, "blank inside an address"), (5, "unterminated"),
                       (6, "already defined on line 1"), (7, "control character")):
        tap.ok("%s:%d: " % (bad, line) in r.stderr and what in r.stderr,
               "aliases check reports line %d (%s)" % (line, what), r.stderr)
    r = k.kurir("aliases", "check", os.path.join(k.dir, "missing"))
    tap.eq(r.returncode, 1, "aliases check: a missing file named on the command line fails")
    r = k.kurir("aliases", "frobnicate")
    tap.eq(r.returncode, 64, "aliases: unknown subcommand is a usage error")

tap.done()

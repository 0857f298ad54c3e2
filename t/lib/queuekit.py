# SPDX-License-Identifier: MIT
"""queuekit - helpers for the queue tests (t/queue-*.py).

    from queuekit import qconfig, sendmail, deliveries, queue_ids

    conf = qconfig(policy="fifo", queue={"min_backoff": "1s"},
                   deliver={"defer_match": "^retry", "defer_count": 2})
    with Kurird(config=conf) as k:
        r = sendmail(k, ["-f", "a@localhost", "b@a.test"], "Subject: x\\n\\nhi\\n")
        k.wait_for(lambda: deliveries(k))       # [(queue id, sender, rcpt), ...]

qconfig() is a small config of its own: modules queue, bounce and the test
delivery stage qtest (t/modules/qtest.c) instead of SMTP and Maildir, so
retries, failures and slow deliveries happen when the test says. Its
module_path is a temp directory of symlinks to build/modules/*.so and the
test modules (removed at exit). Domains: localhost, a.test, b.test, c.test
(all local: destinations "local:a.test" etc. for the policy). With
smtp=True it also loads the SMTP server with a listener "smtp" (no TLS,
port 0, no greeting delay); 127.0.0.1 may relay, so mail to other domains
(destination "smtp:...") reaches qtest too.
"""
import atexit
import glob
import os
import shutil
import subprocess
import tempfile

from kurtest import BUILD

_moddir = None


def module_dir():
    global _moddir
    if _moddir is None:
        _moddir = tempfile.mkdtemp(prefix="kurir-mods-")
        atexit.register(shutil.rmtree, _moddir, True)
        for so in glob.glob(os.path.join(BUILD, "modules", "*.so")) + \
                [os.path.join(BUILD, "t", "modules", n + ".so") for n in ("qtest", "queue-lifo")]:
            os.symlink(os.path.abspath(so), os.path.join(_moddir, os.path.basename(so)))
    return _moddir


def datadir():
    """A fresh DATA_DIR for Kurird(data_dir=...), removed at exit (unless
    KURIR_KEEP_TMP is set). Its own prefix: nothing else cleans it up."""
    d = tempfile.mkdtemp(prefix="kurir-queue-")
    if not os.environ.get("KURIR_KEEP_TMP"):
        atexit.register(shutil.rmtree, d, True)
    return d


def _val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"%s"' % v


def _group(settings):
    return " ".join("%s = %s;" % (k, _val(v)) for k, v in settings.items())


def qconfig(policy="fair", queue=None, deliver=None, modules=(), bounce=True, debug=("queue",),
            smtp=False):
    q = {"policy": policy, "min_backoff": "1s", "max_backoff": "2s", "pickup_interval": "1s"}
    q.update(queue or {})
    if not bounce:
        q["bounce_node"] = ""
    mods = (["smtp"] if smtp else []) + ["queue"] + (["bounce"] if bounce else []) + ["qtest"] + \
        list(modules)
    listeners = ""
    if smtp:
        listeners = """smtp = { greet_delay = "0"; };
listeners = ( { name = "smtp"; type = "smtp"; address = "127.0.0.1"; port = 0; tls = "none"; } );
"""
    return listeners + """
core = { domains = [ "localhost", "a.test", "b.test", "c.test" ]; module_path = "%s";
         debug = [ %s ]; };
modules = [ %s ];
queue = { %s };
pipeline = {
  maildrop = { type = "maildrop"; next = "incoming"; };
  incoming = { type = "enqueue"; };
  qmgr     = { type = "qmgr"; next = "deliver"; };
  deliver  = { type = "qtest-deliver"; %s };
  %s
};
""" % (module_dir(), ", ".join('"%s"' % d for d in debug), ", ".join('"%s"' % m for m in mods),
       _group(q), _group(deliver or {}), 'bounce = { type = "bounce"; };' if bounce else "")


def sendmail(k, args, text, argv0="sendmail", env=None):
    """Run BUILD/sendmail (argv[0] "sendmail") against kurird k's data dir
    and config; text is the message (str or bytes)."""
    e = dict(os.environ, KURIR_DATA_DIR=k.dir, KURIR_CONFIG=k.conf_path, **(env or {}))
    data = text.encode() if isinstance(text, str) else text
    return subprocess.run([os.path.join(BUILD, argv0)] + list(args), input=data,
                          capture_output=True, env=e, timeout=60)


def deliveries(k):
    """[(queue id, sender, recipient)] in delivery order (qtest's log)."""
    out = []
    try:
        with open(os.path.join(k.dir, "delivered", "log")) as f:
            for line in f:
                qid, frm, to = line.split()
                out.append((qid, frm[len("from=<"):-1], to[len("to=<"):-1]))
    except FileNotFoundError:
        pass
    return out


def delivered(k, rcpt):
    """Contents (bytes) of what qtest delivered to rcpt, by queue ID."""
    d = os.path.join(k.dir, "delivered", rcpt)
    out = {}
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out[name] = f.read()
    return out


def queue_ids(k, qdir):
    """Queue IDs (file names) in DATA_DIR/queue/<qdir>, hidden files aside."""
    d = os.path.join(k.dir, "queue", qdir)
    return sorted(n for n in os.listdir(d) if not n.startswith(".")) if os.path.isdir(d) else []


def queue_empty(k):
    return all(not queue_ids(k, d) for d in ("maildrop", "incoming", "active", "deferred"))

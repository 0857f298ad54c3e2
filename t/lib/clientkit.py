# SPDX-License-Identifier: MIT
"""clientkit - kurird configs for the SMTP client's tests: mail comes in
through an SMTP listener and every recipient goes out through the
smtp-client node `smtp-out` to scripted sinks (t/lib/smtpsink.py) named in
resolver_override, so no DNS is ever queried.

    from clientkit import client_config, inject, make_cert

    conf = client_config({"ok.test": sink.port, "dead.test": refused_port()},
                         node={"command_timeout": "2s"}, queue={"max_lifetime": "20s"})
    with Kurird(config=conf) as k:
        inject(k, "alice@sender.test", ["bob@ok.test"], "Subject: x\\n\\nhi\\n")

client_config(routes, node=None, queue=None, bounce=None, core=None, extra="")
  routes: {name: port or "host:port, host:port" text}; every name maps to
  127.0.0.1:<port> (or the text as given). Modules smtp, cleanup, queue,
  bounce; core.hostname "kurir.test", domains [ "kurir.test" ] (so
  postmaster@kurir.test goes out through the client as well).
"""
import os
import smtplib
import subprocess
import tempfile


def _val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join('"%s"' % x for x in v) + " ]"
    return '"%s"' % v


def _group(settings):
    return " ".join("%s = %s;" % (k, _val(v)) for k, v in (settings or {}).items())


def client_config(routes, node=None, queue=None, bounce=None, core=None, extra=""):
    overrides = []
    for name, target in routes.items():
        if isinstance(target, int):
            target = "127.0.0.1:%d" % target
        overrides.append("%s = %s" % (name, target))
    n = {"dns": False, "connect_timeout": "2s", "greeting_timeout": "3s",
         "command_timeout": "3s", "data_timeout": "3s", "resolver_override": overrides}
    n.update(node or {})
    q = {"min_backoff": "1s", "max_backoff": "2s", "max_lifetime": "60s"}
    q.update(queue or {})
    c = {"hostname": "kurir.test", "domains": ["kurir.test"], "debug": ["smtp"]}
    c.update(core or {})
    return """
core = { %s };
modules = [ "smtp", "cleanup", "queue", "bounce" ];
smtp = { greet_delay = "0"; };
queue = { %s };
bounce = { %s };
listeners = ( { name = "smtp"; type = "smtp"; address = "127.0.0.1"; port = 0; tls = "none"; } );
pipeline = {
  maildrop = { type = "maildrop"; next = "cleanup"; };
  cleanup  = { type = "cleanup"; next = "incoming"; };
  incoming = { type = "enqueue"; };
  qmgr     = { type = "qmgr"; next = "smtp-out"; };
  smtp-out = { type = "smtp-client"; %s };
  bounce   = { type = "bounce"; };
};
%s
""" % (_group(c), _group(q), _group(bounce), _group(n), extra)


def inject(k, sender, rcpts, text, mail_options=(), rcpt_options=()):
    """Submit through kurird's SMTP listener (127.0.0.1 may relay); str text
    gets CRLF line ends."""
    if isinstance(text, str):
        text = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=30)
    try:
        s.ehlo("client.test")
        refused = s.sendmail(sender, rcpts, text,
                             list(mail_options), list(rcpt_options))
    finally:
        s.quit()
    return refused


_certs = None


def make_cert():
    """A throw-away self-signed certificate and key: (certfile, keyfile)."""
    global _certs
    if _certs is None:
        d = tempfile.mkdtemp(prefix="kurir-cert-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=sink.test"],
                       check=True, capture_output=True)
        import atexit
        import shutil
        atexit.register(shutil.rmtree, d, True)
        _certs = (cert, key)
    return _certs

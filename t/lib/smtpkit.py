# SPDX-License-Identifier: MIT
"""smtpkit - helpers for the SMTP server's end-to-end tests (t/smtp-*.py).

    from smtpkit import config, Raw, delivered, DELIVERY

    conf = config(greet_delay="0", trusted_networks=[])   # default config,
                                                         # smtp settings replaced
    conf = listener_opts(conf, "smtp", 'max_per_ip = 2000;')
    with Kurird(config=conf) as k:
        c = Raw(k.port("smtp"))            # a raw client: exact bytes, pipelining
        c.reply()                          # (code, "text of last line", [lines])
        c.cmd("EHLO x")
        msgs = delivered(k, "alice", 1)    # wait for Maildir messages

Raw replies are parsed strictly: every line must be "DDD-" or "DDD " and the
code must be the same on every line of a reply.
"""
import os
import re
import socket
import ssl

from kurtest import BUILD, default_config


def _render(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join('"%s"' % x for x in v) + " ]"
    return '"%s"' % v


def set_group(conf, group, **settings):
    """Replace or add settings in the top-level group `group = { ... };`."""
    m = re.search(r"^%s = \{.*?^\};" % re.escape(group), conf, re.S | re.M)
    if not m:
        block = "%s = {\n};" % group
        conf = conf + "\n" + block + "\n"
        m = re.search(r"^%s = \{.*?^\};" % re.escape(group), conf, re.S | re.M)
    block = m.group(0)
    for k, v in settings.items():
        val = _render(v)
        pat = re.compile(r"^(\s*)%s\s*=.*?;[^\n]*$" % re.escape(k), re.M)
        if pat.search(block):
            block = pat.sub(lambda mm: "%s%s = %s;" % (mm.group(1), k, val), block, count=1)
        else:
            block = block[:-2] + "  %s = %s;\n};" % (k, val)
    return conf[:m.start()] + block + conf[m.end():]


def config(base=None, **smtp):
    """The default config (or base) with smtp settings replaced. Tests
    default to greet_delay = "0" unless they say otherwise."""
    smtp.setdefault("greet_delay", "0")
    return set_group(base if base is not None else base_config(), "smtp", **smtp)


def listener_opts(conf, name, text):
    """Add `text` (e.g. 'max_per_ip = 2000;') to the listener entry `name`."""
    pat = re.compile(r'(\{\s*name\s*=\s*"%s";[^}]*?)\s*\}' % re.escape(name), re.S)
    conf, n = pat.subn(lambda m: m.group(1) + " " + text + " }", conf, count=1)
    assert n == 1, "no listener %s" % name
    return conf


def _modules_of(conf):
    m = re.search(r"^modules\s*=\s*\[(.*?)\];", conf, re.S | re.M)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


# Are all modules of the default config built (so mail reaches Maildir)?
DELIVERY = all(os.path.exists(os.path.join(BUILD, "modules", m + ".so"))
               for m in _modules_of(default_config()))


def base_config():
    """The default config; while the delivery modules are missing from the
    build, the same with only the built modules and a receive-only
    pipeline (maildrop -> cleanup, if built -> discard)."""
    conf = default_config()
    if DELIVERY:
        return conf
    built = [m for m in _modules_of(conf) if os.path.exists(os.path.join(BUILD, "modules", m + ".so"))]
    for m in _modules_of(conf):
        if m not in built:
            conf = re.sub(r"^%s = \{.*?^\};" % re.escape(m), "", conf, flags=re.S | re.M)
    conf = re.sub(r"^modules\s*=\s*\[.*?\];", "modules = [ %s ];" % ", ".join('"%s"' % m for m in built),
                  conf, flags=re.S | re.M)
    first = "cleanup" if "cleanup" in built else "drop"
    conf = re.sub(r"^pipeline = \{.*?^\};",
                  'pipeline = {\n  maildrop = { type = "maildrop"; next = "%s"; };\n'
                  '  cleanup = { type = "cleanup"; next = "drop"; };\n'
                  '  drop = { type = "discard"; };\n};' % first, conf, flags=re.S | re.M)
    if first == "drop":
        conf = conf.replace('  cleanup = { type = "cleanup"; next = "drop"; };\n', "")
    return conf


def delivered(k, user, n, domain="localhost", timeout=20):
    """Wait until `user` has at least n messages; returns their contents.
    Without the delivery modules: waits for n more 'discarded' log lines
    and returns None."""
    if not DELIVERY:
        k.wait_for(lambda: k.read_log().count("discarded by pipeline node") >= n, timeout=timeout)
        return None
    k.wait_for(lambda: len(k.messages(user, domain)) >= n, timeout=timeout)
    return k.messages(user, domain)


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A raw SMTP client over a socket: exact bytes in and out."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=15, greeting=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.reply() if greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: (code, text of the last line, [texts of all lines])."""
        lines = []
        code = None
        while True:
            ln = self.line()
            if len(ln) < 4 or not ln[:3].isdigit() or ln[3:4] not in (b" ", b"-"):
                raise ValueError("malformed reply line %r" % ln)
            if code is not None and int(ln[:3]) != code:
                raise ValueError("code changed inside a reply: %r" % ln)
            code = int(ln[:3])
            lines.append(ln[4:].decode("utf-8", "replace"))
            if ln[3:4] == b" ":
                return code, lines[-1], lines

    def cmd(self, c):
        self.send(c + "\r\n")
        return self.reply()

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)

    def eof(self, timeout=5):
        """True if the server closes the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True

    def pending(self, wait=0.3):
        """Bytes that arrive within `wait` seconds (unsolicited output)."""
        self.sock.settimeout(wait)
        try:
            d = self.sock.recv(65536)
            self.buf += d
        except (socket.timeout, TimeoutError):
            pass
        except OSError:
            pass
        self.sock.settimeout(15)
        return self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

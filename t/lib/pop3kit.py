# SPDX-License-Identifier: MIT
"""pop3kit - helpers for the POP3 end-to-end tests (t/pop3-*.py).

    from pop3kit import pop3_config, Raw, send_mail, put_file, wire

    conf = pop3_config(plaintext=True, auth_fail_delay="1s")
    with Kurird(config=conf) as k:
        k.add_user("bob@localhost", "pw")
        send_mail(k, "bob@localhost", b"Subject: x\\r\\n\\r\\nbody\\r\\n")  # via SMTP
        put_file(k, "bob", "new", "123.x.host", b"...")      # "another tool"
        c = Raw(k.port("pop3"))       # exact bytes, pipelining
        c.cmd("USER bob")             # -> "+OK" line
        c.multi()                     # a multi-line body, dot-unstuffed
        wire(b"a\\n.b\\n")               # stored bytes -> what RETR must send
"""
import os
import socket
import smtplib
import ssl

from smtpkit import config, listener_opts, set_group, tls_context  # noqa: F401


def pop3_config(plaintext=True, **pop3):
    """The default config with the smtp greet delay off, pop3 settings
    replaced, and allow_plaintext_loopback on the pop3 listener."""
    conf = config()
    pop3.setdefault("auth_fail_delay", "0")
    conf = set_group(conf, "pop3", **pop3)
    if plaintext:
        conf = listener_opts(conf, "pop3", "allow_plaintext_loopback = true;")
    return conf


def send_mail(k, rcpt, data, sender="sender@example.org"):
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=20)
    s.sendmail(sender, [rcpt], data)
    s.quit()


def put_file(k, user, sub, name, data, domain="localhost"):
    """Write a message into the Maildir the way another program would."""
    base = k.maildir(user, domain)
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    tmp = os.path.join(base, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(base, sub, name))


def maildir_files(k, user, domain="localhost"):
    base = k.maildir(user, domain)
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    return out


def wire(stored):
    """Stored message bytes -> the body a POP3 RETR sends (before the
    final '.'): bare LF as CRLF, lines starting with '.' doubled."""
    lines = stored.split(b"\n")
    tail = lines.pop() if not stored.endswith(b"\n") else None
    if stored.endswith(b"\n"):
        lines.pop()
    out = []
    for ln in lines + ([tail] if tail else []):
        if ln.endswith(b"\r"):
            ln = ln[:-1]
        if ln.startswith(b"."):
            ln = b"." + ln
        out.append(ln + b"\r\n")
    return b"".join(out)


class Raw:
    """A raw POP3 client over a socket."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=15, greeting=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line() if greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln.decode("latin-1")

    def raw_multi(self):
        """Bytes of a multi-line body up to and excluding the '.' line,
        exactly as sent (still dot-stuffed)."""
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                body, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return body
            self._fill()

    def multi(self):
        """A multi-line body as a list of dot-unstuffed lines (str)."""
        body = self.raw_multi()
        out = []
        for ln in body.split(b"\r\n")[:-1]:
            out.append((ln[1:] if ln.startswith(b"..") else ln).decode("latin-1"))
        return out

    def cmd(self, c):
        self.send(c + "\r\n")
        return self.line()

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)

    def eof(self, timeout=5):
        """True if the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(4096)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ConnectionResetError, ssl.SSLError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def eq(got, want, desc, diag=None):
    """tap.eq with an extra diagnostic shown on failure."""
    from kurtest import tap
    return tap.ok(got == want, desc, "got:  %r\nwant: %r%s" % (got, want, "\n%s" % diag if diag else ""))

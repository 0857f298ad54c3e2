# SPDX-License-Identifier: MIT
"""imapkit - helpers for the IMAP end-to-end tests (t/imap-*.py).

    from imapkit import imap_config, Raw, send_mail, imaplib_client

    conf = imap_config(plaintext=True, auth_fail_delay="0")
    with Kurird(config=conf) as k:
        k.add_user("bob@localhost", "pw")
        c = Raw(k.port("imap"))           # exact bytes, literals, pipelining
        c.login("bob", "pw")
        untagged, tagged = c.cmd("SELECT INBOX")   # lists of bytes
        send_mail(k, "bob@localhost", b"Subject: x\\r\\n\\r\\nbody\\r\\n")  # SMTP
        M = imaplib_client(k)             # imaplib.IMAP4, logged in

Raw responses: each untagged response is one bytes object with the data
of its literals inline (b'* 1 FETCH (BODY[] {5}\\r\\nhello)'); the tagged
line is the last. Raw.lits(resp) gives the literals of one response.
"""
import imaplib
import re
import socket
import ssl

from smtpkit import config, listener_opts, set_group, tls_context  # noqa: F401


def imap_config(plaintext=True, base=None, listener_extra="", **imap):
    """The default config (smtp greet delay off), imap settings replaced,
    allow_plaintext_loopback on both imap listeners when plaintext."""
    conf = config(base)
    imap.setdefault("auth_fail_delay", "0")
    conf = set_group(conf, "imap", **imap)
    if plaintext:
        conf = listener_opts(conf, "imap", "allow_plaintext_loopback = true; " + listener_extra)
    elif listener_extra:
        conf = listener_opts(conf, "imap", listener_extra)
    return conf


def send_mail(k, rcpt, data, sender="sender@example.org"):
    import smtplib
    s = smtplib.SMTP("127.0.0.1", k.port("smtp"), timeout=20)
    s.sendmail(sender, [rcpt], data)
    s.quit()


def imaplib_client(k, user="bob", pw="pw", listener="imap", ssl_=False):
    if ssl_:
        M = imaplib.IMAP4_SSL("127.0.0.1", k.port(listener), ssl_context=tls_context())
    else:
        M = imaplib.IMAP4("127.0.0.1", k.port(listener))
    M.login(user, pw)
    return M


LIT = re.compile(rb"~?\{(\d+)\+?\}$")


class Raw:
    """A raw IMAP client: exact bytes in and out."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=20, greeting=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.n = 0
        self.greeting = self.line() if greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        """One line without CRLF (bytes)."""
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def take(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def response(self):
        """One whole response: a line plus its literals, inline."""
        out = b""
        while True:
            ln = self.line()
            out += ln
            m = LIT.search(ln)
            if not m or ln.startswith(b"+ "):
                return out
            out += b"\r\n" + self.take(int(m.group(1)))

    def tag(self):
        self.n += 1
        return "t%d" % self.n

    def until_tagged(self, tag):
        """Untagged responses (and continuations) up to the tagged one."""
        untagged = []
        t = tag.encode() + b" "
        while True:
            r = self.response()
            if r.startswith(t):
                return untagged, r
            untagged.append(r)

    def cmd(self, text, tag=None):
        """Send `tag text`, return (untagged list, tagged line)."""
        tag = tag or self.tag()
        self.send("%s %s\r\n" % (tag, text) if isinstance(text, str) else
                  tag.encode() + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def ok(self, text):
        """cmd() and the tagged status word ("OK", "NO", "BAD")."""
        u, t = self.cmd(text)
        return t.split(b" ", 2)[1].decode(), u, t

    def login(self, user, pw):
        return self.cmd('LOGIN "%s" "%s"' % (user, pw))

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)

    def eof(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(4096)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ssl.SSLError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def lits(resp):
    """The literal payloads of one response (as Raw.response gives it)."""
    out = []
    i = 0
    while True:
        m = re.compile(rb"~?\{(\d+)\+?\}\r\n").search(resp, i)
        if not m:
            return out
        n = int(m.group(1))
        out.append(resp[m.end():m.end() + n])
        i = m.end() + n


def find(untagged, prefix):
    """Untagged responses starting with prefix (bytes or str)."""
    if isinstance(prefix, str):
        prefix = prefix.encode()
    return [u for u in untagged if u.startswith(prefix)]

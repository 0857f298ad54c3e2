# SPDX-License-Identifier: MIT
"""smtpsink - a scripted SMTP server on 127.0.0.1 for the SMTP client's
tests: the "remote side" kurird delivers to (t/smtp-client-e2e.py,
t/bounce-e2e.py).

    from smtpsink import Sink, refused_port

    with Sink(rcpt={"^retry@": ["451 4.3.0 try later", "250 2.1.5 ok"],
                    "^nobody@": "550 5.1.1 no such user"}) as s:
        conf = ... 'resolver_override = [ "remote.test = 127.0.0.1:%d" ];' % s.port
        ...
        s.wait(lambda: s.messages)       # [Message(sender, rcpts, data, ...)]

Behaviour (all attributes may be changed while it runs):
  greeting      reply sent on connect ("220 sink.test ESMTP")
  extensions    EHLO keywords (PIPELINING, SIZE 10000000, 8BITMIME, DSN,
                ENHANCEDSTATUSCODES, SMTPUTF8, CHUNKING, BINARYMIME)
  rcpt          {regex: reply or [replies]}: the first matching regex
                decides RCPT TO; a list gives one reply per attempt for
                each address (the last one repeats); default 250
  mail          reply to MAIL FROM (default 250)
  data          reply to DATA (default 354)
  final         reply after the content: a string, or a list consumed
                per message (the last one repeats); default 250 queued
  mode          "normal", "hang" (accept, never greet), "hang_after"
                (hang once the command named in hang_at arrives),
                "garbage" (greet with garbage), "garbage_after" (answer
                the command in hang_at with garbage), "close_after" (close
                the connection when the command in hang_at arrives),
                "stall_after" (stop reading, keep the connection open)
  hang_at       "EHLO", "MAIL", "RCPT", "DATA" (the command), "CONTENT"
                (after the 354, while the content arrives), "DOT" (after
                the content, instead of the final reply)
  delay         seconds to wait before every reply (a slow server)
  tls           (certfile, keyfile): offer STARTTLS
  tls_broken    True: answer STARTTLS with 220, then garbage (the client's
                handshake fails)
  auth          (user, password): offer AUTH (after TLS if tls is set) and
                require it for MAIL; auth_mechs: what EHLO offers ("PLAIN
                LOGIN")

Recorded: messages (Message: sender, mail_params, rcpts [(addr, params)],
data (bytes, unstuffed), tls, auth_user, conn), connections (count),
active / max_active (connections open now / at most at once),
commands (every command line, in order; AUTH data is masked), reads
([(connection number, [verbs of the command lines that arrived in one
read])], to see pipelining).
"""
import re
import socket
import ssl
import threading
import time
import base64

DEFAULT_EXT = ["PIPELINING", "SIZE 10000000", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES",
               "SMTPUTF8", "CHUNKING", "BINARYMIME"]


def refused_port():
    """A loopback port nothing listens on (connect: ECONNREFUSED)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Message:
    def __init__(self, sender, mail_params, rcpts, data, tls, auth_user, conn):
        self.sender = sender
        self.mail_params = mail_params
        self.rcpts = rcpts
        self.data = data
        self.tls = tls
        self.auth_user = auth_user
        self.conn = conn

    def rcpt_addrs(self):
        return [a for a, _ in self.rcpts]

    def __repr__(self):
        return "Message(from=<%s> to=%r %d bytes)" % (self.sender, self.rcpt_addrs(), len(self.data))


class _Closed(Exception):
    pass


class Sink:
    def __init__(self, name="sink.test", rcpt=None, mail="250 2.1.0 ok", data="354 go ahead",
                 final=None, mode="normal", hang_at=None, delay=0, tls=None, auth=None,
                 extensions=None, greeting=None):
        self.name = name
        self.greeting = greeting or "220 %s ESMTP sink" % name
        self.extensions = list(DEFAULT_EXT if extensions is None else extensions)
        self.rcpt = rcpt or {}
        self.mail = mail
        self.data = data
        self.final = final
        self.mode = mode
        self.hang_at = hang_at
        self.delay = delay
        self.tls = tls
        self.tls_broken = False
        self.auth = auth
        self.auth_mechs = "PLAIN LOGIN"
        self.messages = []
        self.commands = []
        self.reads = []
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.errors = []
        self._attempts = {}
        self._finals = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    # --- lifecycle ---------------------------------------------------------
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._socks:
                try:
                    c.close()
                except OSError:
                    pass

    def wait(self, pred, timeout=15, interval=0.05):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(interval)
        return pred()

    def received_for(self, addr):
        return [m for m in list(self.messages) if addr in m.rcpt_addrs()]

    # --- the server ----------------------------------------------------------
    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                n = self.connections
                self._socks.append(c)
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _hang(self, conn):
        # Read and drop whatever comes until the client gives up.
        conn.settimeout(1)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def _serve(self, conn, n):
        st = {"conn": conn, "buf": b"", "tls": False, "auth": None, "n": n}
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.mode == "hang":
                self._hang(conn)
                return
            if self.mode == "garbage":
                conn.sendall(b"HELLO THERE this is not SMTP\r\n")
                self._hang(conn)
                return
            self._reply(st, self.greeting)
            self._session(st)
        except (_Closed, OSError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self.active -= 1
            try:
                st["conn"].close()
            except OSError:
                pass

    def _reply(self, st, text):
        if self.delay:
            time.sleep(self.delay)
        if isinstance(text, str):
            text = text.encode()
        if not text.endswith(b"\r\n"):
            text += b"\r\n"
        st["conn"].sendall(text)

    def _readline(self, st):
        while b"\n" not in st["buf"]:
            chunk = st["conn"].recv(65536)
            if not chunk:
                raise _Closed()
            st["buf"] += chunk
            self.reads.append((st["n"], [l.split(b" ")[0].decode("ascii", "replace").upper()
                                         for l in chunk.split(b"\r\n")[:-1]]))
        line, st["buf"] = st["buf"].split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def _read_data(self, st):
        data = b""
        while True:
            idx = st["buf"].find(b"\r\n.\r\n")
            if st["buf"].startswith(b".\r\n") and not data:
                st["buf"] = st["buf"][3:]
                return b""
            if idx >= 0:
                data += st["buf"][:idx + 2]
                st["buf"] = st["buf"][idx + 5:]
                break
            chunk = st["conn"].recv(65536)
            if not chunk:
                raise _Closed()
            st["buf"] += chunk
        # unstuff
        out = []
        for line in data.split(b"\r\n"):
            out.append(line[1:] if line.startswith(b".") else line)
        return b"\r\n".join(out)

    def _read_bytes(self, st, n):
        while len(st["buf"]) < n:
            chunk = st["conn"].recv(65536)
            if not chunk:
                raise _Closed()
            st["buf"] += chunk
        data, st["buf"] = st["buf"][:n], st["buf"][n:]
        return data

    def _pick(self, spec, key):
        """A reply from a rule: a string, or a list consumed per key."""
        if isinstance(spec, (list, tuple)):
            with self._lock:
                i = self._attempts.get(key, 0)
                self._attempts[key] = i + 1
            return spec[min(i, len(spec) - 1)]
        return spec

    def _maybe_break(self, st, cmd):
        if self.hang_at and cmd == self.hang_at:
            if self.mode == "hang_after":
                self._hang(st["conn"])
                raise _Closed()
            if self.mode == "garbage_after":
                st["conn"].sendall(b"\x00\x01garbage \xff\xfe in reply\r\n")
                self._hang(st["conn"])
                raise _Closed()
            if self.mode == "close_after":
                raise _Closed()
            if self.mode == "stall_after":
                # Stop reading: the client's writes back up.
                while not self._stop.is_set():
                    time.sleep(0.2)
                raise _Closed()

    def _session(self, st):
        sender, mparams, rcpts = None, "", []
        while True:
            line = self._readline(st)
            verb = line.split(" ")[0].upper()
            self.commands.append(line if verb != "AUTH" else "AUTH ***")
            if verb in ("EHLO", "HELO"):
                self._maybe_break(st, "EHLO")
                exts = list(self.extensions)
                if self.tls and not st["tls"]:
                    exts.append("STARTTLS")
                if self.auth and (st["tls"] or not self.tls):
                    exts.append("AUTH " + self.auth_mechs)
                if verb == "HELO":
                    exts = []
                lines = [self.name] + exts
                self._reply(st, "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                        for i, l in enumerate(lines)))
            elif verb == "STARTTLS" and self.tls and not st["tls"]:
                self._reply(st, "220 2.0.0 ready to start TLS")
                if self.tls_broken:
                    st["conn"].sendall(b"this is not a TLS server hello\r\n")
                    raise _Closed()
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*self.tls)
                st["conn"] = ctx.wrap_socket(st["conn"], server_side=True)
                st["tls"] = True
                st["buf"] = b""
            elif verb == "AUTH" and self.auth:
                parts = line.split(" ")
                mech = parts[1].upper() if len(parts) > 1 else ""
                if mech not in self.auth_mechs.split():
                    self._reply(st, "504 5.5.4 mechanism not offered")
                    continue
                if mech == "PLAIN":
                    resp = parts[2] if len(parts) > 2 else None
                    if resp is None:
                        self._reply(st, "334 ")
                        resp = self._readline(st)
                    raw = base64.b64decode(resp).split(b"\0")
                    user, pw = raw[1].decode(), raw[2].decode()
                elif mech == "LOGIN":
                    self._reply(st, "334 VXNlcm5hbWU6")
                    user = base64.b64decode(self._readline(st)).decode()
                    self._reply(st, "334 UGFzc3dvcmQ6")
                    pw = base64.b64decode(self._readline(st)).decode()
                else:
                    self._reply(st, "504 5.5.4 unknown mechanism")
                    continue
                if (user, pw) == tuple(self.auth):
                    st["auth"] = user
                    self._reply(st, "235 2.7.0 authenticated")
                else:
                    self._reply(st, "535 5.7.8 bad credentials")
            elif verb == "MAIL":
                self._maybe_break(st, "MAIL")
                if self.auth and not st["auth"]:
                    self._reply(st, "530 5.7.0 authentication required")
                    continue
                m = re.match(r"MAIL FROM:<([^>]*)>\s*(.*)$", line, re.I)
                if not m:
                    self._reply(st, "501 5.5.4 syntax")
                    continue
                r = self._pick(self.mail, ("MAIL", m.group(1)))
                if r.startswith("2"):
                    sender, mparams, rcpts = m.group(1), m.group(2), []
                self._reply(st, r)
            elif verb == "RCPT":
                self._maybe_break(st, "RCPT")
                m = re.match(r"RCPT TO:<([^>]*)>\s*(.*)$", line, re.I)
                if sender is None or not m:
                    self._reply(st, "503 5.5.1 need MAIL" if m else "501 5.5.4 syntax")
                    continue
                addr = m.group(1)
                reply = "250 2.1.5 ok"
                for pat, spec in self.rcpt.items():
                    if re.search(pat, addr):
                        reply = self._pick(spec, ("RCPT", addr))
                        break
                if reply.startswith("2"):
                    rcpts.append((addr, m.group(2)))
                self._reply(st, reply)
            elif verb in ("DATA", "BDAT"):
                if sender is None or not rcpts:
                    if verb == "BDAT":
                        self._read_bytes(st, int(line.split(" ")[1]))
                    self._reply(st, "554 5.5.1 no valid recipients" if sender is not None
                                else "503 5.5.1 need MAIL")
                    continue
                if verb == "DATA":
                    self._maybe_break(st, "DATA")
                    r = self._pick(self.data, ("DATA", len(self.messages)))
                    self._reply(st, r)
                    if not r.startswith("354"):
                        sender = None
                        continue
                    self._maybe_break(st, "CONTENT")
                    data = self._read_data(st)
                else:
                    data = self._read_bytes(st, int(line.split(" ")[1]))
                self._maybe_break(st, "DOT")
                with self._lock:
                    i = self._finals
                    self._finals += 1
                fin = self.final
                if isinstance(fin, (list, tuple)):
                    fin = fin[min(i, len(fin) - 1)]
                fin = fin or "250 2.0.0 Ok: queued as SINK%d" % i
                if fin.startswith("2"):
                    self.messages.append(Message(sender, mparams, rcpts, data, st["tls"],
                                                 st["auth"], st["n"]))
                self._reply(st, fin)
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self._reply(st, "250 2.0.0 ok")
            elif verb == "NOOP":
                self._reply(st, "250 2.0.0 ok")
            elif verb == "QUIT":
                self._reply(st, "221 2.0.0 bye")
                return
            else:
                self._reply(st, "502 5.5.2 unknown command")

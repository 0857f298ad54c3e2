# SPDX-License-Identifier: MIT
"""benchlib - shared helpers for the SMTP benchmarks in bench/ (not tests).

Everything here talks to 127.0.0.1 only, and every wait is bounded.

    ensure_postfix()          install Debian's postfix if missing, stop any system instance
    stop_system_postfix()     stop a Postfix master of the default /etc/postfix config
    free_port()               an unused TCP port on 127.0.0.1
    Postfix(dir, users)       private Postfix instance delivering users@localhost to Maildir
    Kurir(dir)                kurird from build/ with a config derived from etc/kurir.conf
    kurir_config(...)         that config: ports 0, limits raised, smtp.greet_delay "0"
    smtp_source_cmd(...)      argv for Postfix's smtp-source load generator
    count_new(maildir)        number of files in MAILDIR/new
    proc_status_kib(pid, key) VmRSS / VmHWM etc. of a process, in KiB
    cpu_secs(pid)             user+system CPU seconds of a process
    reset_hwm(pid)            reset a process's peak RSS (VmHWM) via /proc/PID/clear_refs
    median(xs)                median of a list
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("KURIR_BUILD", "build"))
DOMAIN = "localhost"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.settimeout(5.0)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# --- /proc ------------------------------------------------------------------
def proc_status_kib(pid, key):
    """Value of KEY (VmRSS, VmHWM, ...) in /proc/PID/status, in KiB; 0 if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_secs(pid, with_children=False):
    """User+system CPU seconds of PID (plus its reaped children's with WITH_CHILDREN); 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        # fields[11..14] = utime stime cutime cstime (stat fields 14..17)
        ticks = int(fields[11]) + int(fields[12])
        if with_children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def reset_hwm(pid):
    """Reset the peak RSS of PID (Linux: '5' to clear_refs); False if not supported."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def children(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
            # pid (comm) state ppid ...; comm may hold spaces/parens
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == ppid:
                out.append(int(name))
        except (OSError, ValueError):
            pass
    return out


def listening_on(port):
    """True if some socket LISTENs on TCP PORT (any address), from /proc/net/tcp{,6}."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def count_new(maildir):
    try:
        return sum(1 for e in os.scandir(os.path.join(maildir, "new")) if not e.name.startswith("."))
    except OSError:
        return 0


# --- Postfix ------------------------------------------------------------------
def _run(cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def stop_system_postfix():
    """Stop a Postfix started for the default config (/etc/postfix), if any."""
    pidfile = "/var/spool/postfix/pid/master.pid"
    running = False
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
        running = True
    except (OSError, ValueError, IndexError):
        pass
    if running or listening_on(25):
        log("stopping the system Postfix instance")
        if os.path.exists("/etc/postfix/main.cf"):
            _run(["postfix", "stop"], timeout=60)
        if shutil.which("service"):
            _run(["service", "postfix", "stop"], timeout=60)
        for _ in range(50):
            if not listening_on(25):
                break
            time.sleep(0.2)
    if listening_on(25):
        log("warning: something still listens on port 25 (not ours)")


def ensure_postfix():
    """Install Debian's postfix (smtp-source, postfix) if missing; leave no system instance running."""
    if not (shutil.which("smtp-source") and shutil.which("postfix") and shutil.which("postmap")):
        log("installing postfix from Debian packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["debconf-set-selections"], text=True, check=True,
                       input="postfix postfix/main_mailer_type select No configuration\n")
        r = _run(["apt-get", "install", "-y", "-q", "postfix"], env=env)
        if r.returncode != 0:
            _run(["apt-get", "update", "-q"], env=env)
            r = _run(["apt-get", "install", "-y", "-q", "postfix"], env=env)
        if r.returncode != 0:
            sys.exit("bench: apt-get install postfix failed:\n" + r.stdout[-2000:] + r.stderr[-2000:])
    stop_system_postfix()


MASTER_CF = """\
# private benchmark instance: no chroot, smtpd on loopback only
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# private benchmark instance (bench/benchlib.py); fsync and queue settings at defaults
compatibility_level = 3.6
config_directory = {dir}/etc
queue_directory = {dir}/queue
data_directory = {dir}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
local_recipient_maps =
relayhost =
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {dir}/mail
virtual_mailbox_maps = hash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
"""


class Postfix:
    """A private Postfix instance under DIR, smtpd on 127.0.0.1:PORT, Maildir delivery."""

    def __init__(self, dir, users):
        self.dir = dir
        self.port = free_port()
        self.users = list(users)
        self.etc = os.path.join(dir, "etc")
        self.uid = self.gid = 65534  # nobody:nogroup own the mailboxes

    def setup(self):
        os.makedirs(self.etc, exist_ok=True)
        os.chmod(self.dir, 0o755)  # postfix-owned daemons must reach queue/ and data/
        for sub in ("queue", "data"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        pw = _pwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pw[0], pw[1])
        mail = os.path.join(self.dir, "mail")
        os.makedirs(mail, exist_ok=True)
        os.chown(mail, self.uid, self.gid)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, domain=DOMAIN, uid=self.uid, gid=self.gid))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in self.users:
                f.write("%s@%s %s/%s/\n" % (u, DOMAIN, DOMAIN, u))
        self._pf(["postmap", "-c", self.etc, "hash:" + os.path.join(self.etc, "vmailbox")])
        # creates the queue subdirectories with the ownership postfix checks
        self._pf(["postfix", "-c", self.etc, "set-permissions"], ok_fail=True)
        self._pf(["postfix", "-c", self.etc, "check"], ok_fail=True)

    def _pf(self, cmd, ok_fail=False):
        r = _run(cmd, timeout=120)
        if r.returncode != 0 and not ok_fail:
            raise RuntimeError("%s failed (%d): %s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
        return r

    def start(self):
        self._pf(["postfix", "-c", self.etc, "start"])
        if not wait_port(self.port, 30):
            raise RuntimeError("postfix smtpd did not answer on port %d:\n%s" % (self.port, self.maillog()[-3000:]))

    def stop(self):
        _run(["postfix", "-c", self.etc, "stop"], timeout=60)
        pid = self.master_pid()
        for _ in range(100):
            if not pid or not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def pids(self):
        m = self.master_pid()
        return [m] + children(m) if m else []

    def rss_kib(self):
        return sum(proc_status_kib(p, "VmRSS") for p in self.pids())

    def hwm_kib(self):
        return sum(proc_status_kib(p, "VmHWM") for p in self.pids())

    def cpu_secs(self):
        """CPU of the whole instance: master with its reaped children, plus the live children."""
        m = self.master_pid()
        return cpu_secs(m, True) + sum(cpu_secs(p) for p in children(m)) if m else 0.0

    def reset_hwm(self):
        for p in self.pids():
            reset_hwm(p)

    def maildir(self, user):
        return os.path.join(self.dir, "mail", DOMAIN, user)

    def maillog(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queue_count(self):
        n = 0
        for sub in ("maildrop", "incoming", "active", "deferred"):
            for _root, _dirs, files in os.walk(os.path.join(self.dir, "queue", sub)):
                n += len(files)
        return n


def _pwnam(name):
    import pwd
    p = pwd.getpwnam(name)
    return p.pw_uid, p.pw_gid


# --- kurir ------------------------------------------------------------------
KURIR_MODULES = ("smtp", "queue", "local", "maildir", "cleanup", "auth-file")


def kurir_missing_modules():
    """Modules the benchmark needs, or etc/kurir.conf loads, that are not in BUILD/modules."""
    want = list(KURIR_MODULES)
    try:
        with open(os.path.join(ROOT, "etc", "kurir.conf")) as f:
            m = re.search(r"^modules\s*=\s*\[([^\]]*)\]", f.read(), re.M)
        if m:
            want += [x for x in re.findall(r'"([^"]+)"', m.group(1)) if x not in want]
    except OSError:
        pass
    return [m for m in want if not os.path.exists(os.path.join(BUILD, "modules", m + ".so"))]


def kurir_config(max_conns=5000, greet_delay="0"):
    """etc/kurir.conf with every listener on port 0, raised connection limits, and
    smtp.greet_delay set to GREET_DELAY (None keeps the file's value)."""
    with open(os.path.join(ROOT, "etc", "kurir.conf")) as f:
        conf = f.read()
    conf = re.sub(r"port\s*=\s*\d+\s*;",
                  "port = 0; max_connections = %d; max_per_ip = %d;" % (max_conns, max_conns), conf)
    if greet_delay is not None:
        conf, n = re.subn(r'greet_delay\s*=\s*"[^"]*"\s*;', 'greet_delay = "%s";' % greet_delay, conf)
        if n == 0:
            conf = re.sub(r"^smtp = \{", 'smtp = {\n  greet_delay = "%s";' % greet_delay, conf, count=1,
                          flags=re.M)
    return conf


class Kurir:
    """kurird from BUILD in DIR on ephemeral ports; stderr in DIR/kurird.log."""

    def __init__(self, dir, max_conns=5000, nofile=None, greet_delay="0"):
        self.dir = dir
        self.greet_delay = greet_delay
        self.conf = os.path.join(dir, "kurir.conf")
        self.logpath = os.path.join(dir, "kurird.log")
        self.max_conns = max_conns
        self.nofile = nofile
        self.proc = None
        self.ports = {}

    def setup(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(kurir_config(self.max_conns, self.greet_delay))

    def start(self, timeout=30):
        lst = os.path.join(self.dir, "run", "listeners")
        if os.path.exists(lst):
            os.unlink(lst)
        self.logf = open(self.logpath, "ab")
        pre = None
        if self.nofile:
            n = self.nofile

            def pre():
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        self.proc = subprocess.Popen([os.path.join(BUILD, "kurird"), "-c", self.conf, "--data-dir", self.dir],
                                     stdout=self.logf, stderr=self.logf, cwd=self.dir, preexec_fn=pre)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kurird exited with %d:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            if os.path.exists(lst):
                with open(lst) as f:
                    lines = [l.split() for l in f if l.strip()]
                if lines:
                    for name, _host, port in lines:
                        self.ports.setdefault(name, int(port))
                    if "smtp" in self.ports and wait_port(self.ports["smtp"], 10):
                        return
            time.sleep(0.05)
        raise RuntimeError("kurird did not start:\n" + self.log()[-3000:])

    @property
    def port(self):
        return self.ports["smtp"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else 0

    def stop(self):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                log("kurird did not stop on SIGTERM within 30s; killing it")
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        return rc

    def kurir(self, *args, input=None):
        return _run([os.path.join(BUILD, "kurir"), "--data-dir", self.dir, "-c", self.conf] + list(args),
                    input=input, timeout=120)

    def add_user(self, user, password="bench-password"):
        r = self.kurir("user", "add", "%s@%s" % (user, DOMAIN), input=password + "\n")
        if r.returncode != 0:
            raise RuntimeError("kurir user add %s failed: %s%s" % (user, r.stdout, r.stderr))

    def maildir(self, user):
        return os.path.join(self.dir, "mail", DOMAIN, user)

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status_kib(self.pid, "VmHWM")

    def cpu_secs(self):
        return cpu_secs(self.pid)

    def reset_hwm(self):
        reset_hwm(self.pid)


# --- load -------------------------------------------------------------------
def smtp_source_cmd(port, n, size, sessions, to, reuse=False):
    """smtp-source argv: N messages of SIZE body bytes over SESSIONS parallel sessions to TO@localhost."""
    cmd = ["smtp-source", "-4", "-s", str(sessions), "-m", str(n), "-l", str(size),
           "-M", "bench.client", "-f", "sender@bench.client", "-t", "%s@%s" % (to, DOMAIN)]
    if reuse:
        cmd.append("-d")
    cmd.append("127.0.0.1:%d" % port)
    return cmd

# SPDX-License-Identifier: MIT
"""kurtest - start a real kurird for end-to-end tests, and print TAP.

    from kurtest import Kurird, tap

    with Kurird(modules=[...], listeners=[...], extra="...") as k:
        port = k.port("smtp")          # ephemeral port from DATA_DIR/run/listeners
        k.kurir("user", "add", "a@localhost", input="secret\\n")
        k.wait_for(lambda: ..., timeout=10)
    tap.ok(cond, "description"); tap.done()

Each Kurird gets a fresh temp DATA_DIR and a config written from the
embedded default (etc/kurir.conf) with every listener moved to port 0
(unless the test passes its own config text). Tests never ask the DNS:
smtp-client nodes get `dns = false` unless the config says otherwise, so
mail to other domains is deferred unless the test maps them with
resolver_override (t/lib/clientkit.py). kurird's stderr is kept in
DATA_DIR/kurird.log and printed as TAP comments when a test fails.
The build under test is $KURIR_BUILD (default: build).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("KURIR_BUILD", "build"))


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0
        self.on_fail = []

    def ok(self, cond, desc, diag=None):
        self.n += 1
        desc = desc.replace("\n", " ")
        if cond:
            print("ok %d - %s" % (self.n, desc), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, desc), flush=True)
            if diag is not None:
                for line in str(diag).splitlines():
                    print("# " + line, flush=True)
            for f in self.on_fail:
                f()
        return cond

    def eq(self, got, want, desc):
        return self.ok(got == want, desc, "got:  %r\nwant: %r" % (got, want))

    def diag(self, text):
        for line in str(text).splitlines():
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


tap = Tap()


def default_config():
    with open(os.path.join(ROOT, "etc", "kurir.conf")) as f:
        return f.read()


def ephemeral(conf):
    """Every `port = N;` in the listeners becomes port 0."""
    return re.sub(r"port\s*=\s*\d+\s*;", "port = 0;", conf)


def no_dns(conf):
    """smtp-client nodes get `dns = false;` unless the config sets dns."""
    if re.search(r"^[^#\n]*\bdns\s*=", conf, re.M):
        return conf
    return conf.replace('type = "smtp-client";', 'type = "smtp-client"; dns = false;')


class Kurird:
    def __init__(self, config=None, data_dir=None, env=None, debug=None, keep=False):
        self.config = no_dns(ephemeral(config if config is not None else default_config()))
        if debug:
            self.config = self.config.replace("debug = [ ];", "debug = [ %s ];" %
                                              ", ".join('"%s"' % d for d in debug))
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="kurir-e2e-")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.keep = keep or bool(os.environ.get("KURIR_KEEP_TMP"))
        self.conf_path = os.path.join(self.dir, "kurir.conf")
        self.log_path = os.path.join(self.dir, "kurird.log")
        tap.on_fail.append(self.dump_log)

    # --- lifecycle -----------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        if self.own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.dump_log in tap.on_fail:
            tap.on_fail.remove(self.dump_log)

    def start(self, timeout=20):
        with open(self.conf_path, "w") as f:
            f.write(self.config)
        ports = os.path.join(self.dir, "run", "listeners")
        if os.path.exists(ports):
            os.unlink(ports)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "kurird"), "-c", self.conf_path, "--data-dir", self.dir],
            stdout=self.log, stderr=self.log, env=self.env, cwd=self.dir)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kurird exited with %d:\n%s" % (self.proc.returncode, self.read_log()))
            if os.path.exists(ports) and "kurird" in self.read_log() and "started" in self.read_log():
                self._ports = self._read_ports()
                return
            time.sleep(0.02)
        raise RuntimeError("kurird did not start:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop kurird; returns its exit status (None if it had to be killed)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                return None
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        return rc

    def kill(self):
        """SIGKILL: a crash."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.log.close()

    def restart(self):
        self.stop()
        self.start()

    # --- helpers ---------------------------------------------------------
    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def dump_log(self):
        tap.diag("--- kurird log (%s) ---" % self.log_path)
        tap.diag(self.read_log()[-6000:])

    def _read_ports(self):
        out = {}
        with open(os.path.join(self.dir, "run", "listeners")) as f:
            for line in f:
                name, host, port = line.split()
                out.setdefault(name, (host, int(port)))
        return out

    def port(self, name):
        return self._ports[name][1]

    def kurir(self, *args, input=None, check=False):
        """Run build/kurir against this data dir and config."""
        p = subprocess.run([os.path.join(BUILD, "kurir"), "-c", self.conf_path,
                            "--data-dir", self.dir] + list(args),
                           input=input, capture_output=True, text=True, env=self.env,
                           timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError("kurir %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
        return p

    def add_user(self, address, password):
        return self.kurir("user", "add", address, input=password + "\n", check=True)

    def maildir(self, user, domain="localhost", folder=None):
        d = os.path.join(self.dir, "mail", domain, user)
        if folder:
            d = os.path.join(d, "." + folder)
        return d

    def messages(self, user, domain="localhost"):
        """Contents (bytes) of the messages in the user's INBOX (new/ and cur/)."""
        out = []
        base = self.maildir(user, domain)
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def wait_for(self, pred, timeout=15, interval=0.05):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(interval)
        return pred()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# core-daemon.py - kurird lifecycle: starts on a config with test modules,
# answers on the control socket (kurir reload), handles SIGHUP (good and
# bad config, restart-needed notice), stops cleanly on SIGTERM and SIGINT
# with exit status 0, and refuses to start on a bad config with exit 1.
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kurtest import BUILD, Kurird, tap  # noqa: E402

MODS = os.path.join(BUILD, "t", "modules")
CONF = """core = { module_path = "%s"; domains = [ "example.test" ]; debug = [ ]; };
modules = [ "testgood" ];
testgood = { count = 3; };
pipeline = {
  in = { type = "test-entry"; next = "t"; };
  t = { type = "test-tag"; };
};
""" % MODS

with Kurird(config=CONF) as k:
    tap.ok(k.proc.poll() is None, "kurird runs on a config with a test module")
    tap.ok(os.path.exists(os.path.join(k.dir, "run", "control")), "control socket created")
    for d in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        tap.ok(os.path.isdir(os.path.join(k.dir, "queue", d)), "queue/%s created" % d)
    r = k.kurir("reload")
    tap.eq(r.returncode, 0, "kurir reload talks to the daemon")
    tap.ok(k.wait_for(lambda: "SIGHUP: reloaded" in k.read_log()), "reload logged")
    # SIGHUP with a changed module setting: reloaded, restart needed.
    with open(k.conf_path, "w") as f:
        f.write(CONF.replace("count = 3", "count = 4"))
    k.proc.send_signal(signal.SIGHUP)
    tap.ok(k.wait_for(lambda: "take effect only after a restart" in k.read_log()),
           "SIGHUP says a module setting change needs a restart")
    # SIGHUP with a broken config: kept running with the old one.
    with open(k.conf_path, "w") as f:
        f.write("core = { nonsense = 1; };\n")
    k.proc.send_signal(signal.SIGHUP)
    tap.ok(k.wait_for(lambda: "keeping the running configuration" in k.read_log()),
           "SIGHUP with a bad config keeps the running one")
    tap.ok(k.proc.poll() is None, "still running after a bad SIGHUP")
    r = k.kurir("testcmd", "a", "b")
    # the kurir command reads the (now broken) file: it must refuse clearly
    tap.ok(r.returncode != 0 and "nonsense" in r.stderr, "kurir refuses a broken config", r.stderr)
    with open(k.conf_path, "w") as f:
        f.write(CONF)
    r = k.kurir("testcmd", "a", "b")
    tap.eq(r.returncode, 3, "module command runs with its exit status")
    tap.ok("count=3 word=hello args=2" in r.stdout, "module command sees its settings", r.stdout)
    rc = k.stop(signal.SIGTERM)
    tap.eq(rc, 0, "SIGTERM: exit status 0")
    tap.ok("kurird stopped" in k.read_log(), "stop logged")
    tap.ok(not os.path.exists(os.path.join(k.dir, "run", "control")), "control socket removed")

with Kurird(config=CONF) as k:
    tap.eq(k.stop(signal.SIGINT), 0, "SIGINT: exit status 0")

# A bad config: exit 1, one line with file:line, nothing started.
bad = CONF.replace("count = 3;", "count = 99;")
with Kurird(config=CONF) as k:
    k.stop()
    with open(k.conf_path, "w") as f:
        f.write(bad)
    p = subprocess.run([os.path.join(BUILD, "kurird"), "-c", k.conf_path, "--data-dir", k.dir],
                       capture_output=True, text=True, timeout=30)
    tap.eq(p.returncode, 1, "bad config: exit 1")
    tap.ok("%s:3: value 99 of 'count' is out of range" % k.conf_path in p.stderr,
           "bad config: FILE:LINE message", p.stderr)
    tap.ok(not os.path.exists(os.path.join(k.dir, "run", "control")), "bad config: nothing started")

tap.done()

#!/usr/bin/python3
"""sluice-bench send into the real sluiced, then sluice-bench verify on its
Maildir: every accepted copy (3 recipients each, mixed sizes, BDAT and
DATA) is found exactly once and intact.  Then the verifier is shown to
catch what it exists to catch: a damaged copy, a duplicated copy, a copy
that is not a benchmark message, and a missing one."""

import json
import os
import shutil
import subprocess

from sluice_harness import Daemon, Skip, check, check_eq, fail, info, run_main

BENCH = os.environ.get("SLUICE_BENCH", "")


def bench(*args, timeout=120):
    p = subprocess.run([BENCH] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def send(d, *args):
    rc, out, err = bench("send", "--server", "127.0.0.1:%d" % d.port, "--json", "--quiet",
                         "--duration", "60", *args)
    if rc != 0:
        fail("sluice-bench send %s: exit status (stderr: %s)" % (" ".join(args), err[-800:]), rc, 0)
    return json.loads(out)


def verify(root, *args):
    rc, out, err = bench("verify", "--maildir", root, "--json", *args)
    if rc == 2:
        fail("sluice-bench verify usage error: %s" % err)
    return rc, json.loads(out)


def body():
    if not os.access(BENCH, os.X_OK):
        raise Skip("SLUICE_BENCH is not set to a built sluice-bench")
    d = Daemon("bench-verify", max_connections_per_ip=10000)
    d.start()

    r1 = send(d, "--messages", "400", "--connections", "20", "--rcpts", "3",
              "--size", "70%1k-4k,30%10k-100k")
    r2 = send(d, "--messages", "200", "--connections", "10", "--rcpts", "3", "--bdat",
              "--per-connection", "0")
    check(r1["run"] != r2["run"], "two runs have two run ids", (r1["run"], r2["run"]), "different")
    for r in (r1, r2):
        check_eq(r["messages"]["accepted"], r["messages"]["attempted"], "every message accepted")
    accepted = r1["recipients_accepted"] + r2["recipients_accepted"]
    check_eq(accepted, 1800, "recipients accepted by sluiced")

    rc, v = verify(d.mail, "--expect", "1800", "--wait", "60")
    check_eq((rc, v["unique"], v["duplicates"], v["corrupt"], v["foreign"]), (0, 1800, 0, 0, 0),
             "verify: (status, unique, duplicates, corrupt, foreign) after delivery")
    info("ok 1800 copies verified")
    # --run counts one run's copies; the other run's are reported apart.
    rc, v = verify(d.mail, "--run", r1["run"], "--expect", "1200")
    check_eq((rc, v["unique"], v["other_runs"]), (0, 1200, 600),
             "verify --run (first run): (status, unique, other_runs)")
    rc, v = verify(d.mail, "--run", r2["run"], "--expect", "1200")
    check_eq((rc, v["unique"], v["other_runs"]), (1, 600, 1200),
             "verify --run (second run) expecting too many: (status, unique, other_runs)")

    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(d.mail) for f in fs
                   if os.path.basename(r) == "new")
    # Damage one copy's body (the last octet before its final newline).
    with open(files[0], "r+b") as f:
        data = f.read()
        f.seek(len(data) - 2)
        f.write(b"#" if data[-2:-1] != b"#" else b"%")
    # Duplicate another, and add a message that is not ours.
    shutil.copy(files[1], files[1] + ".dup")
    with open(os.path.join(os.path.dirname(files[2]), "stranger"), "wb") as f:
        f.write(b"Subject: not a benchmark message\n\nhello\n")
    rc, v = verify(d.mail, "--expect", "1800")
    check_eq((rc, v["unique"], v["duplicates"], v["corrupt"], v["foreign"]), (1, 1799, 1, 1, 1),
             "verify after damage: (status, unique, duplicates, corrupt, foreign)")
    # A lost copy: the count falls short of --expect.
    os.unlink(files[0])
    os.unlink(files[1] + ".dup")
    os.unlink(os.path.join(os.path.dirname(files[2]), "stranger"))
    rc, v = verify(d.mail, "--expect", "1800")
    check_eq((rc, v["unique"]), (1, 1799), "verify with one copy missing: (status, unique)")
    rc, v = verify(d.mail, "--expect", "1799")
    check_eq(rc, 0, "verify with the right expectation")
    rc, out, err = bench("verify", "--expect", "x")
    check_eq(rc, 2, "verify usage error status")
    d.stop()


run_main(body)

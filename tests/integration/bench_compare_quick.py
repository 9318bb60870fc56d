#!/usr/bin/python3
"""bench/compare --quick end to end: sluice and a private Postfix through
accept-1k-conn and relay-1k-conn, one round each.  It must exit 0, report
both systems verified in accept-1k-conn, report relay honestly (sluice
"cannot relay yet" until its --version lists the relay feature, then
verified like Postfix), draw a PNG chart, and leave nothing behind: no work
directory, no cgroup, no process it started.  Then, given far more work
than fits in --time-limit 30, it must stop on its own within the limit,
exit 1, say so in the report, and clean up just the same; and so after a
SIGINT in the middle of the runs (exit 130).

Needs root, Postfix and gnuplot (skips, 77, without them); sluiced and
sluice-bench from the same build directory (argv[1] / $SLUICED and
$SLUICE_BENCH)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from sluice_harness import Skip, check, check_eq, fail, info, run_main, sluiced_path

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPARE = os.path.join(TOP, "bench", "compare")
CANNOT = "sluice cannot relay yet"


def table_rows(report, scenario):
    """{system: [cells]} of the scenario's table in report.md."""
    rows, inside = {}, False
    for line in report.splitlines():
        if line.startswith("### "):
            inside = line[4:].strip() == scenario
            continue
        if inside and line.startswith("| ") and not line.startswith("| system") \
                and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def body():
    if os.geteuid() != 0:
        raise Skip("needs root (bench/compare starts a private Postfix)")
    for tool in ("postfix", "gnuplot"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            raise Skip("%s is not installed" % tool)
    sluiced = sluiced_path()
    build = os.path.dirname(sluiced)
    bench = os.environ.get("SLUICE_BENCH", os.path.join(build, "sluice-bench"))
    if not os.access(bench, os.X_OK):
        raise Skip("no sluice-bench next to sluiced")
    check_eq(os.path.dirname(os.path.abspath(bench)), build,
             "sluice-bench and sluiced come from one build directory")
    version = subprocess.run([sluiced, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    feats = [l.split(":", 1)[1].split() for l in version.splitlines() if l.startswith("features:")]
    can_relay = bool(feats) and "relay" in feats[0]

    out = tempfile.mkdtemp(prefix="bench-compare-test.")
    try:
        argv = [COMPARE, "--quick", "--runs", "1", "--scenarios", "accept-1k-conn,relay-1k-conn",
                "--out", out, "--build", build, "--time-limit", "240"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=280)
        if p.returncode != 0:
            fail("bench/compare exit status (stdout:\n%s\nstderr:\n%s)" % (
                p.stdout[-3000:], p.stderr[-3000:]), p.returncode, 0)
        info(p.stdout.rstrip())
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()

        acc = table_rows(report, "accept-1k-conn")
        for system in ("sluice", "Postfix"):
            check(system in acc, "accept-1k-conn has a row for %s" % system, sorted(acc), system)
            check_eq(acc[system][6], "yes", "accept-1k-conn %s verified" % system)
        rel = table_rows(report, "relay-1k-conn")
        check("Postfix" in rel, "relay-1k-conn has a row for Postfix", sorted(rel), "Postfix")
        check_eq(rel["Postfix"][6], "yes", "relay-1k-conn Postfix verified")
        check("sluice" in rel, "relay-1k-conn has a row for sluice", sorted(rel), "sluice")
        if can_relay:
            check_eq(rel["sluice"][6], "yes", "relay-1k-conn sluice verified (it can relay)")
        else:
            check(CANNOT in rel["sluice"][1], "relay-1k-conn sluice row says it cannot relay",
                  rel["sluice"], CANNOT)

        with open(os.path.join(out, "chart.png"), "rb") as f:
            check_eq(f.read(8), b"\x89PNG\r\n\x1a\n", "chart.png starts with the PNG signature")
        for name in ("chart.gp", "chart.dat", "results.json"):
            check(os.path.exists(os.path.join(out, name)), "%s is written" % name)

        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        info("ok report verified both systems; sluice relay: %s" % (
            "verified" if can_relay else "cannot relay yet"))
        check_cleaned(res["meta"])

        # The time limit: far more work than fits, yet it stops on its own,
        # within the limit, says so, and still cleans up.
        limit = 30  # the smallest it takes
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        p = subprocess.run([COMPARE, "--quick", "--runs", "3", "--out", out, "--build", build,
                            "--time-limit", str(limit)], capture_output=True, text=True,
                           timeout=limit + 60)
        took = time.monotonic() - t0
        check_eq(p.returncode, 1, "exit status of a run cut short by --time-limit")
        check(took <= limit + 5, "bench/compare --time-limit %d ends in time" % limit,
              "%.1f s" % took, "<= %d s (+5 s for the interpreter)" % limit)
        with open(os.path.join(out, "report.md")) as f:
            check("**ABORTED: time limit" in f.read(), "the report says the time limit cut it")
        with open(os.path.join(out, "results.json")) as f:
            check_cleaned(json.load(f)["meta"])
        info("ok --time-limit %d: ended after %.1f s, cleaned up" % (limit, took))

        # SIGINT in the middle of the runs: exit 130, and clean up all the same.
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen([COMPARE, "--quick", "--runs", "3", "--out", out, "--build", build,
                                 "--time-limit", "120"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            for line in proc.stderr:
                if "round 1/3" in line:
                    break  # both systems are up and a run has finished
            proc.send_signal(signal.SIGINT)
            rest = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        check_eq(proc.returncode, 130, "exit status after SIGINT (stderr tail: %s)" % rest[-500:])
        with open(os.path.join(out, "results.json")) as f:
            check_cleaned(json.load(f)["meta"])
        info("ok SIGINT: exit 130, cleaned up")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check_cleaned(meta):
    """Nothing bench/compare started is left: work directory, processes, cgroups."""
    check(not os.path.exists(meta["work_dir"]), "the work directory is removed",
          meta["work_dir"], "gone")
    started = meta.get("started", {})
    for what in ("sluiced_pid", "postfix_master_pid"):
        pid = started.get(what)
        check(pid and not pid_alive(pid), "%s is gone after the run" % what, pid, "not running")
    for g in started.get("cgroups", []):
        check(not os.path.exists(g), "cgroup %s is removed" % g, g, "gone")


if __name__ == "__main__":
    run_main(body)

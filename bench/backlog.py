#!/usr/bin/python3
"""backlog: what a large deferred queue costs, and what it does to accepting.

    bench/backlog.py [--build DIR] [--rcpts N] [--per-message K]
                     [--probe S] [--retry S] [--time-limit S]

Starts sluiced in a temp dir under /var/tmp with a route that relays
backlog.test through a smart host nobody listens on (127.0.0.1, a port
found free), so every recipient sent there is deferred and retried every
--retry seconds (default 20, jitter +-25%).  Then:

  1. probe: --probe seconds (default 30) of 1 KiB messages, one per
     connection, to example.test (local Maildir) with `sluice-bench send`:
     the accept rate of an empty queue;
  2. fill: --rcpts recipients (default 1,000,000), --per-message to a
     message (default 1), to backlog.test; waits until the relay reports
     them all queued (its "relay: stats" log line);
  3. memory: sluiced's resident set growth over the fill, divided by the
     recipients queued (bodies are on disk; this is the in-memory index
     plus everything else the fill left behind);
  4. probe again once retries of the backlog are running: the accept rate
     while the backlog is retried, and how many retries ran meanwhile.

Prints one summary block; --json for JSON.  Everything it starts is
stopped by PID and the temp dir removed, also on errors and at
--time-limit.  Loopback only.  Needs some 1.5 GB of disk per million
1 KiB messages.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

STATS_RE = re.compile(r"relay: stats queued_jobs=(\d+) queued_rcpts=(\d+) delivered=(\d+) "
                      r"deferred=(\d+)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Bench:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.time_limit
        self.dir = tempfile.mkdtemp(prefix="sluice-backlog.", dir="/var/tmp")
        self.port = free_port()
        self.dead_port = free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "sluiced.log")

    def left(self):
        t = self.deadline - time.monotonic()
        if t <= 0:
            raise TimeoutError("--time-limit reached")
        return t

    def config(self):
        a = self.args
        return "\n".join([
            'hostname = "backlog.sluice-bench.test";',
            'spool_dir = "%s/spool";' % self.dir,
            'log_level = "info";',
            'dns_servers = "127.0.0.1:1";',
            "queue_retry_min = %d; queue_retry_max = %d;" % (a.retry, a.retry),
            "delay_warning = 0; max_lifetime = 864000;",
            "relay_connect_timeout = 5;",
            'listen = ( { address = "127.0.0.1"; port = %d; role = "mta"; } );' % self.port,
            "routes = (",
            '  { domain = "example.test"; action = "local"; maildir = "%s/mail"; },' % self.dir,
            '  { domain = "backlog.test"; action = "relay-via"; via = "[127.0.0.1]:%d"; }'
            % self.dead_port,
            ");", ""])

    def start(self):
        conf = os.path.join(self.dir, "sluiced.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(self.args.build, "sluiced"), "-c", conf],
                                     cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited: see %s" % self.log_path)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
            self.left()

    def send(self, messages, domain, rcpts=1, per_connection=1, duration=None):
        argv = [os.path.join(self.args.build, "sluice-bench"), "send",
                "--server", "127.0.0.1:%d" % self.port, "--messages", str(messages),
                "--rcpts", str(rcpts), "--domain", domain, "--per-connection",
                str(per_connection), "--duration", str(int(duration or self.left())), "--json",
                "--quiet"]
        out = subprocess.run(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             timeout=self.left(), check=True).stdout
        return json.loads(out)

    def relay_stats(self):
        with open(self.log_path, errors="replace") as f:
            found = STATS_RE.findall(f.read())
        if not found:
            return None
        q, r, dl, df = (int(x) for x in found[-1])
        return {"jobs": q, "rcpts": r, "delivered": dl, "deferred": df}

    def wait_stats(self, cond, what):
        while True:
            st = self.relay_stats()
            if st and cond(st):
                return st
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited while waiting for %s" % what)
            if self.left() < 1:
                raise TimeoutError("waiting for %s; last stats %s" % (what, st))
            time.sleep(0.5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self):
        a = self.args
        self.start()
        probe0 = self.send(0, "example.test", per_connection=1, duration=a.probe)
        rss0 = rss_kib(self.proc.pid)
        t0 = time.monotonic()
        nmsg = a.rcpts // a.per_message
        fill = self.send(nmsg, "backlog.test", rcpts=a.per_message, per_connection=0)
        queued = fill["recipients_accepted"]
        st = self.wait_stats(lambda s: s["rcpts"] >= queued, "%d recipients queued" % queued)
        fill_s = time.monotonic() - t0
        rss1 = rss_kib(self.proc.pid)
        # Retries of the backlog are running once deferrals pass the first
        # round (each recipient was deferred once on arrival).
        st = self.wait_stats(lambda s: s["deferred"] > queued, "the first retries")
        d0 = st["deferred"]
        t1 = time.monotonic()
        probe1 = self.send(0, "example.test", per_connection=1, duration=a.probe)
        probe_s = time.monotonic() - t1
        # The stats line comes every 10 s: the next one after the probe.
        st2 = self.wait_stats(lambda s: s["deferred"] > d0 or time.monotonic() > t1 + a.probe + 12,
                              "stats after the probe")
        return {
            "recipients_queued": queued,
            "messages": nmsg,
            "rcpts_per_message": a.per_message,
            "fill_messages_per_s": fill["rates"]["messages_per_s"],
            "fill_until_queued_s": round(fill_s, 1),
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "bytes_per_queued_rcpt": round((rss1 - rss0) * 1024 / queued, 1),
            "accept_msgs_per_s_empty": probe0["rates"]["messages_per_s"],
            "accept_msgs_per_s_during_retries": probe1["rates"]["messages_per_s"],
            "accept_p99_ms_empty": probe0["latency_ms"]["p99"],
            "accept_p99_ms_during_retries": probe1["latency_ms"]["p99"],
            "retries_during_probe": st2["deferred"] - d0,
            "probe_s": round(probe_s, 2),
            "retry_s": a.retry,
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--rcpts", type=int, default=1000000)
    p.add_argument("--per-message", type=int, default=1)
    p.add_argument("--probe", type=int, default=30, help="seconds of each accept probe")
    p.add_argument("--retry", type=int, default=20)
    p.add_argument("--time-limit", type=float, default=1800)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    b = Bench(args)
    try:
        res = b.run()
    finally:
        b.stop()
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print("%-34s %s" % (k, v))


if __name__ == "__main__":
    sys.exit(main())

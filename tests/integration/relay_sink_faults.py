#!/usr/bin/python3
"""relay_sink_faults: relay into `sluice-bench sink` with injected faults.

sluice-bench send gives sluiced 400 messages (one run id) for a domain
relayed through the sink, which answers 451 to a fifth of the RCPTs, 452
to a tenth of the final dots and 421 to a tenth of the greetings, and
drops a tenth of the connections at a random stage without a reply
(relay_msgs_per_connection = 4, so there are many connections to hit).  sluice must defer each
refused recipient, retry it on the (scaled-down) schedule and get every
message through: the sink's count of this run's unique copies reaches the
number of messages sluice accepted, nothing is corrupt, and the only
duplicates are ones a dropped connection can explain (a drop after the
final dot leaves the sender not knowing it was taken; RFC 1047).
"""

import time

from bench_harness import Sink, run_bench, send_json
from sluice_harness import Daemon, check, check_eq, info, wait_until

MESSAGES = 400
RUN = "5eed0001"


def body():
    sink = Sink("--fail", "rcpt:451:0.2", "--fail", "data:452:0.1", "--fail", "connect:421:0.1",
                "--drop", "0.1", "--seed", "11", "--run", RUN).start()
    d = Daemon("relay-sink-faults", queue_retry_min=1, queue_retry_max=2, delay_warning=0,
               relay_idle_timeout=2, relay_msgs_per_connection=4)
    d.routes = d.default_routes() + [
        {"domain": "sink.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % sink.port}]
    d.write_config()
    d.start()
    rep = send_json("127.0.0.1:%d" % d.port, "--messages", MESSAGES, "--connections", 20,
                    "--domain", "sink.test", "--run", RUN)
    accepted = rep["messages"]["accepted"]
    check_eq(accepted, MESSAGES, "sluiced accepted every message")
    wait_until(lambda: (sink.stats() or {}).get("unique", 0) >= accepted, 90,
               "every accepted message at the sink, through the faults")
    st = sink.stats()
    f = st["faults"]
    info("sink: unique %d duplicates %d; faults %s" % (st["unique"], st["duplicates"], f))
    check_eq(st["unique"], accepted, "unique copies of this run = messages accepted")
    check_eq((st["corrupt"], st["foreign"], st["other_runs"]), (0, 0, 0),
             "nothing corrupt, foreign or from another run")
    check(st["duplicates"] <= f["drop"], "duplicates only from dropped connections",
          st["duplicates"], "<= %d" % f["drop"])
    check(f["rcpt"] > 0 and f["data"] > 0 and f["drop"] > 0 and f["connect"] > 0,
          "every kind of fault was injected", f)
    retried = d.log_lines(r"\bdeferred\b")
    check(len(retried) >= f["rcpt"] // 2, "refused recipients were deferred and retried",
          len(retried), ">= %d" % (f["rcpt"] // 2))
    d.stop()
    sink.stop()


run_bench(body)

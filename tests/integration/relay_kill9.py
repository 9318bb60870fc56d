#!/usr/bin/python3
"""relay_kill9: kill -9 in the middle of relaying loses nothing.

sluice-bench send gives sluiced 3000 messages for a domain relayed to
`sluice-bench sink`.  While the relay is busy (the sink has some of them,
not all), sluiced is killed with SIGKILL and started again on the same
spool.  Every message that got its 250 must reach the sink: the sink's
unique copies of the run equal the messages accepted, nothing is corrupt,
and the only duplicates are messages that were in flight at the kill.  A
message is journalled as delivered after the server's 250 and the journal
is synced once per turn of the relay's loop, so a connection can have two
in flight: one whose 250 is journalled but not yet synced, and the next,
already sent.  With relay_dest_connections = 4 that bounds duplicates at 8.
"""

import threading

from bench_harness import Sink, run_bench, send_json
from sluice_harness import Daemon, check, check_eq, info, wait_until

MESSAGES = 3000
RUN = "5eed0009"
CONNS = 4


def body():
    sink = Sink("--run", RUN, "--latency", "2").start()
    d = Daemon("relay-kill9", relay_dest_connections=CONNS, queue_retry_min=1,
               queue_retry_max=1, delay_warning=0)
    d.routes = d.default_routes() + [
        {"domain": "sink.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % sink.port}]
    d.write_config()
    d.start()
    rep = send_json("127.0.0.1:%d" % d.port, "--messages", MESSAGES, "--connections", 50,
                    "--per-connection", 0, "--domain", "sink.test", "--run", RUN)
    accepted = rep["messages"]["accepted"]
    check_eq(accepted, MESSAGES, "every message accepted before the kill")
    wait_until(lambda: (sink.stats() or {}).get("unique", 0) >= MESSAGES // 10, 60,
               "the relay under way")
    before = sink.stats()["unique"]
    d.kill9()
    check(before < accepted, "killed while relaying (%d of %d at the sink)" % (before, accepted))
    d.start()
    wait_until(lambda: (sink.stats() or {}).get("unique", 0) >= accepted, 120,
               "every accepted message at the sink after the restart")
    st = sink.stats()
    info("killed at %d of %d; after restart unique %d duplicates %d" %
         (before, accepted, st["unique"], st["duplicates"]))
    check_eq(st["unique"], accepted, "nothing lost")
    check_eq((st["corrupt"], st["foreign"]), (0, 0), "nothing corrupt or foreign")
    check(st["duplicates"] <= 2 * CONNS, "duplicates only for what was in flight at the kill",
          st["duplicates"], "<= %d" % (2 * CONNS))
    d.stop()
    d.start()
    check_eq(d.wait_recovered(), 0, "nothing pending once all is delivered")
    d.stop()
    sink.stop()


run_bench(body)

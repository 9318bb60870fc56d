"""relay_limits: per-destination and global connection limits, messages per
connection, and the RFC 5321 4.5.3.2 timeouts, against smtp_peer.py.

Peers answer the final dot only after 0.3 s, so connections stay busy and
the limits show.  Checked:
  - relay_dest_connections = 2: never more than two connections to one
    destination at once, and both are used when mail waits;
  - relay_msgs_per_connection = 3: no connection carries more than three
    messages, so twelve messages take at least four connections;
  - relay_max_connections = 3 over two destinations that each want two:
    never more than three open in all;
  - a server that accepts and never greets: the greeting timeout
    (relay_timeout_command = 2 s) defers the message ("timeout"), and once
    the server greets it is delivered on the retry.
"""

import time

from sluice_harness import Daemon, check, check_eq, info, run_main, send_smtplib, wait_until
from smtp_peer import Concurrency, SmtpPeer


def msg(tag):
    return b"From: alice@known.test\r\nSubject: %s\r\n\r\nbody\r\n" % tag.encode()


def slow(m):
    time.sleep(0.3)
    return None


def body():
    both = Concurrency()
    with SmtpPeer("127.0.0.1", tracker=both) as a, SmtpPeer("127.0.0.1", tracker=both) as b, \
            SmtpPeer("127.0.0.1") as stall:
        a.data_reply = slow
        b.data_reply = slow
        stall.stall_greeting = True
        d = Daemon("relay-limits", relay_dest_connections=2, relay_msgs_per_connection=3,
                   relay_max_connections=3, relay_idle_timeout=1, relay_timeout_command=2,
                   queue_retry_min=1, queue_retry_max=1, delay_warning=0)
        d.routes = d.default_routes() + [
            {"domain": "a.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % a.port},
            {"domain": "b.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % b.port},
            {"domain": "stall.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % stall.port}]
        d.write_config()
        d.start()

        for i in range(12):
            check_eq(send_smtplib(d.port, "alice@known.test", ["x@a.test"], msg("a%d" % i))[0],
                     250, "accepted a%d" % i)
        a.wait_messages(12, timeout=30)
        per_conn = {}
        for m in a.messages:
            per_conn[m["conn"]] = per_conn.get(m["conn"], 0) + 1
        check_eq(a.max_concurrent, 2, "at most (and, with mail waiting, exactly) 2 connections")
        check(max(per_conn.values()) <= 3, "at most 3 messages per connection", per_conn)
        check(len(per_conn) >= 4, "12 messages need at least 4 connections", per_conn)
        info("ok per destination: %d at once, messages per connection %s" %
             (a.max_concurrent, sorted(per_conn.values())))

        a.messages.clear()
        both.max = 0
        for i in range(8):
            send_smtplib(d.port, "alice@known.test", ["x@a.test"], msg("ga%d" % i))
            send_smtplib(d.port, "alice@known.test", ["x@b.test"], msg("gb%d" % i))
        a.wait_messages(8, timeout=30)
        b.wait_messages(8, timeout=30)
        check(both.max <= 3, "global cap: at most 3 connections over both destinations",
              both.max, "<= 3")
        check(both.max >= 2, "both destinations were served in parallel", both.max, ">= 2")
        info("ok global cap: %d connections at once over two destinations" % both.max)

        send_smtplib(d.port, "alice@known.test", ["x@stall.test"], msg("stall"))
        line = wait_until(lambda: d.log_lines(r"deferred rcpts=1 .*timeout"), 15,
                          "the greeting timeout defers the message")
        info("ok silent server: %s" % line[0].split("status=")[-1])
        stall.stall_greeting = False
        stall.wait_messages(1, timeout=20)
        info("ok delivered once the server greets")
        d.stop()


run_main(body)

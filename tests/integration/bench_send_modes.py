#!/usr/bin/python3
"""sluice-bench send: every mode does what bench/README.md says, proven on
the wire (a scripted SMTP peer that records what arrives and when) and by
the sink's counts.

- Messages per connection and persistent sessions: connection counts.
- PIPELINING: groups sent together only when on and offered; lockstep
  otherwise (RFC 2920).
- BDAT: "BDAT n LAST" with n the exact size; refused up front when the
  server lacks CHUNKING.
- SIZE=n on MAIL when offered, with n the exact size (RFC 1870).
- Recipients per message, fixed sizes and a size mix.
- --rate, --duration, --source, IPv6.
- The report: reply counts, latency order, JSON fields, the table; exit
  status for refused messages, a server that is not there, usage errors.
"""

import re
import socket

from bench_harness import ScriptedPeer, Sink, bench, run_bench, send_json
from sluice_harness import check, check_eq, free_port, info

MAIL_SIZE = re.compile(rb"^MAIL FROM:<[^>]*> SIZE=(\d+)$")


def sink_counts(sink):
    f = sink.stop()
    return f["connections"], f["messages"], f["unique"], f["duplicates"], f["corrupt"], f["foreign"]


def connections_and_counts():
    sink = Sink().start()
    r1 = send_json(sink.server, "--messages", 600, "--connections", 20, "--per-connection", 3)
    # At most 3 per connection; near the end of the run sessions race for
    # the last messages, so up to one connection per slot may carry fewer.
    check_eq(r1["messages"]["accepted"], 600, "--per-connection 3: accepted")
    check(200 <= r1["connections"] <= 220, "--per-connection 3: connections",
          r1["connections"], "200..220")
    # Lockstep, one message per connection: every reply is counted.
    r2 = send_json(sink.server, "--messages", 100, "--connections", 10, "--pipelining", "off")
    check_eq(r2["replies"], {"220": 100, "250": 400, "354": 100, "221": 100},
             "replies of 100 lockstep sessions (EHLO, MAIL, RCPT, end of data: 250 each)")
    r3 = send_json(sink.server, "--messages", 1000, "--connections", 10, "--per-connection", 0)
    check_eq((r3["messages"]["accepted"], r3["connections"]), (1000, 10),
             "persistent sessions: (accepted, connections)")
    r4 = send_json(sink.server, "--messages", 300, "--rcpts", 5, "--connections", 10)
    check_eq((r4["messages"]["accepted"], r4["recipients_accepted"]), (300, 1500),
             "--rcpts 5: (messages, recipients) accepted")
    r5 = send_json(sink.server, "--messages", 300, "--rcpts", 2, "--bdat", "--connections", 10,
                   "--per-connection", 0)
    check_eq(r5["recipients_accepted"], 600, "--bdat --rcpts 2: recipients accepted")
    r6 = send_json(sink.server, "--messages", 200, "--size", "mix", "--connections", 10)
    # One message per connection: a connection opens only with a message
    # reserved for it, so none is opened in vain at the end of a run.
    check_eq((r4["connections"], r6["connections"]), (300, 200),
             "one message per connection: connections")
    want = sum(r["recipients_accepted"] for r in (r1, r2, r3, r4, r5, r6))
    conns = sum(r["connections"] for r in (r1, r2, r3, r4, r5, r6))
    check_eq(sink_counts(sink), (conns, 2500, want, 0, 0, 0),
             "sink (connections, messages, unique, duplicates, corrupt, foreign)")

    for r in (r1, r2, r3, r4, r5, r6):
        lat = r["latency_ms"]
        check(lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"],
              "latency percentiles in order", lat, "p50 <= p90 <= p99 <= p99.9 <= max")
        check_eq(lat["samples"], r["messages"]["accepted"], "one latency sample per message")
        check(r["rates"]["messages_per_s"] > 0 and r["elapsed_s"] > 0, "rates reported",
              r["rates"], "> 0")
        check_eq(set(r), {"run", "server", "settings", "elapsed_s", "messages",
                          "recipients_accepted", "bytes_accepted", "connections", "rates",
                          "latency_ms", "replies", "errors"}, "JSON report fields")
    info("ok connections, replies, recipients, BDAT and size mix against the sink")


def pipelining():
    peer = ScriptedPeer()
    send_json(peer.server, "--messages", 40, "--connections", 4, "--per-connection", 10)
    peer.wait_sessions_done()
    grouped = [b for s in peer.sessions for c, b in zip(s["commands"], s["batches"])
               if c.startswith(b"MAIL")]
    check(all(b >= 3 for b in grouped), "pipelining on: MAIL, RCPT and DATA arrive together",
          grouped[:10], ">= 3 commands waiting at each MAIL")

    for exts, flag, what in ((ScriptedPeer.__init__.__defaults__[0], "off", "--pipelining off"),
                             (("SIZE 100000000",), "on", "PIPELINING not offered")):
        peer = ScriptedPeer(exts=exts)
        send_json(peer.server, "--messages", 40, "--connections", 4, "--per-connection", 10,
                  "--pipelining", flag)
        peer.wait_sessions_done()
        batches = [b for s in peer.sessions for b in s["batches"]]
        check(batches and max(batches) == 1, "%s: one command at a time" % what,
              max(batches or [0]), 1)
        check_eq(sum(len(s["messages"]) for s in peer.sessions), 40, "%s: messages" % what)
    check_eq(peer.errors, [], "peer errors")
    info("ok pipelining only when on and offered")


def commands_on_the_wire():
    # SIZE= and BDAT n carry the exact message size.
    peer = ScriptedPeer()
    send_json(peer.server, "--messages", 30, "--connections", 3, "--per-connection", 0,
              "--bdat", "--size", "1k-200k", "--rcpts", 3)
    peer.wait_sessions_done()
    for s in peer.sessions:
        mails = [c for c in s["commands"] if c.startswith(b"MAIL")]
        bdats = [c for c in s["commands"] if c.startswith(b"BDAT")]
        rcpts = [c for c in s["commands"] if c.startswith(b"RCPT")]
        check_eq(len(rcpts), 3 * len(mails), "three RCPT per MAIL")
        check_eq(rcpts[:3], [b"RCPT TO:<r0@example.test>", b"RCPT TO:<r1@example.test>",
                             b"RCPT TO:<r2@example.test>"], "recipients r0..r2")
        for mail, bdat, msg in zip(mails, bdats, s["messages"]):
            m = MAIL_SIZE.match(mail)
            check(m, "MAIL carries SIZE= when offered", mail, "MAIL FROM:<...> SIZE=n")
            check_eq(int(m.group(1)), len(msg), "SIZE= is the message size")
            check_eq(bdat, b"BDAT %d LAST" % len(msg), "BDAT carries the message size")
    check_eq(sum(len(s["messages"]) for s in peer.sessions), 30, "BDAT messages received")

    # No SIZE offered: no SIZE= sent.  No CHUNKING: --bdat refuses to run.
    peer = ScriptedPeer(exts=("PIPELINING",))
    send_json(peer.server, "--messages", 5, "--connections", 1)
    peer.wait_sessions_done()
    mails = [c for s in peer.sessions for c in s["commands"] if c.startswith(b"MAIL")]
    check(mails and all(b"SIZE=" not in m for m in mails), "no SIZE= when not offered", mails,
          "MAIL FROM:<...>")
    rc, out, err = bench("send", "--server", peer.server, "--messages", 5, "--bdat", "--quiet")
    check_eq(rc, 1, "--bdat against a server without CHUNKING: exit status")
    check("CHUNKING" in err, "--bdat without CHUNKING: message", err, "... CHUNKING")
    info("ok SIZE= and BDAT sizes, recipients on the wire")


def sizes():
    # A fixed size is met to within half a body line (78 octets).
    peer = ScriptedPeer()
    send_json(peer.server, "--messages", 20, "--connections", 2, "--size", "10k")
    peer.wait_sessions_done()
    lens = [len(m) for s in peer.sessions for m in s["messages"]]
    check(len(lens) == 20 and all(abs(n - 10240) <= 39 for n in lens), "--size 10k",
          sorted(set(lens)), "10240 +- 39")
    # A mix: one thread and a fixed run id make the draws repeatable; every
    # class is drawn and every size lies in its class.
    peer = ScriptedPeer()
    send_json(peer.server, "--messages", 200, "--connections", 4, "--threads", 1, "--run",
              "0badcafe", "--size", "70%2k-8k,25%8k-100k,5%100k-2m", "--per-connection", 0)
    peer.wait_sessions_done()
    lens = [len(m) for s in peer.sessions for m in s["messages"]]
    check_eq(len(lens), 200, "size mix: messages received")
    classes = [sum(1 for n in lens if lo - 39 <= n <= hi + 39)
               for lo, hi in ((2048, 8192), (8192, 102400), (102400, 2 << 20))]
    check(all(classes) and sum(classes) >= 200, "size mix: every size in a class, every class drawn",
          classes, "[~140, ~50, ~10]")
    info("ok sizes %s" % classes)


def rate_duration_source_ipv6():
    sink = Sink().start()
    r = send_json(sink.server, "--messages", 60, "--rate", 100, "--threads", 1,
                  "--connections", 5, "--per-connection", 0)
    # 60 messages at 100/s, one token in hand at the start: 0.59 s at the least.
    check(r["elapsed_s"] >= 0.55, "--rate 100 for 60 messages takes its time", r["elapsed_s"],
          ">= 0.55 s")
    check_eq(r["messages"]["accepted"], 60, "--rate: accepted")
    r = send_json(sink.server, "--messages", 0, "--duration", 1, "--connections", 10,
                  "--per-connection", 0)
    check(r["elapsed_s"] >= 1.0 and r["messages"]["accepted"] > 0,
          "--messages 0 --duration 1 runs a second", r["elapsed_s"], ">= 1 s")
    check_eq(r["messages"]["failed"], 0, "--duration: messages in flight finish")
    accepted = 60 + r["messages"]["accepted"]
    counts = sink_counts(sink)
    check_eq(counts[2], accepted, "sink unique copies = accepted by the sender")

    peer = ScriptedPeer()
    send_json(peer.server, "--messages", 30, "--connections", 3, "--source",
              "127.0.0.2-127.0.0.4")
    peer.wait_sessions_done()
    check_eq(sorted(set(s["addr"] for s in peer.sessions)), ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
             "--source 127.0.0.2-127.0.0.4: client addresses")

    if not ipv6_loopback():
        info("note: no ::1 here, the IPv6 case is left out")
        info("ok rate, duration, source addresses")
        return
    sink = Sink(host="::1").start()
    r = send_json(sink.server, "--messages", 50, "--connections", 5)
    check_eq(r["messages"]["accepted"], 50, "IPv6 [::1]: accepted")
    check_eq(sink_counts(sink)[2], 50, "IPv6 sink unique")
    info("ok rate, duration, source addresses, IPv6")


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def exits_and_table():
    sink = Sink("--fail", "rcpt:550:1").start()
    r = send_json(sink.server, "--messages", 10, "--connections", 2, want_rc=(3,))
    check_eq((r["messages"]["accepted"], r["messages"]["refused"]), (0, 10),
             "all refused: (accepted, refused), exit status 3")
    rc, out, err = bench("send", "--server", sink.server, "--messages", 10, "--quiet")
    for want in ("msg/s", "latency ms", "refused 10", "replies"):
        check(want in out, "table report has '%s'" % want, out, want)
    sink.stop()
    rc, out, err = bench("send", "--server", "127.0.0.1:%d" % free_port(), "--messages", 5,
                         "--quiet", "--duration", 10)
    check_eq(rc, 1, "no server: exit status")
    check("cannot connect" in err, "no server: message", err, "cannot connect ...")
    for args in (["--size", "70%1k,20%2k"], ["--rcpts", "0"], ["--server", "nowhere"],
                 ["--pipelining", "maybe"], ["--run", "xyz"], ["--bogus"]):
        rc, out, err = bench("send", *args)
        check_eq(rc, 2, "usage error status for %s" % args)
        check(err.startswith("sluice-bench send:") or "unrecognized" in err,
              "usage error message for %s" % args, err, "sluice-bench send: ...")
    info("ok exit statuses and table")


def body():
    connections_and_counts()
    pipelining()
    commands_on_the_wire()
    sizes()
    rate_duration_source_ipv6()
    exits_and_table()


run_bench(body)

#!/usr/bin/python3
"""sluice-bench sink: it counts and verifies what it accepts, and injects
the faults it is configured with.

- Injected 4xx/5xx at MAIL, RCPT and end of data: the sender's counts of
  those codes equal the sink's fault counters, every accepted message is
  counted once, and the fractions are near what was asked for.
- A 421 that cuts a pipelined group short reaches the client (the sink
  drains input before it closes); replies to a flood of pipelined
  commands all arrive.
- Greetings refused (554, 421) as Python smtplib sees them; --drop closes
  connections without a reply.
- --greeting-delay, --latency and --tarpit hold replies at least as long
  as configured (lower bounds: the sink holds, it cannot be faster).
- Verification: a damaged body counts as corrupt, a resent message as a
  duplicate, a message without the header as foreign.
- --run counts one run's copies and reports the others apart.
- The stats file and the final --json agree, and the sink exits 0 on
  SIGTERM.
"""

import json
import smtplib
import socket
import time

from bench_harness import Sink, bench, run_bench, send_json
from sluice_harness import SmtpConn, check, check_eq, fail, info, wait_until

MESSAGES = 2000


def stage_faults():
    sink = Sink("--fail", "mail:452:0.05", "--fail", "rcpt:550:0.2", "--fail", "rcpt:451:0.05",
                "--fail", "data:552:0.1", "--seed", "7").start()
    rep = send_json(sink.server, "--messages", MESSAGES, "--connections", 20,
                    "--per-connection", 10, want_rc=(3,))
    final = sink.stop()
    m, f, replies = rep["messages"], final["faults"], rep["replies"]
    info("sender %s; sink faults %s" % (m, f))
    check_eq(m["attempted"], MESSAGES, "messages attempted")
    check_eq(m["accepted"] + m["refused"], MESSAGES, "accepted + refused")
    check_eq(m["failed"], 0, "messages failed (no connection trouble was injected)")
    # Each fault is one reply the sender saw, and refuses one message: a
    # message refused at MAIL never reaches RCPT or DATA.
    check_eq(replies.get("452", 0), f["mail"], "452s seen = MAIL faults injected")
    check_eq(replies.get("550", 0) + replies.get("451", 0), f["rcpt"],
             "550s + 451s seen = RCPT faults injected")
    check_eq(replies.get("552", 0), f["data"], "552s seen = end-of-data faults injected")
    check_eq(m["refused"], f["mail"] + f["rcpt"] + f["data"], "refused = faults injected")
    check_eq((final["messages"], final["unique"], final["duplicates"], final["corrupt"],
              final["foreign"]), (m["accepted"], m["accepted"], 0, 0, 0),
             "sink (messages, unique, duplicates, corrupt, foreign)")
    check_eq(final["transactions"], MESSAGES - f["mail"], "transactions = MAIL accepted")
    # Fractions of the decisions at each stage (5, 25 and 10 percent);
    # bounds far outside what chance gives with 2,000 draws.
    rcpt_decisions = MESSAGES - f["mail"]
    data_decisions = rcpt_decisions - f["rcpt"]
    for what, got, n, share in (("mail", f["mail"], MESSAGES, 0.05),
                                ("rcpt", f["rcpt"], rcpt_decisions, 0.25),
                                ("data", f["data"], data_decisions, 0.10)):
        check(abs(got / n - share) < 0.5 * share, "%s faults near %.0f%%" % (what, share * 100),
              "%d of %d" % (got, n), share)
    info("ok stage faults: %s" % f)


def closes_and_backpressure():
    # A 421 at MAIL ends the session while a pipelined 1 MiB BDAT chunk is
    # still arriving: the sink must drain it before closing, or the reset
    # would destroy the 421 in flight.
    sink = Sink("--fail", "mail:421:1").start()
    rep = send_json(sink.server, "--messages", 100, "--bdat", "--size", "1m",
                    "--connections", 10, want_rc=(3,))
    final = sink.stop()
    check_eq((rep["replies"].get("421"), final["faults"]["mail"], rep["messages"]["failed"]),
             (100, 100, 0), "421 at MAIL behind pipelined BDAT: (421s seen, injected, failed)")
    # Replies to a flood of pipelined commands are all delivered: input is
    # left unread while replies pile up, not answered into an overflow.
    sink = Sink().start()
    s = socket.create_connection(("127.0.0.1", sink.port), timeout=20)
    data = s.recv(4096)
    s.sendall(b"EHLO x\r\n" * 8000)
    s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    s.close()
    check_eq(data.count(b"\r\n250 "), 8000, "replies to 8,000 pipelined EHLOs")
    sink.stop()
    info("ok lingering close and output back-pressure")


def greeting_faults():
    for code in (554, 421):
        sink = Sink("--fail", "connect:%d:1" % code).start()
        try:
            smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
            fail("smtplib connected although every greeting is %d" % code)
        except smtplib.SMTPConnectError as e:
            check_eq(e.smtp_code, code, "greeting code smtplib saw")
            check(b"injected fault" in e.smtp_error, "greeting text", e.smtp_error,
                  "injected fault")
        except smtplib.SMTPServerDisconnected:
            check(code == 421, "only a 421 greeting may drop the connection before QUIT")
        final = sink.stop()
        check_eq(final["faults"]["connect"], 1, "connect faults counted (%d)" % code)
    info("ok greeting faults")


def drops():
    sink = Sink("--drop", "1").start()
    for _ in range(20):
        try:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
                s.ehlo("client.test")
                s.sendmail("a@client.test", ["r0@example.test"], b"Subject: x\r\n\r\nhi\r\n")
            fail("a session completed although --drop is 1")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError):
            pass
    final = sink.stop()
    check_eq((final["connections"], final["faults"]["drop"], final["messages"]), (20, 20, 0),
             "sink (connections, drops, messages) with --drop 1")
    info("ok drops")


def elapsed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def delays():
    # --greeting-delay: the greeting waits.
    sink = Sink("--greeting-delay", "300").start()
    t = elapsed(lambda: SmtpConn(sink.port).expect(220, "greeting"))
    check(t >= 0.3, "greeting came after --greeting-delay 300", "%.3f s" % t, ">= 0.3 s")
    sink.stop()
    # --latency: every batch of replies is held; lockstep, each command waits.
    sink = Sink("--latency", "100").start()
    c = SmtpConn(sink.port)
    c.expect(220, "greeting")
    t = elapsed(lambda: [c.cmd("NOOP", 250) for _ in range(3)])
    check(t >= 0.3, "three lockstep NOOPs with --latency 100", "%.3f s" % t, ">= 0.3 s")
    # Pipelined, the three replies are one batch: held once, not three times.
    c.send("NOOP\r\nNOOP\r\nNOOP\r\n")
    for _ in range(3):
        c.expect(250, "pipelined NOOP")
    c.close()
    rep = send_json(sink.server, "--messages", 20, "--connections", 2, "--per-connection", 0)
    check(rep["latency_ms"]["p50"] >= 100, "sender's end-of-data latency with --latency 100",
          rep["latency_ms"], "p50 >= 100 ms")
    sink.stop()
    # --tarpit: pipelined commands are answered one at a time, 150 ms apart.
    sink = Sink("--tarpit", "150").start()
    c = SmtpConn(sink.port)
    c.expect(220, "greeting")
    c.send("NOOP\r\nNOOP\r\nNOOP\r\n")
    t = elapsed(lambda: [c.expect(250, "tarpitted NOOP") for _ in range(3)])
    check(t >= 0.3, "three pipelined NOOPs with --tarpit 150 (two gaps at least)",
          "%.3f s" % t, ">= 0.3 s")
    c.close()
    sink.stop()
    info("ok delays")


def bench_message(seq, body=b"line one\r\nline two\r\n", crc=None):
    """A benchmark message like sluice-bench's, with the right CRC-32C
    unless crc is given."""
    crc = crc if crc is not None else crc32c(body)
    return (b"Subject: t\r\nX-Sluice-Bench: run=0000abcd seq=%d rcpts=1 body=%d crc=%08x\r\n\r\n"
            % (seq, len(body), crc)) + body


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def verification():
    sink = Sink().start()
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
        s.sendmail("a@client.test", ["r0@example.test"], bench_message(1))
        s.sendmail("a@client.test", ["r0@example.test"], bench_message(1))  # a duplicate
        s.sendmail("a@client.test", ["r0@example.test", "r1@example.test"], bench_message(2))
        s.sendmail("a@client.test", ["r0@example.test"], bench_message(3, crc=0x12345678))
        s.sendmail("a@client.test", ["r0@example.test"], b"Subject: plain\r\n\r\nhello\r\n")
        s.sendmail("a@client.test", ["someone@example.test"], bench_message(4))
    # The stats file is rewritten while the sink runs (every 0.2 s).
    wait_until(lambda: (sink.stats() or {}).get("messages") == 6, 5,
               "the running sink's stats file to show 6 messages")
    final = sink.stop()
    check_eq((final["messages"], final["recipients"], final["unique"], final["duplicates"],
              final["corrupt"], final["foreign"]), (6, 7, 3, 1, 1, 2),
             "sink (messages, recipients, unique, duplicates, corrupt, foreign)")
    with open(sink.stats_path) as f:
        check_eq(json.load(f), final, "the stats file at exit equals the --json output")
    info("ok verification")


def run_filter():
    # --run: only that run's copies count; another run's are other_runs.
    sink = Sink("--run", "0000abcd").start()
    send_json(sink.server, "--messages", 40, "--run", "0000abcd", "--connections", 4)
    send_json(sink.server, "--messages", 30, "--rcpts", 2, "--run", "0000beef", "--connections", 3)
    final = sink.stop()
    check_eq((final["messages"], final["unique"], final["duplicates"], final["other_runs"],
              final["foreign"]), (70, 40, 0, 60, 0),
             "sink --run: (messages, unique, duplicates, other_runs, foreign)")
    info("ok run filter")


def usage():
    for args, what in ((["--fail", "rcpt:250:0.5"], "a 2xx fault"),
                       (["--fail", "helo:550:0.5"], "an unknown stage"),
                       (["--fail", "rcpt:550:1.5"], "a fraction over 1"),
                       (["--drop", "x"], "a bad fraction"),
                       (["--listen", "localhost"], "no port"),
                       (["--run", "12345"], "a short run id")):
        rc, out, err = bench("sink", *args, "--duration", "1")
        check_eq(rc, 2, "sink usage error status for %s" % what)
        check("sluice-bench sink" in err, "usage error message for %s" % what, err, "a message")
    info("ok usage errors")


def body():
    stage_faults()
    closes_and_backpressure()
    greeting_faults()
    drops()
    delays()
    verification()
    run_filter()
    usage()


run_bench(body)

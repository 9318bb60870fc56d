#!/usr/bin/python3
"""Session timeouts (RFC 5321 4.5.3.2), set short here: timeout_command = 1
and timeout_data_block = 1.  A client silent after EHLO, one silent in the
middle of a command line, and one that stops in the middle of its DATA each
get a 421 and are closed within a few seconds (not before the timeout); the
half-sent message is not delivered; a client that keeps talking is not cut."""

import time

from sluice_harness import Daemon, check, check_eq, fail, qid_of, run_main, info


def expect_timeout(c, what, t0, lo=0.9, hi=6.0):
    try:
        code, text = c.reply()
    except (ConnectionError, OSError) as e:
        fail("%s: closed without a 421" % what, repr(e), "421 ...")
    dt = time.monotonic() - t0
    check(code == 421, "%s: reply" % what, "%d %s" % (code, text), "421 ...")
    check(lo <= dt <= hi, "%s: 421 after %.2f s" % (what, dt), round(dt, 2), "%.1f..%.1f s" % (lo, hi))
    check(c.closed_by_peer(5), "%s: closed after the 421" % what)
    c.close()
    return dt


def body():
    d = Daemon("timeouts", timeout_command=1, timeout_data_block=1)
    d.start()

    # A busy client: a NOOP every 0.3 s for 2.5 s is never timed out.
    busy = d.connect()
    busy.greet()
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        busy.cmd("NOOP", 250, "NOOP of a client that keeps talking")
        time.sleep(0.3)  # pacing the client, not waiting for the server
    busy.cmd("QUIT", 221)
    busy.close()

    idle = d.connect()
    idle.greet()
    t0 = time.monotonic()
    a = expect_timeout(idle, "idle after EHLO (timeout_command = 1)", t0)

    partial = d.connect()
    partial.greet()
    partial.send("MAIL FROM:<sender@")  # no line end: still one command
    t1 = time.monotonic()
    b = expect_timeout(partial, "half a command line (timeout_command = 1)", t1)

    stalled = d.connect()
    stalled.greet()
    stalled.cmd("MAIL FROM:<sender@client.test>", 250)
    stalled.cmd("RCPT TO:<user@example.test>", 250)
    stalled.cmd("DATA", 354)
    stalled.send("Subject: stalled\r\n\r\nhalf a messa")
    t2 = time.monotonic()
    c = expect_timeout(stalled, "stalled in DATA (timeout_data_block = 1)", t2)
    check(not d.log_lines(r"accepted"), "no message accepted (the stalled one must not be)",
          d.log_lines(r"accepted"), [])
    check_eq(d.all_mail_files(), [], "files under the Maildir root")
    info("421 after %.2f s idle, %.2f s mid-line, %.2f s mid-DATA; busy client kept" % (a, b, c))
    d.stop()


run_main(body)

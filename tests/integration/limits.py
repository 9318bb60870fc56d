#!/usr/bin/python3
"""Limits that protect the server:
  - max_connections_per_ip = 3: a 4th concurrent connection from the same
    address gets 421 4.7.0 and is closed; once one closes, a new one is let in;
  - max_connections = 4 (total): with 3 from 127.0.0.1 and 1 from 127.0.0.2,
    a connection from 127.0.0.3 gets 421 4.7.0;
  - max_errors = 5: a session that keeps sending bad commands gets 421 and is
    closed after at most max_errors error replies;
  - a command line over 512 octets gets 500 5.5.2 and the session goes on;
  - max_recipients = 3: the 4th RCPT is refused (452 4.5.3 or 552 5.5.3)
    and the message still goes to the first three."""

import socket
import time

from sluice_harness import Daemon, SmtpConn, check, check_eq, fail, qid_of, run_main, info


def conn_from(port, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    c = SmtpConn.__new__(SmtpConn)
    c.sock, c.buf = s, b""
    return c


def expect_421_close(c, what):
    code, text = c.reply()
    check(code == 421 and text.startswith("4.7.0"), what, "%d %s" % (code, text), "421 4.7.0 ...")
    check(c.closed_by_peer(5), "%s: connection closed after the 421" % what)
    c.close()


def per_ip(d):
    held = []
    for i in range(3):
        c = d.connect()
        c.expect(220, "connection %d of 3 greeting" % (i + 1))
        held.append(c)
    expect_421_close(d.connect(), "4th connection from 127.0.0.1 (max_connections_per_ip = 3)")
    # Another address is not affected by 127.0.0.1's count.
    other = conn_from(d.port, "127.0.0.2")
    other.expect(220, "greeting for 127.0.0.2 while 127.0.0.1 is at its limit")
    other.cmd("QUIT", 221)
    other.close()
    # Free one slot: the server notices the close asynchronously, so poll.
    freed = held.pop()
    freed.cmd("QUIT", 221)
    freed.close()
    deadline = time.monotonic() + 5
    while True:
        c = d.connect()
        code, text = c.reply()
        if code == 220:
            held.append(c)
            break
        c.close()
        if time.monotonic() > deadline:
            fail("a slot freed by QUIT is never given to a new connection", "%d %s" % (code, text), "220")
        time.sleep(0.05)
    for c in held:
        c.cmd("QUIT", 221)
        c.close()
    info("ok per-ip limit: 4th connection refused with 421 4.7.0, slot reused after QUIT")


def total(d):
    held = []
    for i in range(3):
        c = d.connect()
        c.expect(220, "127.0.0.1 connection %d greeting" % (i + 1))
        held.append(c)
    c = conn_from(d.port, "127.0.0.2")
    c.expect(220, "127.0.0.2 connection (4th of max_connections = 4)")
    held.append(c)
    expect_421_close(conn_from(d.port, "127.0.0.3"), "5th connection in total (max_connections = 4)")
    for c in held:
        c.cmd("QUIT", 221)
        c.close()
    info("ok total limit: 5th connection refused with 421 4.7.0")


def errors(d, max_errors):
    c = d.connect()
    c.greet()
    n = 0
    while True:
        c.send("BOGUS%d\r\n" % n)
        code, text = c.reply()
        if code == 421:
            break
        check(500 <= code < 600, "reply to bad command %d" % n, "%d %s" % (code, text), "5xx")
        n += 1
        check(n <= max_errors, "still no 421 after %d error replies (max_errors = %d)" % (n, max_errors))
    check(n >= max_errors - 1, "421 came too early", n, "%d or %d error replies first" % (max_errors - 1, max_errors))
    check(c.closed_by_peer(5), "connection closed after the too-many-errors 421")
    c.close()
    info("ok max_errors: 421 after %d error replies" % n)


def long_line(d):
    c = d.connect()
    c.greet()
    for what, line in (("NOOP", "NOOP " + "x" * 600), ("MAIL", "MAIL FROM:<%s@client.test>" % ("a" * 600))):
        c.send(line + "\r\n")
        code, text = c.reply()
        check(code == 500 and text.startswith("5.5.2"), "%s line of %d octets" % (what, len(line) + 2),
              "%d %s" % (code, text), "500 5.5.2 ...")
        c.cmd("NOOP", 250, "NOOP after the over-long %s line (rest of the line must be dropped)" % what)
    c.cmd("QUIT", 221)
    c.close()
    info("ok over-long command line: 500 5.5.2, session continues")


def recipients(d):
    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    for i in range(3):
        c.cmd("RCPT TO:<r%d@example.test>" % i, 250)
    c.send("RCPT TO:<r3@example.test>\r\n")
    code, text = c.reply()
    check((code, text[:5]) in ((452, "4.5.3"), (552, "5.5.3")), "4th RCPT (max_recipients = 3)",
          "%d %s" % (code, text), "452 4.5.3 (or 552 5.5.3)")
    c.cmd("DATA", 354)
    c.send("Subject: limits\r\n\r\nthree recipients\r\n.\r\n")
    qid_of(c.expect(250, "end of data", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()
    for i in range(3):
        d.wait_mail(1, "example.test", "r%d" % i)
    check_eq(d.mail_count("example.test", "r3"), 0, "copies for the refused 4th recipient")
    info("ok max_recipients: 4th refused with %d %s" % (code, text[:5]))


def body():
    d = Daemon("limits", max_connections_per_ip=3, max_errors=5, max_recipients=3)
    d.start()
    per_ip(d)
    errors(d, 5)
    long_line(d)
    recipients(d)
    d.stop()
    d2 = Daemon("limits-total", max_connections=4, max_connections_per_ip=3)
    d2.start()
    total(d2)
    d2.stop()


run_main(body)

#!/usr/bin/python3
"""No open relay: a client outside relay_networks gets 554 5.7.1 for a
recipient in a domain the routing table does not accept; a local recipient
in the same transaction is still accepted and delivered; a client inside
relay_networks (source 127.0.0.2) is allowed to relay (positive control)."""

import socket

from sluice_harness import Daemon, SmtpConn, check, check_eq, qid_of, run_main, info


def body():
    d = Daemon("relay-denied", relay_networks=["127.0.0.2/32"])
    d.start()

    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    for rcpt in ("victim@elsewhere.example", "x@example.test.evil", "a@[192.0.2.1]",
                 "b@EXAMPLE.NET"):
        c.send("RCPT TO:<%s>\r\n" % rcpt)
        code, text = c.reply()
        check(code == 554 and text.startswith("5.7.1"),
              "relay from 127.0.0.1 to <%s> must be denied" % rcpt,
              "%d %s" % (code, text), "554 5.7.1 ...")
    c.cmd("RCPT TO:<user@example.test>", 250, "local recipient after denied ones")
    c.cmd("DATA", 354)
    c.send("Subject: relay-denied\r\n\r\nlocal copy\r\n.\r\n")
    qid = qid_of(c.expect(250, "end of data", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()
    files = d.wait_mail(1)
    check_eq(len(files), 1, "copies delivered")
    check(qid.encode() in files[0][1], "copy names the queue id", files[0][1][:200], qid)
    # The accepted log line counts only the accepted recipient.
    lines = d.log_lines(r"%s accepted" % qid)
    check(lines and "nrcpt=1" in lines[0], "accepted log line", lines, "... nrcpt=1 ...")

    # Positive control: from 127.0.0.2 (in relay_networks) the same RCPT is
    # accepted.  RSET so nothing goes to the (unreachable) remote side.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", d.port))
    c2 = SmtpConn.__new__(SmtpConn)
    c2.sock, c2.buf = s, b""
    c2.greet()
    c2.cmd("MAIL FROM:<sender@client.test>", 250)
    c2.cmd("RCPT TO:<victim@elsewhere.example>", 250, "relay from 127.0.0.2 (in relay_networks)")
    c2.cmd("RSET", 250)
    c2.cmd("QUIT", 221)
    c2.close()

    check_eq(d.all_mail_files(), [files[0][0]], "every file under the Maildir root")
    info("denied 4 relay recipients, delivered the local one, relay_networks allows 127.0.0.2")
    d.stop()


run_main(body)

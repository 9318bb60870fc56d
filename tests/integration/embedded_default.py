#!/usr/bin/python3
"""sluiced without -c runs on the embedded default: 127.0.0.1:2525, spool
./var/spool, example.test and localhost delivered catch-all to
./var/mail/<domain>/<user>/ (relative to the working directory), no relay.
Skips (77) when port 2525 is taken (another test or a local service)."""

import os
import socket

from sluice_harness import (Daemon, Skip, check, check_eq, info, listening, qid_of, run_main,
                            split_received)


def body():
    if listening(2525):
        raise Skip("127.0.0.1:2525 is in use")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
    try:
        s.bind(("127.0.0.1", 2525))
    except OSError as e:
        raise Skip("cannot bind 127.0.0.1:2525: %s" % e)
    finally:
        s.close()
    d = Daemon("embedded-default", port=2525)
    d.start(use_config=False)
    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    c.cmd("RCPT TO:<someone@example.test>", 250, "catch-all example.test")
    c.cmd("RCPT TO:<root@localhost>", 250, "catch-all localhost")
    c.send("RCPT TO:<x@elsewhere.example>\r\n")
    code, text = c.reply()
    check(code == 554 and text.startswith("5.7.1"), "relay in the default config",
          "%d %s" % (code, text), "554 5.7.1 ...")
    c.cmd("DATA", 354)
    c.send("Subject: default\r\n\r\nembedded default\r\n.\r\n")
    qid = qid_of(c.expect(250, "end of data", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()
    d.mail = os.path.join(d.dir, "var", "mail")
    for dom, user in (("example.test", "someone"), ("localhost", "root")):
        files = d.wait_mail(1, dom, user)
        recv, rest = split_received(files[0][1])
        check_eq(rest, b"Subject: default\n\nembedded default\n", "copy in var/mail/%s/%s" % (dom, user))
    check(os.path.isdir(os.path.join(d.dir, "var", "spool")), "spool at ./var/spool")
    info("embedded default: listens on 2525, delivers to ./var/mail, no relay (qid %s)" % qid)
    d.stop()


run_main(body)

#!/usr/bin/python3
"""max_message_size is enforced: EHLO advertises SIZE; MAIL FROM with a
larger SIZE= gets 552 5.3.4; a message whose data exceeds the limit without
SIZE= gets 552 5.3.4 at end of data and nothing is stored; the session stays
usable and a message just under the limit is delivered."""

from sluice_harness import Daemon, check, check_eq, qid_of, run_main, info

LIMIT = 100000


def body():
    d = Daemon("oversize", max_message_size=LIMIT)
    d.start()
    c = d.connect()
    ehlo = c.greet()
    sizes = [l for l in ehlo.split("\n") if l.upper().startswith("SIZE")]
    check(sizes == ["SIZE %d" % LIMIT], "EHLO SIZE keyword", sizes, ["SIZE %d" % LIMIT])

    c.send("MAIL FROM:<sender@client.test> SIZE=%d\r\n" % (LIMIT + 1))
    code, text = c.reply()
    check(code == 552 and text.startswith("5.3.4"), "MAIL with SIZE over the limit",
          "%d %s" % (code, text), "552 5.3.4 ...")

    # No SIZE=: the server finds out while reading the data.
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    c.cmd("RCPT TO:<user@example.test>", 250)
    c.cmd("DATA", 354)
    line = b"y" * 78 + b"\r\n"
    big = b"Subject: too big\r\n\r\n" + line * (LIMIT // len(line) + 10)
    c.send(big + b".\r\n")
    code, text = c.reply()
    check(code == 552 and text.startswith("5.3.4"), "end of data of an oversize message",
          "%d %s" % (code, text), "552 5.3.4 ...")

    # Same session: a message under the limit goes through.
    c.cmd("MAIL FROM:<sender@client.test> SIZE=%d" % (LIMIT // 2), 250)
    c.cmd("RCPT TO:<user@example.test>", 250)
    c.cmd("DATA", 354)
    small = b"Subject: fits\r\n\r\n" + line * ((LIMIT - 2000) // len(line))
    c.send(small + b".\r\n")
    qid = qid_of(c.expect(250, "end of data of a message under the limit", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()

    files = d.wait_mail(1)
    d.wait_delivered(qid)
    check_eq(len(d.all_mail_files()), 1, "files stored (the oversize message must not be)")
    check(b"Subject: fits" in files[0][1], "the stored copy is the small one", files[0][1][:300], "Subject: fits")
    check(not d.log_lines(r"accepted.*size=(\d{6,})"), "no accepted log line for the oversize message",
          d.log_lines(r"accepted"), "only the small one")
    info("SIZE=%d refused at MAIL, oversize data refused at end of data, %d-byte message delivered (qid %s)"
         % (LIMIT + 1, len(small), qid))
    d.stop()


run_main(body)

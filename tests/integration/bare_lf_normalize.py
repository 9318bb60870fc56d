#!/usr/bin/python3
"""bare_lf = "normalize": data with bare LF line ends is accepted and
stored with its lines intact (every line end becomes LF in the Maildir),
and a <LF>.<LF> never ends the data early (no smuggled second message)."""

from sluice_harness import Daemon, check, check_eq, qid_of, run_main, info


def body():
    d = Daemon("bare-lf-normalize", bare_lf="normalize")
    d.start()
    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    c.cmd("RCPT TO:<user@example.test>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: normalize\nX-Mixed: yes\r\n\r\nfirst\nsecond\r\nthird\n\nfifth\r\n.\r\n")
    qid = qid_of(c.expect(250, "end of data with bare LFs in normalize mode", "2.0.0"))
    # <LF>.<LF> is not the end of data (that needs <CR><LF>.<CR><LF>): one
    # reply for the whole thing, and the text after it is in the same copy.
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    c.cmd("RCPT TO:<user@example.test>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: fake end\r\n\r\nbefore\n.\nQUIT\nafter\r\n.\r\n")
    qid2 = qid_of(c.expect(250, "end of data after a <LF>.<LF>", "2.0.0"))
    c.cmd("NOOP", 250, "NOOP after the second message (a smuggled QUIT would have closed)")
    c.cmd("QUIT", 221)
    c.close()
    d.wait_mail(2)
    d.wait_delivered(qid2)
    second = [data for p, data in d.mail_files() if qid2.encode() in data.split(b"\n\n", 1)[0]]
    check(len(second) == 1 and b"before\n" in second[0] and b"after\n" in second[0],
          "copy of the <LF>.<LF> message holds the text on both sides", second, b"...before...after...")
    files = [f for f in d.mail_files() if qid.encode() in f[1].split(b"\n\n", 1)[0]]
    d.wait_delivered(qid)
    want = b"Subject: normalize\nX-Mixed: yes\n\nfirst\nsecond\nthird\n\nfifth\n"
    got = files[0][1].split(b"\n", 1)[1] if files[0][1].startswith(b"Received:") else files[0][1]
    # Drop folded Received: continuation lines.
    while got[:1] in (b" ", b"\t"):
        got = got.split(b"\n", 1)[1]
    check_eq(got, want, "stored copy (after the Received: header)")
    check_eq(len(d.all_mail_files()), 2, "files stored")
    info("bare LFs normalized (qid %s), <LF>.<LF> did not end the data (qid %s)" % (qid, qid2))
    d.stop()


run_main(body)

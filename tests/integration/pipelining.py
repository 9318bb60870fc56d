#!/usr/bin/python3
"""PIPELINING (RFC 2920): EHLO advertises it; a client that writes the whole
envelope in one write (MAIL, RCPT, RCPT, DATA), then the data, then more
transactions the same way gets every reply in order, and every message is
delivered to each recipient.  A refused RCPT in the middle of a pipelined
batch gets its 550 at its place in the reply order."""

from sluice_harness import Daemon, check, check_eq, fail, qid_of, run_main, info

NMSG = 5


def body():
    d = Daemon("pipelining")
    d.start()
    c = d.connect()
    # RFC 2920: EHLO ends a group, so the client waits for its reply.
    ehlo = c.greet()
    check("PIPELINING" in [l.upper() for l in ehlo.split("\n")], "EHLO keywords", ehlo, "PIPELINING")

    qids = []
    for i in range(NMSG):
        batch = ("MAIL FROM:<sender@client.test>\r\n"
                 "RCPT TO:<user@example.test>\r\n"
                 "RCPT TO:<nobody@known.test>\r\n"
                 "RCPT TO:<alice@known.test>\r\n"
                 "DATA\r\n")
        c.send(batch)
        for what, code, pre in (("MAIL", 250, None), ("RCPT user", 250, None),
                                ("RCPT nobody (unknown)", 550, "5.1.1"),
                                ("RCPT alice", 250, None), ("DATA", 354, None)):
            c.expect(code, "message %d pipelined %s" % (i, what), pre)
        c.send("Subject: pipelined %d\r\nMessage-ID: <pipe-%d@client.test>\r\n\r\nbody %d\r\n.\r\n"
               % (i, i, i))
        qid = qid_of(c.expect(250, "message %d end of data" % i, "2.0.0"))
        check(qid and qid not in qids, "message %d: new queue id" % i, qid, "fresh 16-hex id")
        qids.append(qid)

    # Everything, data included, in a single write: two transactions + QUIT.
    blob = ""
    for i in range(NMSG, NMSG + 2):
        blob += ("MAIL FROM:<sender@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
                 "Subject: pipelined %d\r\nMessage-ID: <pipe-%d@client.test>\r\n\r\nbody %d\r\n.\r\n"
                 % (i, i, i))
    blob += "QUIT\r\n"
    c.send(blob)
    for i in range(NMSG, NMSG + 2):
        c.expect(250, "one-write message %d MAIL" % i)
        c.expect(250, "one-write message %d RCPT" % i)
        c.expect(354, "one-write message %d DATA" % i)
        qid = qid_of(c.expect(250, "one-write message %d end of data" % i, "2.0.0"))
        qids.append(qid)
    c.expect(221, "QUIT")
    check(c.closed_by_peer(5), "server closes after 221")
    c.close()

    total = NMSG + 2
    for dom, user, n in (("example.test", "user", total), ("known.test", "alice", NMSG)):
        files = d.wait_mail(n, dom, user)
        check_eq(len(files), n, "copies for %s@%s" % (user, dom))
        ids = sorted(int(data.split(b"Message-ID: <pipe-")[1].split(b"@")[0]) for _, data in files)
        check_eq(ids, list(range(n)), "Message-IDs delivered to %s@%s" % (user, dom))
    check_eq(len(d.all_mail_files()), total + NMSG, "files under the Maildir root")
    info("%d pipelined messages, replies in order, all delivered" % total)
    d.stop()


run_main(body)

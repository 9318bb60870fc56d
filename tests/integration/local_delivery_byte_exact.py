#!/usr/bin/python3
"""Local delivery is byte-exact: what smtplib sends to user@example.test is
what lands in the Maildir (CRLF -> LF), with only a Received: header that
names the queue id of the 250 reply prepended.  One message per tricky
body, so a failure names the case."""

import re

from sluice_harness import (Daemon, check, check_eq, crlf, fail, info, run_main, send_smtplib,
                            qid_of, split_received)

HDR = "From: <sender@client.test>\nTo: <user@example.test>\nSubject: %s\nMessage-ID: <%s@client.test>\n\n"

CASES = [
    # (name, body (str or bytes, \n line ends), mail options, ends without newline)
    ("plain", "hello\nworld\n", (), False),
    ("dot_lines", ".\n..\n.hidden\n. space\nmiddle.\n...\n", (), False),
    ("lone_dot_last", "text\n.\n", (), False),
    ("empty_lines", "\n\n\nafter three empty lines\n\n\n", (), False),
    ("long_998", ("x" * 998) + "\n" + ("." + "y" * 997) + "\n", (), False),
    ("utf8_8bitmime", "Grüße aus Köln, ÆØÅ, 日本語, emoji \U0001F600\n", ("BODY=8BITMIME",), False),
    ("latin1_8bitmime", b"caf\xe9 na\xefve \xff\xfe\n", ("BODY=8BITMIME",), False),
    ("no_final_newline", "the last line has no newline", (), True),
    ("dot_no_final_newline", "line\n.", (), True),
    ("header_only", "", (), False),
    ("tabs_and_spaces", "\tindented\n   spaces   \n \t \n", (), False),
    ("many_lines", "".join("line %05d\n" % i for i in range(3000)), (), False),
]


def body():
    d = Daemon("byte-exact")
    d.start()
    sent = []
    for i, (name, body_text, opts, no_nl) in enumerate(CASES):
        hdr = (HDR % (name, "byte-exact-%d" % i)).encode()
        b = body_text.encode("utf-8") if isinstance(body_text, str) else body_text
        msg = crlf(hdr + b)
        code, text = send_smtplib(d.port, "sender@client.test", ["user@example.test"], msg,
                                  mail_options=opts)
        if code != 250 or not text.startswith("2.0.0"):
            fail("case %s: DATA reply" % name, "%d %s" % (code, text), "250 2.0.0 Ok: queued as <QID>")
        qid = qid_of(text)
        check(qid is not None, "case %s: no 16-hex queue id in the 250 reply" % name, text,
              "Ok: queued as <16 hex>")
        # smtplib adds CRLF before the final "." when the message does not
        # end with one, so the stored copy ends with a newline either way.
        want = msg.replace(b"\r\n", b"\n")
        if no_nl:
            want += b"\n"
        sent.append((name, qid, want))

    files = d.wait_mail(len(CASES))
    check_eq(len(files), len(CASES), "number of copies in example.test/user/new")
    by_qid = {}
    for path, data in files:
        recv, rest = split_received(data)
        check(recv is not None, "copy %s does not start with a Received: header" % path,
              data[:80], b"Received: ...")
        check(recv.count(b"Received:") == 1, "copy %s: more than one Received: header" % path)
        check(b"\r" not in data, "copy %s holds a CR (Maildir wants LF line ends)" % path)
        # RFC 5321 4.4: from <helo> (TCP-info as an address literal), by,
        # with <protocol>, id <queue id>, for <path>; <RFC 5322 date>.
        shape = re.match(rb"Received: from (\S+) \(\[127\.0\.0\.1\]\)\n\tby \S+ \(sluice\) "
                         rb"with (ESMTP|SMTP|UTF8SMTP) id ([0-9A-F]{16})\n\tfor <[^<>\s]+@example\.test>; "
                         rb"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n$", recv)
        check(shape is not None, "copy %s: Received: header not in RFC 5321 4.4 form" % path, recv,
              b"Received: from HELO ([127.0.0.1])\n\tby HOST (sluice) with ESMTP id QID\n\tfor <rcpt>; DATE\n")
        qids = [q for name, q, w in sent if q.encode() in recv]
        check(len(qids) == 1, "copy %s: Received: names none/several of our queue ids" % path,
              recv, "one of %s" % [q for _, q, _ in sent])
        check(qids[0] not in by_qid, "queue id %s delivered twice" % qids[0])
        by_qid[qids[0]] = rest
    for name, qid, want in sent:
        got = by_qid.get(qid)
        if got != want:
            # Show where they differ, not only both blobs.
            n = next((k for k in range(min(len(got or b""), len(want)))
                      if got[k] != want[k]), min(len(got or b""), len(want)))
            fail("case %s (qid %s): stored copy differs at byte %d (got %d bytes, want %d)" %
                 (name, qid, n, len(got or b""), len(want)),
                 (got or b"")[max(0, n - 20):n + 40], want[max(0, n - 20):n + 40])
        info("ok %-22s qid=%s %d bytes" % (name, qid, len(want)))
    d.stop()


run_main(body)

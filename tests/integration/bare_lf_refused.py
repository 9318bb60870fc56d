#!/usr/bin/python3
"""SMTP smuggling defence (bare_lf = "refuse", the default): data holding a
bare LF gets exactly one 550 5.6.0 at the real end of data and nothing is
delivered, not even a message "smuggled" after a <LF>.<LF> or <CR><LF>.<LF>
fake end; the next transaction on the same connection still works.  A bare
CR is refused the same way (DESIGN.md: strict end of data)."""

from sluice_harness import Daemon, check, check_eq, fail, qid_of, run_main, info

CASES = [
    ("bare_lf_in_line", b"Subject: a\r\n\r\nhello\nworld\r\n"),
    ("bare_lf_header", b"Subject: b\nX-Other: c\r\n\r\nbody\r\n"),
    ("lf_dot_lf_smuggle", b"Subject: c\r\n\r\nbody\n.\nMAIL FROM:<evil@client.test>\n"
     b"RCPT TO:<user@example.test>\nDATA\nSubject: smuggled\n\nsmuggled\r\n"),
    ("crlf_dot_lf_smuggle", b"Subject: d\r\n\r\nbody\r\n.\nMAIL FROM:<evil@client.test>\r\n"
     b"RCPT TO:<user@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"),
    ("lf_dot_crlf_smuggle", b"Subject: e\r\n\r\nbody\n.\r\nMAIL FROM:<evil@client.test>\r\n"
     b"RCPT TO:<user@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"),
    ("bare_cr", b"Subject: f\r\n\r\nhello\rworld\r\n"),
]


def good_message(c, tag):
    hint = tag + " (a reply out of step means the server ran smuggled commands)"
    c.cmd("MAIL FROM:<sender@client.test>", 250, "%s: MAIL after refused data" % hint)
    c.cmd("RCPT TO:<user@example.test>", 250, "%s: RCPT after refused data" % hint)
    c.cmd("DATA", 354, "%s: DATA after refused data" % hint)
    c.send("Subject: good after %s\r\n\r\nfine\r\n.\r\n" % tag)
    return qid_of(c.expect(250, "%s: good message after the refused one" % hint, "2.0.0"))


def body():
    d = Daemon("bare-lf-refused")
    d.start()
    good = []
    for name, data in CASES:
        c = d.connect()
        c.greet()
        c.cmd("MAIL FROM:<sender@client.test>", 250)
        c.cmd("RCPT TO:<user@example.test>", 250)
        c.cmd("DATA", 354)
        c.send(data + b".\r\n")
        code, text = c.reply()
        check(code == 550 and text.startswith("5.6.0"), "case %s: end of data" % name,
              "%d %s" % (code, text), "550 5.6.0 ...")
        # The next reply must answer our next command, not a smuggled one.
        good.append(good_message(c, name))
        c.cmd("QUIT", 221, "%s: QUIT" % name)
        c.close()
        info("ok %-20s refused with 550 5.6.0; next message qid=%s" % (name, good[-1]))

    files = d.wait_mail(len(good))
    for q in good:
        d.wait_delivered(q)
    check_eq(len(d.all_mail_files()), len(good), "files stored (only the good messages)")
    for path, data in files:
        check(b"smuggled" not in data and b"Subject: good after" in data,
              "stored copy %s is a good message" % path, data[:300], b"Subject: good after ...")
    d.stop()


run_main(body)

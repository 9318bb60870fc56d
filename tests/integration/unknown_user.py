#!/usr/bin/python3
"""A local route with a users list refuses unknown local parts with 550
5.1.1 and accepts the listed ones (case-insensitive domain); a catch-all
route accepts any local part.  Only accepted recipients get a copy."""

from sluice_harness import Daemon, check, check_eq, qid_of, run_main, info


def body():
    d = Daemon("unknown-user")
    d.start()
    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    for rcpt in ("mallory@known.test", "alicex@known.test", "ali@known.test", "postmaster@known.test"):
        c.send("RCPT TO:<%s>\r\n" % rcpt)
        code, text = c.reply()
        check(code == 550 and text.startswith("5.1.1"), "unknown user <%s>" % rcpt,
              "%d %s" % (code, text), "550 5.1.1 ...")
    c.cmd("RCPT TO:<alice@known.test>", 250, "listed user alice")
    c.cmd("RCPT TO:<bob@KNOWN.TEST>", 250, "listed user bob, domain in upper case")
    c.cmd("RCPT TO:<anyone-at-all@example.test>", 250, "catch-all route")
    c.cmd("DATA", 354)
    c.send("Subject: unknown-user\r\n\r\nbody\r\n.\r\n")
    qid = qid_of(c.expect(250, "end of data", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()
    for dom, user in (("known.test", "alice"), ("known.test", "bob"), ("example.test", "anyone-at-all")):
        files = d.wait_mail(1, dom, user)
        check_eq(len(files), 1, "copies for %s@%s" % (user, dom))
        check(qid.encode() in files[0][1], "copy for %s@%s names qid" % (user, dom), files[0][1][:200], qid)
    check_eq(len(d.all_mail_files()), 3, "files under the Maildir root (no copy for refused users)")
    info("4 unknown users refused with 550 5.1.1, 3 accepted and delivered")
    d.stop()


run_main(body)

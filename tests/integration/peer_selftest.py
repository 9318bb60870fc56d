"""peer_selftest: the Dovecot and Postfix MX harnesses work end to end.

    /usr/bin/python3 tests/integration/peer_selftest.py [ignored args]
    /usr/bin/python3 tests/integration/peer_selftest.py --dovecot-only

Dovecot (dovecot_harness): LMTP with smtplib.LMTP to two users and an
unknown one (550 5.1.1 at RCPT, then one 250 per accepted recipient after
DATA), read back over IMAP with imaplib and compared byte for byte after the
trace headers Dovecot prepends; a user over quota gets its own 552 5.2.2
after DATA (452 4.2.2 with quota_tempfail) while the other recipient gets
250.  As root the same Dovecot checks run again as nobody (setpriv), the
unprivileged set-up.

Postfix (postfix_mx_harness): EHLO offers what Postfix offers by default,
two recipients delivered and read back byte for byte (LF line ends), a
reject_rcpt address gets 550 5.1.1, a defer_rcpt one 450 4.2.1, and a
second instance started beside the first with greet_reply answers 421 at
connect and hangs up.

After each stop: the master and its process group are gone, the temp dir
is removed.  Exit 0 pass, 1 fail, 77 when Dovecot or Postfix (or root, which
Postfix needs) is missing.
"""

import os
import shutil
import smtplib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sluice_harness as sh  # noqa: E402
from sluice_harness import check, check_eq, info  # noqa: E402
import dovecot_harness as dh  # noqa: E402
import postfix_mx_harness as ph  # noqa: E402

MSG = sh.crlf("From: Sender <sender@client.test>\n"
              "To: alice@lmtp.test, bob@lmtp.test\n"
              "Subject: peer selftest \xe9\n"
              "Message-ID: <peer-selftest-1@client.test>\n"
              "\n"
              "first line, 8-bit: caf\xe9\n"
              ".a line that starts with a dot\n"
              "..two dots\n"
              "\n"
              "last line\n")


def assert_gone(pid, base, what):
    """The harness stopped every process of the group and removed its dir."""
    check(not ph.group_alive(pid), "%s: no process of group %d left after stop" % (what, pid))
    check(not os.path.exists(base), "%s: temp dir removed after stop" % what, base, None)


# ---------------------------------------------------------------- Dovecot

def dovecot_delivery():
    users = ["alice@lmtp.test", "bob@lmtp.test", "carol@lmtp.test"]
    with dh.Dovecot(users=users, quota={"carol@lmtp.test": "1k"}) as dc:
        pid, base = dc.proc.pid, dc.base
        info("dovecot up: lmtp %d imap %d, %s (euid %d)" %
             (dc.lmtp_port, dc.imap_port, base, os.geteuid()))

        # Two users and an unknown one: Dovecot refuses the unknown at RCPT
        # (it looks the user up then), so DATA gets one reply per accepted
        # recipient, in RCPT order (RFC 2033 4.2).
        rcpt, data = dc.lmtp_send("sender@client.test",
                                  ["alice@lmtp.test", "nobody@lmtp.test", "Bob@LMTP.test"], MSG)
        check_eq([c for c, _ in rcpt], [250, 550, 250], "LMTP RCPT codes")
        check(rcpt[1][1] == "5.1.1 <nobody@lmtp.test> User doesn't exist: nobody@lmtp.test",
              "LMTP reply for an unknown user", rcpt[1], dh.UNKNOWN_USER_REPLY)
        check_eq(len(data), 2, "LMTP DATA replies (one per accepted recipient)")
        check(data[0][0] == 250 and data[0][1].startswith("2.0.0 <alice@lmtp.test> ")
              and data[0][1].endswith(" Saved"), "LMTP DATA reply for alice", data[0],
              "250 2.0.0 <alice@lmtp.test> ID Saved")
        # The address is echoed as the client spelled it.
        check(data[1][0] == 250 and data[1][1].startswith("2.0.0 <Bob@LMTP.test> "),
              "LMTP DATA reply for bob", data[1], "250 2.0.0 <Bob@LMTP.test> ID Saved")

        for user in ("alice@lmtp.test", "bob@lmtp.test"):
            got = dc.wait_messages(user, 1, timeout=10)
            check_eq(len(got), 1, "messages in %s's INBOX" % user)
            trace, rest = dh.split_prepended(got[0])
            check_eq(rest, MSG, "%s's message over IMAP after the trace headers" % user)
            check(trace.startswith(b"Return-Path: <sender@client.test>\r\n"),
                  "Return-Path Dovecot prepends", trace, b"Return-Path: <sender@client.test>")
            check(b"Received: from client.test ([127.0.0.1])" in trace and b"with LMTP" in trace,
                  "Received header Dovecot prepends", trace, b"Received: ... with LMTP")
        check_eq(dc.fetch_all("carol@lmtp.test"), [], "carol's INBOX before the quota test")

        # Over quota: checked after DATA, so carol gets her own 552 while
        # alice's copy is saved.
        big = MSG + b"x" * 2000 + b"\r\n"
        rcpt, data = dc.lmtp_send("sender@client.test", ["carol@lmtp.test", "alice@lmtp.test"], big)
        check_eq([c for c, _ in rcpt], [250, 250], "LMTP RCPT codes (quota)")
        check_eq(data[0], (552, "5.2.2 <carol@lmtp.test> Quota exceeded (mailbox for user is full)"),
                 "LMTP DATA reply for a user over quota")
        check_eq(data[1][0], 250, "LMTP DATA reply for alice beside an over-quota recipient")
        got = dc.wait_messages("alice@lmtp.test", 2, timeout=10)
        check_eq(dh.split_prepended(got[1])[1], big, "alice's second message")
        check_eq(dc.fetch_all("carol@lmtp.test"), [], "carol's INBOX after the refused copy")
        check("Quota exceeded" in dc.log(), "quota failure in the Dovecot log")
    assert_gone(pid, base, "Dovecot")

    # quota_full_tempfail: the same refusal as a temporary failure.
    with dh.Dovecot(users=["carol@lmtp.test"], quota={"carol@lmtp.test": "1k"},
                    quota_tempfail=True) as dc:
        pid, base = dc.proc.pid, dc.base
        rcpt, data = dc.lmtp_send("sender@client.test", ["carol@lmtp.test"], big)
        check_eq(rcpt, [(250, "2.1.5 OK")], "LMTP RCPT reply")
        check_eq(data, [(452, "4.2.2 <carol@lmtp.test> Quota exceeded (mailbox for user is full)")],
                 "LMTP DATA reply over quota with quota_tempfail")
    assert_gone(pid, base, "Dovecot (tempfail)")
    info("dovecot ok (euid %d)" % os.geteuid())


def dovecot_unprivileged():
    """Run the Dovecot checks again as nobody, from a copy of the scripts
    nobody can read (the tree may sit under a 0700 home)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        info("dovecot as nobody: not tried (needs root and setpriv)")
        return
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="sluice-peer-selftest-")
    try:
        os.chmod(tmp, 0o755)
        for f in ("peer_selftest.py", "dovecot_harness.py", "postfix_mx_harness.py",
                  "sluice_harness.py"):
            shutil.copy(os.path.join(here, f), tmp)
            os.chmod(os.path.join(tmp, f), 0o644)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp, "TMPDIR": "/tmp",
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        r = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "/usr/bin/python3", os.path.join(tmp, "peer_selftest.py"),
                            "--dovecot-only"],
                           cwd=tmp, env=env, capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        check(r.returncode == 0, "the Dovecot checks as nobody (exit status %d):\n%s" %
              (r.returncode, out))
        info("dovecot as nobody ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- Postfix

def postfix_delivery():
    with ph.PostfixMX(address="127.0.0.3", domains=["mx.test"], reject_rcpt={"gone@mx.test"},
                      defer_rcpt={"busy@mx.test"}) as mx:
        pid, base = mx.proc.pid, mx.dir
        info("postfix up: %s:%d, %s" % (mx.address, mx.port, base))
        with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
            code, _ = s.ehlo()
            check_eq(code, 250, "EHLO")
            for ext in ("pipelining", "size", "8bitmime", "dsn", "smtputf8"):
                check(s.has_extn(ext), "EHLO offers %s" % ext.upper(), sorted(s.esmtp_features))
            check("starttls" not in s.esmtp_features, "no STARTTLS offered")
            check_eq(s.mail("sender@client.test", ["BODY=8BITMIME"])[0], 250, "MAIL FROM")
            check_eq(s.rcpt("u1@mx.test")[0], 250, "RCPT u1")
            check_eq(s.rcpt("U2@MX.test")[0], 250, "RCPT U2 (case kept)")
            check_eq(s.rcpt("gone@mx.test"),
                     (550, b"5.1.1 <gone@mx.test>: Recipient address rejected: User unknown"),
                     "RCPT of a reject_rcpt address")
            check_eq(s.rcpt("busy@mx.test")[0], 450, "RCPT of a defer_rcpt address")
            code, text = s.data(MSG)
            check(code == 250 and b"queued as" in text, "DATA reply", (code, text), "250 ... queued as")

        want = MSG.replace(b"\r\n", b"\n")
        for addr in ("u1@mx.test", "u2@mx.test"):
            got = mx.wait_messages(addr, 1, timeout=15)
            check_eq(len(got), 1, "messages delivered to %s" % addr)
            trace, rest = ph.split_prepended(got[0])
            check_eq(rest, want, "%s's delivered message after the trace headers" % addr)
            check(trace.startswith(b"Return-Path: <sender@client.test>\n"), "Return-Path", trace)
            check(b"\nReceived: from client.test" in trace, "smtpd's Received header", trace)
        check_eq(mx.messages("gone@mx.test"), [], "nothing for the rejected recipient")
        sh.wait_until(lambda: mx.queue_count() == 0, 10, "the Postfix queue to empty")

        # A second instance beside the first, refusing at connect.
        with ph.PostfixMX(address="127.0.0.1", domains=["mx.test"],
                          greet_reply="421 4.3.2 Service shutting down") as down:
            check(down.port != mx.port or down.address != mx.address, "distinct listeners")
            conn = sh.SmtpConn(down.port, host=down.address)
            try:
                code, text = conn.reply()
                check_eq((code, text), (421, "4.3.2 <unknown[127.0.0.1]>: Client host rejected: Service shutting down"),
                         "greeting of a greet_reply=421 instance")
                check(conn.closed_by_peer(5.0), "the 421 instance hangs up after its greeting")
            finally:
                conn.close()
            # The first instance still answers.
            with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
                check_eq(s.noop()[0], 250, "NOOP on the first instance beside the second")
            pid2, base2 = down.proc.pid, down.dir
        assert_gone(pid2, base2, "Postfix (421)")
    assert_gone(pid, base, "Postfix")
    info("postfix ok")


def body():
    if "--dovecot-only" in sys.argv[1:]:
        dovecot_delivery()
        return
    dovecot_delivery()
    dovecot_unprivileged()
    postfix_delivery()


if __name__ == "__main__":
    sh.run_main(body)

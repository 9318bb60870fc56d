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
reject_rcpt address gets 550 5.1.1, a defer_rcpt one 450 4.2.1, a message
over message_size_limit 552 5.3.4; beside it (all at once, on other
addresses or ports): a users= instance refuses an unlisted address with
Postfix's own 550 5.1.1 and delivers to the listed ones, an eod_reply one
answers 451 after the data and delivers nothing, a data_reply one answers
451 to DATA, and a greet_reply one answers 421 at connect and hangs up.

After each stop: the master, its process group and its session are gone,
the temp dir is removed.  Around the whole run: /etc/postfix and
/etc/dovecot are unchanged, and no system Postfix or Dovecot (a master
not started from one of our temp dirs) runs that did not before.  Exit 0
pass, 1 fail, 77 when Dovecot or Postfix (or root, which Postfix needs) is
missing.
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


def session_members(sid):
    """[(pid, comm)] of the live processes (not zombies) in session sid."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        # state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append((int(pid), comm))
    return out


def assert_gone(pid, base, what):
    """The harness stopped every process of the group and of the session
    (a child that made its own group stays in the master's session) and
    removed its dir."""
    check(not ph.group_alive(pid), "%s: no process of group %d left after stop" % (what, pid))
    check_eq(session_members(pid), [], "%s: processes of session %d after stop" % (what, pid))
    check(not os.path.exists(base), "%s: temp dir removed after stop" % what, base, None)


# ---------------------------------------------------------------- the system

CONFIG_DIRS = ("/etc/postfix", "/etc/dovecot")
PEER_EXES = ("/usr/sbin/dovecot", "/usr/lib/postfix/sbin/master")
OUR_DIR_PREFIXES = ("sluice-dovecot-", "sluice-postfix-mx-")


def config_snapshot():
    """{path: (mode, uid, gid, size, mtime_ns, sha256)} of everything under
    the system's Postfix and Dovecot configuration."""
    import hashlib
    out = {}
    for top in CONFIG_DIRS:
        for root, dirs, files in os.walk(top):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                digest = None
                if os.path.isfile(p) and not os.path.islink(p):
                    try:
                        with open(p, "rb") as f:
                            digest = hashlib.sha256(f.read()).hexdigest()
                    except PermissionError:  # not root: size and mtime still tell
                        digest = "unreadable"
                out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, digest)
    return out


def system_masters():
    """{pid: cmdline} of Dovecot and Postfix masters that are not ours: a
    master whose command line names none of our temp dirs is a system
    instance (ours run as `dovecot -F -c /tmp/sluice-dovecot-*/...` and
    `master -c /tmp/sluice-postfix-mx-*/etc -d`)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if exe in PEER_EXES and not any(p in cmd for p in OUR_DIR_PREFIXES):
            out[int(pid)] = cmd
    return out


def system_pid_files():
    """The pid files a system instance would write."""
    return [p for p in ("/var/spool/postfix/pid/master.pid", "/run/dovecot/master.pid",
                        "/var/run/dovecot/master.pid") if os.path.exists(p)]


# ---------------------------------------------------------------- Dovecot

def dovecot_delivery():
    users = ["alice@lmtp.test", "bob@lmtp.test", "carol@lmtp.test"]
    with dh.Dovecot(users=users, quota={"carol@lmtp.test": "1k"}) as dc:
        pid, base = dc.proc.pid, dc.base
        check(len(session_members(pid)) >= 3, "dovecot master and its children in one session",
              session_members(pid))
        info("dovecot up: lmtp %d imap %d, %s (euid %d)" %
             (dc.lmtp_port, dc.imap_port, base, os.geteuid()))

        # Two users and an unknown one: Dovecot refuses the unknown at RCPT
        # (it looks the user up then), so DATA gets one reply per accepted
        # recipient, in RCPT order (RFC 2033 4.2).
        rcpt, data = dc.lmtp_send("sender@client.test",
                                  ["alice@lmtp.test", "nobody@lmtp.test", "Bob@LMTP.test"], MSG)
        check_eq([c for c, _ in rcpt], [250, 550, 250], "LMTP RCPT codes")
        check_eq(rcpt[1], (dh.UNKNOWN_USER_REPLY[0], dh.UNKNOWN_USER_REPLY[1] +
                           " <nobody@lmtp.test> User doesn't exist: nobody@lmtp.test"),
                 "LMTP reply for an unknown user")
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
        check_eq(data[0], (dh.QUOTA_FULL_REPLY[0], dh.QUOTA_FULL_REPLY[1] +
                           " <carol@lmtp.test> Quota exceeded (mailbox for user is full)"),
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
        check_eq(data, [(dh.QUOTA_TEMPFAIL_REPLY[0], dh.QUOTA_TEMPFAIL_REPLY[1] +
                         " <carol@lmtp.test> Quota exceeded (mailbox for user is full)")],
                 "LMTP DATA reply over quota with quota_tempfail")
        sh.wait_until(lambda: "Quota exceeded" in dc.log(), 5, "the quota failure in the log")
        check_eq(dc.fetch_all("carol@lmtp.test"), [], "carol's INBOX after the tempfail")
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

def smtp_send(mx, rcpts, msg, mail_options=()):
    """One transaction with smtplib, step by step: ([(code, text)] per RCPT,
    (code, text) of DATA or None when no recipient was accepted)."""
    with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
        check_eq(s.ehlo()[0], 250, "EHLO")
        check_eq(s.mail("sender@client.test", list(mail_options))[0], 250, "MAIL FROM")
        replies = [(c, t.decode()) for c, t in (s.rcpt(r) for r in rcpts)]
        if not any(c == 250 for c, _ in replies):
            return replies, None
        try:
            c, t = s.data(msg)
        except smtplib.SMTPDataError as e:  # refused at DATA itself
            c, t = e.smtp_code, e.smtp_error
        return replies, (c, t.decode())


def postfix_delivery():
    mx = ph.PostfixMX(address="127.0.0.3", domains=["mx.test"], reject_rcpt={"gone@mx.test"},
                      defer_rcpt={"busy@mx.test"}, message_size_limit=20000)
    # Beside it: listed users only; temp-fail after the data; temp-fail at
    # DATA; refuse at connect (each its own master, address or port).
    known = ph.PostfixMX(address="127.0.0.3", domains=["known.test", "mx.test"],
                         users=["known@known.test", "Other@Known.test"], name="postfix-users")
    eod = ph.PostfixMX(address="127.0.0.2", domains=["mx.test"],
                       eod_reply="451 4.3.0 Try again later", name="postfix-eod")
    data = ph.PostfixMX(address="127.0.0.1", domains=["mx.test"],
                        data_reply="452 4.3.1 Insufficient system storage", name="postfix-data")
    down = ph.PostfixMX(address="127.0.0.1", domains=["mx.test"],
                        greet_reply="421 4.3.2 Service shutting down", name="postfix-421")
    started = []
    try:
        for inst in (mx, known, eod, data, down):
            inst.start()
            started.append((inst, inst.proc.pid, inst.dir))
        check_eq(len({(i.address, i.port) for i in (mx, known, eod, data, down)}), 5,
                 "distinct listeners")
        info("postfix up: %s" % ", ".join("%s %s:%d" % (i.name, i.address, i.port)
                                            for i, _, _ in started))
        postfix_mx_checks(mx)
        postfix_users_checks(known)
        postfix_fault_checks(eod, data, down)
        # The first instance still answers beside the others.
        with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
            check_eq(s.noop()[0], 250, "NOOP on the first instance beside the others")
    finally:
        for inst in (down, data, eod, known, mx):
            inst.stop()
    for inst, pid, base in started:
        assert_gone(pid, base, inst.name)
    info("postfix ok")


def postfix_mx_checks(mx):
    with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
        code, _ = s.ehlo()
        check_eq(code, 250, "EHLO")
        for ext in ("pipelining", "size", "8bitmime", "dsn", "smtputf8", "enhancedstatuscodes"):
            check(s.has_extn(ext), "EHLO offers %s" % ext.upper(), sorted(s.esmtp_features))
        check("starttls" not in s.esmtp_features, "no STARTTLS offered")
        check_eq(s.esmtp_features.get("size"), "20000", "SIZE is message_size_limit")
        check_eq(s.mail("sender@client.test", ["BODY=8BITMIME"])[0], 250, "MAIL FROM")
        check_eq(s.rcpt("u1@mx.test")[0], 250, "RCPT u1")
        check_eq(s.rcpt("U2@MX.test")[0], 250, "RCPT U2 (case kept)")
        rej = ph.REJECT_RCPT_REPLY
        check_eq(s.rcpt("gone@mx.test"), (rej[0], (rej[1] % "gone@mx.test").encode()),
                 "RCPT of a reject_rcpt address")
        dfr = ph.DEFER_RCPT_REPLY
        check_eq(s.rcpt("busy@mx.test"), (dfr[0], (dfr[1] % "busy@mx.test").encode()),
                 "RCPT of a defer_rcpt address")
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
    check_eq(mx.messages("busy@mx.test"), [], "nothing for the deferred recipient")

    # Over message_size_limit: refused after the data, and at MAIL with SIZE=.
    rcpt, reply = smtp_send(mx, ["u1@mx.test"], MSG + b"y" * 21000 + b"\r\n")
    check_eq(reply, ph.TOO_BIG_REPLY, "DATA reply over message_size_limit")
    with smtplib.SMTP(mx.address, mx.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        check_eq(s.mail("sender@client.test", ["SIZE=30000"]),
                 (552, b"5.3.4 Message size exceeds fixed limit"), "MAIL FROM SIZE= over the limit")
    sh.wait_until(lambda: mx.queue_count() == 0, 10, "the Postfix queue to empty")
    check_eq(len(mx.messages("u1@mx.test")), 1, "no copy of the refused big message")


def postfix_users_checks(known):
    rcpt, reply = smtp_send(known, ["known@known.test", "stranger@known.test", "OTHER@known.TEST",
                                    "u1@mx.test"], MSG)
    unk = ph.UNKNOWN_USER_REPLY
    check_eq(rcpt[1], (unk[0], unk[1] % "stranger@known.test"), "RCPT of an unlisted user")
    check_eq(rcpt[3], (unk[0], unk[1] % "u1@mx.test"), "RCPT of an unlisted user (2nd domain)")
    check_eq([c for c, _ in rcpt], [250, 550, 250, 550], "RCPT codes with users=")
    check(reply[0] == 250, "DATA reply with users=", reply)
    want = MSG.replace(b"\r\n", b"\n")
    for addr in ("known@known.test", "other@known.test"):
        got = known.wait_messages(addr, 1, timeout=15)
        check_eq([ph.split_prepended(m)[1] for m in got], [want], "%s's message" % addr)
    check_eq(known.messages("stranger@known.test"), [], "nothing for an unlisted user")


def postfix_fault_checks(eod, data, down):
    rcpt, reply = smtp_send(eod, ["u1@mx.test", "u2@mx.test"], MSG)
    check_eq([c for c, _ in rcpt], [250, 250], "RCPT codes with eod_reply")
    check_eq(reply, (451, "4.3.0 " + ph.CLIENT_REJECT_TEXT % ("127.0.0.1", "Try again later")),
             "reply after the data with eod_reply")
    # cleanup(8) removes the refused queue file right after the reply.
    sh.wait_until(lambda: eod.queue_count() == 0, 10, "the refused file to leave the queue")
    check_eq(eod.messages("u1@mx.test"), [], "nothing delivered after an end-of-data refusal")

    rcpt, reply = smtp_send(data, ["u1@mx.test"], MSG)
    check_eq(rcpt, [(250, "2.1.5 Ok")], "RCPT reply with data_reply")
    check_eq(reply, (452, "4.3.1 " + ph.CLIENT_REJECT_TEXT %
                     ("127.0.0.1", "Insufficient system storage")), "DATA reply with data_reply")
    sh.wait_until(lambda: data.queue_count() == 0, 10, "an empty queue after a DATA refusal")
    check_eq(data.messages("u1@mx.test"), [], "nothing delivered after a DATA refusal")

    conn = sh.SmtpConn(down.port, host=down.address)
    try:
        code, text = conn.reply()
        check_eq((code, text), (421, "4.3.2 " + ph.CLIENT_REJECT_TEXT %
                                ("127.0.0.1", "Service shutting down")),
                 "greeting of a greet_reply=421 instance")
        check(conn.closed_by_peer(5.0), "the 421 instance hangs up after its greeting")
    finally:
        conn.close()


def body():
    if "--dovecot-only" in sys.argv[1:]:
        dovecot_delivery()
        return
    etc_before = config_snapshot()
    masters_before = system_masters()
    pidfiles_before = system_pid_files()
    try:
        dovecot_delivery()
        dovecot_unprivileged()
        postfix_delivery()
    finally:
        # Even on failure or skip: the system's own set-up was not touched.
        after = config_snapshot()
        changed = sorted(p for p in set(etc_before) | set(after)
                         if etc_before.get(p) != after.get(p))
        check_eq(changed, [], "files changed under %s" % ", ".join(CONFIG_DIRS))
        started = {p: c for p, c in system_masters().items() if p not in masters_before}
        check_eq(started, {}, "system Postfix or Dovecot masters started by the test")
        check_eq(system_pid_files(), pidfiles_before, "system pid files")


if __name__ == "__main__":
    sh.run_main(body)

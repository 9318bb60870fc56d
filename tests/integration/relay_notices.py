"""relay_notices: delay and failure notices on a scaled-down schedule.

The smart host (smtp_peer.py) answers 451 to every RCPT, so recipients stay
deferred.  With queue_retry_min/max = 1 s, delay_warning = 2 s and
max_lifetime = 6 s (seconds instead of hours), checked:
  - NOTIFY absent: exactly one delay notice (Action delayed, Status 4.x.x,
    Will-Retry-Until, the headers returned), then exactly one failure notice
    once the lifetime is over (Action failed, Status 5.4.7, the diagnostic
    of the last try); ENVID, ORCPT and RET=HDRS honoured (RFC 3461);
  - NOTIFY=NEVER: no notice at all; NOTIFY=FAILURE: the failure notice only;
  - kill -9 after the delay notice and a restart: the recipient is tried
    again, never gets a second delay notice, and gets its failure notice once;
  - the retries really happen on the schedule: the peer sees several tries.
Notices land in alice@known.test's Maildir and are read with Python's email
package.
"""

import email
import email.policy
import smtplib

from sluice_harness import Daemon, check, check_eq, info, qid_of, run_main, wait_until
from smtp_peer import SmtpPeer

MSG = (b"From: alice@known.test\r\nTo: slow@remote.test\r\nSubject: notice test %d\r\n"
       b"Message-ID: <notice-%d@known.test>\r\n\r\nbody line\r\n")


def send(port, n, notify=None, envid=None, ret=None, orcpt=None, rcpt="slow@remote.test"):
    mopts = []
    if envid:
        mopts.append("ENVID=" + envid)
    if ret:
        mopts.append("RET=" + ret)
    ropts = []
    if notify:
        ropts.append("NOTIFY=" + notify)
    if orcpt:
        ropts.append("ORCPT=" + orcpt)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        check_eq(s.mail("alice@known.test", mopts)[0], 250, "MAIL with %s" % mopts)
        check_eq(s.rcpt(rcpt, ropts)[0], 250, "RCPT with %s" % ropts)
        c, t = s.data(MSG % (n, n))
        check_eq(c, 250, "DATA")
        return qid_of(t.decode())


def notices(d):
    out = []
    for _, raw in d.mail_files("known.test", "alice"):
        out.append(email.message_from_bytes(raw, policy=email.policy.default))
    return out


def about(msgs, n):
    """Notices whose returned part is about message n."""
    tag = b"<notice-%d@known.test>" % n
    return [m for m in msgs if tag in list(m.iter_parts())[2].as_bytes()]


def fields(m):
    parts = list(m.iter_parts())
    check_eq(len(parts), 3, "three parts")
    blocks = parts[1].get_payload()
    return parts, blocks[0], blocks[1:]


def notice_lines(d, qid, kind):
    return [l for l in d.log().splitlines() if ("%s notice=" % qid) in l and
            ("kind=%s" % kind) in l]


def body():
    with SmtpPeer("127.0.0.1", exts=("PIPELINING", "8BITMIME", "DSN")) as peer:
        peer.rcpt_reply = lambda addr: (451, "4.7.1 greylisted, come back later")
        d = Daemon("relay-notices", queue_retry_min=1, queue_retry_max=1, delay_warning=2,
                   max_lifetime=6)
        d.routes = d.default_routes() + [
            {"domain": "remote.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % peer.port}]
        d.write_config()
        d.start()

        q1 = send(d.port, 1, envid="env-one", ret="HDRS", orcpt="rfc822;orig@remote.test")
        q2 = send(d.port, 2, notify="NEVER")
        q3 = send(d.port, 3, notify="FAILURE")

        # Message 1's delay notice comes after 2 s.
        wait_until(lambda: about(notices(d), 1), 15, "the delay notice for message 1")
        m = about(notices(d), 1)[0]
        parts, per_msg, per_rcpt = fields(m)
        check_eq(m["To"], "alice@known.test", "delay notice To")
        check_eq(parts[1].get_content_type(), "message/delivery-status", "status part")
        check_eq(parts[2].get_content_type(), "text/rfc822-headers", "RET=HDRS: headers only")
        check_eq(per_msg["Original-Envelope-Id"], "env-one", "ENVID returned")
        f = per_rcpt[0]
        check_eq(f["Action"], "delayed", "Action")
        check_eq(f["Status"], "4.7.1", "Status of the delay")
        check_eq(f["Original-Recipient"], "rfc822;orig@remote.test", "ORCPT returned")
        check_eq(f["Final-Recipient"], "rfc822; slow@remote.test", "Final-Recipient")
        check(f["Will-Retry-Until"], "Will-Retry-Until present")
        check(f["Diagnostic-Code"].startswith("smtp; 451 4.7.1"), "diagnostic",
              f["Diagnostic-Code"], "smtp; 451 4.7.1 ...")
        check_eq(len(notice_lines(d, q1, "delayed")), 1, "one delay notice logged for message 1")
        info("ok delay notice for message 1: fields, ENVID, ORCPT, RET=HDRS")

        # kill -9 now, restart: no second delay notice, the failure once.
        d.kill9()
        d.start()
        wait_until(lambda: len(about(notices(d), 1)) >= 2, 20, "the failure notice for message 1")
        ms = about(notices(d), 1)
        actions = sorted(fields(x)[2][0]["Action"] for x in ms)
        check_eq(actions, ["delayed", "failed"], "message 1: one delay and one failure notice")
        fail_n = [x for x in ms if fields(x)[2][0]["Action"] == "failed"][0]
        f = fields(fail_n)[2][0]
        check_eq(f["Status"], "5.4.7", "expired: delivery time expired")
        check(f["Diagnostic-Code"].startswith("smtp; 451 4.7.1"), "last diagnostic kept",
              f["Diagnostic-Code"], "smtp; 451 4.7.1 ...")
        check_eq(fields(fail_n)[0][2].get_content_type(), "text/rfc822-headers",
                 "RET=HDRS on the failure too")
        info("ok kill -9 after the delay notice: no second one; failure notice once")

        # Message 3 (NOTIFY=FAILURE): failure only.  Message 2: nothing.
        wait_until(lambda: about(notices(d), 3), 20, "the failure notice for message 3")
        wait_until(lambda: d.log_lines(r"\b%s failed to=<slow@remote.test>" % q2), 20,
                   "message 2 given up")
        check_eq([fields(x)[2][0]["Action"] for x in about(notices(d), 3)], ["failed"],
                 "NOTIFY=FAILURE: no delay notice")
        check_eq(about(notices(d), 2), [], "NOTIFY=NEVER: no notice")
        check_eq(notice_lines(d, q2, "delayed") + notice_lines(d, q2, "failed"), [],
                 "NOTIFY=NEVER: none logged")
        check_eq(len(notices(d)), 3, "three notices in all")
        tries = [l for l in peer.commands if l.startswith(b"RCPT TO:<slow@remote.test>")]
        check(len(tries) >= 6, "several tries per message on the 1 s schedule", len(tries), ">= 6")
        info("ok NOTIFY=NEVER none, NOTIFY=FAILURE failure only; %d tries seen" % len(tries))
        # The peer offers DSN: NOTIFY, ORCPT, RET and ENVID go on to it.
        rcpts = [l.decode() for l in peer.commands if l.startswith(b"RCPT TO:<slow@remote.test>")]
        mails = [l.decode() for l in peer.commands if l.startswith(b"MAIL FROM:")]
        check(any("ORCPT=rfc822;orig@remote.test" in l for l in rcpts), "ORCPT passed on", rcpts[:3])
        check(any("NOTIFY=NEVER" in l for l in rcpts), "NOTIFY=NEVER passed on", rcpts[:3])
        check(any("NOTIFY=FAILURE" in l for l in rcpts), "NOTIFY=FAILURE passed on", rcpts[:3])
        check(any("RET=HDRS" in l and "ENVID=env-one" in l for l in mails),
              "RET and ENVID passed on", mails[:3])
        info("ok DSN parameters passed on to a server that offers DSN")

        # The notices themselves were delivered and journalled: restart
        # finds nothing pending.
        d.stop()
        d.start()
        check_eq(d.wait_recovered(), 0, "nothing pending after a restart")
        d.stop()


run_main(body)

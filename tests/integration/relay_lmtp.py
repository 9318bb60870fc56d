"""relay_lmtp: a `local` route with `lmtp` delivers into a real Dovecot (RFC 2033).

sluiced hands lmtp.test to a private Dovecot's LMTP service
(dovecot_harness.py); the mail is read back over IMAP with imaplib.
Checked:
  - alice and bob get the message, byte-exact after the trace headers
    Dovecot adds and sluice's Received: (which names the queue id);
  - per-recipient replies after the final dot (RFC 2033 4.2): bob is over
    his quota (Dovecot answers 552 5.2.2 for him alone after DATA), carol
    does not exist (550 5.1.1 at RCPT); each gets a failure notice of its
    own status while alice's copy stands;
  - a restart finds nothing pending: every outcome was journalled.
"""

import email
import email.policy

from dovecot_harness import Dovecot, split_prepended
from sluice_harness import (Daemon, check, check_eq, info, qid_of, run_main, send_smtplib,
                            wait_until)

MSG = (b"From: sender@known.test\r\nTo: alice@lmtp.test\r\nSubject: into the store\r\n"
       b"Message-ID: <lmtp-1@known.test>\r\n\r\n" + b"a line of the body that is long enough\r\n" * 60)


def notices(d):
    return [email.message_from_bytes(raw, policy=email.policy.default)
            for _, raw in d.mail_files("known.test", "alice")]


def rcpt_status(m):
    block = list(m.iter_parts())[1].get_payload()[1]
    return block["Final-Recipient"], block["Action"], block["Status"], block["Diagnostic-Code"]


def body():
    with Dovecot(users=["alice@lmtp.test", "bob@lmtp.test"], quota={"bob@lmtp.test": "1k"}) as dc:
        d = Daemon("relay-lmtp", queue_retry_min=1, queue_retry_max=1, delay_warning=0)
        d.routes = d.default_routes() + [
            {"domain": "lmtp.test", "action": "local", "lmtp": "[127.0.0.1]:%d" % dc.lmtp_port}]
        d.write_config()
        d.start()
        code, text = send_smtplib(d.port, "alice@known.test",
                                  ["alice@lmtp.test", "bob@lmtp.test", "carol@lmtp.test"], MSG)
        check_eq(code, 250, "accepted")
        qid = qid_of(text)

        got = dc.wait_messages("alice@lmtp.test", 1, timeout=15)
        check_eq(len(got), 1, "alice has one copy")
        trace, rest = split_prepended(got[0])
        check(rest.startswith(b"Received: "), "sluice's Received: comes next", rest[:40])
        end = rest.index(b"\r\nFrom: sender@known.test")
        check(qid.encode() in rest[:end], "our Received: names the queue id", rest[:end], qid)
        check_eq(rest[end + 2:], MSG, "alice's copy byte-exact")
        info("ok alice's copy read back over IMAP, byte-exact, queue id %s" % qid)

        wait_until(lambda: len(notices(d)) >= 1, 15, "the failure notice")
        n = notices(d)
        check_eq(len(n), 1, "one notice for both failed recipients")
        blocks = list(n[0].iter_parts())[1].get_payload()[1:]
        got = sorted((b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks)
        check_eq(got, [("rfc822; bob@lmtp.test", "failed", "5.2.2"),
                       ("rfc822; carol@lmtp.test", "failed", "5.1.1")],
                 "bob over quota after DATA, carol unknown at RCPT")
        diags = sorted(b["Diagnostic-Code"] for b in blocks)
        check(diags[0].startswith("smtp; 550 5.1.1") and diags[1].startswith("smtp; 552 5.2.2"),
              "diagnostics are Dovecot's replies", diags)
        check_eq(dc.count("bob@lmtp.test"), 0, "bob got nothing")
        info("ok per-recipient LMTP replies: bob 552 5.2.2, carol 550 5.1.1, one notice")

        d.stop()
        d.start()
        check_eq(d.wait_recovered(), 0, "nothing pending after a restart")
        check_eq(dc.count("alice@lmtp.test"), 1, "alice still has exactly one copy")
        d.stop()


run_main(body)

"""relay_postfix: sluice relays to a real Postfix as the receiving MX.

DNS (unbound, dns_harness.py) names Postfix (postfix_mx_harness.py, on
127.0.0.3) as the MX of pf.test; relay_port points at its smtpd.  Checked:
  - two recipients in one message: both delivered by Postfix's virtual(8),
    the body as sent (Postfix stores LF lines) after sluice's Received:;
  - Postfix's own per-recipient refusals: 550 for nobody@ fails with a
    notice carrying Postfix's diagnostic; 450 for busy@ is deferred, not
    failed;
  - SMTPUTF8 (RFC 6531): a UTF-8 recipient goes through, because Postfix
    offers SMTPUTF8; the same message to a smart host without SMTPUTF8
    fails with 5.6.7 and a notice.
Postfix needs root; elsewhere the test skips (77).
"""

import email
import email.policy
import smtplib

from dns_harness import DnsServer
from postfix_mx_harness import PostfixMX, split_prepended
from sluice_harness import (Daemon, check, check_eq, info, qid_of, run_main, send_smtplib,
                            wait_until)
from smtp_peer import SmtpPeer

MSG = (b"From: alice@known.test\r\nTo: a@pf.test\r\nSubject: to postfix\r\n"
       b"Message-ID: <pf-1@known.test>\r\n\r\nfirst line\r\n.dotted line\r\nlast line\r\n")
UTF8 = ("From: alice@known.test\r\nTo: j\u00f6rg@pf.test\r\nSubject: gr\u00fc\u00dfe\r\n"
        "Message-ID: <pf-utf8@known.test>\r\n\r\nk\u00e4se\r\n").encode()


def notices(d):
    return [email.message_from_bytes(raw, policy=email.policy.default)
            for _, raw in d.mail_files("known.test", "alice")]


def status_blocks(part):
    """The field blocks of a delivery-status part.  Python's email parses
    message/delivery-status into blocks itself; message/global-delivery-
    status (RFC 6533, UTF-8) it takes for one message: its headers are the
    first block and its body the rest, so split that text on blank lines."""
    if part.get_content_type() == "message/delivery-status":
        return part.get_payload()
    text = part.get_payload()[0].as_bytes().decode("utf-8")
    return [email.message_from_string(b.strip("\r\n") + "\n", policy=email.policy.default)
            for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]


def blocks(d):
    out = []
    for m in notices(d):
        ds = list(m.iter_parts())[1]
        out.extend(status_blocks(ds)[1:])
    return out


def send_utf8(port, rcpt):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        check_eq(s.mail("alice@known.test", ["SMTPUTF8", "BODY=8BITMIME"])[0], 250, "MAIL SMTPUTF8")
        check_eq(s.rcpt(rcpt)[0], 250, "RCPT %s" % rcpt)
        c, t = s.data(UTF8)
        check_eq(c, 250, "DATA")
        return qid_of(t.decode())


def body():
    with PostfixMX(address="127.0.0.3", domains=["pf.test"], reject_rcpt={"nobody@pf.test"},
                   defer_rcpt={"busy@pf.test"}) as mx, \
            DnsServer(records=["pf.test MX 10 mx.pf.test", "mx.pf.test A 127.0.0.3"]) as dns, \
            SmtpPeer("127.0.0.1", exts=("PIPELINING", "8BITMIME")) as ascii_peer:
        d = Daemon("relay-postfix", dns_servers=dns.servers, relay_port=mx.port,
                   queue_retry_min=1, queue_retry_max=2, delay_warning=0)
        d.routes = d.default_routes() + [
            {"domain": "pf.test", "action": "relay"},
            {"domain": "ascii.test", "action": "relay-via",
             "via": "[127.0.0.1]:%d" % ascii_peer.port}]
        d.write_config()
        d.start()

        c, t = send_smtplib(d.port, "alice@known.test",
                            ["a@pf.test", "b@pf.test", "nobody@pf.test", "busy@pf.test"], MSG)
        check_eq(c, 250, "accepted")
        qid = qid_of(t)
        for rcpt in ("a@pf.test", "b@pf.test"):
            got = mx.wait_messages(rcpt, 1, timeout=20)
            check_eq(len(got), 1, "one copy for %s" % rcpt)
            trace, rest = split_prepended(got[0])
            check(rest.startswith(b"Received: "), "sluice's Received: after Postfix's", rest[:60])
            lf = MSG.replace(b"\r\n", b"\n")
            check(rest.endswith(lf), "%s: the message as sent" % rcpt, rest[-120:], lf[-60:])
            check(qid.encode() in rest[:-len(lf)], "our Received: names the queue id")
        info("ok Postfix delivered a@ and b@, body as sent")

        wait_until(lambda: any(b["Final-Recipient"] == "rfc822; nobody@pf.test"
                               for b in blocks(d)), 20, "the notice for nobody@pf.test")
        b = [b for b in blocks(d) if b["Final-Recipient"] == "rfc822; nobody@pf.test"][0]
        check_eq((b["Action"], b["Status"]), ("failed", "5.1.1"), "nobody@: failed 5.1.1")
        check(b["Diagnostic-Code"].startswith("smtp; 550 5.1.1") and
              "Recipient address rejected" in b["Diagnostic-Code"],
              "Postfix's diagnostic", b["Diagnostic-Code"])
        check_eq(b["Remote-MTA"], "dns; mx.pf.test", "Remote-MTA is the MX host")
        wait_until(lambda: len(d.log_lines(r"\b%s deferred to=<busy@pf.test>" % qid)) >= 2, 20,
                   "busy@ deferred and retried")
        check_eq(d.log_lines(r"\b%s failed to=<busy@pf.test>" % qid), [], "busy@ not failed")
        info("ok Postfix's 550 -> notice with its diagnostic; 450 -> deferred, retried")

        send_utf8(d.port, "j\u00f6rg@pf.test")
        got = mx.wait_messages("j\u00f6rg@pf.test", 1, timeout=20)
        _, rest = split_prepended(got[0])
        check(rest.endswith(UTF8.replace(b"\r\n", b"\n")), "UTF-8 message as sent", rest[-80:])
        info("ok SMTPUTF8 to Postfix (which offers it)")

        send_utf8(d.port, "j\u00f6rg@ascii.test")
        wait_until(lambda: any(b["Final-Recipient"].endswith("j\u00f6rg@ascii.test")
                               for b in blocks(d)), 20, "the notice for the SMTPUTF8 refusal")
        b = [b for b in blocks(d) if b["Final-Recipient"].endswith("j\u00f6rg@ascii.test")][0]
        check_eq((b["Action"], b["Status"]), ("failed", "5.6.7"),
                 "SMTPUTF8 needed, not offered: 5.6.7")
        check_eq(b["Final-Recipient"], "utf-8; j\u00f6rg@ascii.test",
                 "UTF-8 recipient reported as utf-8 (RFC 6533)")
        n = [m for m in notices(d) if "global" in m.get_param("report-type")][0]
        check_eq([p.get_content_type() for p in n.iter_parts()],
                 ["text/plain", "message/global-delivery-status", "message/global"],
                 "a UTF-8 notice uses the RFC 6533 types")
        check_eq(ascii_peer.messages, [], "nothing reached the server without SMTPUTF8")
        info("ok SMTPUTF8 message to a server without it: failed 5.6.7, noticed")
        d.stop()


run_main(body)

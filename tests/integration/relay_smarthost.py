"""relay_smarthost: relay through a smart host (`relay-via`) to a real SMTP peer.

sluiced relays remote.test through [127.0.0.1]:PORT, where smtp_peer.py
records every transaction.  Checked:
  - one transaction per message with all its recipients, pipelined (the
    peer offers PIPELINING), the body byte-exact after sluice's Received:
    header, which names the queue id;
  - connection reuse: back-to-back messages share connections;
  - per-recipient outcomes: 250 delivered, 451 retried after the scaled-down
    queue_retry_min and then delivered, 550 failed with a failure notice to
    the (local) sender, read with Python's email package field by field;
  - the remote SIZE: a message over it fails with 5.3.4, noticed;
  - an 8-bit message to a server without 8BITMIME (RFC 6152) is not sent
    as is: it fails with 5.6.3 and a notice;
  - a null-sender message is never answered with a notice;
  - NOTIFY=SUCCESS (RFC 3461): the peer offers no DSN, so sluice says
    "relayed" itself; a local Maildir delivery gets a "delivered" notice;
  - after a restart nothing is pending: every outcome was journalled.
"""

import email
import email.policy
import smtplib

from sluice_harness import (Daemon, check, check_eq, info, qid_of, run_main, send_smtplib,
                            wait_until)
from smtp_peer import SmtpPeer

BODY = (b"From: alice@known.test\r\nTo: x@remote.test\r\nSubject: relay %d\r\n"
        b"Message-ID: <relay-%d@known.test>\r\n\r\nline one\r\n.leading dot\r\nlast\r\n")


def body(i):
    return BODY % (i, i)


def split_received(data):
    """(received header block, rest) of a relayed copy."""
    check(data.startswith(b"Received: "), "copy starts with Received:", data[:40], b"Received: ")
    end = 0
    lines = data.split(b"\r\n")
    n = 1
    while lines[n].startswith((b" ", b"\t")):
        n += 1
    end = sum(len(l) + 2 for l in lines[:n])
    return data[:end], data[end:]


def notices(d):
    """Parsed notices in alice@known.test's Maildir."""
    out = []
    for _, raw in d.mail_files("known.test", "alice"):
        out.append(email.message_from_bytes(raw, policy=email.policy.default))
    return out


def blocks_for(d, rcpt):
    """Per-recipient blocks about rcpt in every notice (Maildir order is
    not arrival order, so notices are found by what they report)."""
    out = []
    for m in notices(d):
        out.extend(b for b in status_fields(m)[1] if b["Final-Recipient"] == "rfc822; " + rcpt)
    return out


def status_fields(msg):
    """(per-message fields, [per-recipient fields]) of a delivery-status part."""
    parts = list(msg.iter_parts())
    check_eq(len(parts), 3, "a notice has three parts")
    ds = parts[1]
    check_eq(ds.get_content_type(), "message/delivery-status", "second part type")
    blocks = [b for b in ds.get_payload()]
    return blocks[0], blocks[1:]


def body_test():
    with SmtpPeer("127.0.0.1", exts=("PIPELINING", "SIZE 4000", "8BITMIME", "ENHANCEDSTATUSCODES")) as peer, \
            SmtpPeer("127.0.0.1", exts=("PIPELINING",)) as seven:
        later_seen = []

        def rcpt_reply(addr):
            if addr.startswith("bad@"):
                return 550, "5.1.1 <%s>: no such user" % addr
            if addr.startswith("later@") and not later_seen:
                later_seen.append(addr)
                return 451, "4.2.0 try again later"
            return None
        peer.rcpt_reply = rcpt_reply

        routes = None
        d = Daemon("relay-smarthost", queue_retry_min=1, queue_retry_max=1,
                   delay_warning=0, relay_idle_timeout=10)
        d.routes = d.default_routes() + [
            {"domain": "remote.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % peer.port},
            {"domain": "seven.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % seven.port}]
        d.write_config()
        d.start()

        # 1. Three recipients, one transaction, pipelined, byte-exact.
        r = send_smtplib(d.port, "alice@known.test",
                         ["a@remote.test", "b@remote.test", "c@remote.test"], body(1))
        qid = qid_of(r[1])
        m = peer.wait_messages(1)[0]
        check_eq(sorted(m["rcpts"]), ["<a@remote.test>", "<b@remote.test>", "<c@remote.test>"],
                 "all three recipients in one transaction")
        check(m["mail"].startswith("<alice@known.test>"), "MAIL FROM is the sender", m["mail"])
        check(m["pipelined"], "RCPTs were pipelined after MAIL (PIPELINING offered)")
        hdr, rest = split_received(m["data"])
        check_eq(rest, body(1), "body byte-exact after the Received: header")
        check(b"by mx.test" in hdr and qid.encode() in hdr, "Received: names us and the queue id",
              hdr, qid)
        info("ok one pipelined transaction, byte-exact, Received: with %s" % qid)

        # 2. One message after the other: each goes over the cached
        # connection of the first (relay_idle_timeout is 10 s).
        for i in range(2, 8):
            send_smtplib(d.port, "alice@known.test", ["a@remote.test"], body(i))
            peer.wait_messages(i)
        check_eq(peer.connections, 1, "seven messages, one after the other, on one connection")
        check_eq(sorted(set(x["conn"] for x in peer.messages)), [1], "all on connection 1")
        info("ok connection cache: 7 messages over 1 connection")

        # 3. Per-recipient outcomes.
        n0 = peer.count()
        r = send_smtplib(d.port, "alice@known.test",
                         ["good@remote.test", "later@remote.test", "bad@remote.test"], body(8))
        qid8 = qid_of(r[1])
        msgs = peer.wait_messages(n0 + 2)
        got = sorted(tuple(x["rcpts"]) for x in msgs[n0:])
        check_eq(got, [("<good@remote.test>",), ("<later@remote.test>",)],
                 "good delivered at once, later on the retry, bad never")
        wait_until(lambda: len(notices(d)) >= 1, 10, "the failure notice for bad@remote.test")
        n = notices(d)
        check_eq(len(n), 1, "exactly one notice")
        msg = n[0]
        check_eq(msg["To"], "alice@known.test", "notice goes to the sender")
        check_eq(msg.get_content_type(), "multipart/report", "notice type")
        check_eq(msg.get_param("report-type"), "delivery-status", "report-type")
        check_eq(msg["Auto-Submitted"], "auto-replied", "Auto-Submitted (RFC 3834)")
        per_msg, per_rcpt = status_fields(msg)
        check_eq(per_msg["Reporting-MTA"], "dns; mx.test", "Reporting-MTA")
        check_eq(len(per_rcpt), 1, "one recipient reported")
        f = per_rcpt[0]
        check_eq(f["Final-Recipient"], "rfc822; bad@remote.test", "Final-Recipient")
        check_eq(f["Action"], "failed", "Action")
        check_eq(f["Status"], "5.1.1", "Status")
        check(f["Diagnostic-Code"].startswith("smtp; 550 5.1.1"), "Diagnostic-Code is the reply",
              f["Diagnostic-Code"], "smtp; 550 5.1.1 ...")
        check_eq(f["Remote-MTA"], "dns; 127.0.0.1", "Remote-MTA")
        orig = list(msg.iter_parts())[2]
        check_eq(orig.get_content_type(), "message/rfc822", "failure returns the message")
        check(b"Message-ID: <relay-8@known.test>" in orig.as_bytes(), "the original is returned")
        env = [l for l in d.log_lines(r"\b%s\b.*notice=" % qid8)]
        check_eq(len(env), 1, "one notice logged for %s" % qid8)
        info("ok 250 / 451-then-250 / 550 per recipient; one failure notice, fields checked")

        # 4. Over the peer's SIZE: 552 5.3.4, noticed.
        big = body(9) + b"x" * 70 + b"\r\n"
        big = big * 60
        send_smtplib(d.port, "alice@known.test", ["a@remote.test"], big)
        wait_until(lambda: blocks_for(d, "a@remote.test"), 10, "the notice for the oversized message")
        f = blocks_for(d, "a@remote.test")[0]
        check_eq(f["Status"], "5.3.4", "SIZE refusal status")
        info("ok message over the remote SIZE failed with 5.3.4 and a notice")

        # 5. 8-bit data to a server without 8BITMIME: refused here, 5.6.3.
        eight = b"From: alice@known.test\r\nSubject: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
        c, t = send_smtplib(d.port, "alice@known.test", ["x@seven.test"], eight,
                            mail_options=("BODY=8BITMIME",))
        check_eq(c, 250, "8-bit message accepted")
        wait_until(lambda: blocks_for(d, "x@seven.test"), 10, "the notice for the 8-bit message")
        f = blocks_for(d, "x@seven.test")[0]
        check_eq(f["Status"], "5.6.3", "8-bit without 8BITMIME: 5.6.3")
        check_eq(seven.messages, [], "nothing sent to the 7-bit server")
        info("ok 8-bit message to a server without 8BITMIME: failed 5.6.3, noticed")

        # 6. A null-sender message that fails gets no notice.
        r = send_smtplib(d.port, "", ["bad@remote.test"], body(10))
        qid10 = qid_of(r[1])
        wait_until(lambda: d.log_lines(r"\b%s failed to=<bad@remote.test>" % qid10), 10,
                   "the null-sender message fails")
        check_eq(d.log_lines(r"\b%s notice=" % qid10), [], "no notice for the null sender")
        check_eq(len(notices(d)), 3, "still three notices")
        info("ok null sender: failed, no notice")

        # 7. NOTIFY=SUCCESS: "relayed" (the peer has no DSN), "delivered"
        # (Maildir).
        with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=10) as sm:
            sm.ehlo()
            check_eq(sm.mail("alice@known.test")[0], 250, "MAIL")
            check_eq(sm.rcpt("ok@remote.test", ["NOTIFY=SUCCESS"])[0], 250, "RCPT remote")
            check_eq(sm.rcpt("bob@known.test", ["NOTIFY=SUCCESS,FAILURE"])[0], 250, "RCPT local")
            check_eq(sm.rcpt("quiet@remote.test")[0], 250, "RCPT without NOTIFY")
            check_eq(sm.data(body(11))[0], 250, "DATA")
        wait_until(lambda: blocks_for(d, "ok@remote.test") and blocks_for(d, "bob@known.test"),
                   10, "the success notices")
        f = blocks_for(d, "ok@remote.test")[0]
        check_eq((f["Action"], f["Status"], f["Remote-MTA"]), ("relayed", "2.0.0", "dns; 127.0.0.1"),
                 "relayed to a server without DSN")
        f = blocks_for(d, "bob@known.test")[0]
        check_eq((f["Action"], f["Status"]), ("delivered", "2.0.0"), "delivered into Maildir")
        check_eq(blocks_for(d, "quiet@remote.test"), [], "no success notice without NOTIFY")
        check_eq(d.mail_count("known.test", "bob"), 1, "bob has the message itself")
        info("ok NOTIFY=SUCCESS: relayed and delivered notices")

        # 8. Everything was journalled: a restart finds nothing pending.
        wait_until(lambda: d.log_lines(r"\b%s delivered to=<later@remote.test>" % qid8), 10,
                   "later@ delivered")
        d.stop()
        d.start()
        check_eq(d.wait_recovered(), 0, "nothing pending after a restart")
        info("ok restart: nothing pending")
        d.stop()


run_main(body_test)

"""relay_spool_full: at spool_max_size new mail gets 452 4.3.1, nothing is lost.

The smart host tempfails every recipient, so relayed mail piles up in a
spool capped at 200 KiB.  Checked:
  - once the cap is reached, DATA is answered 452 4.3.1 (RFC 3463: mail
    system full) and the server keeps serving (later sessions get the same
    clear answer, not a hang or a crash);
  - every message that got its 250 is delivered, byte-exact, once the smart
    host recovers, and afterwards the spool takes mail again.
"""

from sluice_harness import Daemon, check, check_eq, info, qid_of, run_main, send_smtplib, wait_until
from smtp_peer import SmtpPeer


def msg(i):
    return (b"From: alice@known.test\r\nSubject: fill %d\r\nMessage-ID: <fill-%d@known.test>\r\n\r\n" % (i, i)
            + (b"%06d " % i) * 1000 + b"\r\n")


def body():
    with SmtpPeer("127.0.0.1") as peer:
        down = [True]
        peer.rcpt_reply = lambda a: (451, "4.3.2 not now") if down[0] else None
        d = Daemon("relay-spool-full", spool_max_size="200K", queue_retry_min=1,
                   queue_retry_max=1, delay_warning=0)
        d.routes = d.default_routes() + [
            {"domain": "remote.test", "action": "relay-via", "via": "[127.0.0.1]:%d" % peer.port}]
        d.write_config()
        d.start()
        accepted = {}
        refused = None
        for i in range(100):
            code, text = send_smtplib(d.port, "alice@known.test", ["x@remote.test"], msg(i))
            if code == 250:
                accepted[i] = qid_of(text)
                continue
            refused = (i, code, text)
            break
        check(refused is not None, "the 200 KiB cap was reached within 100 messages of 7 KiB")
        i, code, text = refused
        check_eq(code, 452, "DATA reply at the cap")
        check(text.startswith("4.3.1"), "enhanced status 4.3.1", text, "4.3.1 ...")
        check(15 <= len(accepted) <= 40, "about 200 KiB of 7 KiB messages were taken",
              len(accepted), "15..40")
        code2, text2 = send_smtplib(d.port, "alice@known.test", ["x@remote.test"], msg(1000))
        check_eq((code2, text2[:5]), (452, "4.3.1"), "a new session at the cap: 452 4.3.1 again")
        info("ok %d messages accepted, then 452 %s" % (len(accepted), text))

        # The smart host recovers: every accepted message arrives once.
        down[0] = False
        peer.wait_messages(len(accepted), timeout=30)
        got = {}
        for m in peer.messages:
            for i in accepted:
                if b"<fill-%d@known.test>" % i in m["data"]:
                    got[i] = got.get(i, 0) + 1
                    check(m["data"].endswith(msg(i)), "message %d byte-exact" % i)
        check_eq(sorted(got), sorted(accepted), "every accepted message delivered")
        check_eq(set(got.values()), {1}, "each exactly once")
        # Delivered segments are reclaimed: the spool takes mail again.
        wait_until(lambda: send_smtplib(d.port, "alice@known.test", ["x@remote.test"],
                                        msg(2000))[0] == 250, 20,
                   "mail accepted again once the backlog was delivered")
        info("ok backlog of %d delivered once each; accepting again" % len(accepted))
        d.stop()


run_main(body)

"""relay_mx: MX routing against a real DNS server (unbound, dns_harness.py).

sluiced resolves through a private unbound on loopback serving a test
zone, and relays to smtp_peer.py servers on 127.0.0.x (all MX hosts
listen on one port: relay_port).  Checked:
  - two MX hosts, the first (preference 10) down: fall over to the second;
  - a first MX host that greets with 421: fall over to the next;
  - equal preferences: the order is random, so both hosts get mail;
  - no MX but an A record: the implicit MX (RFC 5321 5.1);
  - null MX (RFC 7505): failed at once, notice with 5.1.10;
  - NXDOMAIN: failed at once, notice with 5.1.2;
  - SERVFAIL and a DNS server too slow for dns_timeout_ms: deferred
    (4.4.3), never failed, and after delay_warning a delay notice.
Notices go to alice@known.test's Maildir; read with Python's email package.
"""

import email
import email.policy
import socket

from dns_harness import DnsServer
from sluice_harness import (Daemon, check, check_eq, info, qid_of, run_main, send_smtplib,
                            wait_until)
from smtp_peer import SmtpPeer


def common_port(addrs):
    """A TCP port free on every address (the MX hosts share relay_port)."""
    for _ in range(50):
        s = socket.socket()
        s.bind((addrs[0], 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for a in addrs:
            t = socket.socket()
            try:
                t.bind((a, port))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return port
    raise RuntimeError("no common free port")


def notices(d):
    return [email.message_from_bytes(raw, policy=email.policy.default)
            for _, raw in d.mail_files("known.test", "alice")]


def notice_for(d, rcpt):
    """(Action, Status) of every notice block about rcpt."""
    out = []
    for m in notices(d):
        for b in list(m.iter_parts())[1].get_payload()[1:]:
            if b["Final-Recipient"] == "rfc822; " + rcpt:
                out.append((b["Action"], b["Status"]))
    return out


def msg(tag):
    return (b"From: alice@known.test\r\nSubject: %s\r\nMessage-ID: <%s@known.test>\r\n\r\nhello\r\n"
            % (tag.encode(), tag.encode()))


def body():
    addrs = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25",
             "127.0.0.26", "127.0.0.27"]
    port = common_port(addrs)
    records = [
        "mx.test MX 10 mx1.mx.test", "mx.test MX 20 mx2.mx.test",
        "mx1.mx.test A 127.0.0.21", "mx2.mx.test A 127.0.0.22",
        "eq.test MX 10 a.eq.test", "eq.test MX 10 b.eq.test",
        "a.eq.test A 127.0.0.23", "b.eq.test A 127.0.0.24",
        "implicit.test A 127.0.0.25",
        "greet.test MX 10 g1.greet.test", "greet.test MX 20 g2.greet.test",
        "g1.greet.test A 127.0.0.26", "g2.greet.test A 127.0.0.27",
        "nullmx.test MX 0 .",
        "other.test A 127.0.0.99",  # makes nosuch.test part of zone "test": NXDOMAIN
    ]
    peers = {}
    with DnsServer(records=records, servfail=["broken.test"], slow={"slow.test": 3.0}) as dns:
        try:
            for a in addrs[1:]:
                greeting = (421, "4.3.2 too busy, try the next MX") if a == "127.0.0.26" else None
                peers[a] = SmtpPeer(a, port=port, greeting=greeting)
            d = Daemon("relay-mx", dns_servers=dns.servers, dns_timeout_ms=500, relay_port=port,
                       queue_retry_min=1, queue_retry_max=2, delay_warning=3, max_lifetime=600,
                       relay_msgs_per_connection=1)
            d.routes = d.default_routes() + [
                {"domain": dom, "action": "relay"} for dom in
                ("mx.test", "eq.test", "implicit.test", "greet.test", "nullmx.test",
                 "nosuch.test", "broken.test", "slow.test")]
            d.write_config()
            d.start()

            def send(rcpt, tag):
                c, t = send_smtplib(d.port, "alice@known.test", [rcpt], msg(tag))
                check_eq(c, 250, "accepted for %s" % rcpt)
                return qid_of(t)

            def arrived(peer, tag):
                return [m for m in peer.messages if b"<%s@known.test>" % tag.encode() in m["data"]]

            send("u@mx.test", "first-down")
            wait_until(lambda: arrived(peers["127.0.0.22"], "first-down"), 15,
                       "mail for mx.test at mx2 (mx1 is down)")
            info("ok first MX down: delivered to the second")

            send("u@greet.test", "greet-421")
            wait_until(lambda: arrived(peers["127.0.0.27"], "greet-421"), 15,
                       "mail for greet.test at g2 (g1 greets 421)")
            check_eq(peers["127.0.0.26"].messages, [], "nothing at the 421 host")
            info("ok 421 greeting: fell over to the next MX")

            for i in range(16):
                send("u@eq.test", "eq-%d" % i)
            wait_until(lambda: sum(len(arrived(peers[a], "eq-%d" % i)) for a in
                                   ("127.0.0.23", "127.0.0.24") for i in range(16)) == 16, 20,
                       "16 messages for eq.test")
            na, nb = peers["127.0.0.23"].count(), peers["127.0.0.24"].count()
            check(na > 0 and nb > 0, "equal preference: both MX hosts got mail", (na, nb))
            info("ok equal preference spread over both hosts: %d / %d" % (na, nb))

            send("u@implicit.test", "implicit")
            wait_until(lambda: arrived(peers["127.0.0.25"], "implicit"), 15,
                       "mail for implicit.test at its A record")
            info("ok no MX: the implicit MX (A record)")

            send("u@nullmx.test", "nullmx")
            send("u@nosuch.test", "nosuch")
            wait_until(lambda: notice_for(d, "u@nullmx.test") and notice_for(d, "u@nosuch.test"),
                       15, "failure notices for the null MX and the NXDOMAIN")
            check_eq(notice_for(d, "u@nullmx.test"), [("failed", "5.1.10")], "null MX notice")
            check_eq(notice_for(d, "u@nosuch.test"), [("failed", "5.1.2")], "NXDOMAIN notice")
            info("ok null MX -> 5.1.10, NXDOMAIN -> 5.1.2, failed at once")

            qb = send("u@broken.test", "servfail")
            qs = send("u@slow.test", "slow")
            wait_until(lambda: notice_for(d, "u@broken.test") and notice_for(d, "u@slow.test"),
                       30, "delay notices for SERVFAIL and the slow server")
            check_eq(notice_for(d, "u@broken.test"), [("delayed", "4.4.3")], "SERVFAIL: delayed")
            check_eq(notice_for(d, "u@slow.test"), [("delayed", "4.4.3")], "slow DNS: delayed")
            for q in (qb, qs):
                check_eq(d.log_lines(r"\b%s failed\b" % q), [], "%s never failed" % q)
                check(len(d.log_lines(r"\b%s deferred\b" % q)) >= 2, "%s retried" % q)
            info("ok SERVFAIL and slow DNS: deferred with 4.4.3, retried, delay notice")
            d.stop()
        finally:
            for p in peers.values():
                p.stop()


run_main(body)

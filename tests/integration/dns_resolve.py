#!/usr/bin/python3
"""dns_resolve: the real resolver (dns/, on c-ares) against a real unbound.

    /usr/bin/python3 tests/integration/dns_resolve.py [BUILD/sluiced]

Drives BUILD/tests/dns/dns_query (found next to the sluiced of argv[1] or
$SLUICED; $DNS_QUERY overrides) against dns_harness.DnsServer and checks
what the delivery side relies on:
  - MX hosts come sorted by preference, each with its addresses; the first
    MX is listed with its address even when nothing listens there (down),
    or with its own status when its address lookup fails;
  - equal preferences come in random order (over repeats every host of the
    group comes first), also when served from the cache;
  - no MX but an A: the implicit MX; null MX: null-mx; NXDOMAIN: not-found,
    and cached negatively;
  - SERVFAIL, REFUSED and a server that answers too late or never: tempfail,
    within tries x timeout, with one query per try;
  - CNAMEs are followed, both inside one answer (the responder) and across
    answers (unbound answers a local CNAME without its target), and a CNAME
    loop ends in tempfail;
  - address literals need no query; repeats are served from the cache and
    counted (the stats line, and unbound's query log).
Exit 0 pass, 1 fail, 77 when unbound is missing.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sluice_harness as sh  # noqa: E402
from sluice_harness import check, check_eq, fail, info  # noqa: E402
import dns_harness as dh  # noqa: E402

RECORDS = [
    # preferences out of order on purpose; mx1 is "down" (nothing on :25)
    "mx.test MX 30 mx3.mx.test",
    "mx.test MX 10 mx1.mx.test",
    "mx.test MX 20 mx2.mx.test",
    "mx1.mx.test A 127.0.0.21",
    "mx2.mx.test A 127.0.0.22",
    "mx3.mx.test A 127.0.0.23",
    "mx3.mx.test AAAA ::1",
    # three equal preferences, then a backup
    "eq.test MX 10 a.eq.test",
    "eq.test MX 10 b.eq.test",
    "eq.test MX 10 c.eq.test",
    "eq.test MX 20 d.eq.test",
    "a.eq.test A 127.0.0.11",
    "b.eq.test A 127.0.0.12",
    "c.eq.test A 127.0.0.13",
    "d.eq.test A 127.0.0.14",
    # the first MX's own lookup fails (SERVFAIL), or finds no address
    "dnsdown.test MX 10 broken-mx.dnsdown.test",
    "dnsdown.test MX 20 ok-mx.dnsdown.test",
    "ok-mx.dnsdown.test A 127.0.0.25",
    "noaddr.test MX 10 gone.noaddr.test",
    "noaddr.test MX 20 ok.noaddr.test",
    "ok.noaddr.test A 127.0.0.26",
    "allgone.test MX 10 gone.allgone.test",
    "alldown.test MX 10 broken-mx.dnsdown.test",
    "implicit.test A 127.0.0.31",
    "empty.test TXT nothing-here",
    "nullmx.test MX 0 .",
    "alias.test CNAME mx.test",
    "www.test CNAME mx2.mx.test",
    "chain.test CNAME www.test",
    "loop1.test CNAME loop2.test",
    "loop2.test CNAME loop1.test",
    "v6.test A 127.0.0.61",
    "v6.test AAAA 2001:db8::61",
    "late.test A 127.0.0.71",
]


# ---------------------------------------------------------------- helpers

def dns_query_path():
    p = os.environ.get("DNS_QUERY")
    if not p:
        sluiced = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SLUICED")
        if not sluiced:
            fail("no build dir: pass BUILD/sluiced as argv[1], or set SLUICED or DNS_QUERY")
        p = os.path.join(os.path.dirname(os.path.abspath(sluiced)), "tests", "dns", "dns_query")
    check(os.access(p, os.X_OK), "dns_query is built and executable", p, "an executable")
    return p


class Run:
    """One dns_query run: its result lines (one per lookup) and stats."""

    def __init__(self, results, stats, wall):
        self.results = results
        self.stats = stats
        self.wall = wall  # seconds the whole process took

    def one(self):
        check_eq(len(self.results), 1, "number of result lines")
        return self.results[0]


def run(servers, mode, names, repeat=1, timeout_ms=1000, tries=None, ipv6=False, loop=None,
        limit=30):
    """dns_query ... mode names; loop is None (one lookup after another),
    "parallel", "from-callback" or "shutdown"."""
    argv = [QUERY, "--servers", servers, "--timeout-ms", str(timeout_ms)]
    if loop:
        argv.append("--" + loop)
    if tries is not None:
        argv += ["--tries", str(tries)]
    if ipv6:
        argv.append("--ipv6")
    if repeat != 1:
        argv += ["--repeat", str(repeat)]
    argv += [mode] + list(names)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        fail("dns_query did not return within %d s: %s" % (limit, " ".join(argv)))
    wall = time.monotonic() - t0
    if p.returncode != 0 or p.stderr.strip():
        fail("dns_query %s: exit %d, stderr %s" % (" ".join(argv[1:]), p.returncode, p.stderr))
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    stats = [l["stats"] for l in lines if "stats" in l]
    check_eq(len(stats), 1, "dns_query prints one stats line")
    results = sorted((l for l in lines if "stats" not in l), key=lambda l: l["job"])
    check_eq([l["job"] for l in results], list(range(len(names) * repeat)),
             "dns_query: one line per job")
    return Run(results, stats[0], wall)


def hosts(res):
    return [(h["name"], h["pref"], h["status"], h["addrs"]) for h in res["hosts"]]


def expect(res, status, what, why=None):
    check_eq(res["status"], status, "%s: status (why: %s)" % (what, res.get("why")))
    if why:
        check(why in res["why"], "%s: why names the cause" % what, res["why"], "...%s..." % why)


# ---------------------------------------------------------------- checks

def mx_order(dns):
    r = run(dns.servers, "mx", ["mx.test"]).one()
    expect(r, "ok", "mx.test")
    check_eq(r["implicit_mx"], False, "mx.test: real MX records")
    check_eq(hosts(r), [("mx1.mx.test", 10, "ok", ["127.0.0.21"]),
                        ("mx2.mx.test", 20, "ok", ["127.0.0.22"]),
                        ("mx3.mx.test", 30, "ok", ["127.0.0.23"])],
             "mx.test: hosts by preference, the down first MX listed with its address")
    # --ipv6: AAAA too, IPv4 first.
    r = run(dns.servers, "mx", ["mx.test"], ipv6=True).one()
    check_eq(hosts(r)[2], ("mx3.mx.test", 30, "ok", ["127.0.0.23", "::1"]),
             "mx.test with --ipv6: mx3's A then AAAA")
    info("ok: MX by preference, down first MX listed")


def mx_first_host_fails(dns):
    r = run(dns.servers, "mx", ["dnsdown.test"]).one()
    expect(r, "ok", "dnsdown.test (second MX resolves)")
    check_eq(hosts(r), [("broken-mx.dnsdown.test", 10, "tempfail", []),
                        ("ok-mx.dnsdown.test", 20, "ok", ["127.0.0.25"])],
             "dnsdown.test: the first MX stays first, with its tempfail")
    r = run(dns.servers, "mx", ["noaddr.test"]).one()
    expect(r, "ok", "noaddr.test")
    check_eq(hosts(r), [("gone.noaddr.test", 10, "not-found", []),
                        ("ok.noaddr.test", 20, "ok", ["127.0.0.26"])],
             "noaddr.test: an MX without address stays listed, not-found")
    r = run(dns.servers, "mx", ["allgone.test"]).one()
    expect(r, "not-found", "allgone.test (no MX host has an address)", "no address for any MX")
    r = run(dns.servers, "mx", ["alldown.test"]).one()
    expect(r, "tempfail", "alldown.test (the only MX host's lookup fails)")
    info("ok: a failing first MX host keeps its place and status")


def equal_preferences(dns):
    n = 40
    before = len(dns.queries())
    rr = run(dns.servers, "mx", ["eq.test"], repeat=n)
    check_eq(len(rr.results), n, "eq.test: one line per repeat")
    firsts = set()
    for r in rr.results:
        expect(r, "ok", "eq.test")
        names = [h[0] for h in hosts(r)]
        check_eq(sorted(names[:3]), ["a.eq.test", "b.eq.test", "c.eq.test"],
                 "eq.test: the preference-10 group first")
        check_eq(names[3], "d.eq.test", "eq.test: the preference-20 host last")
        firsts.add(names[0])
    check_eq(sorted(firsts), ["a.eq.test", "b.eq.test", "c.eq.test"],
             "eq.test: over %d repeats each equal-preference host came first" % n)
    # Served from the cache after the first round: 1 MX + 4 A queries sent.
    check_eq(rr.stats["queries"], 5, "eq.test: queries sent over %d repeats" % n)
    check_eq(rr.stats["cache_hits"], 5 * (n - 1), "eq.test: cache hits")
    sent = dns.queries()[before:]
    check_eq(sorted(sent), sorted([("eq.test", "MX"), ("a.eq.test", "A"), ("b.eq.test", "A"),
                                   ("c.eq.test", "A"), ("d.eq.test", "A")]),
             "eq.test: what unbound received")
    info("ok: equal preferences shuffled on every result, cached")


def implicit_null_nx(dns):
    r = run(dns.servers, "mx", ["implicit.test"]).one()
    expect(r, "ok", "implicit.test")
    check_eq(r["implicit_mx"], True, "implicit.test: implicit MX")
    check_eq(hosts(r), [("implicit.test", 0, "ok", ["127.0.0.31"])], "implicit.test: hosts")

    r = run(dns.servers, "mx", ["empty.test"]).one()
    expect(r, "not-found", "empty.test (no MX, no A)", "no MX and no address")

    r = run(dns.servers, "mx", ["nullmx.test"]).one()
    expect(r, "null-mx", "nullmx.test")
    check_eq(r["hosts"], [], "nullmx.test: no hosts")

    before = len(dns.queries())
    rr = run(dns.servers, "mx", ["nosuch.test"], repeat=3)
    for r in rr.results:
        expect(r, "not-found", "nosuch.test", "NXDOMAIN")
        check_eq(r["hosts"], [], "nosuch.test: no hosts")
    check_eq(rr.stats["queries"], 1, "nosuch.test: one query over 3 repeats")
    check_eq(rr.stats["negative_hits"], 2, "nosuch.test: negative cache hits")
    check_eq(dns.queries()[before:], [("nosuch.test", "MX")], "nosuch.test: unbound saw one")

    r = run(dns.servers, "host", ["nosuch.test"]).one()
    expect(r, "not-found", "host nosuch.test", "NXDOMAIN")
    info("ok: implicit MX, no MX and no A, null MX, NXDOMAIN (cached negatively)")


def failures(dns):
    # SERVFAIL through unbound (which forwards broken.test to the responder),
    # and straight from the responder.
    for servers, via in ((dns.servers, "unbound"), (dns.responder_servers, "responder")):
        rr = run(servers, "mx", ["broken.test"], timeout_ms=2000)
        r = rr.one()
        expect(r, "tempfail", "broken.test via %s (SERVFAIL)" % via)
        check(rr.wall < 3.0, "broken.test via %s: SERVFAIL is not waited out" % via,
              round(rr.wall, 2), "< 3 s")
        check_eq(rr.stats["tempfails"], 1, "broken.test via %s: tempfails counted" % via)
        r = run(servers, "host", ["broken.test"]).one()
        expect(r, "tempfail", "host broken.test via %s" % via)

    # REFUSED: unbound refuses names outside its zones.
    r = run(dns.servers, "mx", ["example.org"]).one()
    expect(r, "tempfail", "example.org (REFUSED: outside the zones)")

    # A server that never answers: one query per try, tries x timeout.
    before = len(dns.responder_queries("dead.test"))
    rr = run(dns.responder_servers, "mx", ["dead.test"], timeout_ms=250, tries=3)
    r = rr.one()
    expect(r, "tempfail", "dead.test (no answer)", "timeout")
    check(0.7 <= r["elapsed_ms"] / 1000.0 <= 2.5, "dead.test: 3 tries of 250 ms",
          r["elapsed_ms"], "750 ms (700..2500)")
    check_eq(rr.stats["queries"], 3, "dead.test: queries counted per try")
    check_eq(len(dns.responder_queries("dead.test")) - before, 3,
             "dead.test: queries the server received")

    # Slower than the timeout: tempfail in bounded time, directly and via
    # unbound (whose own upstream wait is longer than ours).
    for servers, via in ((dns.responder_servers, "responder"), (dns.servers, "unbound")):
        rr = run(servers, "mx", ["slow.test"], timeout_ms=300, tries=2)
        r = rr.one()
        expect(r, "tempfail", "slow.test via %s (answer after 5 s)" % via, "timeout")
        check(0.55 <= r["elapsed_ms"] / 1000.0 <= 2.0,
              "slow.test via %s: gave up after 2 x 300 ms" % via, r["elapsed_ms"], "600 ms")
        check(rr.wall < 4.0, "slow.test via %s: dns_query returned in bounded time" % via,
              round(rr.wall, 2), "< 4 s")

    # Slow but within the timeout: the late answer is taken.
    r = run(dns.responder_servers, "host", ["late.test"], timeout_ms=3000).one()
    expect(r, "ok", "late.test (answer after 0.4 s, timeout 3 s)")
    check_eq(hosts(r), [("late.test", 0, "ok", ["127.0.0.71"])], "late.test: address")
    check(r["elapsed_ms"] >= 350, "late.test: the answer really was late", r["elapsed_ms"],
          ">= 350 ms")
    info("ok: SERVFAIL, REFUSED, no answer and late answers")


def cnames(dns):
    want = [("mx1.mx.test", 10, "ok", ["127.0.0.21"]), ("mx2.mx.test", 20, "ok", ["127.0.0.22"]),
            ("mx3.mx.test", 30, "ok", ["127.0.0.23"])]
    for servers, via in ((dns.servers, "unbound"), (dns.responder_servers, "responder")):
        r = run(servers, "mx", ["alias.test"]).one()
        expect(r, "ok", "alias.test via %s" % via)
        check_eq(hosts(r), want, "alias.test via %s: the MX of mx.test" % via)
        r = run(servers, "host", ["chain.test"]).one()
        expect(r, "ok", "host chain.test via %s (two CNAMEs)" % via)
        check_eq(hosts(r), [("chain.test", 0, "ok", ["127.0.0.22"])],
                 "chain.test via %s: the address at the chain's end" % via)
        # No MX at www.test's target: the implicit MX follows the CNAME too.
        r = run(servers, "mx", ["www.test"]).one()
        expect(r, "ok", "mx www.test via %s" % via)
        check_eq((r["implicit_mx"], hosts(r)), (True, [("www.test", 0, "ok", ["127.0.0.22"])]),
                 "www.test via %s: implicit MX through the CNAME" % via)
        rr = run(servers, "mx", ["loop1.test"])
        expect(rr.one(), "tempfail", "loop1.test via %s (CNAME loop)" % via)
        check(rr.stats["queries"] <= 20, "loop1.test via %s: the loop is bounded" % via,
              rr.stats["queries"], "<= 20")
    # Repeats of a restarted CNAME lookup come from the cache.
    rr = run(dns.servers, "host", ["chain.test"], repeat=3)
    check_eq(rr.stats["queries"], 3, "chain.test x3: chain.test, www.test, mx2.mx.test once")
    check_eq(rr.stats["cache_hits"], 2, "chain.test x3: later rounds from the cache")
    info("ok: CNAMEs in one answer and across answers, loops bounded")


def literals_and_cache(dns):
    rr = run(dns.servers, "host", ["127.0.0.9", "::1"])
    check_eq([hosts(r) for r in rr.results],
             [[("127.0.0.9", 0, "ok", ["127.0.0.9"])], [("::1", 0, "ok", ["::1"])]],
             "address literals as they are")
    check_eq(rr.stats["queries"], 0, "address literals: no query")

    before = len(dns.queries())
    rr = run(dns.servers, "mx", ["mx.test"], repeat=3)
    for r in rr.results:
        check_eq([h[0] for h in hosts(r)], ["mx1.mx.test", "mx2.mx.test", "mx3.mx.test"],
                 "mx.test repeated: same order")
    check_eq(rr.stats["queries"], 4, "mx.test x3: 1 MX + 3 A queries")
    check_eq(rr.stats["cache_hits"], 8, "mx.test x3: the 2 later rounds from the cache")
    check_eq(rr.stats["negative_hits"], 0, "mx.test x3: no negative hits")
    check_eq(len(dns.queries("mx.test", "MX")[-1:]), 1, "unbound logged mx.test MX")
    check_eq(dns.queries()[before:].count(("mx.test", "MX")), 1,
             "mx.test x3: unbound received the MX query once")

    r = run(dns.servers, "host", ["v6.test"], ipv6=True).one()
    check_eq(hosts(r), [("v6.test", 0, "ok", ["127.0.0.61", "2001:db8::61"])],
             "host v6.test --ipv6: A then AAAA")

    r = run(dns.servers, "mx", ["bad..name"])
    check_eq(r.results, [{"domain": "bad..name", "error": "Invalid argument", "job": 0}],
             "a bad domain name is refused before any query")
    info("ok: literals, cache hits counted, bad names refused")


def event_loop_paths(dns):
    names = ["mx.test", "eq.test", "implicit.test", "nosuch.test", "nullmx.test", "alias.test"]
    want = {"mx.test": "ok", "eq.test": "ok", "implicit.test": "ok", "nosuch.test": "not-found",
            "nullmx.test": "null-mx", "alias.test": "ok"}

    # Every lookup in flight at once on one loop (the second round's queries
    # go out beside the first's: the cache only holds answers).
    rr = run(dns.servers, "mx", names, repeat=2, loop="parallel")
    check_eq({r["domain"]: r["status"] for r in rr.results}, want, "parallel: statuses")
    check_eq([sorted(hosts(r)) for r in rr.results[:len(names)]],
             [sorted(hosts(r)) for r in rr.results[len(names):]],
             "parallel: both rounds found the same hosts")
    check_eq(hosts(rr.results[0]), hosts(run(dns.servers, "mx", ["mx.test"]).one()),
             "parallel: mx.test as when alone")

    # Each lookup started from the callback of the one before: the repeats
    # are cache hits that finish inside dns_resolve_mx() called from a
    # callback.
    rr = run(dns.servers, "mx", names, repeat=3, loop="from-callback")
    for r in rr.results:
        check_eq(r["status"], want[r["domain"]], "from-callback: status of %s" % r["domain"])
    check(rr.stats["cache_hits"] > 0, "from-callback: repeats hit the cache", rr.stats,
          "cache_hits > 0")

    # Freed with lookups in flight: each gets its one callback (tempfail,
    # resolver shut down) from the free, and a lookup started there is
    # refused.  dns_query exits 3 if a callback ran twice or never.
    rr = run(dns.responder_servers, "mx", ["dead.test", "slow.test", "mx.test"],
             loop="shutdown", timeout_ms=5000)
    for r in rr.results:
        expect(r, "tempfail", "shutdown: %s" % r["domain"], "shut down")
        check_eq(r.get("restart"), "Cannot send after transport endpoint shutdown",
                 "shutdown: a lookup started from the callback (-ESHUTDOWN)")
    check(rr.wall < 3.0, "shutdown: the free does not wait for the server", round(rr.wall, 2),
          "< 3 s")
    info("ok: parallel lookups, lookups from callbacks, free with lookups in flight")


def body():
    global QUERY
    QUERY = dns_query_path()
    with dh.DnsServer(records=RECORDS, servfail=["broken.test", "broken-mx.dnsdown.test"],
                      drop=["dead.test"], slow={"slow.test": 5.0, "late.test": 0.4}) as dns:
        info("unbound on %s, responder on %s" % (dns.servers, dns.responder_servers))
        check_eq(dns.query("mx1.mx.test"), (0, ["127.0.0.21"]), "harness: unbound serves A")
        mx_order(dns)
        mx_first_host_fails(dns)
        equal_preferences(dns)
        implicit_null_nx(dns)
        failures(dns)
        cnames(dns)
        literals_and_cache(dns)
        event_loop_paths(dns)
        d = dns.dir
        pids = [dns.proc.pid, dns.resp_proc.pid]
    check(not os.path.exists(d), "harness: temp dir removed after stop", d, None)
    for pid in pids:
        check(not os.path.exists("/proc/%d" % pid) or
              open("/proc/%d/stat" % pid).read().split()[2] == "Z",
              "harness: process %d stopped" % pid)


QUERY = None

if __name__ == "__main__":
    sh.run_main(body)

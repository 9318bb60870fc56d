#!/usr/bin/python3
"""dns_harness: a real DNS server on loopback for the tests that resolve.

    with DnsServer(records=["mx.test MX 10 mx1.mx.test",
                            "mx.test MX 20 mx2.mx.test",
                            "mx1.mx.test A 127.0.0.21",
                            "mx2.mx.test A 127.0.0.22"],
                   servfail=["broken.test"],
                   slow={"slow.test": 3.0}) as dns:
        ... resolver servers = dns.servers  ("127.0.0.1:PORT") ...

Two processes, both our children, both stopped by PID:

  unbound   the server the resolver under test talks to (dns.servers).  It
            serves the records as local data: every zone is a `local-zone:
            static`, so a name of the zone without data is NXDOMAIN and a
            name with data but not of the asked type is NODATA, both with
            the zone's SOA in the authority section (negative TTL neg_ttl,
            RFC 2308).  A CNAME in local data is answered with the CNAME
            alone, without its target's records and without an SOA
            (unbound 1.17 does not chase local CNAMEs); sluice's resolver
            then asks for the target itself (RFC 1034 5.3.3).  Names
            outside every zone get REFUSED (`local-zone: "." refuse`), so
            a test never waits on the internet.  (unbound's built-in
            RFC 6761 zones still apply: *.invalid is NXDOMAIN.)  unbound
            also rotates the order of the records of an RRset.
  responder this file run as a script: a small UDP-only DNS server.  It
            answers SERVFAIL for the servfail names, drops the queries for
            the drop names (a dead server), and answers the slow names
            after their delay; every other name it answers authoritatively
            from all the records: the whole CNAME chain and the target's
            records in one answer, NODATA / NXDOMAIN with the zone's SOA,
            REFUSED outside the zones.  unbound forwards each servfail,
            drop and slow name to it (`local-zone: NAME transparent` plus a
            `forward-zone` per name, forward-no-cache), so dns.servers
            alone serves everything; dns.responder_servers asks the
            responder directly (exact delays, complete CNAME chains).

Going through unbound, a slow name answers only when its delay is under
unbound's own upstream timeout (about 0.4 s for a fresh upstream): for a
longer delay unbound gives up on the responder and, after its retries,
answers SERVFAIL, or nothing within the client's timeout; either way the
client sees no answer in time, which is what "slow" is for.  For exact
delays (an answer after 0.8 s to a client with a 1 s timeout) query the
responder directly.  A servfail name reaches the client through unbound as
SERVFAIL after unbound's own retries (a few ms).

Records are zone-file lines, one string each:

    "OWNER [TTL] [IN] TYPE RDATA"

with TYPE one of A, AAAA, MX, CNAME, NS, TXT, SOA (the responder serves A,
AAAA, MX, CNAME, NS, one-string TXT and SOA).  Names may omit the trailing
dot (all names are absolute) and are lowercased.  The TTL defaults to the
ttl argument.  Examples:

    "mx.test MX 10 mx1.mx.test"       MX with preference 10
    "mx.test MX 10 mx2.mx.test"       a second one of equal preference
    "nullmx.test MX 0 ."              RFC 7505 null MX
    "implicit.test A 127.0.0.31"      no MX: the implicit MX of the domain
    "empty.test TXT x"                exists, but no MX and no A
    "alias.test CNAME mx.test"        a CNAME
    "short.test 5 A 127.0.0.40"       TTL 5 seconds
(NXDOMAIN: any name of a zone without records, e.g. "nosuch.test".)

The API:

    DnsServer(records=(), zones=None, servfail=(), drop=(), slow=None,
              ttl=300, neg_ttl=300, name="dns")
      records   the record lines above (a slow name's records are served,
                late, by the responder);
      zones     apex names served as static local zones; default: the last
                label of every owner name (so "mx.test" gives zone "test");
                every owner must lie in one (ValueError otherwise);
      servfail  names (any type) answered SERVFAIL;
      drop      names whose queries are never answered;
      slow      {name: seconds}: answered after that delay;
      ttl       default TTL of the records;
      neg_ttl   the SOA TTL and MINIMUM of every zone (negative caching).
    .start() / .stop(), or a with block (start on enter, stop on exit).
    .port               unbound's UDP and TCP port on 127.0.0.1
    .servers            "127.0.0.1:PORT", for a c-ares server csv
    .responder_port, .responder_servers   the responder, directly
    .dir                the temp dir (unbound.conf, unbound.log, unbound.out,
                        responder.json, responder.log)
    .proc, .resp_proc   the two subprocess.Popen objects
    .queries(name=None, qtype=None)  [(name, type)] unbound logged as
                        received (log-queries), in order; names lowercase, no
                        trailing dot; for cache checks (compare slices taken
                        before and after)
    .responder_queries(name=None)    [(name, type)] the responder received
    .query(name, qtype="A", server=None, timeout=2.0)  one query of our own
                        to unbound (or to port server): (rcode, [answer rdata
                        text]) or None on no answer; for self-checks
    .log(), .log_tail(n=40)

Names here are written lowercase.  If unbound is missing, start() raises
sluice_harness.Skip.  A started server is registered in
sluice_harness.Daemon.all, so run_main() stops both processes, shows their
logs on failure and removes (or, with SLUICE_KEEP=1, keeps) the temp dir.
"""

import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import sluice_harness as sh

UNBOUND = "/usr/sbin/unbound"
UNBOUND_CHECKCONF = "/usr/sbin/unbound-checkconf"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5


# ---------------------------------------------------------------- records

def canon(name):
    """Lowercase, no trailing dot; "" is the root."""
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


def absolute(name):
    n = canon(name)
    return n + "." if n else "."


def parse_record(line, default_ttl):
    """"OWNER [TTL] [IN] TYPE RDATA" -> (owner, ttl, type, [rdata fields])."""
    f = line.split()
    if len(f) < 3:
        raise ValueError("record %r: want OWNER [TTL] [IN] TYPE RDATA" % line)
    owner, rest = canon(f[0]), f[1:]
    ttl = default_ttl
    if rest and rest[0].isdigit():
        ttl = int(rest[0])
        rest = rest[1:]
    if rest and rest[0].upper() == "IN":
        rest = rest[1:]
    if len(rest) < 2 or rest[0].upper() not in TYPES:
        raise ValueError("record %r: unknown or missing type" % line)
    return owner, ttl, rest[0].upper(), rest[1:]


def unbound_rr(owner, ttl, rtype, rdata):
    """The record as unbound local-data text, names made absolute."""
    if rtype == "MX":
        rdata = [rdata[0], absolute(rdata[1])]
    elif rtype in ("CNAME", "NS"):
        rdata = [absolute(rdata[0])]
    elif rtype == "SOA":
        rdata = [absolute(rdata[0]), absolute(rdata[1])] + rdata[2:]
    return "%s %d IN %s %s" % (absolute(owner), ttl, rtype, " ".join(rdata))


def in_zone(name, zone):
    return zone == "" or name == zone or name.endswith("." + zone)


# ---------------------------------------------------------------- wire

def wire_name(name):
    out = b""
    for label in canon(name).split(".") if canon(name) else []:
        b = label.encode("ascii")
        if not 0 < len(b) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(b)]) + b
    return out + b"\0"


def read_name(pkt, off):
    """(name, offset after it in place), following compression pointers."""
    labels, end, hops = [], None, 0
    while True:
        c = pkt[off]
        if c & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((c & 0x3F) << 8) | pkt[off + 1]
            hops += 1
            if hops > 32:
                raise ValueError("pointer loop")
            continue
        if c == 0:
            return ".".join(labels).lower(), end if end is not None else off + 1
        labels.append(pkt[off + 1:off + 1 + c].decode("ascii", "replace"))
        off += 1 + c


def build_query(name, qtype, qid):
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire_name(name) + \
        struct.pack("!HH", TYPES[qtype] if isinstance(qtype, str) else qtype, 1)


def parse_question(pkt):
    """(qid, flags, qname, qtype, offset after the question) of a query."""
    qid, flags, qd = struct.unpack("!HHH", pkt[:6])
    if qd != 1:
        raise ValueError("qdcount %d" % qd)
    name, off = read_name(pkt, 12)
    qtype, _qclass = struct.unpack("!HH", pkt[off:off + 4])
    return qid, flags, name, qtype, off + 4


def rdata_wire(rtype, rdata):
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, rdata[0])
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, rdata[0])
    if rtype == "MX":
        return struct.pack("!H", int(rdata[0])) + wire_name(rdata[1])
    if rtype in ("CNAME", "NS"):
        return wire_name(rdata[0])
    if rtype == "SOA":
        return wire_name(rdata[0]) + wire_name(rdata[1]) + \
            struct.pack("!IIIII", *(int(x) for x in rdata[2:7]))
    if rtype == "TXT":
        t = " ".join(rdata).strip('"').encode()
        return bytes([len(t)]) + t
    raise ValueError("the responder does not serve %s records" % rtype)


def build_reply(query, rcode, answers=(), authority=()):
    """A reply to the query bytes: its id and question, RD copied, QR+AA set;
    answers and authority are (owner, ttl, type, rdata fields)."""
    qid, flags, _name, _qtype, qend = parse_question(query)
    out = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(answers),
                      len(authority), 0)
    out += query[12:qend]
    for owner, ttl, rtype, rdata in list(answers) + list(authority):
        rd = rdata_wire(rtype, rdata)
        out += wire_name(owner) + struct.pack("!HHIH", TYPES[rtype], 1, ttl, len(rd)) + rd
    return out


def parse_reply(pkt):
    """(rcode, [text of each answer's rdata]) of a reply, for self-checks."""
    _qid, flags, _qd, an, _ns, _ar = struct.unpack("!HHHHHH", pkt[:12])
    _n, off = read_name(pkt, 12)
    off += 4
    out = []
    for _ in range(an):
        _owner, off = read_name(pkt, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", pkt[off:off + 10])
        off += 10
        rd = pkt[off:off + rdlen]
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, rd))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, rd))
        elif rtype == 15:
            out.append("%d %s" % (struct.unpack("!H", rd[:2])[0], read_name(pkt, off + 2)[0] or "."))
        elif rtype in (2, 5):
            out.append(read_name(pkt, off)[0])
        else:
            out.append(rd.hex())
        off += rdlen
    return flags & 0xF, out


def udp_query(port, name, qtype="A", timeout=2.0, host="127.0.0.1"):
    """One UDP query; (rcode, answers) or None when no reply came in time."""
    qid = random.randrange(1, 65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(build_query(name, qtype, qid), (host, port))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([s], [], [], left)
            if not r:
                return None
            pkt = s.recv(65535)
            if len(pkt) >= 12 and struct.unpack("!H", pkt[:2])[0] == qid:
                return parse_reply(pkt)
    finally:
        s.close()


def free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (a server binds both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            u.close()
            t.close()
    sh.fail("no port free for both UDP and TCP on %s" % host)


# ---------------------------------------------------------------- responder

def responder_answer(query, records, zones, neg_ttl):
    """Authoritative answer of the responder from records {owner: [rr]}:
    the CNAME chain from the qname (at most 8 links) and the records of the
    type at its end; NODATA or NXDOMAIN with the zone's SOA; REFUSED outside
    every zone."""
    _qid, _flags, name, qtype, _end = parse_question(query)
    tname = TYPE_NAMES.get(qtype, str(qtype))
    answers, target = [], name
    for _ in range(9):
        rrs = records.get(target, [])
        cname = [rr for rr in rrs if rr[2] == "CNAME"]
        if not cname or tname == "CNAME":
            break
        answers.append(cname[0])
        target = canon(cname[0][3][0])
    answers += [rr for rr in records.get(target, []) if rr[2] == tname]
    zone = max((z for z in zones if in_zone(target, z)), key=len, default=None)
    if zone is None:
        return build_reply(query, RCODE_REFUSED)
    rcode = RCODE_NOERROR if target in records else RCODE_NXDOMAIN
    soa = []
    if not answers or answers[-1][2] == "CNAME":
        apex = zone or "."
        soa = [(zone, neg_ttl, "SOA", ["ns." + apex, "hostmaster." + apex,
                                       "1", "3600", "600", "86400", str(neg_ttl)])]
    return build_reply(query, rcode, answers, soa)


def responder_main(conf_path):
    """The responder process: bind UDP 127.0.0.1:0, write the port to the
    port file (atomically), serve until SIGTERM.  One log line per query on
    stdout (responder.log): "query NAME TYPE ACTION"."""
    with open(conf_path) as f:
        conf = json.load(f)
    servfail = set(conf["servfail"])
    drop = set(conf["drop"])
    slow = conf["slow"]
    records = {}
    for owner, ttl, rtype, rdata in conf["records"]:
        records.setdefault(owner, []).append((owner, ttl, rtype, rdata))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    tmp = conf["port_file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % s.getsockname()[1])
    os.rename(tmp, conf["port_file"])
    pending = []  # [due, seq, reply, addr]: delayed answers, sent in due order
    seq = 0

    while True:
        timeout = None
        if pending:
            pending.sort()
            timeout = max(0.0, pending[0][0] - time.monotonic())
        r, _, _ = select.select([s], [], [], timeout)
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, reply, addr = pending.pop(0)
            s.sendto(reply, addr)
        if not r:
            continue
        pkt, addr = s.recvfrom(65535)
        try:
            _qid, flags, name, qtype, _end = parse_question(pkt)
        except (ValueError, IndexError, struct.error):
            continue
        if flags & 0x8000:
            continue
        # Log first, answer second: once a client has its answer, the line
        # is in responder.log for responder_queries().
        if name in drop:
            action, reply = "drop", None
        elif name in servfail:
            action, reply = "servfail", build_reply(pkt, RCODE_SERVFAIL)
        else:
            action = "slow" if name in slow else "answer"
            reply = responder_answer(pkt, records, conf["zones"], conf["neg_ttl"])
        print("query %s %s %s" % (name, TYPE_NAMES.get(qtype, str(qtype)), action), flush=True)
        if reply is not None and action == "slow":
            seq += 1
            pending.append([now + float(slow[name]), seq, reply, addr])
        elif reply is not None:
            s.sendto(reply, addr)


# ---------------------------------------------------------------- server

class DnsServer:
    """unbound (plus the responder) in one temp dir; see the module doc."""

    def __init__(self, records=(), zones=None, servfail=(), drop=(), slow=None,
                 ttl=300, neg_ttl=300, name="dns"):
        self.name = name
        self.ttl = ttl
        self.neg_ttl = neg_ttl
        self.records = [parse_record(r, ttl) for r in records]
        self.servfail = [canon(n) for n in servfail]
        self.drop = [canon(n) for n in drop]
        self.slow = {canon(k): float(v) for k, v in (slow or {}).items()}
        owners = {r[0] for r in self.records} | set(self.servfail) | set(self.drop) | \
            set(self.slow)
        if zones is None:
            zones = sorted({o.rsplit(".", 1)[-1] for o in owners if o})
        self.zones = [canon(z) for z in zones]
        for o in owners:
            if not any(in_zone(o, z) for z in self.zones):
                raise ValueError("name %r is in none of the zones %r" % (o, self.zones))
        self.forwarded = sorted(set(self.servfail) | set(self.drop) | set(self.slow))
        self.dir = None
        self.log_path = None
        self.port = None
        self.responder_port = None
        self.proc = None
        self.resp_proc = None

    @property
    def servers(self):
        return "127.0.0.1:%d" % self.port

    @property
    def responder_servers(self):
        return "127.0.0.1:%d" % self.responder_port

    # -- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Start the responder and unbound; wait until unbound answers.
        Raises Skip without unbound, TestFailure if a process does not come
        up.  Under run_main() a failed start is cleaned up there (with the
        logs shown); outside it, the processes are stopped here."""
        if not os.access(UNBOUND, os.X_OK):
            raise sh.Skip("unbound not installed (apt-get install unbound)")
        self.dir = tempfile.mkdtemp(prefix="sluice-dns-")
        sh.Daemon.all.append(self)
        self.log_path = os.path.join(self.dir, "unbound.log")
        try:
            self._start_responder()
            for _ in range(3):
                self.port = free_udp_tcp_port()
                self._write_config()
                if self._start_unbound():
                    return self
                # Lost the port to someone else between the probe and the bind.
                if "bind" not in self.log():
                    break
            sh.fail("unbound did not start (see %s):\n%s" % (self.log_path, self.log_tail()))
        except BaseException:
            # The processes go now; the dir stays for run_main()'s log tail.
            self._stop_processes()
            raise

    def stop(self):
        """SIGTERM both processes by PID (SIGKILL after STOP_TIMEOUT), remove
        the temp dir."""
        self.cleanup()

    def cleanup(self, keep_dir=False):
        self._stop_processes()
        if self in sh.Daemon.all:
            sh.Daemon.all.remove(self)
        if self.dir and not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _stop_processes(self):
        for attr in ("proc", "resp_proc"):
            p = getattr(self, attr)
            if p is None:
                continue
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                    p.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=STOP_TIMEOUT)
                except ProcessLookupError:
                    pass
            setattr(self, attr, None)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- responder

    def _start_responder(self):
        conf = os.path.join(self.dir, "responder.json")
        port_file = os.path.join(self.dir, "responder.port")
        with open(conf, "w") as f:
            json.dump({"servfail": self.servfail, "drop": self.drop, "slow": self.slow,
                       "records": [list(r) for r in self.records], "zones": self.zones,
                       "neg_ttl": self.neg_ttl, "port_file": port_file}, f)
        with open(os.path.join(self.dir, "responder.log"), "ab") as log:
            self.resp_proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "responder", conf],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(port_file):
            if self.resp_proc.poll() is not None:
                sh.fail("the DNS responder exited:\n%s" % self.log_tail())
            if time.monotonic() >= deadline:
                sh.fail("the DNS responder did not report its port:\n%s" % self.log_tail())
            time.sleep(0.01)
        with open(port_file) as f:
            self.responder_port = int(f.read())

    def responder_queries(self, name=None):
        out = []
        try:
            with open(os.path.join(self.dir, "responder.log")) as f:
                for l in f:
                    w = l.split()
                    if len(w) == 4 and w[0] == "query" and (name is None or w[1] == canon(name)):
                        out.append((w[1], w[2]))
        except OSError:
            pass
        return out

    # -- unbound

    def _write_config(self):
        lines = [
            "# written by tests/integration/dns_harness.py",
            "server:",
            "  interface: 127.0.0.1",
            "  port: %d" % self.port,
            "  do-ip4: yes",
            "  do-ip6: no",
            "  do-udp: yes",
            "  do-tcp: yes",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            '  directory: "%s"' % self.dir,
            '  pidfile: "%s"' % os.path.join(self.dir, "unbound.pid"),
            '  logfile: "%s"' % self.log_path,
            "  use-syslog: no",
            "  verbosity: 1",
            "  log-queries: yes",
            "  num-threads: 1",
            "  outgoing-range: 64",
            "  num-queries-per-thread: 32",
            "  so-reuseport: no",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
            "  access-control: 127.0.0.0/8 allow",
            "  minimal-responses: no",
            '  local-zone: "." refuse',
        ]
        for z in self.zones:
            apex = absolute(z)
            lines.append('  local-zone: "%s" static' % apex)
            if not any(r[0] == z and r[2] == "SOA" for r in self.records):
                soa = "%s %d IN SOA ns.%s hostmaster.%s 1 3600 600 86400 %d" % (
                    apex, self.neg_ttl, apex, apex, self.neg_ttl)
                lines.append('  local-data: "%s"' % soa)
        for n in self.forwarded:
            lines.append('  local-zone: "%s" transparent' % absolute(n))
        for owner, ttl, rtype, rdata in self.records:
            if owner in self.slow:
                continue
            lines.append('  local-data: "%s"' % unbound_rr(owner, ttl, rtype, rdata))
        lines += ["remote-control:", "  control-enable: no"]
        for n in self.forwarded:
            lines += ["forward-zone:",
                      '  name: "%s"' % absolute(n),
                      "  forward-addr: 127.0.0.1@%d" % self.responder_port,
                      "  forward-no-cache: yes"]
        with open(os.path.join(self.dir, "unbound.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _start_unbound(self):
        conf = os.path.join(self.dir, "unbound.conf")
        if os.access(UNBOUND_CHECKCONF, os.X_OK):
            r = subprocess.run([UNBOUND_CHECKCONF, conf], capture_output=True, timeout=30)
            if r.returncode != 0:
                sh.fail("unbound-checkconf refused the config:\n%s" %
                        (r.stdout + r.stderr).decode("utf-8", "replace"))
        with open(os.path.join(self.dir, "unbound.out"), "ab") as out:
            self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        probe = self.zones[0] if self.zones else "."
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if udp_query(self.port, probe, "SOA", timeout=0.2) is not None:
                return True
        sh.fail("unbound not answering on 127.0.0.1:%d after %.0f s" % (self.port, READY_TIMEOUT))

    def query(self, name, qtype="A", server=None, timeout=2.0):
        """One query of our own to unbound (or server=port): (rcode,
        [answer rdata text]), or None when no reply came within timeout."""
        return udp_query(server or self.port, name, qtype, timeout)

    def queries(self, name=None, qtype=None):
        """[(name, type)] of the queries unbound logged, in order (its
        log-queries lines "info: 127.0.0.1 NAME. TYPE IN"), our own readiness
        probes included."""
        out = []
        for l in self.log().splitlines():
            w = l.split()
            if len(w) >= 5 and w[-1] == "IN" and w[-4].startswith("127."):
                n, t = canon(w[-3]), w[-2]
                if (name is None or n == canon(name)) and (qtype is None or t == qtype):
                    out.append((n, t))
        return out

    # -- logs

    def log(self):
        out = ""
        for f in ("unbound.out", "unbound.log"):
            try:
                with open(os.path.join(self.dir or "", f), "rb") as fh:
                    out += fh.read().decode("utf-8", "replace")
            except OSError:
                pass
        return out

    def log_tail(self, n=40):
        head = ""
        for what, p in (("unbound", self.proc), ("responder", self.resp_proc)):
            if p is not None and p.poll() is not None:
                head += "!!! %s (pid %d) exited with %s\n" % (what, p.pid, p.returncode)
        resp = ""
        try:
            with open(os.path.join(self.dir or "", "responder.log"), "rb") as f:
                resp = "\n-- responder --\n" + "\n".join(
                    f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            pass
        return head + "\n".join(self.log().splitlines()[-n:]) + resp


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "responder":
        responder_main(sys.argv[2])
    else:
        print("usage: dns_harness.py responder CONF.json (started by DnsServer)",
              file=sys.stderr)
        sys.exit(2)

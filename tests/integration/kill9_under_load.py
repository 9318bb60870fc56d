#!/usr/bin/python3
"""The crash test: SIGKILL under load loses nothing that was acknowledged.

Each round: 16 client threads (smtplib) send messages with unique ids and
random bodies (sha256 recorded) as fast as they can; after a random 1-3 s
sluiced is killed with SIGKILL (by PID).  Every message is classified by
what its client saw:
  acked     the 250 after the data arrived
  refused   a 4xx/5xx reply (MAIL, RCPT or end of data)
  inflight  no answer: the connection died before the final reply
Then sluiced restarts on the same spool, recovers, delivers; when the
deliveries of the recovered messages are done and every acknowledged message
is present, the Maildir is checked:
  - every acked message is there exactly once with an intact body (hash);
  - an inflight message may be there or not, duplicates of it are counted;
  - no refused message is there;
  - every file is a whole message of ours (no corrupt, no unknown file).
3 rounds with different kill times, on the same spool and Maildir (so the
recovery of a spool that was itself recovered is exercised too).

SLUICE_KILL9_SEED=<int> reproduces a run (the seed is printed).
An acked message found twice, once written by the killed process and once
by the restarted one, is reported as "acked_redelivered" (the Maildir write
was done, its final state not yet durable in the journal); it fails the
test unless SLUICE_KILL9_ALLOW_REDELIVERY=1."""

import hashlib
import os
import random
import re
import signal
import smtplib
import socket
import sys
import threading
import time

from sluice_harness import (Daemon, check, check_eq, fail, free_port, info, qid_of, run_main,
                            split_received, wait_until)

THREADS = 16
ROUNDS = 3
PER_CONN = 8  # messages per SMTP session before QUIT and reconnect
PID_RE = re.compile(r"P(\d+)")  # Maildir name: <secs>.M<usecs>P<pid>Q<n>.<host>
# SLUICE_KILL9_ALLOW_REDELIVERY=1: count, do not fail on, an acked message
# delivered once by the killed process and once more after the restart.
ALLOW_REDELIVERY = os.environ.get("SLUICE_KILL9_ALLOW_REDELIVERY") == "1"
ID_RE = re.compile(rb"^X-Kill9-Id: (r\d+-t\d+-\d+)$", re.M)


class Msg:
    __slots__ = ("mid", "rcpt", "sha", "state", "reply")

    def __init__(self, mid, rcpt, sha):
        self.mid, self.rcpt, self.sha = mid, rcpt, sha
        self.state = "inflight"
        self.reply = None


MAX_SIZE = 100000      # max_message_size of the daemon under test
OVERSIZE_SHARE = 0.05  # share of messages sent over it (each must get 552)

ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-_=+"


def random_block(rng, n=1 << 16):
    """n random printable bytes; message lines are slices of it (building
    every line byte by byte in Python would throttle the load)."""
    return bytes(ALPHABET[b % len(ALPHABET)] for b in rng.randbytes(n))


def make_message(rng, block, mid, rcpt, oversize=False):
    """(wire bytes with CRLF, sha256 of the stored form with LF).  An
    oversize message is over the daemon's max_message_size: it is streamed
    whole and must be refused with 552 at end of data, never delivered."""
    head = ("From: <load@client.test>\nTo: <%s>\nSubject: kill9 %s\n"
            "Message-ID: <%s@client.test>\nX-Kill9-Id: %s\n\n" % (rcpt, mid, mid, mid)).encode()
    lines = [head]
    for _ in range(rng.randint(1, 300)):
        n = rng.choice((0, 1, 10, 40, 76, 200, 990))
        off = rng.randrange(len(block) - n)
        if rng.random() < 0.05:
            lines.append(b".")  # smtplib dot-stuffs, the server must un-stuff
        lines.append(block[off:off + n] + b"\n")
    if oversize:
        lines.extend([block[:990] + b"\n"] * (MAX_SIZE // 990 + 2))
    data = b"".join(lines)
    return data.replace(b"\n", b"\r\n"), hashlib.sha256(data).hexdigest()


def client(port, rnd, tid, seed, msgs, stop):
    """Send until stop is set; append every Msg to msgs (owned by this
    thread until joined)."""
    rng = random.Random(seed * 1000 + rnd * 100 + tid)
    block = random_block(rng)
    n = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5)
        except OSError:
            # Refused (daemon dead, or the per-IP limit): retry until stop.
            time.sleep(0.01)
            continue
        try:
            s.ehlo()
            for _ in range(PER_CONN):
                if stop.is_set():
                    break
                mid = "r%d-t%d-%d" % (rnd, tid, n)
                n += 1
                rcpt = "k9-t%d@example.test" % tid
                wire, sha = make_message(rng, block, mid, rcpt, rng.random() < OVERSIZE_SHARE)
                m = Msg(mid, rcpt, sha)
                msgs.append(m)
                c, t = s.mail("load@client.test")
                if c != 250:
                    m.state, m.reply = "refused", (c, t)
                    s.rset()
                    continue
                c, t = s.rcpt(rcpt)
                if c != 250:
                    m.state, m.reply = "refused", (c, t)
                    s.rset()
                    continue
                c, t = s.data(wire)
                m.reply = (c, t)
                if c == 250:
                    m.state = "acked"
                else:
                    m.state = "refused"
                    if c == 421:
                        break
            s.quit()
        except (smtplib.SMTPException, OSError):
            # Anything after the message was appended and before its final
            # reply leaves it "inflight".
            try:
                s.close()
            except OSError:
                pass


_parsed = {}  # path -> (mid or None, why, sha, size, head): new/ files never change


def parse_file(path):
    if path not in _parsed:
        with open(path, "rb") as f:
            data = f.read()
        recv, rest = split_received(data)
        if recv is None:
            _parsed[path] = (None, "no Received: header", None, len(data), data[:120])
        else:
            m = ID_RE.search(rest)
            if not m:
                _parsed[path] = (None, "no X-Kill9-Id header (corrupt or foreign)", None, len(data),
                                 data[:200])
            else:
                _parsed[path] = (m.group(1).decode(), None, hashlib.sha256(rest).hexdigest(),
                                 len(rest), None)
    return _parsed[path]


def scan_round(d, rnd):
    """{mid: [(path, sha, size)]} for round rnd, plus a list of bad files
    (no id, not ours)."""
    found, bad = {}, []
    prefix = "r%d-" % rnd
    for path in d.all_mail_files():
        mid, why, sha, size, head = parse_file(path)
        if mid is None:
            bad.append((path, why, head))
        elif mid.startswith(prefix):
            found.setdefault(mid, []).append((path, sha, size))
    return found, bad


def one_round(d, rnd, seed, rng):
    msgs_per_thread = [[] for _ in range(THREADS)]
    stop = threading.Event()
    d.start()
    threads = [threading.Thread(target=client, args=(d.port, rnd, t, seed, msgs_per_thread[t], stop),
                                daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    delay = rng.uniform(1.0, 3.0)
    # Kill only once load is really flowing: at least one ack, then the delay.
    t0 = time.monotonic()
    wait_until(lambda: any(m.state == "acked" for ms in msgs_per_thread for m in list(ms)), 10,
               "the first acknowledged message of round %d" % rnd)
    deadline = t0 + delay
    while time.monotonic() < deadline:
        time.sleep(0.01)  # the delay is the point here: a random kill instant
    pid = d.pid
    os.kill(pid, signal.SIGKILL)
    stop.set()
    d.proc.wait(timeout=10)
    kill_at = time.monotonic() - t0
    for t in threads:
        t.join(timeout=15)
        check(not t.is_alive(), "client thread stuck 15 s after the kill")
    msgs = {m.mid: m for ms in msgs_per_thread for m in ms}
    counts = {s: sum(1 for m in msgs.values() if m.state == s) for s in ("acked", "refused", "inflight")}

    # Restart on the same spool (a fresh port: the restart-on-the-same-port
    # case is sigterm_graceful.py's).
    killed_pid = pid
    d.port = free_port()
    d.write_config()
    d.start()
    d.pid_last = d.pid
    nrec = d.wait_recovered()
    acked = [m for m in msgs.values() if m.state == "acked"]

    def drained():
        found, _ = scan_round(d, rnd)
        if any(m.mid not in found for m in acked):
            return False
        return len(d.delivered_since_start()) >= nrec
    try:
        wait_until(drained, 30, "round %d: every acked message delivered and %d recovered "
                   "message(s) delivered" % (rnd, nrec), interval=0.05)
    except Exception:
        found, _ = scan_round(d, rnd)
        missing = [m.mid for m in acked if m.mid not in found]
        info("round %d: %d acked missing after 30 s, e.g. %s; delivered since restart %d of %d recovered"
             % (rnd, len(missing), missing[:5], len(d.delivered_since_start()), nrec))
        raise
    d.stop()

    found, bad = scan_round(d, rnd)
    errors = []
    for path, why, head in bad:
        errors.append("bad file %s: %s: %r" % (path, why, head))
    inflight_present = inflight_dups = acked_redelivered = 0
    for mid, copies in found.items():
        m = msgs.get(mid)
        if m is None:
            errors.append("%s: delivered but never sent (%d copies)" % (mid, len(copies)))
            continue
        for path, sha, size in copies:
            if sha != m.sha:
                errors.append("%s (%s): body hash mismatch in %s (%d bytes)" % (mid, m.state, path, size))
        if m.state == "refused":
            errors.append("%s: refused with %r but delivered (%d copies)" % (mid, m.reply, len(copies)))
        elif m.state == "acked" and len(copies) != 1:
            pids = sorted(set(PID_RE.search(os.path.basename(p)).group(1)
                              if PID_RE.search(os.path.basename(p)) else "?" for p, _, _ in copies))
            if len(copies) == 2 and pids == sorted([str(killed_pid), str(d.pid_last)]):
                # Delivered by the killed process, then again after the
                # restart: the delivery reached the Maildir but its final
                # state was not yet durable in the journal at the kill.
                acked_redelivered += 1
                if not ALLOW_REDELIVERY:
                    errors.append("%s: acked, delivered before the kill (pid %d) and again after the "
                                  "restart (pid %d): final state not journalled durably: %s"
                                  % (mid, killed_pid, d.pid_last, [p for p, _, _ in copies]))
            else:
                errors.append("%s: acked (%r) but %d copies (pids %s): %s" %
                              (mid, m.reply, len(copies), pids, [p for p, _, _ in copies]))
        elif m.state == "inflight":
            inflight_present += 1
            inflight_dups += len(copies) - 1
    for m in acked:
        if m.mid not in found:
            errors.append("%s: acked %r but not delivered" % (m.mid, m.reply))
    info("round %d: kill at %.2f s: sent=%d acked=%d refused=%d inflight=%d | recovered=%d "
         "inflight_delivered=%d inflight_duplicates=%d acked_redelivered=%d files=%d errors=%d"
         % (rnd, kill_at, len(msgs), counts["acked"], counts["refused"], counts["inflight"], nrec,
            inflight_present, inflight_dups, acked_redelivered, sum(len(c) for c in found.values()), len(errors)))
    if counts["refused"]:
        replies = sorted(set("%d %s" % (m.reply[0], m.reply[1][:40]) for m in msgs.values()
                             if m.state == "refused"))
        info("round %d: refusals seen: %s" % (rnd, replies[:5]))
    if errors:
        fail("round %d: %d violation(s):\n  %s" % (rnd, len(errors), "\n  ".join(errors[:30])))
    check(counts["acked"] > 0, "round %d: acknowledged messages" % rnd, 0, "> 0")
    # Oversize messages are sent on purpose, so "nothing refused is
    # delivered" is checked on real refusals, not vacuously.
    check(counts["refused"] > 0, "round %d: refused (oversize) messages" % rnd, 0, "> 0")


def body():
    seed = int(os.environ.get("SLUICE_KILL9_SEED", random.randrange(1 << 30)))
    info("seed=%d (SLUICE_KILL9_SEED to reproduce)" % seed)
    rng = random.Random(seed)
    # max_connections_per_ip above the thread count, so no client is refused
    # for the limit; commit batching as a loaded server would run it.
    d = Daemon("kill9", max_connections_per_ip=100, commit_interval_us=1000, commit_batch=256,
               max_message_size=MAX_SIZE)
    for rnd in range(ROUNDS):
        one_round(d, rnd, seed, rng)
    info("%d rounds: nothing acknowledged was lost, duplicated or corrupted" % ROUNDS)


run_main(body)

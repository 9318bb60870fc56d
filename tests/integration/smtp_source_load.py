#!/usr/bin/python3
"""Load from Postfix's smtp-source: 20 parallel sessions, 500 messages of a
1024-byte payload; smtp-source exits 0 (every reply positive), and every
accepted message arrives in the Maildir exactly once: 500 files, 500
distinct queue ids in their Received: headers, the same set as the
"accepted" log lines, each with the full payload."""

import os
import re
import subprocess
import time

from sluice_harness import Daemon, Skip, check, check_eq, fail, run_main, info, split_received

SMTP_SOURCE = "/usr/sbin/smtp-source"
N = 500


def body():
    if not os.access(SMTP_SOURCE, os.X_OK):
        raise Skip("%s not installed (Debian package postfix)" % SMTP_SOURCE)
    d = Daemon("smtp-source")
    d.start()
    t0 = time.monotonic()
    p = subprocess.run([SMTP_SOURCE, "-s", "20", "-m", str(N), "-l", "1024", "-M", "client.test",
                        "-f", "from@example.test", "-t", "to@example.test", "127.0.0.1:%d" % d.port],
                       capture_output=True, timeout=45)
    dt = time.monotonic() - t0
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    if p.returncode != 0:
        fail("smtp-source exit status (output: %s)" % out[-2000:], p.returncode, 0)
    info("smtp-source sent %d messages in %.2f s (%.0f msg/s)" % (N, dt, N / dt))

    files = d.wait_mail(N, "example.test", "to", timeout=30)
    check_eq(len(files), N, "copies in example.test/to/new")
    qids = []
    payloads = set()
    for path, data in files:
        recv, rest = split_received(data)
        check(recv is not None, "copy %s starts with Received:" % path, data[:100], b"Received: ...")
        m = re.search(rb"\b([0-9A-Fa-f]{16})\b", recv)
        check(m is not None, "copy %s: Received: holds a queue id" % path, recv, b"... 16 hex ...")
        qids.append(m.group(1).decode().upper())
        hdr, _, payload = rest.partition(b"\n\n")
        payloads.add(payload)
    # smtp-source sends the same payload every time: -l counts the wire
    # bytes of the body lines (CRLF included).
    check_eq(len(payloads), 1, "distinct payloads among the copies")
    payload = payloads.pop()
    wire = len(payload) + payload.count(b"\n")
    check(1024 <= wire <= 1024 + 4, "payload size on the wire (LF counted as CRLF)", wire, 1024)
    check(set(payload) <= set(b"0123456789X\n"), "payload bytes", payload[:100], b"1XXXX...")
    dups = len(qids) - len(set(qids))
    check_eq(dups, 0, "duplicate queue ids among the copies")
    accepted = set(m.group(1).upper() for l in d.log().splitlines()
                   for m in [re.search(r"\b([0-9A-Fa-f]{16}) accepted\b", l)] if m)
    check_eq(len(accepted), N, "accepted log lines")
    check_eq(set(qids), accepted, "queue ids in the Maildir == queue ids accepted")
    # Nothing more trickles in later (a second copy would be a duplicate).
    d.stop()
    check_eq(d.mail_count("example.test", "to"), N, "copies after a clean stop")
    info("%d messages delivered exactly once" % N)


run_main(body)

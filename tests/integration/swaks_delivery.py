#!/usr/bin/python3
"""swaks (Debian's, a real independent SMTP client) delivers through sluiced:
plain ESMTP, with --pipeline, and a byte-exact --data file; each exits 0 and
its copy is in the Maildir.  swaks to an unknown user exits 24 (RCPT
refused) and stores nothing.  BDAT/CHUNKING: Debian's swaks 20201014 has no
BDAT option, so that case is skipped (reported, not silently dropped)."""

import os
import shutil
import subprocess

from sluice_harness import Daemon, Skip, check, check_eq, fail, run_main, info, split_received

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def swaks(d, *args):
    cmd = [SWAKS, "--server", "127.0.0.1:%d" % d.port, "--from", "sender@client.test",
           "--ehlo", "client.test", "--timeout", "10"] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace"), cmd


def body():
    if not os.access(SWAKS, os.X_OK):
        raise Skip("swaks not installed")
    d = Daemon("swaks")
    d.start()

    cases = [
        ("plain", ["--to", "user@example.test", "--header", "Message-Id: <swaks-plain@client.test>",
                   "--body", "plain swaks body"]),
        ("pipeline", ["--to", "user@example.test", "--pipeline",
                      "--header", "Message-Id: <swaks-pipe@client.test>", "--body", "pipelined swaks body"]),
    ]
    for name, args in cases:
        rc, out, cmd = swaks(d, *args)
        if rc != 0:
            fail("swaks %s exit status (output below)\n%s" % (name, out), rc, 0)
        if name == "pipeline":
            check("PIPELINING" in out, "swaks saw PIPELINING in EHLO", out[-2000:], "PIPELINING")
        info("ok swaks %s" % name)

    # Byte-exact: swaks sends the --data file as is (LF -> CRLF, dot-stuffed)
    # and always ends it with CRLF "." CRLF, so a file without a final
    # newline comes back as the file plus LF after the Received: header.
    exact = (b"From: <sender@client.test>\nTo: <user@example.test>\nSubject: swaks exact\n"
             b"Message-Id: <swaks-exact@client.test>\n\n.leading dot\n..two dots\n\nlast line")
    path = os.path.join(d.dir, "exact.eml")
    with open(path, "wb") as f:
        f.write(exact)
    rc, out, cmd = swaks(d, "--to", "user@example.test", "--data", path, "--pipeline")
    if rc != 0:
        fail("swaks --data exit status (output below)\n%s" % out, rc, 0)
    info("ok swaks --data")

    rc, out, cmd = swaks(d, "--to", "nobody@known.test", "--body", "never stored")
    if rc != 24:
        fail("swaks to an unknown user: exit status (24 = RCPT refused)\n%s" % out, rc, 24)
    check("550 5.1.1" in out, "swaks transcript shows 550 5.1.1", out[-1500:], "550 5.1.1")
    info("ok swaks unknown user -> 550 5.1.1, exit 24")

    files = d.wait_mail(3)
    check_eq(len(files), 3, "copies in example.test/user/new")
    got = {}
    for p, data in files:
        recv, rest = split_received(data)
        check(recv is not None, "copy %s starts with Received:" % p, data[:100], b"Received: ...")
        for tag in (b"swaks-plain", b"swaks-pipe", b"swaks-exact"):
            if b"<" + tag + b"@" in rest:
                got[tag] = rest
    check_eq(sorted(got), [b"swaks-exact", b"swaks-pipe", b"swaks-plain"], "messages delivered")
    check(b"plain swaks body" in got[b"swaks-plain"], "plain body", got[b"swaks-plain"], b"plain swaks body")
    check(b"pipelined swaks body" in got[b"swaks-pipe"], "pipelined body", got[b"swaks-pipe"],
          b"pipelined swaks body")
    check_eq(got[b"swaks-exact"], exact + b"\n", "byte-exact --data copy")
    check_eq(len(d.all_mail_files()), 3, "files under the Maildir root")
    info("SKIP-CASE bdat: swaks %s has no BDAT/CHUNKING support" % "20201014")
    d.stop()


run_main(body)

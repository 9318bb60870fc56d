#!/usr/bin/python3
"""SIGHUP reloads the routes: a local domain added to the config file is
accepted after the reload (and delivered), a removed one is refused, a
broken file is rejected with a log line and the old routes stay; while all
this (and 30 more reloads) happens, reader sessions doing RCPT to an
unchanged domain never see a failure."""

import signal
import threading
import time

from sluice_harness import Daemon, SmtpConn, check, check_eq, fail, qid_of, run_main, info, wait_until

READERS = 4


def rcpt_reply(d, rcpt):
    c = d.connect()
    try:
        c.greet()
        c.cmd("MAIL FROM:<sender@client.test>", 250)
        c.send("RCPT TO:<%s>\r\n" % rcpt)
        code, text = c.reply()
        c.cmd("QUIT", 221)
        return code, text
    finally:
        c.close()


def reader(d, stop, stats, idx):
    """One session, transaction after transaction; every RCPT to the
    unchanged domain must get 250."""
    try:
        c = d.connect()
        c.greet()
        while not stop.is_set():
            c.cmd("MAIL FROM:<sender@client.test>", 250)
            c.send("RCPT TO:<reader%d@example.test>\r\n" % idx)
            code, text = c.reply()
            if code != 250:
                stats["fail"].append("%d %s" % (code, text))
            stats["ok"] += 1
            c.cmd("RSET", 250)
        c.cmd("QUIT", 221)
        c.close()
    except Exception as e:  # counted, reported by the main thread
        stats["fail"].append("reader %d: %r" % (idx, e))


def reload(d, want_published):
    d.write_config()
    d.signal(signal.SIGHUP)
    wait_until(lambda: len(d.log_lines(r"reload: routes=\d+ published")) >= want_published, 10,
               "reload %d logged as published" % want_published)


def body():
    d = Daemon("sighup")
    base_routes = list(d.routes)
    d.start()
    code, text = rcpt_reply(d, "x@new.test")
    check(code == 554 and text.startswith("5.7.1"), "RCPT to new.test before the reload",
          "%d %s" % (code, text), "554 5.7.1 ...")

    stop = threading.Event()
    stats = [{"ok": 0, "fail": []} for _ in range(READERS)]
    threads = [threading.Thread(target=reader, args=(d, stop, stats[i], i), daemon=True)
               for i in range(READERS)]
    for t in threads:
        t.start()
    wait_until(lambda: all(s["ok"] > 0 for s in stats), 10, "every reader doing transactions")

    # Add new.test.
    d.routes = base_routes + [{"domain": "new.test", "action": "local", "maildir": d.mail}]
    published = 1
    reload(d, published)
    code, text = rcpt_reply(d, "x@new.test")
    check_eq("%d" % code, "250", "RCPT to new.test after the reload (%s)" % text)

    # 30 more reloads, flipping other.test in and out, under the readers.
    for i in range(30):
        extra = [{"domain": "other.test", "action": "local", "maildir": d.mail}] if i % 2 == 0 else []
        d.routes = base_routes + [{"domain": "new.test", "action": "local", "maildir": d.mail}] + extra
        published += 1
        reload(d, published)
        code, _ = rcpt_reply(d, "y@other.test")
        check_eq(code, 250 if extra else 554, "RCPT to other.test after reload %d (%s)" %
                 (published, "present" if extra else "removed"))

    # A broken file: refused, logged, the current routes stay.
    with open(d.conf_path, "w") as f:
        f.write("routes = ( { domain = ; } );\n")
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.log_lines(r"reload: config has errors"), 10,
               "log line 'reload: config has errors, keeping the current routes'")
    code, text = rcpt_reply(d, "x@new.test")
    check_eq(code, 250, "RCPT to new.test after a rejected reload (%s)" % text)

    stop.set()
    for t in threads:
        t.join(timeout=10)
        check(not t.is_alive(), "reader thread stuck")
    fails = [f for s in stats for f in s["fail"]]
    total = sum(s["ok"] for s in stats)
    check(not fails, "reader failures during %d reloads (of %d transactions)" % (published + 1, total),
          fails[:5], [])

    # And the new domain really delivers.
    c = d.connect()
    c.greet()
    c.cmd("MAIL FROM:<sender@client.test>", 250)
    c.cmd("RCPT TO:<x@new.test>", 250)
    c.cmd("DATA", 354)
    c.send("Subject: new domain\r\n\r\nhello new.test\r\n.\r\n")
    qid = qid_of(c.expect(250, "end of data to new.test", "2.0.0"))
    c.cmd("QUIT", 221)
    c.close()
    files = d.wait_mail(1, "new.test", "x")
    check(b"hello new.test" in files[0][1], "copy in new.test/x", files[0][1][:300], b"hello new.test")
    info("%d reloads, %d reader transactions, 0 failures; new.test delivered (qid %s)"
         % (published + 1, total, qid))
    d.write_config()  # restore a valid file for a clean stop
    d.stop()


run_main(body)

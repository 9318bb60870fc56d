#!/usr/bin/python3
"""`sluiced --check-config FILE` prints "ok" and exits 0 for a good file,
and for a bad one prints "FILE:LINE: message" naming the line (and the key)
that is wrong and exits 1, without starting anything."""

import os
import re
import subprocess
import tempfile
import shutil

from sluice_harness import check, check_eq, fail, info, run_main, sluiced_path

GOOD = """hostname = "mx.test"; workers = 2;
listen = ( { address = "127.0.0.1"; port = 12525; role = "mta"; } );
spool_dir = "/tmp/x/spool"; max_message_size = 100000; max_recipients = 50; max_errors = 20;
bare_lf = "refuse"; timeout_command = 300; timeout_data_block = 180;
max_connections = 10000; max_connections_per_ip = 100; relay_networks = [ "127.0.0.2/32" ];
commit_interval_us = 1000; commit_batch = 256; log_level = "info";
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; },
           { domain = "known.test"; action = "local"; maildir = "/tmp/x/mail"; users = ["alice"]; },
           { domain = ".relay.test"; action = "relay"; } );
"""

MINIMAL_GOOD = """# only what differs from the defaults
listen = ( { address = "127.0.0.1"; port = 12526; role = "mta"; } );
spool_dir = "/tmp/x/spool";
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; } );
"""

BASE = """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
%s
listen = ( { address = "127.0.0.1"; port = 12525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; } );
"""

# (name, text, line, words the message must contain (any case))
BAD = [
    ("syntax_double_equals", BASE % 'max_errors = = 20;', 3, []),
    ("syntax_stray_braces", BASE % '}}};', 3, []),
    ("max_recipients_zero", BASE % "max_recipients = 0;", 3, ["max_recipients"]),
    ("max_errors_wrong_type", BASE % 'max_errors = "many";', 3, ["max_errors"]),
    ("bare_lf_bad_enum", BASE % 'bare_lf = "sometimes";', 3, ["bare_lf"]),
    ("log_level_bad_enum", BASE % 'log_level = "chatty";', 3, ["log_level"]),
    ("relay_networks_bad_cidr", BASE % 'relay_networks = [ "10.0.0.0/33" ];', 3, ["relay_networks"]),
    ("unknown_key", BASE % 'max_recipeints = 5;', 3, ["max_recipeints"]),
    ("listen_port_out_of_range", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = (
  { address = "127.0.0.1"; port = 70000; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; } );
""", 4, ["port"]),
    ("listen_bad_address", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = (
  { address = "not-an-ip"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; } );
""", 4, ["address"]),
    ("route_bad_action", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; },
  { domain = "b.test"; action = "teleport"; } );
""", 5, ["action"]),
    ("route_duplicate_domain", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; },
  { domain = "example.test"; action = "relay"; } );
""", 5, ["example.test"]),
    ("route_local_without_maildir", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; },
  { domain = "b.test"; action = "local"; } );
""", 5, ["maildir"]),
    ("listen_duplicate", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; },
  { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; } );
""", 4, []),
    ("route_wildcard_domain", """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes = ( { domain = "example.test"; action = "local"; maildir = "/tmp/x/mail"; },
  { domain = "*.wild.test"; action = "relay"; } );
""", 5, []),
]

# routes_file: the error names the routes file and its line.
ROUTES_CONF = """hostname = "mx.test";
spool_dir = "/tmp/x/spool";
listen = ( { address = "127.0.0.1"; port = 2525; role = "mta"; } );
routes_file = "routes.txt";
"""
ROUTES_TXT = """# domain   action  arguments
example.test  local  /tmp/x/mail

other.test    deliver                 # line 4: unknown action
"""


def run(binary, path):
    p = subprocess.run([binary, "--check-config", path], capture_output=True, timeout=10)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def body():
    binary = sluiced_path()
    tmp = tempfile.mkdtemp(prefix="sluice-integ-check-config-")
    try:
        errors = []
        for name, text in (("good_full", GOOD), ("good_minimal", MINIMAL_GOOD)):
            path = os.path.join(tmp, name + ".conf")
            with open(path, "w") as f:
                f.write(text)
            rc, out, err = run(binary, path)
            if rc != 0 or out.strip() != "ok":
                errors.append("%s: got rc=%d stdout=%r stderr=%r, want rc=0 stdout='ok'" % (name, rc, out, err))
            else:
                info("ok %-28s -> ok" % name)
        for name, text, line, words in BAD:
            path = os.path.join(tmp, name + ".conf")
            with open(path, "w") as f:
                f.write(text)
            rc, out, err = run(binary, path)
            msg = (err.strip() or out.strip()).splitlines()
            first = msg[0] if msg else ""
            want = "%s:%d: " % (path, line)
            if rc != 1 or not first.startswith(want) or not all(w.lower() in first.lower() for w in words):
                errors.append("%s: got rc=%d %r, want rc=1 %r%s" %
                              (name, rc, first, want + "...", " naming %s" % words if words else ""))
            else:
                info("ok %-28s -> %s" % (name, first[len(path):]))
        # A good routes file, then one with an error on its line 4.
        conf = os.path.join(tmp, "routes_file.conf")
        rtxt = os.path.join(tmp, "routes.txt")
        with open(conf, "w") as f:
            f.write(ROUTES_CONF)
        with open(rtxt, "w") as f:
            f.write(ROUTES_TXT.replace("deliver  ", "relay    "))
        rc, out, err = run(binary, conf)
        if rc != 0 or out.strip() != "ok":
            errors.append("routes_file good: got rc=%d stdout=%r stderr=%r, want rc=0 'ok'" % (rc, out, err))
        else:
            info("ok %-28s -> ok" % "routes_file_good")
        with open(rtxt, "w") as f:
            f.write(ROUTES_TXT)
        rc, out, err = run(binary, conf)
        first = ((err.strip() or out.strip()).splitlines() or [""])[0]
        # The routes file may be named as written or resolved; its line must be 4.
        if rc != 1 or not re.match(r"^(\S*/)?routes\.txt:4: .*deliver", first):
            errors.append("routes_file bad action: got rc=%d %r, want rc=1 '.../routes.txt:4: ...deliver...'"
                          % (rc, first))
        else:
            info("ok %-28s -> %s" % ("routes_file_bad_action", first))
        # A file that does not exist: "path: message" (no line), exit 1.
        path = os.path.join(tmp, "missing.conf")
        rc, out, err = run(binary, path)
        first = (err.strip() or out.strip()).splitlines()[:1]
        if rc != 1 or not first or not first[0].startswith(path + ":"):
            errors.append("missing file: got rc=%d %r, want rc=1 '%s: ...'" % (rc, first, path))
        else:
            info("ok %-28s -> %s" % ("missing_file", first[0][len(path):]))
        if errors:
            fail("%d case(s) wrong:\n  %s" % (len(errors), "\n  ".join(errors)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


run_main(body)

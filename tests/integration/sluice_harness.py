"""sluice_harness: start the real sluiced and drive it, for the integration tests.

Each test is a standalone script run with Debian's /usr/bin/python3:

    /usr/bin/python3 tests/integration/<test>.py [PATH/TO/sluiced]

The daemon binary comes from argv[1], else $SLUICED.  Every test exits 0 on
success, 1 on failure (with got/want on stderr), 77 when it cannot run here
(meson counts 77 as a skip).  SLUICE_KEEP=1 keeps the temp dir of a failed
test (config, log, spool, Maildir) and prints its path.

What this module gives a test:
  - free_port(): a free TCP port on 127.0.0.1 (bind port 0, read it, close);
  - Daemon: a temp dir, a config file written from keyword arguments, the
    process (stderr and stdout to a log file), ready/stop/kill by PID, the log,
    the Maildir copies, clean-up of everything it made;
  - SmtpConn: a raw-socket SMTP client that reads whole (multi-line) replies,
    for what smtplib hides (pipelining, bare LF, over-long lines);
  - wait_until(): poll a condition against a deadline, never sleep-and-hope;
  - split_received(): cut the prepended Received: header off a Maildir copy.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

QID_RE = re.compile(rb"queued as ([0-9A-Fa-f]{16})")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------- reporting

class TestFailure(Exception):
    """A check failed; the message says what was got and what was wanted."""


def fail(what, got=None, want=None):
    msg = what
    if got is not None or want is not None:
        msg += "\n    got:  %r\n    want: %r" % (got, want)
    raise TestFailure(msg)


def check(cond, what, got=None, want=None):
    if not cond:
        fail(what, got, want)


def check_eq(got, want, what):
    if got != want:
        fail(what, got, want)


def info(msg):
    print(msg, flush=True)


class Skip(Exception):
    """The test cannot run here (missing tool); exit 77."""


def run_main(body):
    """Run body() and turn its outcome into the exit status (0/1/77).

    Every Daemon started in body() is stopped and its temp dir removed, even
    when the test fails; on failure the daemon log tail is printed (and the
    temp dir is kept if SLUICE_KEEP=1)."""
    name = os.path.basename(sys.argv[0])
    rc = 1
    try:
        body()
        info("PASS %s" % name)
        rc = 0
    except Skip as e:
        info("SKIP %s: %s" % (name, e))
        rc = 77
    except TestFailure as e:
        print("FAIL %s: %s" % (name, e), file=sys.stderr, flush=True)
        for d in list(Daemon.all):
            print("---- %s log tail (%s) ----\n%s" % (d.name, d.log_path, d.log_tail()),
                  file=sys.stderr, flush=True)
    except Exception:  # a harness bug or an unexpected daemon behaviour
        import traceback
        traceback.print_exc()
        print("FAIL %s: unexpected exception" % name, file=sys.stderr, flush=True)
        for d in list(Daemon.all):
            print("---- %s log tail (%s) ----\n%s" % (d.name, d.log_path, d.log_tail()),
                  file=sys.stderr, flush=True)
    finally:
        keep = rc == 1 and os.environ.get("SLUICE_KEEP") == "1"
        for d in list(Daemon.all):
            d.cleanup(keep_dir=keep)
            if keep:
                print("kept %s" % d.dir, file=sys.stderr)
    sys.exit(rc)


# ---------------------------------------------------------------- helpers

def sluiced_path():
    """The daemon binary: argv[1] if given, else $SLUICED."""
    p = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
    p = p or os.environ.get("SLUICED")
    if not p:
        fail("no sluiced binary: pass it as argv[1] or set SLUICED")
    if not os.access(p, os.X_OK):
        fail("sluiced binary is not executable: %s" % p)
    return os.path.abspath(p)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a true value (returned) or the deadline
    passes (TestFailure naming what we waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def listening(port, host="127.0.0.1"):
    """True if a socket is in LISTEN on host:port (from /proc/net/tcp), so the
    check itself opens no SMTP session (it would count against the limits)."""
    want_port = "%04X" % port
    a = socket.inet_aton(host)
    want_addr = "%08X" % int.from_bytes(a, "little")
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                addr, p = fields[1].split(":")
                if p == want_port and fields[3] == "0A" and addr in (want_addr, "00000000"):
                    return True
    except OSError:
        pass
    return False


def crlf(text):
    """bytes with every line ending as CRLF (input uses \\n)."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def split_received(data):
    """Split a Maildir copy into (received_header, rest).  The Received:
    header is the first line plus any folded continuation lines (leading
    space or tab).  Returns (None, data) if the copy does not start with
    one."""
    if not data.startswith(b"Received:"):
        return None, data
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return data, b""
        pos = nl + 1
        if pos >= len(data) or data[pos:pos + 1] not in (b" ", b"\t"):
            return data[:pos], data[pos:]


# ---------------------------------------------------------------- config

def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_cfg_value(x) for x in v) + " ]"
    raise TypeError("config value %r" % (v,))


def _cfg_group(d):
    return "{ " + " ".join("%s = %s;" % (k, _cfg_value(v)) for k, v in d.items()) + " }"


def config_text(settings, routes, listen):
    """libconfig text: scalar/array settings, a routes list and a listen list
    (both lists of dicts, written as groups)."""
    lines = ["# written by tests/integration/sluice_harness.py"]
    for k, v in settings.items():
        lines.append("%s = %s;" % (k, _cfg_value(v)))
    lines.append("listen = (\n  " + ",\n  ".join(_cfg_group(l) for l in listen) + "\n);")
    lines.append("routes = (\n  " + ",\n  ".join(_cfg_group(r) for r in routes) + "\n);")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- daemon

class Daemon:
    """One sluiced in its own temp dir.

    d = Daemon("name", max_message_size=1000, routes=[...])
    d.start(); ...; d.stop()

    Layout under d.dir: sluiced.conf, spool/, mail/ (Maildir root of the
    default routes), sluiced.log (stderr+stdout of every start, appended).
    The default routes: example.test and localhost catch-all, known.test
    with users alice and bob, and .relay.test relayed.  relay_networks is
    empty unless given."""

    all = []

    def __init__(self, name="sluiced", routes=None, port=None, **settings):
        self.name = name
        self.binary = sluiced_path()
        self.dir = tempfile.mkdtemp(prefix="sluice-integ-%s-" % name)
        self.conf_path = os.path.join(self.dir, "sluiced.conf")
        self.log_path = os.path.join(self.dir, "sluiced.log")
        self.spool = os.path.join(self.dir, "spool")
        self.mail = os.path.join(self.dir, "mail")
        self.port = port or free_port()
        self.proc = None
        self.log_offset = 0  # log position at the latest start
        self.settings = {
            "hostname": "mx.test",
            "workers": 2,
            "spool_dir": self.spool,
            "relay_networks": [],
            "log_level": "info",
            # Mail for remote domains (and notices to remote senders) is
            # relayed now: DNS goes to a loopback port where nothing
            # answers (a fast temporary failure), never to the system's
            # resolver.  Tests that relay pass their own DNS server.
            "dns_servers": "127.0.0.1:1",
        }
        self.settings.update(settings)
        self.routes = routes if routes is not None else self.default_routes()
        Daemon.all.append(self)
        self.write_config()

    def default_routes(self):
        return [
            {"domain": "example.test", "action": "local", "maildir": self.mail},
            {"domain": "localhost", "action": "local", "maildir": self.mail},
            {"domain": "known.test", "action": "local", "maildir": self.mail,
             "users": ["alice", "bob"]},
            {"domain": ".relay.test", "action": "relay"},
        ]

    def write_config(self):
        listen = [{"address": "127.0.0.1", "port": self.port, "role": "mta"}]
        text = config_text(self.settings, self.routes, listen)
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf_path)  # a reload never sees half a file

    # -- process

    def start(self, wait=True, use_config=True):
        """Start sluiced -c <config> (use_config False: no -c, the embedded
        default) in the temp dir; wait until it listens."""
        check(self.proc is None or self.proc.poll() is not None,
              "%s: start while running" % self.name)
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            log.write(b"==== start %s\n" % self.binary.encode())
            log.flush()
            self.log_offset = log.tell()
            argv = [self.binary, "-c", self.conf_path] if use_config else [self.binary]
            self.proc = subprocess.Popen(argv, cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Bounded poll until the port listens; fail at once if the process
        exits first."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                fail("%s exited with %d before listening on port %d" % (self.name, rc, self.port))
            if listening(self.port):
                return
            if time.monotonic() >= deadline:
                fail("%s not listening on 127.0.0.1:%d after %.0f s" %
                     (self.name, self.port, timeout))
            time.sleep(0.01)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        check(self.running(), "%s: not running, cannot send signal %d" % (self.name, sig))
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to exit; returns its status or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=STOP_TIMEOUT, want_rc=0):
        """SIGTERM by PID, wait bounded, then SIGKILL.  Fails if it needed the
        SIGKILL or exited with another status than want_rc (None: any)."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill9()
            fail("%s did not exit within %.0f s of SIGTERM (killed)" % (self.name, timeout))
        if want_rc is not None and rc != want_rc:
            fail("%s exit status after SIGTERM" % self.name, rc, want_rc)
        return rc

    def kill9(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def cleanup(self, keep_dir=False):
        try:
            self.kill9()
        except Exception:
            pass
        if self in Daemon.all:
            Daemon.all.remove(self)
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- log

    def log(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        """The last n log lines; a sanitizer report is shown whole instead,
        and a process that died is said so first."""
        lines = self.log().splitlines()
        head = ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode not in (0,):
            rc = self.proc.returncode
            head = "!!! %s (pid %d) exited with %s\n" % (
                self.name, self.proc.pid, ("signal %d" % -rc) if rc < 0 else ("status %d" % rc))
        for k, l in enumerate(lines):
            if "ERROR: AddressSanitizer" in l or "runtime error:" in l or "ERROR: LeakSanitizer" in l:
                return head + "\n".join(lines[k:k + 60])
        return head + "\n".join(lines[-n:])

    def log_lines(self, pattern, since_start=False):
        r = re.compile(pattern)
        return [l for l in self.log(since_start).splitlines() if r.search(l)]

    # -- Maildir

    def maildir(self, domain, user):
        return os.path.join(self.mail, domain, user)

    def mail_files(self, domain="example.test", user="user"):
        """[(path, bytes)] of the copies in new/, sorted by name."""
        new = os.path.join(self.maildir(domain, user), "new")
        try:
            names = sorted(os.listdir(new))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            p = os.path.join(new, n)
            try:
                with open(p, "rb") as f:
                    out.append((p, f.read()))
            except FileNotFoundError:
                pass
        return out

    def mail_count(self, domain="example.test", user="user"):
        try:
            return len(os.listdir(os.path.join(self.maildir(domain, user), "new")))
        except FileNotFoundError:
            return 0

    def all_mail_files(self):
        """Every file in any new/ under the Maildir root."""
        out = []
        for root, dirs, files in os.walk(self.mail):
            if os.path.basename(root) == "new":
                out.extend(os.path.join(root, f) for f in files)
        return sorted(out)

    def wait_mail(self, count, domain="example.test", user="user", timeout=10.0):
        """Wait until new/ holds at least count copies; returns the files."""
        wait_until(lambda: self.mail_count(domain, user) >= count, timeout,
                   "%d message(s) in %s/new (have %d)" %
                   (count, self.maildir(domain, user), self.mail_count(domain, user)))
        return self.mail_files(domain, user)

    def wait_delivered(self, qid, timeout=10.0):
        """Wait for the "<QID> delivered" log line; returns it."""
        pat = re.compile(r"\b%s\b.*\bdelivered\b" % re.escape(qid))
        return wait_until(lambda: next((l for l in self.log().splitlines() if pat.search(l)), None),
                          timeout, "log line '%s ... delivered'" % qid)

    def wait_recovered(self, timeout=10.0):
        """The number of messages the latest start recovered from the spool,
        from its "spool: recovered messages=N" log line."""
        pat = re.compile(r"recovered messages=(\d+)")
        m = wait_until(lambda: pat.search(self.log(since_start=True)), timeout,
                       "the 'spool: recovered messages=N' log line of this start")
        return int(m.group(1))

    def delivered_since_start(self):
        return self.log_lines(r"\bdelivered\b", since_start=True)

    def connect(self, timeout=10.0):
        return SmtpConn(self.port, timeout=timeout)


# ---------------------------------------------------------------- raw SMTP

class SmtpConn:
    """A raw SMTP client: send bytes as given, read whole replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection (pending %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: (code, text) with the lines' text joined by "\\n"."""
        lines = []
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit():
                fail("malformed reply line", line, b"NNN[- ]text")
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                break
            if line[3:4] != b"-":
                fail("malformed reply line", line, b"NNN[- ]text")
        return int(lines[0][:3]), b"\n".join(l[4:] for l in lines).decode("utf-8", "replace")

    def expect(self, code, what, prefix=None):
        """Read a reply and check its code (and that the text starts with
        prefix, e.g. an enhanced status code).  Returns the text."""
        c, t = self.reply()
        if c != code or (prefix and not t.startswith(prefix)):
            fail("%s: reply" % what, "%d %s" % (c, t), "%d %s..." % (code, prefix or ""))
        return t

    def cmd(self, line, code, what=None, prefix=None):
        self.send(line + "\r\n")
        return self.expect(code, what or line, prefix)

    def greet(self, helo="client.test"):
        self.expect(220, "greeting")
        return self.cmd("EHLO " + helo, 250)

    def closed_by_peer(self, timeout=5.0):
        """True if the server closes the connection (EOF or reset) within
        timeout, with no more replies pending."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def qid_of(text):
    """The queue id in a "250 ... queued as <QID>" reply text, or None."""
    if isinstance(text, str):
        text = text.encode()
    m = QID_RE.search(text)
    return m.group(1).decode() if m else None


def send_smtplib(port, mail_from, rcpts, msg, mail_options=(), helo="client.test", timeout=10.0):
    """Send one message with smtplib's step-by-step API (so we see the DATA
    reply).  msg is bytes with CRLF line ends.  Returns (code, text) of the
    DATA reply; refusals before DATA return that reply instead."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=timeout) as s:
        s.ehlo()
        c, t = s.mail(mail_from, list(mail_options))
        if c != 250:
            return c, t.decode("utf-8", "replace")
        ok = 0
        for r in rcpts:
            c, t = s.rcpt(r)
            if c in (250, 251):
                ok += 1
            else:
                last = (c, t.decode("utf-8", "replace"))
        if ok == 0:
            s.rset()
            return last
        c, t = s.data(msg)
        return c, t.decode("utf-8", "replace")

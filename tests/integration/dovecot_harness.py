"""dovecot_harness: a private Dovecot (LMTP + IMAP) for the integration tests.

sluice's LMTP delivery tests hand mail to a real Dovecot and read it back
over IMAP:

    with Dovecot(users=["alice@lmtp.test", "bob@lmtp.test"]) as dc:
        ... deliver to 127.0.0.1:dc.lmtp_port ...
        msgs = dc.wait_messages("alice@lmtp.test", 1, timeout=10)

Everything lives in one temp dir (dc.base), nothing outside it is read or
written: no /etc/dovecot, no system instance, no syslog.

    BASE/etc/dovecot.conf   the whole configuration (no !include)
    BASE/etc/passwd         passdb + userdb (passwd-file, PLAIN passwords)
    BASE/run/               base_dir (master's sockets and pid file)
    BASE/state/             state_dir
    BASE/log/dovecot.log    log_path, info_log_path and debug_log_path
    BASE/mail/DOMAIN/USER/  each user's Maildir (mail_location)
    BASE/home/DOMAIN/USER/  each user's home

The master runs in the foreground (`dovecot -F -c CONF`) as our child in its
own session; stop() sends it SIGTERM (Dovecot then stops its children),
waits, SIGKILLs after a deadline and removes the temp dir.

Users and privileges.  Dovecot never runs mail processes (lmtp, imap) as
root, so:
  - as root: mail_uid/mail_gid = nobody/nogroup (first_valid_uid and
    first_valid_gid lowered to match), default_internal_user = dovecot and
    default_login_user = dovenull (Debian's package creates both); BASE is
    made 0711 and BASE/mail, BASE/home are chowned to nobody so the mail
    processes can reach and write them;
  - as any other user: every service and mail process runs as that user
    (default_internal_user, default_login_user, mail_uid all name it) and
    the login services and anvil get `chroot =` (chroot needs root).

Per-recipient failures.  quota={"bob@lmtp.test": "1k"} puts a storage quota
on a user (the quota plugin, `count` backend), checked after DATA
(lmtp_rcpt_check_quota = no, Dovecot's default), so a message too big for
bob gets its own reply after DATA while the other recipients get 250;
quota_tempfail=True makes that reply 4xx instead of 5xx
(quota_full_tempfail).  The replies Dovecot 2.3.19 gives are the
*_REPLY constants below (asserted by peer_selftest.py).

If Dovecot (dovecot-core, -imapd, -lmtpd) is not installed, start() raises
sluice_harness.Skip.  Every started Dovecot is also registered in
sluice_harness.Daemon.all, so run_main() stops it, prints its log tail on
failure and removes (or, with SLUICE_KEEP=1, keeps) its temp dir.
"""

import imaplib
import os
import pwd
import grp
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import sluice_harness as sh

DOVECOT = "/usr/sbin/dovecot"
MODULES = "/usr/lib/dovecot"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# What Dovecot 2.3.19's LMTP answers (the text after the code is
# "<ADDR> ..." for the per-recipient cases).
UNKNOWN_USER_REPLY = (550, "5.1.1")  # at RCPT: "5.1.1 <x@d> User doesn't exist: x@d"
QUOTA_FULL_REPLY = (552, "5.2.2")  # after DATA: "5.2.2 <x@d> Quota exceeded (mailbox for user is full)"
QUOTA_TEMPFAIL_REPLY = (452, "4.2.2")  # the same with quota_tempfail=True


def _installed():
    """The missing Dovecot pieces (empty when all are there)."""
    need = [DOVECOT, os.path.join(MODULES, "lmtp"), os.path.join(MODULES, "imap"),
            os.path.join(MODULES, "imap-login")]
    return [p for p in need if not os.access(p, os.X_OK)]


def _split_user(user):
    local, _, domain = user.partition("@")
    return local, domain or "localhost"


class Dovecot:
    """One private Dovecot serving LMTP and IMAP on free 127.0.0.1 ports.

    Dovecot(users=[...], password="secret", quota=None, quota_tempfail=False)
    .start() / .stop() or a with block; .lmtp_port, .imap_port, .base,
    .log_path; .fetch_all(user), .wait_messages(user, n, timeout),
    .lmtp_send(...)."""

    def __init__(self, users=("alice@lmtp.test", "bob@lmtp.test"), password="secret",
                 quota=None, quota_tempfail=False, name="dovecot"):
        self.users = [u.lower() for u in users]
        self.password = password
        self.quota = {k.lower(): v for k, v in (quota or {}).items()}
        self.quota_tempfail = quota_tempfail
        self.name = name
        self.base = None
        self.dir = None  # same as base, for run_main()
        self.proc = None
        self.lmtp_port = None
        self.imap_port = None
        self.log_path = None
        self.conf_path = None

    # -- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Write the config, start the master, wait until LMTP and IMAP
        answer with their greetings.  Raises Skip if Dovecot is missing,
        TestFailure if it does not come up (the temp dir is then removed by
        stop()/run_main())."""
        missing = _installed()
        if missing:
            raise sh.Skip("dovecot not installed (missing %s)" % ", ".join(missing))
        self.base = tempfile.mkdtemp(prefix="sluice-dovecot-")
        self.dir = self.base
        sh.Daemon.all.append(self)
        self.log_path = os.path.join(self.base, "log", "dovecot.log")
        self.conf_path = os.path.join(self.base, "etc", "dovecot.conf")
        self.lmtp_port = sh.free_port()
        self.imap_port = sh.free_port()
        while self.imap_port == self.lmtp_port:
            self.imap_port = sh.free_port()
        self._make_tree()
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())
        out = open(os.path.join(self.base, "log", "master.out"), "ab")
        try:
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        finally:
            out.close()
        self._wait_ready()
        return self

    def stop(self):
        """SIGTERM the master, wait (SIGKILL the process group after
        STOP_TIMEOUT) and remove the temp dir."""
        self.cleanup()

    def cleanup(self, keep_dir=False):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # The master leads its own process group (start_new_session).
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        if self in sh.Daemon.all:
            sh.Daemon.all.remove(self)
        if self.base and not keep_dir:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = self.dir = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- configuration

    def _ids(self):
        """(user, group, uid, gid) for mail processes and services."""
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            gr = grp.getgrnam("nogroup")
            return "nobody", "nogroup", pw.pw_uid, gr.gr_gid
        pw = pwd.getpwuid(os.geteuid())
        gr = grp.getgrgid(os.getegid())
        return pw.pw_name, gr.gr_name, pw.pw_uid, gr.gr_gid

    def _make_tree(self):
        user, group, uid, gid = self._ids()
        for d in ("etc", "log", "mail", "home"):
            os.mkdir(os.path.join(self.base, d), 0o755)
        if os.geteuid() == 0:
            # mkdtemp made it 0700; the mail processes (nobody) must get in.
            os.chmod(self.base, 0o711)
            for d in ("mail", "home"):
                os.chown(os.path.join(self.base, d), uid, gid)
        lines = []
        for u in self.users:
            extra = ""
            if u in self.quota:
                extra = "userdb_quota_rule=*:storage=%s" % self.quota[u]
            # user:password:uid:gid:gecos:home:shell:extra_fields
            lines.append("%s:{PLAIN}%s:%d:%d::%s::%s" %
                         (u, self.password, uid, gid, self.home(u), extra))
        with open(os.path.join(self.base, "etc", "passwd"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def home(self, user):
        local, domain = _split_user(user.lower())
        return os.path.join(self.base, "home", domain, local)

    def maildir(self, user):
        local, domain = _split_user(user.lower())
        return os.path.join(self.base, "mail", domain, local)

    def config_text(self):
        user, group, uid, gid = self._ids()
        root = os.geteuid() == 0
        b = self.base
        passwd = os.path.join(b, "etc", "passwd")
        internal = "dovecot" if root else user
        login = "dovenull" if root else user
        internal_group = "dovecot" if root else group
        # chroot needs root; as root keep Dovecot's defaults.
        nochroot = "" if root else "  chroot =\n"
        quota = ""
        if self.quota:
            quota = (
                "mail_plugins = $mail_plugins quota\n"
                "plugin {\n"
                "  quota = count:User quota\n"
                "  quota_vsizes = yes\n"
                "  quota_rule = *:storage=0\n"
                "}\n"
                "quota_full_tempfail = %s\n" % ("yes" if self.quota_tempfail else "no"))
        return f"""# written by tests/integration/dovecot_harness.py
base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/log/dovecot.log
info_log_path = {b}/log/dovecot.log
debug_log_path = {b}/log/dovecot.log
instance_name = sluice-test-dovecot
hostname = dovecot.test
postmaster_address = postmaster@dovecot.test
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:{b}/mail/%d/%n
mail_fsync = always
lmtp_rcpt_check_quota = no
login_greeting = Dovecot ready.
{quota}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {passwd}
}}

service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service imap-login {{
{nochroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
{nochroot}}}
"""

    # -- readiness

    def _wait_ready(self):
        def up():
            if self.proc.poll() is not None:
                sh.fail("dovecot exited with status %s during start-up" % self.proc.returncode)
            return sh.listening(self.lmtp_port) and sh.listening(self.imap_port)

        sh.wait_until(up, START_TIMEOUT, "dovecot listening on LMTP %d and IMAP %d" %
                      (self.lmtp_port, self.imap_port))
        deadline = time.monotonic() + START_TIMEOUT
        lmtp = self._greeting(self.lmtp_port, b"220 ", deadline)
        imap = self._greeting(self.imap_port, b"* OK", deadline)
        sh.check(b"LMTP" in lmtp or b"Dovecot" in lmtp, "LMTP greeting", lmtp, b"220 ... LMTP")
        sh.check(b"Dovecot ready" in imap, "IMAP greeting", imap, b"* OK ... Dovecot ready.")

    def _greeting(self, port, prefix, deadline):
        """Connect and read the first line; retry until it starts with
        prefix or the deadline passes."""
        last = None
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    buf = b""
                    while b"\r\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    line = buf.split(b"\r\n")[0]
                    if line.startswith(prefix):
                        s.sendall(b"QUIT\r\n" if prefix.startswith(b"2") else b"a LOGOUT\r\n")
                        return line
                    last = line
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline or not self.running():
                sh.fail("dovecot greeting on port %d" % port, last, prefix)
            time.sleep(0.05)

    # -- log

    def log(self):
        out = ""
        for p in (self.log_path, os.path.join(self.base or "", "log", "master.out")):
            try:
                with open(p, "rb") as f:
                    out += f.read().decode("utf-8", "replace")
            except (OSError, TypeError):
                pass
        return out

    def log_tail(self, n=40):
        head = ""
        if self.proc is not None and self.proc.poll() is not None:
            head = "!!! dovecot master (pid %d) exited with %s\n" % (self.proc.pid, self.proc.returncode)
        return head + "\n".join(self.log().splitlines()[-n:])

    # -- IMAP

    def imap(self, user):
        """A logged-in imaplib.IMAP4 for user (the caller logs out)."""
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            c.login(user, self.password)
        except Exception:
            c.shutdown()
            raise
        return c

    def fetch_all(self, user):
        """Raw bytes (RFC822, CRLF line ends, as IMAP returns them) of
        every message in user's INBOX, in sequence order."""
        c = self.imap(user)
        try:
            typ, data = c.select("INBOX", readonly=True)
            sh.check(typ == "OK", "IMAP SELECT INBOX for %s" % user, data, "OK")
            n = int(data[0])
            if n == 0:
                return []
            typ, data = c.fetch("1:%d" % n, "(RFC822)")
            sh.check(typ == "OK", "IMAP FETCH for %s" % user, data, "OK")
            # data alternates (b"1 (RFC822 {N}", bytes) tuples and b")".
            return [part[1] for part in data if isinstance(part, tuple)]
        finally:
            c.logout()

    def count(self, user):
        c = self.imap(user)
        try:
            typ, data = c.select("INBOX", readonly=True)
            return int(data[0]) if typ == "OK" else 0
        finally:
            c.logout()

    def wait_messages(self, user, n, timeout=10.0):
        """Poll IMAP until user's INBOX holds at least n messages; returns
        fetch_all(user)."""
        sh.wait_until(lambda: self.count(user) >= n, timeout,
                      "%d message(s) in %s's INBOX over IMAP" % (n, user), interval=0.1)
        return self.fetch_all(user)

    # -- LMTP

    def lmtp_send(self, mail_from, rcpts, msg, timeout=10.0):
        """Deliver msg (bytes, CRLF) with smtplib.LMTP, step by step.
        Returns (rcpt_replies, data_replies): one (code, text) per RCPT in
        order, and one per accepted recipient after DATA (RFC 2033 4.2;
        smtplib reads only the first, the rest are read here).  No DATA is
        sent when every RCPT was refused (data_replies is then [])."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, local_hostname="client.test",
                          timeout=timeout) as s:
            c, t = s.ehlo()
            sh.check(c == 250, "LMTP LHLO", (c, t), 250)
            c, t = s.mail(mail_from)
            sh.check(c == 250, "LMTP MAIL FROM", (c, t), 250)
            rcpt_replies = []
            for r in rcpts:
                c, t = s.rcpt(r)
                rcpt_replies.append((c, t.decode("utf-8", "replace")))
            accepted = sum(1 for c, _ in rcpt_replies if c in (250, 251))
            data_replies = []
            if accepted:
                c, t = s.data(msg)
                data_replies.append((c, t.decode("utf-8", "replace")))
                for _ in range(accepted - 1):
                    c, t = s.getreply()
                    data_replies.append((c, t.decode("utf-8", "replace")))
            return rcpt_replies, data_replies


def split_prepended(raw):
    """Split a message read back from Dovecot into (trace, rest): the
    Return-Path:, Delivered-To: and the one Received: header Dovecot's LMTP
    prepends (each with its folded lines), then the message as it was sent."""
    trace = b""
    rest = raw
    seen_received = False
    while True:
        for name in (b"Return-Path:", b"Delivered-To:", b"Received:"):
            if rest[:len(name)].lower() == name.lower():
                break
        else:
            return trace, rest
        if name == b"Received:":
            if seen_received:
                return trace, rest
            seen_received = True
        pos = 0
        while True:
            nl = rest.find(b"\n", pos)
            if nl < 0:
                return trace + rest, b""
            pos = nl + 1
            if rest[pos:pos + 1] not in (b" ", b"\t"):
                break
        trace, rest = trace + rest[:pos], rest[pos:]

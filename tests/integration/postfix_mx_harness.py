"""postfix_mx_harness: a private Postfix as the receiving MX of the tests.

sluice's SMTP delivery tests relay mail to a real Postfix and read what it
delivered:

    with PostfixMX(address="127.0.0.3", domains=["mx.test"]) as mx:
        ... deliver to mx.address:mx.port ...
        msgs = mx.wait_messages("user@mx.test", 1, timeout=10)

The approach is bench/postfix_instance.sh's (Debian's Postfix with its
durable queue, a config dir of our own, master.cf from master.cf.proto with
one smtpd line), written in Python and with a few differences for tests:
the master runs as our child (`master -d`, in its own session) so it is
stopped by PID; every service runs unchrooted (the chroot would need copies
of /etc files inside the queue dir); delivery is one catch-all Maildir.

Layout, all under mx.dir (nothing else is written, and of /etc/postfix
only master.cf.proto, dynamicmaps.cf and postfix-files are read: no
/etc/postfix/main.cf, no system instance, no syslog).  The queue's
subdirectories are made as postfix-files lists them, and every file of
DIR/etc is dated a minute back, so the master listens at once (Postfix
sleeps until a configuration file is over a second old):

    DIR/etc/main.cf, master.cf, dynamicmaps.cf
    DIR/etc/vmailbox        virtual_mailbox_maps: "@DOMAIN DOMAIN/" each
                            (or "USER@DOMAIN DOMAIN/" per listed user)
    DIR/etc/rcpt_access     check_recipient_access (reject_rcpt, defer_rcpt)
    DIR/etc/client_access   check_client_access (greet_reply)
    DIR/etc/data_access     check_client_access (data_reply)
    DIR/etc/eod_access      check_client_access (eod_reply)
    DIR/queue/              queue_directory (durable, fsync as shipped)
    DIR/data/               data_directory
    DIR/mail/DOMAIN/        one Maildir per domain, owned by nobody
    DIR/maillog             maillog_file (postlogd)

Delivery: virtual(8) into DIR/mail/DOMAIN/{new,cur,tmp}, one file per
recipient, each file starting with the Return-Path:, X-Original-To: and
Delivered-To: <recipient> headers virtual(8) prepends, then the Received: header smtpd
added, then the message as sent with LF line ends (Postfix stores lines, not
CRLF).  messages(addr) picks the files by their Delivered-To: header;
split_prepended() cuts those three headers off.  virtual(8) refuses $1
substitution from a regexp map, hence the @DOMAIN catch-all (or, with
users, one line per address, all into the domain's one Maildir).

Knobs (set before start()):
  users         None: every address in the domains exists (catch-all); a
                list of addresses: only those exist, any other address in
                the domains gets Postfix's own "550 5.1.1 <addr>: Recipient
                address rejected: User unknown in virtual mailbox table"
                (UNKNOWN_USER_REPLY) at RCPT;
  reject_rcpt   set of addresses answered "550 5.1.1 <addr>: Recipient
                address rejected: User unknown" at RCPT (access(5) map);
  defer_rcpt    set of addresses answered "450 4.2.1 <addr>: Recipient
                address rejected: Mailbox busy, try again later";
  greet_reply   None (the 220 greeting), or a reply such as
                "421 4.3.2 Service shutting down" or "554 5.7.1 No service":
                check_client_access matches every client and
                smtpd_delay_reject = no evaluates it at connect time, so
                smtpd sends "CODE ENH <unknown[CLIENT-IP]>: Client host
                rejected: TEXT" instead of its greeting; after 421 (and 521) it disconnects, after 4xx
                and 554 it answers 503 5.7.0 to every command until QUIT;
  data_reply    None, or a reply such as "451 4.3.0 Try again later" given
                to DATA after the recipients were accepted
                (smtpd_data_restrictions, check_client_access): "CODE ENH
                <unknown[CLIENT-IP]>: Client host rejected: TEXT";
  eod_reply     None, or a reply such as "451 4.3.0 Try again later" given
                after the whole message was sent, in place of the 250
                (smtpd_end_of_data_restrictions): the same text as
                data_reply's; nothing is queued or delivered;
  message_size_limit   bytes (SIZE in EHLO), Postfix's default if None; a
                bigger message gets "552 5.3.4 Error: message file too big"
                after its data, a bigger SIZE= "552 5.3.4 Message size
                exceeds fixed limit" at MAIL FROM.
EHLO offers PIPELINING, SIZE, VRFY, ETRN, ENHANCEDSTATUSCODES, 8BITMIME,
DSN, SMTPUTF8 and CHUNKING, as Postfix does by default (no STARTTLS).

Clients from 127.0.0.0/8 (mynetworks) may relay (smtpd_relay_restrictions =
permit_mynetworks, reject_unauth_destination); mail for other domains goes
to smtp(8), which bounces it when DNS has no answer.
local_header_rewrite_clients is empty, so Postfix adds no Message-ID, Date
or From and rewrites no header.  inet_interfaces is the address when an
interface carries it, else loopback-only (see inet_interfaces()).

Needs root (Postfix's master starts as root and drops to mail_owner); as
another user, or without postfix installed, start() raises
sluice_harness.Skip.  A started instance is registered in
sluice_harness.Daemon.all, so run_main() stops it, shows its maillog on
failure and removes (or, with SLUICE_KEEP=1, keeps) its temp dir.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import sluice_harness as sh

POSTFIX = "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"
MASTER = os.path.join(DAEMON_DIR, "master")
MASTER_CF_PROTO = "/etc/postfix/master.cf.proto"
POSTFIX_FILES = "/etc/postfix/postfix-files"  # the package's own list of dirs, owners, modes
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

REJECT_TEXT = "User unknown"
DEFER_TEXT = "Mailbox busy, try again later"
# What Postfix 3.7 answers (asserted by peer_selftest.py): (code, text).
# "%s" is the address as the client sent it; CLIENT_REJECT_REPLY's is the
# client's IP address and TEXT the knob's reply text (greet_reply,
# data_reply, eod_reply).
UNKNOWN_USER_REPLY = (550, "5.1.1 <%s>: Recipient address rejected: "
                           "User unknown in virtual mailbox table")
REJECT_RCPT_REPLY = (550, "5.1.1 <%s>: Recipient address rejected: " + REJECT_TEXT)
DEFER_RCPT_REPLY = (450, "4.2.1 <%s>: Recipient address rejected: " + DEFER_TEXT)
CLIENT_REJECT_TEXT = "<unknown[%s]>: Client host rejected: %s"
TOO_BIG_REPLY = (552, "5.3.4 Error: message file too big")


def free_port_on(address):
    """A free TCP port on address (bind port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((address, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def interface_addresses():
    """The IPv4 addresses configured on an interface (the "/32 host LOCAL"
    entries of /proc/net/fib_trie), e.g. {"127.0.0.1", ...}."""
    out = set()
    last = None
    try:
        with open("/proc/net/fib_trie") as f:
            for line in f:
                s = line.strip()
                if s.startswith("|-- "):
                    last = s[4:]
                elif s.startswith("/32 host LOCAL") and last:
                    out.add(last)
    except OSError:
        pass
    return out


def _proc_stat(pid):
    """(state, ppid, pgrp) of a process from /proc/PID/stat, or None."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces or ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 3:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def group_members(pgid):
    """[(pid, state, ppid)] of the processes in group pgid, zombies too."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = _proc_stat(pid)
            if st and st[2] == pgid:
                out.append((int(pid), st[0], st[1]))
    return out


def group_alive(pgid):
    """True while a process of group pgid is still running (zombies do not
    count)."""
    return any(state != "Z" for _, state, _ in group_members(pgid))


def reap_orphans(pgid):
    """Reap the processes of group pgid that became our children (we are a
    subreaper, see become_subreaper()); True when none is left at all."""
    me = os.getpid()
    left = False
    for pid, state, ppid in group_members(pgid):
        if ppid == me:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        left = True
    return not left


def become_subreaper():
    """Make this process the reaper of its orphaned descendants
    (PR_SET_CHILD_SUBREAPER).  Postfix's master exits on SIGTERM without
    waiting for its children; they would be reparented to init, and an
    init that never reaps (a container's) would keep them as zombies.  As
    their subreaper we reap them, by PID, in reap_orphans()."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


class PostfixMX:
    """One private Postfix receiving SMTP on address:port for domains.

    PostfixMX(address="127.0.0.3", port=None, domains=["mx.test"], users=None,
              reject_rcpt=(), defer_rcpt=(), greet_reply=None, data_reply=None,
              eod_reply=None, message_size_limit=None)
    .start() / .stop() or a with block; .address, .port, .dir;
    .messages(addr), .wait_messages(addr, n, timeout), .queue_count()."""

    def __init__(self, address="127.0.0.3", port=None, domains=("mx.test",), users=None,
                 reject_rcpt=(), defer_rcpt=(), greet_reply=None, data_reply=None,
                 eod_reply=None, message_size_limit=None, name="postfix-mx"):
        self.address = address
        self.port = port
        self.domains = [d.lower() for d in domains]
        self.users = None if users is None else [u.lower() for u in users]
        self.reject_rcpt = set(reject_rcpt)
        self.defer_rcpt = set(defer_rcpt)
        self.greet_reply = greet_reply
        self.data_reply = data_reply
        self.eod_reply = eod_reply
        self.message_size_limit = message_size_limit
        self.name = name
        self.dir = None
        self.etc = None
        self.log_path = None
        self.proc = None

    # -- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Write the instance, start the master, wait until smtpd answers
        on address:port.  Raises Skip (not root, postfix missing),
        TestFailure if it does not come up."""
        if not (os.access(POSTFIX, os.X_OK) and os.access(MASTER, os.X_OK)):
            raise sh.Skip("postfix not installed")
        if os.geteuid() != 0:
            raise sh.Skip("the Postfix MX needs root (its master runs as root)")
        if self.port is None:
            self.port = free_port_on(self.address)
        self.dir = tempfile.mkdtemp(prefix="sluice-postfix-mx-")
        sh.Daemon.all.append(self)
        # The queue and mail dirs are entered by postfix and nobody.
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.log_path = os.path.join(self.dir, "maillog")
        self._write_instance()
        if not self._make_queue():
            self._postfix("check")  # also creates the queue's subdirectories
        become_subreaper()
        out = open(os.path.join(self.dir, "master.out"), "ab")
        try:
            self.proc = subprocess.Popen([MASTER, "-c", self.etc, "-d"],
                                         env=self._env(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        self._wait_ready()
        return self

    def stop(self):
        """SIGTERM the master (it passes SIGTERM to its process group), wait
        for the whole group, SIGKILL it after STOP_TIMEOUT; remove the temp
        dir."""
        self.cleanup()

    def cleanup(self, keep_dir=False):
        if self.proc is not None:
            pgid = self.proc.pid
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while not reap_orphans(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if group_alive(pgid) or self.proc.poll() is None:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=STOP_TIMEOUT)
                deadline = time.monotonic() + STOP_TIMEOUT
                while not reap_orphans(pgid) and time.monotonic() < deadline:
                    time.sleep(0.02)
            self.proc = None
        if self in sh.Daemon.all:
            sh.Daemon.all.remove(self)
        if self.dir and not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _env(self):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": self.etc, "LANG": "C"}
        return env

    def _postfix(self, *args):
        r = subprocess.run([POSTFIX, "-c", self.etc] + list(args), env=self._env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        with open(os.path.join(self.dir, "postfix-%s.out" % args[0]), "ab") as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            sh.fail("postfix %s failed (status %d): %s" %
                    (" ".join(args), r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")))
        return r

    # -- instance

    def _write_instance(self):
        for d in ("etc", "queue", "data", "mail"):
            os.mkdir(os.path.join(self.dir, d), 0o755)
        nobody = pwd.getpwnam("nobody").pw_uid
        nogroup = grp.getgrnam("nogroup").gr_gid
        os.chown(os.path.join(self.dir, "mail"), nobody, nogroup)
        pf = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pf.pw_uid, pf.pw_gid)
        shutil.copy(MASTER_CF_PROTO, os.path.join(self.etc, "master.cf"))
        if os.path.exists("/etc/postfix/dynamicmaps.cf"):
            shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.master_cf_text())
        if self.users is None:
            self._write_map("vmailbox", ["@%s %s/" % (d, d) for d in self.domains])
        else:
            for u in self.users:
                sh.check(u.rpartition("@")[2] in self.domains,
                         "PostfixMX user %s is in one of the domains" % u, u, self.domains)
            self._write_map("vmailbox", ["%s %s/" % (u, u.rpartition("@")[2])
                                         for u in self.users])
        rules = ["%s 550 5.1.1 %s" % (a, REJECT_TEXT) for a in sorted(self.reject_rcpt)]
        rules += ["%s 450 4.2.1 %s" % (a, DEFER_TEXT) for a in sorted(self.defer_rcpt)]
        self._write_map("rcpt_access", rules)
        if self.greet_reply:
            self._write_map("client_access", ["0.0.0.0/0 %s" % self.greet_reply])
        if self.data_reply:
            self._write_map("data_access", ["0.0.0.0/0 %s" % self.data_reply])
        if self.eod_reply:
            self._write_map("eod_access", ["0.0.0.0/0 %s" % self.eod_reply])
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf_text(nobody, nogroup))
        # Postfix waits until a configuration file or texthash map is over a
        # second old before it trusts it (one 300 ms sleep after another, so
        # an edit in progress is not half read): date ours back instead.
        past = time.time() - 60
        for n in os.listdir(self.etc):
            os.utime(os.path.join(self.etc, n), (past, past))

    def _make_queue(self):
        """Create the queue's subdirectories as postfix-files(5) lists them
        (owner, group, mode), which is what `postfix check` does through
        post-install, without its 2 s of checks over the installed files.
        Returns False when the list is missing (the caller then runs
        `postfix check`)."""
        try:
            with open(POSTFIX_FILES) as f:
                rows = [l.strip().split(":") for l in f if l.startswith("$queue_directory/")]
        except OSError:
            return False
        names = {"$mail_owner": "postfix", "$setgid_group": "postdrop"}
        made = 0
        for row in rows:
            if len(row) < 5 or row[1] != "d":
                continue
            path = os.path.join(self.dir, "queue", row[0][len("$queue_directory/"):])
            os.mkdir(path)
            uid = pwd.getpwnam(names.get(row[2], row[2])).pw_uid
            gid = -1 if row[3] == "-" else grp.getgrnam(names.get(row[3], row[3])).gr_gid
            os.chown(path, uid, gid)
            os.chmod(path, int(row[4], 8))
            made += 1
        return made > 0

    def _write_map(self, name, lines):
        with open(os.path.join(self.etc, name), "w") as f:
            f.write("".join(l + "\n" for l in lines))

    def master_cf_text(self):
        """master.cf.proto without its port-25 smtpd, every service
        unchrooted, plus our smtpd on address:port."""
        out = []
        with open(MASTER_CF_PROTO) as f:
            for line in f:
                fields = line.split()
                if line[:1] not in ("#", " ", "\t") and len(fields) >= 8:
                    if fields[0] == "smtp" and fields[1] == "inet":
                        continue
                    fields[4] = "n"
                    line = " ".join(fields) + "\n"
                out.append(line)
        out.append("%s:%d inet n - n - - smtpd\n" % (self.address, self.port))
        return "".join(out)

    def inet_interfaces(self):
        """The address itself when an interface carries it; else
        loopback-only.  Postfix refuses an inet_interfaces address no
        interface is configured with ("no local interface found"), and lo
        carries 127.0.0.1/8 but only 127.0.0.1 as an address; smtpd is bound
        to address:port in master.cf either way, so instances coexist."""
        return self.address if self.address in interface_addresses() else "loopback-only"

    def main_cf_text(self, uid, gid):
        d = self.dir
        e = self.etc
        lines = [
            "# written by tests/integration/postfix_mx_harness.py",
            "compatibility_level = 3.6",
            "queue_directory = %s/queue" % d,
            "data_directory = %s/data" % d,
            "myhostname = postfix-mx.test",
            "mydomain = postfix-mx.test",
            "myorigin = $myhostname",
            "mydestination =",
            "inet_interfaces = %s" % self.inet_interfaces(),
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions = check_recipient_access texthash:%s/rcpt_access" % e,
            "virtual_mailbox_domains = %s" % " ".join(self.domains),
            "virtual_mailbox_base = %s/mail" % d,
            "virtual_mailbox_maps = texthash:%s/vmailbox" % e,
            "virtual_uid_maps = static:%d" % uid,
            "virtual_gid_maps = static:%d" % gid,
            "smtpd_peername_lookup = no",
            "smtpd_client_connection_count_limit = 0",
            "smtpd_client_connection_rate_limit = 0",
            "local_header_rewrite_clients =",
            "maillog_file = %s/maillog" % d,
            "maillog_file_prefixes = %s" % d,
            "alias_maps =",
            "alias_database =",
            "biff = no",
            "smtputf8_enable = yes",
        ]
        if self.message_size_limit is not None:
            lines.append("message_size_limit = %d" % self.message_size_limit)
        if self.greet_reply:
            lines.append("smtpd_delay_reject = no")
            lines.append("smtpd_client_restrictions = check_client_access cidr:%s/client_access" % e)
        if self.data_reply:
            lines.append("smtpd_data_restrictions = check_client_access cidr:%s/data_access" % e)
        if self.eod_reply:
            lines.append("smtpd_end_of_data_restrictions = check_client_access cidr:%s/eod_access"
                         % e)
        return "\n".join(lines) + "\n"

    # -- readiness

    def _wait_ready(self):
        def up():
            if self.proc.poll() is not None:
                sh.fail("postfix master exited with status %s during start-up" % self.proc.returncode)
            return sh.listening(self.port, self.address)

        sh.wait_until(up, START_TIMEOUT, "postfix listening on %s:%d" % (self.address, self.port))
        want = (self.greet_reply or "220").split()[0].encode()
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while True:
            try:
                with socket.create_connection((self.address, self.port), timeout=5) as s:
                    buf = b""
                    while b"\r\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    last = buf.split(b"\r\n")[0]
                    if last.startswith(want):
                        s.sendall(b"QUIT\r\n")
                        return
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline or not self.running():
                sh.fail("postfix greeting on %s:%d" % (self.address, self.port), last, want)
            time.sleep(0.05)

    # -- log

    def log(self):
        out = ""
        for name in ("maillog", "master.out", "postfix-check.out"):
            try:
                with open(os.path.join(self.dir or "", name), "rb") as f:
                    out += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return out

    def log_tail(self, n=40):
        head = ""
        if self.proc is not None and self.proc.poll() is not None:
            head = "!!! postfix master (pid %d) exited with %s\n" % (self.proc.pid, self.proc.returncode)
        return head + "\n".join(self.log().splitlines()[-n:])

    # -- mailbox and queue

    def _maildir_files(self, domain):
        out = []
        new = os.path.join(self.dir, "mail", domain, "new")
        try:
            names = sorted(os.listdir(new))
        except FileNotFoundError:
            return out
        for n in names:
            try:
                with open(os.path.join(new, n), "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                pass
        return out

    def messages(self, addr):
        """Raw bytes of each message delivered to addr (the files of its
        domain's Maildir whose Delivered-To: names addr, any case), in
        delivery order (Maildir names start with the time)."""
        domain = addr.rpartition("@")[2].lower()
        want = addr.lower().encode()
        return [m for m in self._maildir_files(domain) if delivered_to(m) == want]

    def wait_messages(self, addr, n, timeout=10.0):
        """Wait until at least n messages were delivered to addr; returns
        messages(addr)."""
        sh.wait_until(lambda: len(self.messages(addr)) >= n, timeout,
                      "%d message(s) for %s in %s/mail" % (n, addr, self.dir), interval=0.05)
        return self.messages(addr)

    def queue_count(self):
        """Messages anywhere in the queue (one file each)."""
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.dir, "queue", q)):
                n += len(files)
        return n


def _headers(raw):
    end = raw.find(b"\n\n")
    return raw if end < 0 else raw[:end + 1]


def delivered_to(raw):
    """The lowercased address of the first Delivered-To: header, or None."""
    for line in _headers(raw).split(b"\n"):
        if line.lower().startswith(b"delivered-to:"):
            return line.split(b":", 1)[1].strip().lower()
    return None


def split_prepended(raw):
    """Split a delivered file into (trace, rest): the Return-Path:,
    X-Original-To: and Delivered-To: headers virtual(8) prepends and the one Received: header
    Postfix's smtpd added (with its folded lines), then the message as
    sent (LF line ends)."""
    trace = b""
    rest = raw
    for name in (b"return-path:", b"x-original-to:", b"delivered-to:", b"received:"):
        if rest[:len(name)].lower() != name:
            continue
        pos = 0
        while True:
            nl = rest.find(b"\n", pos)
            if nl < 0:
                return trace + rest, b""
            pos = nl + 1
            if rest[pos:pos + 1] not in (b" ", b"\t"):
                break
        trace, rest = trace + rest[:pos], rest[pos:]
    return trace, rest

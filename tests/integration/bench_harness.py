"""bench_harness: run sluice-bench's parts for the integration tests.

What a test gets here, on top of sluice_harness:
  - bench(*args): run build/sluice-bench ($SLUICE_BENCH), returns (status,
    stdout, stderr);
  - send_json(server, *args): `sluice-bench send --json --quiet`, the parsed
    report (a test failure when the status is not one of want_rc);
  - Sink: `sluice-bench sink` on a free loopback port, stopped by PID, its
    final counts read from its --json output;
  - ScriptedPeer: a small SMTP server in a thread that records what a
    client sends and when (for what the sink cannot observe: whether the
    client pipelines, the exact commands) and can leave extensions out;
  - run_bench(body): run_main(body) that also stops every Sink and peer.
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import shutil

from sluice_harness import Skip, fail, free_port, run_main, wait_until, listening

BENCH = os.environ.get("SLUICE_BENCH", "")


def need_bench():
    if not BENCH or not os.access(BENCH, os.X_OK):
        raise Skip("SLUICE_BENCH is not set to a built sluice-bench")


def bench(*args, timeout=120):
    p = subprocess.run([BENCH] + [str(a) for a in args], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def send_json(server, *args, want_rc=(0,), timeout=120):
    """Run a send and return its JSON report."""
    rc, out, err = bench("send", "--server", server, "--json", "--quiet", *args,
                         timeout=timeout)
    if rc not in want_rc:
        fail("sluice-bench send %s: exit status (stderr: %s)" % (
            " ".join(str(a) for a in args), err[-800:]), rc, want_rc)
    try:
        return json.loads(out)
    except ValueError:
        fail("sluice-bench send printed no JSON report", out[-800:], "JSON")


def listening_any(port, host):
    """listening() for IPv4; for IPv6 any listener on the port in /proc/net/tcp6."""
    if ":" not in host:
        return listening(port, host)
    try:
        with open("/proc/net/tcp6") as f:
            next(f)
            return any(l.split()[1].endswith(":%04X" % port) and l.split()[3] == "0A" for l in f)
    except OSError:
        return False


class Sink:
    """sluice-bench sink on a free port of host; stop() returns its final
    counts (the --json output printed at exit)."""

    all = []

    def __init__(self, *args, host="127.0.0.1"):
        self.host = host
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-sink.")
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.args = [str(a) for a in args]
        self.proc = None
        self.final = None
        Sink.all.append(self)

    @property
    def server(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def start(self):
        self.out = open(os.path.join(self.dir, "stdout"), "wb")
        self.err = open(os.path.join(self.dir, "stderr"), "wb")
        # --duration is a backstop: the sink ends by itself if we die.
        self.proc = subprocess.Popen(
            [BENCH, "sink", "--listen", self.server, "--stats", self.stats_path, "--json",
             "--duration", "300"] + self.args,
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err)
        wait_until(lambda: self.proc.poll() is not None or listening_any(self.port, self.host), 10,
                   "sluice-bench sink listening on %s" % self.server)
        if self.proc.poll() is not None:
            fail("sluice-bench sink exited at start: %s" % self.stderr())
        return self

    def stderr(self):
        with open(os.path.join(self.dir, "stderr"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stats(self):
        """The stats file as last written (every 0.2 s), or None."""
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def stop(self):
        """SIGTERM by PID; returns the final counts."""
        if self.proc is None:
            return self.final
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("sluice-bench sink did not exit within 20 s of SIGTERM")
        self.proc = None
        self.out.close()
        self.err.close()
        if rc != 0:
            fail("sluice-bench sink exit status (stderr: %s)" % self.stderr()[-800:], rc, 0)
        with open(os.path.join(self.dir, "stdout")) as f:
            text = f.read()
        try:
            self.final = json.loads(text)
        except ValueError:
            fail("sluice-bench sink printed no JSON at exit", text[-800:], "JSON")
        return self.final

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class ScriptedPeer:
    """A minimal SMTP server, one thread per connection, for watching a
    client.  It offers the extensions in `exts` (EHLO keywords), answers
    every command with 250 (DATA with 354, QUIT with 221, BDAT after its
    chunk), and records per connection:

      commands   every command line, in order (bytes, CRLF stripped)
      batches    for every command, how many command lines were already
                 waiting in the buffer when it was read, itself included
                 (always 1 for a client that does not pipeline)
      messages   the message octets of each DATA or BDAT transaction
      addr       the client's address
    """

    all = []

    def __init__(self, exts=("PIPELINING", "SIZE 100000000", "CHUNKING", "8BITMIME")):
        self.exts = list(exts)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.server = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.sessions = []
        self.threads = []
        self.stopping = False
        self.errors = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()
        ScriptedPeer.all.append(self)

    def _accept(self):
        while not self.stopping:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            sess = {"addr": addr[0], "commands": [], "batches": [], "messages": []}
            with self.lock:
                self.sessions.append(sess)
            t = threading.Thread(target=self._serve, args=(conn, sess), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _recv(conn, buf):
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise EOFError
        return buf + chunk

    def _serve(self, conn, sess):
        conn.settimeout(30)
        buf = b""
        try:
            conn.sendall(b"220 peer.test ESMTP\r\n")
            while True:
                while b"\r\n" not in buf:
                    buf = self._recv(conn, buf)
                waiting = buf.count(b"\r\n")
                line, buf = buf.split(b"\r\n", 1)
                sess["commands"].append(line)
                sess["batches"].append(waiting)
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    lines = ["peer.test"] + self.exts
                    conn.sendall("".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                         for i, l in enumerate(lines)).encode())
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while b"\r\n.\r\n" not in b"\r\n" + buf:
                        buf = self._recv(conn, buf)
                    msg, buf = (b"\r\n" + buf).split(b"\r\n.\r\n", 1)
                    sess["messages"].append(msg[2:] + b"\r\n" if msg else b"")
                    conn.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"BDAT":
                    n = int(line.split()[1])
                    while len(buf) < n:
                        buf = self._recv(conn, buf)
                    sess["messages"].append(buf[:n])
                    buf = buf[n:]
                    conn.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")
        except (EOFError, OSError, ValueError, IndexError) as e:
            if not self.stopping and not isinstance(e, EOFError):
                self.errors.append(repr(e))
        finally:
            conn.close()

    def wait_sessions_done(self, timeout=30):
        for t in list(self.threads):
            t.join(timeout)

    def cleanup(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


def run_bench(body):
    """run_main(body), stopping every Sink and ScriptedPeer at the end."""
    def wrapped():
        need_bench()
        try:
            body()
        finally:
            for s in Sink.all:
                s.cleanup()
            for p in ScriptedPeer.all:
                p.cleanup()
    run_main(wrapped)

"""smtp_peer: a scriptable receiving SMTP server on loopback, for the relay tests.

sluice relays to it (as a smart host or as the MX a test zone names) and
the test reads back exactly what arrived and how:

    with SmtpPeer("127.0.0.21", exts=("PIPELINING", "SIZE 1000000", "8BITMIME")) as p:
        p.rcpt_reply = lambda addr: (550, "5.1.1 no such user") if "bad" in addr else None
        ... relay to 127.0.0.21:p.port ...
        msgs = p.wait_messages(2)

Each message in p.messages is a dict: conn (connection number, from 1),
mail (the MAIL FROM line's argument, as sent), rcpts (RCPT TO arguments of
the recipients accepted), data (the message as received, dot-unstuffed,
CRLF lines, without the final dot), and pipelined (True when RCPT or DATA
commands arrived in one read with the MAIL before it, i.e. the client
pipelined them).

Faults: greeting=(code, text) (a 4xx/5xx greeting, then the close the RFC
asks for), ehlo_code (5xx: the client must fall back to HELO), mail_reply /
rcpt_reply / data_reply (callables returning None for 250, or (code,
text)), close_after_mail (drop the connection after MAIL: a broken server),
stall_greeting (accept, then say nothing: the client's greeting timeout).
p.max_concurrent is the most connections open at once.
Everything runs in one thread per connection; stop() closes the listener
and every connection and joins them.  Only loopback addresses.
"""

import socket
import threading
import time


class Concurrency:
    """Connections open at once across several peers (pass one to each)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0

    def enter(self):
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


class SmtpPeer:
    def __init__(self, address="127.0.0.1", port=0, exts=("PIPELINING", "8BITMIME"),
                 hostname="peer.test", greeting=None, ehlo_code=250, tracker=None):
        if not address.startswith("127."):
            raise ValueError("loopback only: %s" % address)
        self.address = address
        self.exts = tuple(exts)
        self.hostname = hostname
        self.greeting = greeting
        self.ehlo_code = ehlo_code
        self.mail_reply = lambda sender: None
        self.rcpt_reply = lambda addr: None
        self.data_reply = lambda msg: None
        self.close_after_mail = False
        self.stall_greeting = False
        self.open_now = 0
        self.max_concurrent = 0
        self.tracker = tracker
        self.messages = []
        self.connections = 0
        self.commands = []  # every command line, in order (bytes)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.threads = []
        self.conns = []
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.acceptor.join(5)
        for t in list(self.threads):
            t.join(5)

    # -- reading back

    def wait_messages(self, n, timeout=15.0):
        """Block until n messages arrived (bounded); returns the list."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d of %d messages at %s:%d after %.0f s" %
                                       (len(self.messages), n, self.address, self.port, timeout))
                self.cond.wait(left)
            return list(self.messages)

    def count(self):
        with self.lock:
            return len(self.messages)

    # -- the server

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.conns.append(c)
                self.open_now += 1
                self.max_concurrent = max(self.max_concurrent, self.open_now)
            if self.tracker:
                self.tracker.enter()
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            self.threads.append(t)
            t.start()

    def _left(self, session):
        """A connection stops counting as open once QUIT is answered (the
        client may open the next one before our thread is done)."""
        if session.counted:
            session.counted = False
            with self.lock:
                self.open_now -= 1
            if self.tracker:
                self.tracker.leave()

    def _serve(self, c, n):
        sess = _Session(self, c, n)
        try:
            sess.run()
        except OSError:
            pass
        finally:
            self._left(sess)
            with self.lock:
                if c in self.conns:
                    self.conns.remove(c)
            c.close()


class _Session:
    def __init__(self, peer, sock, n):
        self.p = peer
        self.s = sock
        self.n = n
        self.buf = b""
        self.counted = True
        self.s.settimeout(30)

    def send(self, code, text, more=()):
        lines = list(more)
        out = b""
        for i, t in enumerate([text] + lines):
            sep = b"-" if i < len(lines) else b" "
            out += b"%d%s%s\r\n" % (code, sep, t.encode())
        self.s.sendall(out)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        with self.p.lock:
            self.p.commands.append(line)
        return line

    def reply(self, fn, arg):
        r = fn(arg)
        if r is None:
            return 250, "2.0.0 ok"
        return r

    def run(self):
        p = self.p
        if p.stall_greeting:
            while self.s.recv(4096):  # until the client gives up and closes
                pass
            return
        if p.greeting:
            self.send(p.greeting[0], p.greeting[1])
            # RFC 5321 3.1: after a 554 greeting the server waits for QUIT.
            while True:
                l = self.line()
                if l is None or l.upper().startswith(b"QUIT"):
                    if l is not None:
                        self.send(221, "2.0.0 bye")
                    return
                self.send(503, "5.5.1 no service here")
        self.send(220, "%s ESMTP smtp_peer" % p.hostname)
        mail = None
        rcpts = []
        pipelined = False
        while True:
            l = self.line()
            if l is None:
                return
            u = l.upper()
            if u.startswith(b"EHLO"):
                if p.ehlo_code != 250:
                    self.send(p.ehlo_code, "5.5.2 no EHLO here")
                    continue
                self.send(250, p.hostname, [e for e in p.exts])
            elif u.startswith(b"HELO"):
                self.send(250, p.hostname)
            elif u.startswith(b"MAIL FROM:"):
                mail = l[10:].decode("utf-8", "replace")
                rcpts = []
                # What the client wrote after MAIL before reading its reply.
                pipelined = b"\r\n" in self.buf and self.buf.upper().startswith(b"RCPT")
                if p.close_after_mail:
                    return
                code, text = self.reply(p.mail_reply, mail)
                self.send(code, text)
                if code != 250:
                    mail = None
            elif u.startswith(b"RCPT TO:"):
                arg = l[8:].decode("utf-8", "replace")
                addr = arg.split(">")[0].lstrip("<")
                if mail is None:
                    self.send(503, "5.5.1 MAIL first")
                    continue
                code, text = self.reply(p.rcpt_reply, addr)
                self.send(code, text)
                if code == 250:
                    rcpts.append(arg)
            elif u == b"DATA":
                if mail is None or not rcpts:
                    self.send(554, "5.5.1 no valid recipients")
                    continue
                self.send(354, "go ahead")
                data = self.read_data()
                if data is None:
                    return
                msg = {"conn": self.n, "mail": mail, "rcpts": rcpts, "data": data,
                       "pipelined": pipelined}
                code, text = self.reply(p.data_reply, msg)
                if code == 250:
                    with p.cond:
                        p.messages.append(msg)
                        p.cond.notify_all()
                self.send(code, text)
                mail = None
                rcpts = []
            elif u == b"RSET":
                mail = None
                rcpts = []
                self.send(250, "2.0.0 ok")
            elif u == b"NOOP":
                self.send(250, "2.0.0 ok")
            elif u == b"QUIT":
                self.p._left(self)
                self.send(221, "2.0.0 bye")
                return
            else:
                self.send(500, "5.5.2 what?")

    def read_data(self):
        lines = []
        while True:
            l = self.line()
            if l is None:
                return None
            if l == b".":
                return b"".join(x + b"\r\n" for x in lines)
            lines.append(l[1:] if l.startswith(b".") else l)

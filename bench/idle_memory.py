#!/usr/bin/python3
"""Memory for one idle connection: open N SMTP connections to a running
sluiced (each reads its greeting and sends EHLO, then idles), and report
the growth of the daemon's resident set divided by N.  Resident memory is
ours alone (kernel socket buffers are not in it).

    bench/idle_memory.py PID HOST PORT [N]
"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    pid, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    before = rss_kib(pid)
    conns = []
    try:
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=10)
            s.recv(512)
            s.sendall(b"EHLO bench.test\r\n")
            conns.append(s)
        for s in conns:  # every EHLO answered: the sessions exist and are idle
            data = b""
            while not data.endswith(b"250 HELP\r\n") and b"\r\n250 " not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        time.sleep(0.5)  # let the workers settle; a measurement, not a test
        after = rss_kib(pid)
    finally:
        for s in conns:
            s.close()
    per = (after - before) * 1024 / n
    print(f"idle connections={n} rss_before={before}KiB rss_after={after}KiB "
          f"per_connection={per:.0f} bytes")


if __name__ == "__main__":
    main()

"""Helpers of the abuse suites: a process's memory, the gateway's metrics, raw sockets, waiting
for an event under a generous timeout (never sleeping to synchronise)."""
import re
import socket
import urllib.request

from mesh_fixtures import free_port  # noqa: F401  (re-exported for the suites)
from waiting import HANG_GUARD, wait_for  # noqa: F401  (the one wait of every suite, re-exported)


def status_kb(pid, field):
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def open_fds(pid):
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(port, name, **labels):
    """The sum of the series of `name` that carry `labels` (0 when there is none yet)."""
    total = 0.0
    for line in metrics(port).splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = m.group(2) or ""
        if all(f'{k}="{v}"' in got for k, v in labels.items()):
            total += float(m.group(3))
    return total


def shed(port, reason):
    return metric(port, "bazaar_connections_shed_total", reason=reason)


def connect(port, rcvbuf=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def closed_by_peer(sock):
    """True once the peer has closed `sock` (what it sent first is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.setblocking(True)


def read_response(sock):
    """Reads until the peer closes; returns what it sent."""
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def http_get(port, path="/healthz", timeout=15):
    """One plain HTTP/1.1 GET on a fresh connection; the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = read_response(s)
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None

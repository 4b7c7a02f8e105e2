"""Processes for the mesh tests: `mesh-test serve` replicas (each with a call log that survives
kill -9), `mesh-test load` driving a MeshChannel, and dnsmasq as a real DNS server."""
import collections
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

from rpc_fixtures import binary


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Replica:
    """One `mesh-test serve` process."""

    def __init__(self, name, workdir, *, host="127.0.0.1", port=0, tls_dir=None, next_target=None, env=None, telemetry=False):
        self.name = name
        self.log = pathlib.Path(workdir) / f"{name}.log"
        args = [binary("mesh-test"), "serve", "--name", name, "--host", host, "--port", str(port), "--call-log", str(self.log)]
        if tls_dir:
            args += ["--tls-dir", str(tls_dir), "--tls-name", "server"]
        if next_target:
            args += ["--next", next_target]
        if telemetry:
            args.append("--telemetry")
        # Status lines ("mesh-test: ...") go to stderr, logs (JSON lines) to stdout.
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.output = []  # stderr lines
        self.logs = []    # stdout lines
        self.metrics_port = None
        while True:
            line = self.proc.stderr.readline()
            if not line:
                self.proc.kill()
                raise RuntimeError(f"mesh-test serve {name} did not start: {''.join(self.output)}")
            self.output.append(line)
            if "metrics on port" in line:
                self.metrics_port = int(line.rsplit(" ", 1)[1])
            if "listening on" in line:
                break
        self.host = host
        self.port = int(line.rsplit(":", 1)[1])
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.output), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.logs), daemon=True).start()

    @staticmethod
    def _drain(stream, into):
        for line in stream:
            into.append(line)

    @property
    def address(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not exit after SIGTERM")

    def calls(self, kind):
        """Request ids of `kind` lines ("get", "add", "get-refused", ...) in the call log."""
        if not self.log.exists():
            return []
        return [line.split(" ", 1)[1].strip() for line in self.log.read_text().splitlines() if line.split(" ", 1)[0] == kind]


class Load:
    """`mesh-test load` in the background; progress lines are kept with the time they arrived."""

    def __init__(self, target, *, method="get", duration=4.0, concurrency=8, timeout_ms=2000, tls_dir=None, env=None,
                 report_every=0.25):
        args = [binary("mesh-test"), "load", "--target", target, "--method", method, "--duration", str(duration),
                "--concurrency", str(concurrency), "--timeout-ms", str(timeout_ms), "--report-every", str(report_every)]
        if tls_dir:
            args += ["--tls-dir", str(tls_dir), "--tls-name", "client"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.progress = []  # (seconds since start, {"ok":..., "replicas": set, "endpoints": str})
        self.result = None
        self.errors = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                self.result = json.loads(line[len("RESULT "):])
            elif line.startswith("progress "):
                fields = dict(f.split("=", 1) for f in line.split()[1:])
                fields["replicas"] = set(filter(None, fields["replicas"].split(",")))
                self.progress.append((time.monotonic() - self.started, fields))

    def _read_errors(self):
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout=timeout)
        time.sleep(0.1)
        # A crash report is long: keep its head (the fatal error and the crashed thread's frames).
        head = [l for l in self.errors if "Fatal error" in l or "Crash" in l or " at /" in l][:40]
        assert rc == 0 and self.result is not None, f"load exited {rc}: {head + self.errors[-20:]}"
        return self.result

    def mark(self):
        """Seconds since the load started: marks an event so that checks can be relative to it
        (fixed offsets would drift with the machine's load)."""
        return time.monotonic() - self.started

    def replicas_between(self, start, end=float("inf")):
        """Replicas that answered in progress reports from `start` to `end` seconds."""
        seen = set()
        for t, p in self.progress:
            if start <= t <= end:
                seen |= p["replicas"]
        return seen

    def endpoints_seen(self):
        return [p["endpoints"] for _, p in self.progress]


class Dnsmasq:
    """dnsmasq (Debian) answering from a hosts file on a loopback port; `set` rewrites it and sends SIGHUP."""

    def __init__(self, workdir):
        self.hosts = pathlib.Path(workdir) / "hosts"
        self.hosts.write_text("")
        self.port = free_port()
        self.proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                                      f"--addn-hosts={self.hosts}", f"--port={self.port}", "--listen-address=127.0.0.1",
                                      "--bind-interfaces", "--user=root", "--pid-file=", "--log-facility=-"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stdout.read()}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # dnsmasq holds the port: it is up
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start")

    @property
    def nameserver(self):
        return f"127.0.0.1:{self.port}"

    def set(self, name, addresses):
        self.hosts.write_text("".join(f"{a} {name}\n" for a in addresses))
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def generic_unary(channel, method, request, response_type, timeout=10, metadata=()):
    call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_type.FromString)
    return call(request, timeout=timeout, metadata=metadata)


def duplicates(*logs):
    """Ids that appear more than once across call logs (lists of ids)."""
    counts = collections.Counter(i for log in logs for i in log)
    return {i for i, n in counts.items() if n > 1}

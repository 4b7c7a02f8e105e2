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

from rpc_fixtures import binary
from waiting import HANG_GUARD, wait_for


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
        self.readers = [threading.Thread(target=self._drain, args=(self.proc.stderr, self.output), daemon=True),
                        threading.Thread(target=self._drain, args=(self.proc.stdout, self.logs), daemon=True)]
        for t in self.readers:
            t.start()

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
        """SIGTERM, then the exit code once the process has exited and `output` and `logs` hold
        every line it wrote (its pipes have ended)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not exit after SIGTERM")
        for t in self.readers:
            t.join(HANG_GUARD)
            assert not t.is_alive(), f"{self.name}'s output did not end with the process"
        return code

    def calls(self, kind):
        """Request ids of `kind` lines ("get", "add", "get-refused", ...) in the call log."""
        if not self.log.exists():
            return []
        return [line.split(" ", 1)[1].strip() for line in self.log.read_text().splitlines() if line.split(" ", 1)[0] == kind]


class Load:
    """`mesh-test load` in the background. Its progress reports (one every --report-every: the
    replicas that answered since the last one, the channel's endpoints) are kept in order. A test
    marks an event by the number of reports in so far and judges the reports after it, waiting for
    the report that shows what it expects rather than for some time."""

    def __init__(self, target, *, method="get", duration=4.0, concurrency=8, timeout_ms=2000, tls_dir=None, env=None,
                 report_every=0.25):
        args = [binary("mesh-test"), "load", "--target", target, "--method", method, "--duration", str(duration),
                "--concurrency", str(concurrency), "--timeout-ms", str(timeout_ms), "--report-every", str(report_every)]
        if tls_dir:
            args += ["--tls-dir", str(tls_dir), "--tls-name", "client"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.progress = []  # {"ok":..., "failed":..., "replicas": set, "endpoints": [str]}, in order
        self.result = None
        self.errors = []
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._read_errors, daemon=True)]
        for t in self.readers:
            t.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                self.result = json.loads(line[len("RESULT "):])
            elif line.startswith("progress "):
                fields = dict(f.split("=", 1) for f in line.split()[1:])
                fields["ok"], fields["failed"] = int(fields["ok"]), int(fields["failed"])
                fields["replicas"] = set(filter(None, fields["replicas"].split(",")))
                fields["endpoints"] = list(filter(None, fields["endpoints"].split(",")))
                self.progress.append(fields)

    def _read_errors(self):
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())

    def wait(self, timeout=HANG_GUARD):
        rc = self.proc.wait(timeout=timeout)
        for t in self.readers:  # both pipes end with the process: then every line is in
            t.join(timeout)
        # A crash report is long: keep its head (the fatal error and the crashed thread's frames).
        head = [l for l in self.errors if "Fatal error" in l or "Crash" in l or " at /" in l][:40]
        assert rc == 0 and self.result is not None, f"load exited {rc}: {head + self.errors[-20:]}"
        return self.result

    def mark(self):
        """The number of reports so far: marks an event, as the reports from this index on came
        after it (the first of them may still count calls made just before)."""
        return len(self.progress)

    def replicas_between(self, start, end=None):
        """Replicas that answered in the reports from index `start` up to (without) `end`."""
        seen = set()
        for p in self.progress[start:end]:
            seen |= p["replicas"]
        return seen

    def endpoints_seen(self, start=0, end=None):
        return [e for p in self.progress[start:end] for e in p["endpoints"]]

    def wait_for_report(self, what, check, after=0):
        """The index of the first report from index `after` on for which `check(report)` holds,
        once it has come; fails naming `what` if the load ends before."""
        def found():
            ended = self.proc.poll() is not None and not self.readers[0].is_alive()
            for i in range(after, len(self.progress)):
                if check(self.progress[i]):
                    return i + 1  # (true even for report 0)
            if ended:
                raise AssertionError(f"the load ended before {what}: {self.progress[after:]}")
            return None
        return wait_for(what, found) - 1

    def wait_for_replicas(self, what, replicas, after=0):
        """Waits until every one of `replicas` has answered in the reports from index `after` on;
        returns the number of reports then."""
        def found():
            ended = self.proc.poll() is not None and not self.readers[0].is_alive()
            count = len(self.progress)
            if set(replicas) <= self.replicas_between(after, count):
                return count
            if ended:
                raise AssertionError(f"the load ended before {what}: {self.progress[after:]}")
            return None
        return wait_for(what, found)


class Dnsmasq:
    """dnsmasq (Debian) answering from a hosts file on a loopback port; `set` rewrites it, sends
    SIGHUP and returns once dnsmasq has read the file again (it logs each reading)."""

    def __init__(self, workdir):
        self.hosts = pathlib.Path(workdir) / "hosts"
        self.hosts.write_text("")
        self.port = free_port()
        self.proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                                      f"--addn-hosts={self.hosts}", f"--port={self.port}", "--listen-address=127.0.0.1",
                                      "--bind-interfaces", "--user=root", "--pid-file=", "--log-facility=-"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.reader = threading.Thread(target=Replica._drain, args=(self.proc.stdout, self.output), daemon=True)
        self.reader.start()
        # It reads the hosts file once it has bound its socket.
        self._wait_for_reading(1)

    def readings(self):
        return sum(f"read {self.hosts} " in line for line in list(self.output))

    def _wait_for_reading(self, n):
        def done():
            if self.readings() >= n:
                return True
            if self.proc.poll() is not None and not self.reader.is_alive():
                raise RuntimeError(f"dnsmasq exited: {''.join(self.output)}")
            return False
        wait_for(f"dnsmasq to read {self.hosts} ({n})", done, detail=lambda: "".join(self.output))

    @property
    def nameserver(self):
        return f"127.0.0.1:{self.port}"

    def set(self, name, addresses):
        before = self.readings()
        self.hosts.write_text("".join(f"{a} {name}\n" for a in addresses))
        self.proc.send_signal(signal.SIGHUP)
        self._wait_for_reading(before + 1)

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

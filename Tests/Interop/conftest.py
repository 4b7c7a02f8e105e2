"""Fixtures of the interop suites: the Bazaar conformance driver."""
import os
import subprocess
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The `pb2` fixture (Python classes from protoc) is in Tests/conftest.py, shared with Tests/Integration.


class Driver:
    """The Swift side: a long-lived `wire-conformance-driver` process, one request per line."""

    def __init__(self, path):
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, op, type_name, data):
        self.proc.stdin.write(f"{op} {type_name} {data.hex()}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"driver died (exit {self.proc.poll()}) on {op} {type_name} {data.hex()[:200]}")
        return line.rstrip("\n")

    def roundtrip(self, type_name, data):
        """Decode then encode in Bazaar; returns (unknown_field_count, bytes) or raises."""
        answer = self.call("roundtrip", type_name, data)
        if not answer.startswith("ok "):
            raise AssertionError(f"Bazaar rejected {type_name}: {answer}")
        _, unknown, out = (answer.split(" ") + [""])[:3]
        return int(unknown), bytes.fromhex(out)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def driver():
    path = os.environ.get("BAZAAR_CONFORMANCE_DRIVER", str(ROOT / ".build" / "debug" / "wire-conformance-driver"))
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it with `swift build --product wire-conformance-driver`")
    d = Driver(path)
    yield d
    d.close()
    assert d.proc.returncode == 0, "the conformance driver did not exit cleanly"

"""HTTP/2 abuse on the edge gateway's port (h2c) and on a service's mesh port (the RPC server,
`interop-server` in plaintext): rapid reset, a CONTINUATION flood, SETTINGS and PING floods,
zero-window readers and more streams than allowed. Each attack must end in a GOAWAY or resets
for the abuser, with bounded memory, while a bystander on another connection is served."""
import socket

import pytest
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame)

from abuse import HANG_GUARD, connect, free_port, http_get, shed, status_kb, wait_for
from raw_h2 import RawH2, grpc_frame
from rpc_fixtures import BazaarServer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY = "/grpc.testing.TestService/EmptyCall"
UNARY = "/grpc.testing.TestService/UnaryCall"
ENHANCE_YOUR_CALM, REFUSED_STREAM = 0xB, 0x7


class Target:
    """Where the attacks go: `edge` (the gateway, h2c) or `mesh` (the RPC server)."""

    def __init__(self, kind, port, pid, metrics_port=None):
        self.kind, self.port, self.pid, self.metrics_port = kind, port, pid, metrics_port

    def request(self, enc, sid, end_stream=True, big=False):
        """A HEADERS frame of a request this target serves (`big`: an answer of tens of KB)."""
        if self.kind == "edge":
            fields = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/openapi.json" if big else "/healthz")]
        else:
            fields = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", UNARY if big else EMPTY),
                      ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "3S")]
        f = HeadersFrame(sid, data=enc.encode(fields))
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def body(self, sid, big=False):
        """The request body, if the target needs one (a gRPC message)."""
        if self.kind == "edge":
            return []
        # grpc.testing.SimpleRequest{response_size: 8192}: field 2, varint.
        message = bytes([0x10]) + varint(self.answer_size) if big else b""
        f = DataFrame(sid, data=grpc_frame(message))
        f.flags.add("END_STREAM")
        return [f]

    def served(self):
        """A bystander on a connection of its own gets an answer."""
        if self.kind == "edge":
            return http_get(self.port, "/healthz") == 200
        c = RawH2(self.port)
        try:
            return RawH2.status(c.finish(c.send(EMPTY, grpc_frame(b"")))) == "0"
        finally:
            c.close()

    @property
    def answer_size(self):
        """Bytes of one big answer (the edge's /openapi.json is about 55 KB)."""
        return 55_000 if self.kind == "edge" else 8192

    @property
    def max_streams(self):
        return 100 if self.kind == "edge" else 1024


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


@pytest.fixture(scope="module", params=["edge", "mesh"])
def target(request):
    if request.param == "edge":
        shop = request.getfixturevalue("shop")
        mport = free_port()
        base = shop.start_gateway("gw-h2-abuse", env={"BAZAAR_METRICS_PORT": str(mport), "BAZAAR_REQUEST_TIMEOUT": "3s",
                                                      "BAZAAR_WRITE_TIMEOUT": "3s"})
        yield Target("edge", int(base.rsplit(":", 1)[1]), shop.procs["gw-h2-abuse"].pid, mport)
    else:
        server = BazaarServer()
        yield Target("mesh", server.port, server.proc.pid)
        code, out = server.stop()
        assert code == 0, out


class Abuser:
    """A raw HTTP/2 connection that sends frames as given and reads what comes back."""

    def __init__(self, port, settings=None, rcvbuf=None):
        self.sock = connect(port, rcvbuf=rcvbuf, timeout=HANG_GUARD)
        self.enc = Encoder()
        hello = SettingsFrame(0)
        hello.settings = settings or {}
        self.sock.sendall(PREFACE + hello.serialize())
        self.buffer = b""
        self.goaway = None
        self.resets = {}
        self.closed = False

    def send(self, frames):
        try:
            self.sock.sendall(b"".join(f.serialize() for f in frames))
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return False

    def read_until(self, done):
        """Reads frames until `done(self)` or the connection ends."""
        while not done(self) and not self.closed:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise AssertionError("the server neither answered nor cut the connection off (hang guard)")
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buffer += data
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                if isinstance(frame, GoAwayFrame):
                    self.goaway = frame.error_code
                elif isinstance(frame, RstStreamFrame):
                    self.resets[frame.stream_id] = frame.error_code
        return self

    @property
    def cut_off(self):
        return self.goaway is not None or self.closed

    def close(self):
        self.sock.close()


def rss_kb(target):
    return status_kb(target.pid, "VmRSS")


def test_rapid_reset_ends_in_goaway(target):
    a = Abuser(target.port)
    frames = []
    for i in range(5000):
        sid = 1 + 2 * i
        frames += [target.request(a.enc, sid, end_stream=target.kind == "edge"), RstStreamFrame(sid, error_code=0x8)]
        if len(frames) >= 400:
            if not a.send(frames):
                break
            frames = []
    a.send(frames)
    a.read_until(lambda c: c.cut_off)
    assert a.goaway is not None or a.closed
    assert target.served()
    a.close()


def test_continuation_flood_ends_in_goaway(target):
    a = Abuser(target.port)
    head = HeadersFrame(1, data=a.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")]))
    frames = [head] + [ContinuationFrame(1, data=b"\x40\x01x\x01y") for _ in range(10_000)]
    a.send(frames)
    a.read_until(lambda c: c.cut_off)
    assert a.cut_off
    assert target.served()
    a.close()


@pytest.mark.parametrize("flood", ["settings", "ping"])
def test_settings_and_ping_floods_from_a_client_that_never_reads_are_cut_off(target, flood):
    before = rss_kb(target)
    a = Abuser(target.port, rcvbuf=4096)
    frame = SettingsFrame(0) if flood == "settings" else PingFrame(0, opaque_data=b"12345678")
    sent = 0
    for _ in range(200):
        if not a.send([frame] * 5000):
            break
        sent += 1
    a.read_until(lambda c: c.cut_off)
    assert a.cut_off, f"{sent * 5000} {flood} frames and still connected"
    assert rss_kb(target) - before < 64 * 1024
    assert target.served()
    a.close()


def test_zero_window_readers_hold_bounded_memory_and_are_reset(target):
    before = rss_kb(target)
    # No window for answers, ever: every response waits in the server.
    readers = [Abuser(target.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) for _ in range(5)]
    for a in readers:
        frames = []
        for i in range(target.max_streams):
            sid = 1 + 2 * i
            frames += [target.request(a.enc, sid, end_stream=target.kind == "edge", big=True)] + target.body(sid, big=True)
        a.send(frames)
    assert target.served()
    # Each stream ends: the edge's request timeout (3 s here) or the call's grpc-timeout resets it.
    for a in readers:
        a.read_until(lambda c: len(c.resets) >= target.max_streams)
        assert len(a.resets) >= target.max_streams, f"{len(a.resets)} streams reset; closed: {a.closed}"
    # What is held is the blocked answers themselves (a mesh peer may hold 1,024 streams, the
    # edge's clients 100), never more: no copies, no amplification, nothing left behind.
    growth = rss_kb(target) - before
    held = 5 * target.max_streams * target.answer_size // 1024
    assert growth < 2 * held + 32 * 1024, f"{growth // 1024} MiB for {held // 1024} MiB of blocked answers"
    if target.metrics_port:
        assert shed(target.metrics_port, "request_timeout") >= target.max_streams
    assert target.served()
    for a in readers:
        a.close()


def test_more_streams_than_allowed_are_refused(target):
    a = Abuser(target.port)
    frames = []
    # Open streams whose requests never end: they stay open until the server gives up on them.
    count = target.max_streams + 100
    for i in range(count):
        frames.append(target.request(a.enc, 1 + 2 * i, end_stream=False))
    a.send(frames)
    a.read_until(lambda c: len(c.resets) >= 100)
    assert len(a.resets) >= 100 or a.cut_off, a.resets
    refused = [sid for sid, code in a.resets.items() if code in (REFUSED_STREAM, 0x1)]
    assert len(refused) >= 100 or a.cut_off
    assert target.served()
    a.close()
    wait_for("the server to stay up", target.served)

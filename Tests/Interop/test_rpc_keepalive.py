"""Connection management (gRFCs A8 and A9): the PING policy, max connection idle and max
connection age, seen from a raw HTTP/2 client and from grpcio."""
import socket
import subprocess
import time

import grpc
import h2.errors
import pytest

from raw_h2 import RawH2, grpc_frame
from rpc_fixtures import BazaarServer

EMPTY = "/grpc.testing.TestService/EmptyCall"


def wait_goaway(c, timeout=5):
    end = time.monotonic() + timeout
    c.sock.settimeout(0.2)
    while c.terminated is None and time.monotonic() < end:
        c.pump(lambda: False)
        if c.terminated and "timed out" in c.terminated:
            c.terminated = None
    return c.terminated


def test_ping_flood_gets_goaway_enhance_your_calm():
    server = BazaarServer()
    try:
        c = RawH2(server.port)
        for _ in range(6):
            c.conn.ping(b"12345678")
            c.flush()
        end = wait_goaway(c)
        assert end is not None and f"GOAWAY {h2.errors.ErrorCodes.ENHANCE_YOUR_CALM}" in end, end
        # A polite client is still served.
        ok = RawH2(server.port)
        assert RawH2.status(ok.finish(ok.send(EMPTY, grpc_frame(b"")))) == "0"
    finally:
        assert server.stop()[0] == 0


def test_idle_connection_is_closed_after_max_idle():
    server = BazaarServer("--max_connection_idle_ms", "300")
    try:
        c = RawH2(server.port)
        assert RawH2.status(c.finish(c.send(EMPTY, grpc_frame(b"")))) == "0"
        started = time.monotonic()
        end = wait_goaway(c)
        assert c.goaway == 0 and end == "closed", (c.goaway, end)
        assert time.monotonic() - started >= 0.25
    finally:
        assert server.stop()[0] == 0


def test_max_age_drains_without_failing_the_call_in_flight(pb2):
    messages = pb2("grpc/testing/messages.proto")
    test_grpc = pb2("grpc/testing/test.proto", "_pb2_grpc")
    server = BazaarServer("--max_connection_age_ms", "300", "--max_connection_age_grace_ms", "5000")
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = test_grpc.TestServiceStub(ch)
            # Outlives the connection's age by a second: the call must still complete.
            req = messages.StreamingOutputCallRequest(
                response_parameters=[messages.ResponseParameters(size=10, interval_us=1_300_000)])
            assert [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=10)] == [10]
            # The client reconnects transparently after the GOAWAY.
            for _ in range(3):
                stub.EmptyCall(pb2("grpc/testing/empty.proto").Empty(), timeout=5)
                time.sleep(0.2)
    finally:
        assert server.stop()[0] == 0


def test_max_age_sends_goaway_and_lets_the_stream_finish(pb2, tmp_path):
    """Seen with nghttp (Python's h2 stops reading after any GOAWAY): GOAWAY(NO_ERROR) arrives
    while the call is open, and the call still ends with grpc-status 0."""
    messages = pb2("grpc/testing/messages.proto")
    server = BazaarServer("--max_connection_age_ms", "300", "--max_connection_age_grace_ms", "5000")
    try:
        body = tmp_path / "req.bin"
        body.write_bytes(grpc_frame(messages.StreamingOutputCallRequest(
            response_parameters=[messages.ResponseParameters(size=10, interval_us=1_000_000)]).SerializeToString()))
        out = subprocess.run(["nghttp", "-v", "-H", ":method: POST", "-H", "content-type: application/grpc", "-H", "te: trailers",
                              "-d", str(body), f"http://127.0.0.1:{server.port}/grpc.testing.TestService/StreamingOutputCall"],
                             capture_output=True, text=True, timeout=20).stdout
        goaway = out.find("recv GOAWAY frame")
        status = out.find("grpc-status: 0")
        assert goaway != -1 and "error_code=NO_ERROR" in out[goaway:goaway + 200], out
        assert status > goaway, out
    finally:
        assert server.stop()[0] == 0


def test_server_keepalive_closes_a_connection_whose_client_vanished():
    """The client completes the HTTP/2 handshake and then never reads again, as if its host were
    gone: the server's PING goes unanswered and the server closes the connection."""
    server = BazaarServer("--keepalive_time_ms", "200", "--keepalive_timeout_ms", "300")
    try:
        c = RawH2(server.port)
        c.finish(c.send(EMPTY, grpc_frame(b"")))
        # From now on bytes are read off the socket but never given to h2, so no PING ACK goes back.
        started = time.monotonic()
        c.sock.settimeout(5)
        closed = False
        try:
            while c.sock.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass  # the server kept the dead connection: the test fails below
        assert closed
        assert 0.3 < time.monotonic() - started < 4.5
        assert server.alive()
    finally:
        assert server.stop()[0] == 0

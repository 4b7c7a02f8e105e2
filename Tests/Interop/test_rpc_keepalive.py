"""Connection management (gRFCs A8 and A9): the PING policy, max connection idle and max
connection age, seen from a raw HTTP/2 client and from grpcio."""
import subprocess

import grpc
import h2.errors
import h2.events
import pytest

from raw_h2 import RawH2, grpc_frame
from rpc_fixtures import BazaarServer
from waiting import HANG_GUARD, wait_for

EMPTY = "/grpc.testing.TestService/EmptyCall"
STREAMING = "/grpc.testing.TestService/StreamingOutputCall"


def wait_goaway(c):
    """Reads until the server ends the connection; the socket's timeout only guards against a hang
    (then the result says it timed out, and the test's assertion fails on it)."""
    c.sock.settimeout(HANG_GUARD)
    c.pump(lambda: False)
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


def test_idle_connection_is_closed_after_max_idle(pb2):
    """A call open longer than the idle time keeps the connection; once it has ended, the idle
    connection gets GOAWAY(NO_ERROR) and is closed. Checked by the order of the events."""
    messages = pb2("grpc/testing/messages.proto")
    server = BazaarServer("--max_connection_idle_ms", "300")
    try:
        c = RawH2(server.port)
        # The handler waits a second (the workload) before it answers: three idle times with a call open.
        req = messages.StreamingOutputCallRequest(
            response_parameters=[messages.ResponseParameters(size=10, interval_us=1_000_000)])
        sid = c.send(STREAMING, grpc_frame(req.SerializeToString()))
        assert RawH2.status(c.finish(sid)) == "0"
        end = wait_goaway(c)
        assert c.goaway == 0 and end == "closed", (c.goaway, end)
        order = [type(e).__name__ for e in c.events if isinstance(e, (h2.events.StreamEnded, h2.events.ConnectionTerminated))]
        assert order[0] == "StreamEnded" and "ConnectionTerminated" in order, order
    finally:
        assert server.stop()[0] == 0


def test_max_age_drains_without_failing_the_call_in_flight(pb2):
    messages = pb2("grpc/testing/messages.proto")
    test_grpc = pb2("grpc/testing/test.proto", "_pb2_grpc")
    empty = pb2("grpc/testing/empty.proto").Empty()
    server = BazaarServer("--max_connection_age_ms", "300", "--max_connection_age_grace_ms", "5000")
    try:
        with grpc.insecure_channel(server.address) as ch:
            states = []  # the channel's connectivity, as grpcio reports each change
            ch.subscribe(states.append)

            def age_outs():
                seen = list(states)
                return sum(1 for a, b in zip(seen, seen[1:]) if a == grpc.ChannelConnectivity.READY != b)

            stub = test_grpc.TestServiceStub(ch)
            # The handler waits (the workload) until the connection's age has passed: the call must still complete.
            req = messages.StreamingOutputCallRequest(
                response_parameters=[messages.ResponseParameters(size=10, interval_us=1_300_000)])
            assert [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=10)] == [10]
            # Each time a connection has aged out (the channel leaves READY on its GOAWAY), the next
            # call reconnects transparently.
            for n in range(1, 4):
                wait_for(f"connection {n} to age out", lambda: age_outs() >= n)
                stub.EmptyCall(empty, timeout=10)
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
    """The client completes the HTTP/2 handshake and a call, then never answers again, as if its
    host were gone: the server's PING goes unanswered and the server closes the connection."""
    server = BazaarServer("--keepalive_time_ms", "200", "--keepalive_timeout_ms", "300")
    try:
        c = RawH2(server.port)
        c.finish(c.send(EMPTY, grpc_frame(b"")))
        # From now on h2 parses what arrives but nothing is sent back (its queued PING ACKs stay
        # unsent), as if the client's host were gone. The timeout only guards against a hang.
        c.sock.settimeout(HANG_GUARD)
        pings, closed = 0, False
        try:
            while data := c.sock.recv(65536):
                pings += sum(isinstance(e, h2.events.PingReceived) for e in c.conn.receive_data(data))
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass  # the server kept the dead connection: the test fails below
        # The server's keepalive PING came first, went unanswered, and then the server closed.
        assert pings >= 1 and closed, (pings, closed)
        assert server.alive()
    finally:
        assert server.stop()[0] == 0

"""What must fail, and fail alone: bad certificates, bad HTTP/2 and gRPC framing, floods. The
server keeps serving every other call and connection."""
import os
import socket

import grpc
import pytest

from raw_h2 import RawH2, grpc_frame
from rpc_fixtures import BazaarServer, make_certs, run_client, tls_args
from waiting import wait_for


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:  # the process is gone
        return 0

EMPTY = "/grpc.testing.TestService/EmptyCall"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("neg-certs"))


@pytest.fixture(scope="module")
def stubs(pb2):
    return pb2("grpc/testing/test.proto", "_pb2_grpc"), pb2("grpc/testing/empty.proto")


def empty_call(stubs, channel, timeout=5):
    test_grpc, empty = stubs
    return test_grpc.TestServiceStub(channel).EmptyCall(empty.Empty(), timeout=timeout)


def send_junk(port, junk):
    """Sends bytes that are not what the port expects, and reads until the server hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(junk)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass


def mtls_channel(server, certs, name="client", ca="ca.pem", directory=None):
    d = directory or certs
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / ca).read_bytes(),
        private_key=(d / f"{name}-key.pem").read_bytes() if name else None,
        certificate_chain=(d / f"{name}.pem").read_bytes() if name else None)
    return grpc.secure_channel(server.address, creds)


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(certs):
    server = BazaarServer(*tls_args(certs), "--allowed_callers", "client")
    yield server
    code, out = server.stop()
    assert code == 0, out


@pytest.mark.parametrize("who", ["no client certificate", "another CA", "expired"])
def test_bad_client_certificate_fails_the_handshake(stubs, certs, tls_server, who):
    if who == "no client certificate":
        channel = mtls_channel(tls_server, certs, name=None)
    elif who == "another CA":
        channel = mtls_channel(tls_server, certs, directory=certs / "rogue")
    else:
        channel = mtls_channel(tls_server, certs, name="expired")
    with channel, pytest.raises(grpc.RpcError) as err:
        empty_call(stubs, channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    # Everyone else is still served.
    with mtls_channel(tls_server, certs) as good:
        empty_call(stubs, good)
    assert tls_server.alive()


def test_valid_certificate_of_the_wrong_identity_is_permission_denied(stubs, certs, tls_server):
    with mtls_channel(tls_server, certs, name="intruder") as channel, pytest.raises(grpc.RpcError) as err:
        empty_call(stubs, channel)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://bazaar.local/intruder" in err.value.details()
    with mtls_channel(tls_server, certs) as good:
        empty_call(stubs, good)


def test_client_refuses_a_server_with_the_wrong_identity(certs, tls_server):
    code, out = run_client(tls_server.port, "empty_unary", *tls_args(certs, "client"),
                           "--expected_server_identity", "spiffe://bazaar.local/catalog")
    assert code != 0 and "FAIL empty_unary" in out and "not the expected spiffe://bazaar.local/catalog" in out, out


def test_client_refuses_a_server_from_another_ca(certs, tls_server):
    code, out = run_client(tls_server.port, "empty_unary", "--use_tls", "true", "--tls_ca_file", str(certs / "rogue" / "ca.pem"),
                           "--tls_cert_file", str(certs / "client.pem"), "--tls_key_file", str(certs / "client-key.pem"))
    assert code != 0 and "UNAVAILABLE" in out, out


def test_plaintext_and_garbage_to_a_tls_port_are_dropped(stubs, certs, tls_server):
    for junk in [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x00\x05hello", bytes(range(256)) * 8]:
        send_junk(tls_server.port, junk)
    with mtls_channel(tls_server, certs) as good:
        empty_call(stubs, good)


# ----------------------------------------------------------------------------- HTTP/2 and gRPC framing


@pytest.fixture(scope="module")
def h2c_server():
    server = BazaarServer()
    yield server
    code, out = server.stop()
    assert code == 0, out


def test_wrong_content_type_is_415(h2c_server):
    c = RawH2(h2c_server.port)
    s = c.finish(c.send(EMPTY, grpc_frame(b""), content_type="text/plain"))
    assert s["headers"][":status"] == "415"
    # application/json is Connect's unary JSON now: a gRPC frame is no JSON, and the answer is
    # Connect's error, not a gRPC status.
    s = c.finish(c.send(EMPTY, grpc_frame(b""), content_type="application/json"))
    assert s["headers"][":status"] == "400" and s["headers"]["content-type"] == "application/json"
    c.close()


def test_oversized_message_fails_only_its_stream(h2c_server):
    c = RawH2(h2c_server.port)
    big = c.send("/grpc.testing.TestService/UnaryCall", grpc_frame(b"\0" * 1024, length=5 << 20), end=False)
    ok = c.send(EMPTY, grpc_frame(b""))
    big_s = c.finish(big)
    assert RawH2.status(big_s) == "8", big_s  # RESOURCE_EXHAUSTED
    assert "over the limit" in (big_s["trailers"] or big_s["headers"]).get("grpc-message", "")
    ok_s = c.finish(ok)
    assert RawH2.status(ok_s) == "0", ok_s
    # The connection still takes new calls.
    again = c.finish(c.send(EMPTY, grpc_frame(b"")))
    assert RawH2.status(again) == "0"
    c.close()


@pytest.mark.parametrize("body,why", [
    (b"\x02\x00\x00\x00\x00", "compressed flag 2"),
    (b"\x00\x00\x00\x00\x64" + b"\0" * 10, "stream ends inside a message"),
    (b"\x01\x00\x00\x00\x03abc", "compressed flag without grpc-encoding"),
    (b"\x00\x00", "truncated prefix"),
])
def test_malformed_length_prefix_is_an_error_status(h2c_server, body, why):
    c = RawH2(h2c_server.port)
    s = c.finish(c.send(EMPTY, body))
    assert RawH2.status(s) in ("13", "12"), (why, s)  # INTERNAL (UNIMPLEMENTED for a missing message)
    ok = c.finish(c.send(EMPTY, grpc_frame(b"")))
    assert RawH2.status(ok) == "0"
    c.close()


def test_undecodable_protobuf_is_invalid_argument(h2c_server):
    c = RawH2(h2c_server.port)
    s = c.finish(c.send("/grpc.testing.TestService/UnaryCall", grpc_frame(b"\x0a\xff\xff\xff\xff\x0f")))
    assert RawH2.status(s) == "3", s
    c.close()


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 64, bytes(range(256))])
def test_garbage_preface_closes_only_that_connection(stubs, h2c_server, junk):
    bystander = RawH2(h2c_server.port)
    send_junk(h2c_server.port, junk)
    assert RawH2.status(bystander.finish(bystander.send(EMPTY, grpc_frame(b"")))) == "0"
    bystander.close()
    with grpc.insecure_channel(h2c_server.address) as ch:
        empty_call(stubs, ch)


def test_header_flood_is_refused_and_others_continue(stubs, h2c_server):
    bystander = RawH2(h2c_server.port)
    c = RawH2(h2c_server.port)
    flood = [(f"x-flood-{i}", "v" * 1000) for i in range(200)]  # 200 KB of headers, over the 16 KiB limit
    sid = c.send(EMPTY, grpc_frame(b""), extra=flood)
    s = c.finish(sid)
    refused = s["reset"] is not None or c.terminated is not None or RawH2.status(s) not in (None, "0")
    assert refused, s
    c.close()
    assert RawH2.status(bystander.finish(bystander.send(EMPTY, grpc_frame(b"")))) == "0"
    bystander.close()
    with grpc.insecure_channel(h2c_server.address) as ch:
        empty_call(stubs, ch)
    assert h2c_server.alive()


def test_many_streams_reset_by_the_client_leave_the_server_healthy(stubs, h2c_server):
    c = RawH2(h2c_server.port)
    for _ in range(200):
        sid = c.send("/grpc.testing.TestService/FullDuplexCall", grpc_frame(b""), end=False)
        c.conn.reset_stream(sid)
    c.flush()
    assert RawH2.status(c.finish(c.send(EMPTY, grpc_frame(b"")))) == "0"
    c.close()


def test_clients_that_vanish_mid_response_do_not_kill_the_server(pb2, h2c_server):
    """Regression: writing to a socket the peer had closed raised SIGPIPE and killed the server.
    Each client asks for 2 MB and closes at once, so the server writes into closed sockets."""
    messages = pb2("grpc/testing/messages.proto")
    req = grpc_frame(messages.SimpleRequest(response_size=2_000_000).SerializeToString())
    pid = h2c_server.proc.pid
    before = open_fds(pid)
    for i in range(30):
        c = RawH2(h2c_server.port)
        c.send("/grpc.testing.TestService/UnaryCall", req)
        if i % 2:
            c.sock.recv(1000)  # some of the answer arrives; closing with unread data sends a reset
        c.close()
    # Served after them (connections are accepted in order), so all 30 were taken on ...
    ok = RawH2(h2c_server.port)
    assert RawH2.status(ok.finish(ok.send(EMPTY, grpc_frame(b"")))) == "0"
    # ... and once the server has closed them all (only `ok` is left of this test's), it is past
    # every write into a closed socket.
    wait_for("the server to close the 30 connections",
             lambda: not h2c_server.alive() or open_fds(pid) <= before + 1)
    assert h2c_server.alive()
    assert RawH2.status(ok.finish(ok.send(EMPTY, grpc_frame(b"")))) == "0"
    ok.close()

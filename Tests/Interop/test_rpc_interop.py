"""The interop matrix: grpcio client -> Bazaar server and Bazaar client -> grpcio server, over h2c
and over mutual TLS, for every interop test case."""
import grpc
import pytest

from grpc_peers import CASES, Peer
from rpc_fixtures import BazaarServer, make_certs, run_client, tls_args


@pytest.fixture(scope="session")
def peer(pb2):
    return Peer(pb2("grpc/testing/messages.proto"), pb2("grpc/testing/empty.proto"),
                pb2("grpc/testing/test.proto", "_pb2_grpc"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def client_credentials(certs, name="client", ca="ca.pem"):
    key = (certs / f"{name}-key.pem").read_bytes() if name else None
    chain = (certs / f"{name}.pem").read_bytes() if name else None
    return grpc.ssl_channel_credentials(root_certificates=(certs / ca).read_bytes(), private_key=key, certificate_chain=chain)


@pytest.fixture(scope="module", params=["h2c", "mtls"])
def bazaar_server(request, certs):
    server = BazaarServer(*(tls_args(certs) if request.param == "mtls" else []))
    yield request.param, server
    code, out = server.stop()
    assert code == 0, out


@pytest.fixture(scope="module", params=["h2c", "mtls"])
def grpcio_server(request, peer, certs):
    creds = None
    if request.param == "mtls":
        creds = grpc.ssl_server_credentials([((certs / "server-key.pem").read_bytes(), (certs / "server.pem").read_bytes())],
                                            root_certificates=(certs / "ca.pem").read_bytes(), require_client_auth=True)
    server, port = peer.start_server(creds)
    yield request.param, port
    server.stop(0)


@pytest.mark.parametrize("case", CASES)
def test_grpcio_client_to_bazaar_server(peer, certs, bazaar_server, case):
    security, server = bazaar_server
    if security == "mtls":
        channel = grpc.secure_channel(server.address, client_credentials(certs))
    else:
        channel = grpc.insecure_channel(server.address)
    with channel:
        peer.run_case(case, channel)
    assert server.alive()


@pytest.mark.parametrize("case", CASES)
def test_bazaar_client_to_grpcio_server(certs, grpcio_server, case):
    security, port = grpcio_server
    extra = ["--server_checks_compression", "false"]
    if security == "mtls":
        extra += tls_args(certs, "client")
    code, out = run_client(port, case, *extra)
    assert code == 0 and f"PASS {case}" in out, out


def test_bazaar_client_to_bazaar_server(certs):
    """Both ends Bazaar, over mTLS with the server's SPIFFE identity checked."""
    server = BazaarServer(*tls_args(certs))
    try:
        code, out = run_client(server.port, "all", *tls_args(certs, "client"),
                               "--expected_server_identity", "spiffe://bazaar.local/server")
        assert code == 0, out
    finally:
        assert server.stop()[0] == 0

"""Connect on the edge's port, against real peers: the official Python client (`connectrpc` from
PyPI) and `buf curl` (PyPI `buf-bin`) call the shop through the gateway with JSON and binary,
unary and server streaming, GET for side-effect-free methods, errors, timeouts and compression;
a raw-HTTP suite written from the protocol's text covers what a well-behaved client never sends."""
import base64
import gzip
import http.client
import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.parse
import uuid

import pytest
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType

from shop_clients import make_product

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gw(shop):
    return shop.start_gateway("gateway-connect", env={"BAZAAR_RATE_LIMIT": "1000", "BAZAAR_RATE_BURST": "1000"})


def method(m, service, name, req, res, stream=StreamType.UNARY, idem=IdempotencyLevel.UNKNOWN):
    return MethodInfo(name=name, service_name=f"shop.v1.{service}", input=req, output=res,
                      idempotency_level=idem, stream_type=stream)


@pytest.fixture(scope="module")
def methods(m):
    c = m.catalog
    return {
        "get": method(m, "CatalogService", "GetProduct", c.GetProductRequest, c.Product,
                      idem=IdempotencyLevel.NO_SIDE_EFFECTS),
        "list": method(m, "CatalogService", "ListProducts", c.ListProductsRequest, c.ListProductsResponse,
                       idem=IdempotencyLevel.NO_SIDE_EFFECTS),
        "create": method(m, "CatalogService", "CreateProduct", c.CreateProductRequest, c.Product),
        "watch": method(m, "CatalogService", "WatchStock", c.WatchStockRequest, c.StockLevel,
                        stream=StreamType.SERVER_STREAM),
        "add": method(m, "CartService", "AddItem", m.cart.AddItemRequest, m.cart.Cart),
    }


def client(gw, codec="json", **kw):
    codec = google_protobuf_json_codec() if codec == "json" else google_protobuf_binary_codec()
    return ConnectClientSync(gw, codec=codec, **kw)


@pytest.mark.parametrize("codec", ["json", "proto"])
def test_unary_calls_with_each_codec_and_get_for_reads(m, admin, gw, methods, codec):
    p = make_product(admin, m, name=f"Connect {uuid.uuid4().hex[:8]}", price=1234, stock=4)
    with client(gw, codec) as c:
        got = c.execute_unary(request=m.catalog.GetProductRequest(id=p.id), method=methods["get"])
        assert got.id == p.id and got.price.amount_minor == 1234 and got.stock == 4
        # NO_SIDE_EFFECTS in the IDL: the same call as a cacheable GET.
        again = c.execute_unary(request=m.catalog.GetProductRequest(id=p.id), method=methods["get"], use_get=True)
        assert again == got
        # A write, with the admin's token as a header.
        made = c.execute_unary(
            request=m.catalog.CreateProductRequest(product=m.catalog.Product(
                sku=f"CN-{uuid.uuid4().hex[:10]}", name="Made over Connect",
                price=m.common.Money(currency_code="EUR", amount_minor=500), stock=1, categories=["connect"])),
            method=methods["create"], headers={"authorization": f"Bearer {admin.token}"})
        assert made.id and made.name == "Made over Connect"


@pytest.mark.parametrize("codec", ["json", "proto"])
def test_errors_carry_their_code_and_message(m, gw, methods, codec):
    with client(gw, codec) as c:
        with pytest.raises(ConnectError) as missing:
            c.execute_unary(request=m.catalog.GetProductRequest(id=str(uuid.uuid4())), method=methods["get"])
        assert missing.value.code == Code.NOT_FOUND and "no product" in missing.value.message
        with pytest.raises(ConnectError) as anonymous:
            c.execute_unary(request=m.cart.AddItemRequest(product_id="x", quantity=1), method=methods["add"])
        assert anonymous.value.code == Code.UNAUTHENTICATED
        with pytest.raises(ConnectError) as forged:
            c.execute_unary(request=m.cart.AddItemRequest(product_id="x", quantity=1), method=methods["add"],
                            headers={"authorization": "Bearer not.a.token"})
        assert forged.value.code == Code.UNAUTHENTICATED


@pytest.mark.parametrize("codec", ["json", "proto"])
def test_server_streaming_and_its_timeout(m, admin, gw, methods, codec):
    p = make_product(admin, m, name=f"Streamed {uuid.uuid4().hex[:8]}", price=100, stock=9)
    with client(gw, codec) as c:
        levels = c.execute_server_stream(request=m.catalog.WatchStockRequest(product_ids=[p.id]),
                                         method=methods["watch"], timeout_ms=1500)
        first = next(levels)
        assert first.product_id == p.id and first.stock == 9
        # The watch goes on until the client's deadline (connect-timeout-ms), then ends with it.
        with pytest.raises(ConnectError) as ended:
            for _ in levels:
                pass
        assert ended.value.code == Code.DEADLINE_EXCEEDED


def test_compression_both_ways(m, admin, gw, methods):
    tag = uuid.uuid4().hex[:8]
    for n in range(30):
        make_product(admin, m, name=f"Packed {tag} {n}", price=100 + n, stock=1, category=f"gz-{tag}")
    with client(gw, "json") as c:  # the client gzips its requests by default and accepts gzip
        page = c.execute_unary(request=m.catalog.ListProductsRequest(
            category=f"gz-{tag}", page=m.common.PageRequest(page_size=30)), method=methods["list"])
        assert len(page.products) == 30
    # And on the wire: the answer is gzip when asked for and large enough.
    body = json.dumps({"category": f"gz-{tag}", "page": {"pageSize": 30}}).encode()
    status, headers, raw = post(gw, "/shop.v1.CatalogService/ListProducts", gzip.compress(body),
                                {"content-type": "application/json", "content-encoding": "gzip",
                                 "accept-encoding": "gzip", "connect-protocol-version": "1"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(raw))["products"]) == 30


def post(gw, path, body, headers, method="POST"):
    u = urllib.parse.urlsplit(gw)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def envelope(payload, flags=0):
    return bytes([flags]) + len(payload).to_bytes(4, "big") + payload


def end_of_stream(body):
    """The last envelope of a streaming answer, which must be the end-of-stream one."""
    i, last = 0, None
    while i < len(body):
        flags, n = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        last = (flags, body[i + 5:i + 5 + n])
        i += 5 + n
    assert i == len(body) and last and last[0] & 2, body
    return json.loads(last[1])


def test_malformed_connect_requests_get_the_protocols_answers(m, admin, gw):
    p = make_product(admin, m, name=f"Raw {uuid.uuid4().hex[:8]}", price=100, stock=2)
    get = "/shop.v1.CatalogService/GetProduct"
    watch = "/shop.v1.CatalogService/WatchStock"
    ok = json.dumps({"id": p.id}).encode()
    cases = [
        # (what, path, body, headers, HTTP status, Connect code)
        ("an unknown codec", get, ok, {"content-type": "application/xml"}, 415, "unimplemented"),
        ("an empty content type", get, ok, {"content-type": ";"}, 415, "unimplemented"),
        ("JSON that is not JSON", get, b"{nope", {"content-type": "application/json"}, 400, "invalid_argument"),
        ("a field the message lacks", get, b'{"colour":"red"}', {"content-type": "application/json"}, 400,
         "invalid_argument"),
        ("a bad timeout", get, ok, {"content-type": "application/json", "connect-timeout-ms": "soon"}, 400,
         "invalid_argument"),
        ("an eleven-digit timeout", get, ok, {"content-type": "application/json", "connect-timeout-ms": "12345678901"},
         400, "invalid_argument"),
        ("an unknown compression", get, ok, {"content-type": "application/json", "content-encoding": "br"}, 501,
         "unimplemented"),
        ("a body that says gzip and is not", get, ok, {"content-type": "application/json", "content-encoding": "gzip"},
         400, "invalid_argument"),
        ("a streaming codec on a unary method", get, envelope(ok), {"content-type": "application/connect+json"}, 415,
         "invalid_argument"),
        ("a unary codec on a streaming method", watch, ok, {"content-type": "application/json"}, 415,
         "invalid_argument"),
        ("an unknown procedure", "/shop.v1.CatalogService/Nope", ok, {"content-type": "application/json"}, 404,
         "unimplemented"),
        ("an internal method", "/shop.v1.CatalogService/ReserveStock", b"{}", {"content-type": "application/json"},
         404, None),
    ]
    cases += [
        ("a protocol version this edge does not speak", get, ok,
         {"content-type": "application/json", "connect-protocol-version": "2"}, 400, "invalid_argument"),
        # Refused for who is calling before the body is even read: no token on a signed-in method.
        ("a bad body from a caller without a token", "/shop.v1.CartService/AddItem", b"{nope",
         {"content-type": "application/json"}, 401, "unauthenticated"),
    ]
    for what, path, body, headers, want_status, want_code in cases:
        status, hdrs, raw = post(gw, path, body, {"connect-protocol-version": "1", **headers})
        assert status == want_status, (what, status, raw)
        if want_code:
            assert hdrs["content-type"] == "application/json", what
            assert json.loads(raw)["code"] == want_code, (what, raw)

    # Streams answer 200 and put the error in the end-of-stream envelope.
    stream_headers = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
    watch_body = json.dumps({"productIds": [p.id]}).encode()
    for what, body, headers, code in [
        ("an envelope cut short", envelope(watch_body)[:-3], stream_headers, "invalid_argument"),
        ("a prefix cut short", b"\x00\x00", stream_headers, "invalid_argument"),
        ("two messages to a server stream", envelope(watch_body) * 2, stream_headers, "invalid_argument"),
        ("no message at all", b"", stream_headers, "invalid_argument"),
        ("an end-of-stream flag from the client", envelope(watch_body, flags=2), stream_headers, "invalid_argument"),
        ("a compressed envelope without an encoding", envelope(gzip.compress(watch_body), flags=1), stream_headers,
         "invalid_argument"),
        ("a deadline already spent", envelope(watch_body), {**stream_headers, "connect-timeout-ms": "1"},
         "deadline_exceeded"),
        # Several gzip bombs to a server stream: refused by their count before any is inflated.
        ("bombs that would add up", envelope(gzip.compress(b" " * (3 << 20)), flags=1) * 4,
         {**stream_headers, "connect-content-encoding": "gzip"}, "invalid_argument"),
        # One bomb over the limit (4 MiB inflated): stopped at the limit.
        ("a bomb", envelope(gzip.compress(b" " * (5 << 20)), flags=1),
         {**stream_headers, "connect-content-encoding": "gzip"}, "resource_exhausted"),
    ]:
        status, hdrs, raw = post(gw, watch, body, headers)
        assert status == 200 and hdrs["content-type"] == "application/connect+json", (what, status, raw)
        assert end_of_stream(raw)["error"]["code"] == code, (what, raw)

    # A compressed envelope with its encoding is read.
    status, hdrs, raw = post(gw, watch, envelope(gzip.compress(watch_body), flags=1),
                             {**stream_headers, "connect-content-encoding": "gzip", "connect-timeout-ms": "300"})
    first = raw[5:5 + int.from_bytes(raw[1:5], "big")]
    assert status == 200 and json.loads(first)["productId"] == p.id


def test_get_is_only_for_reads_and_is_cacheable(m, admin, gw):
    p = make_product(admin, m, name=f"Cached {uuid.uuid4().hex[:8]}", price=100, stock=2)
    message = urllib.parse.quote(json.dumps({"id": p.id}))
    path = f"/shop.v1.CatalogService/GetProduct?connect=v1&encoding=json&message={message}"
    status, headers, raw = post(gw, path, None, {}, method="GET")
    assert status == 200 and json.loads(raw)["id"] == p.id
    assert headers["cache-control"].startswith("public, max-age=") and headers["etag"]
    status, _, raw = post(gw, path, None, {"if-none-match": headers["etag"]}, method="GET")
    assert status == 304 and raw == b""
    # Binary, base64url.
    binary = base64.urlsafe_b64encode(m.catalog.GetProductRequest(id=p.id).SerializeToString()).rstrip(b"=").decode()
    status, headers, raw = post(gw, f"/shop.v1.CatalogService/GetProduct?connect=v1&encoding=proto&base64=1&message={binary}",
                                None, {}, method="GET")
    assert status == 200 and headers["content-type"] == "application/proto"
    assert m.catalog.Product.FromString(raw).id == p.id
    # An encoding that is no codec: 415.
    status, _, raw = post(gw, f"/shop.v1.CatalogService/GetProduct?connect=v1&encoding=xml&message=x", None, {},
                          method="GET")
    assert status == 415 and json.loads(raw)["code"] == "unimplemented"
    # A method with side effects refuses GET.
    create = urllib.parse.quote(json.dumps({"product": {"name": "x"}}))
    status, headers, raw = post(gw, f"/shop.v1.CatalogService/CreateProduct?connect=v1&encoding=json&message={create}",
                                None, {}, method="GET")
    assert status == 405 and headers["allow"] == "POST" and json.loads(raw)["code"] == "invalid_argument"


def buf():
    found = shutil.which("buf", path=str(pathlib.Path(sys.executable).parent))
    assert found, "buf is missing: scripts/requirements-test.txt installs buf-bin into .venv"
    return found


def test_buf_curl_speaks_connect_to_the_edge(m, admin, gw):
    p = make_product(admin, m, name=f"Buf {uuid.uuid4().hex[:8]}", price=4321, stock=3)
    base = [buf(), "curl", "--protocol", "connect", "--schema", str(ROOT / "proto"), "--http2-prior-knowledge"]
    out = subprocess.run(base + ["--data", json.dumps({"id": p.id}), f"{gw}/shop.v1.CatalogService/GetProduct"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["id"] == p.id and got["price"]["amountMinor"] == "4321"
    # An error comes back as Connect's: buf curl prints it and exits non-zero.
    out = subprocess.run(base + ["--data", json.dumps({"id": str(uuid.uuid4())}),
                                 f"{gw}/shop.v1.CatalogService/GetProduct"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "not_found" in out.stderr, (out.stdout, out.stderr)
    # Server streaming over HTTP/1.1 this time, until buf's deadline (sent as connect-timeout-ms).
    out = subprocess.run([buf(), "curl", "--protocol", "connect", "--schema", str(ROOT / "proto"), "--timeout", "2s",
                          "--data", json.dumps({"productIds": [p.id]}), f"{gw}/shop.v1.CatalogService/WatchStock"],
                         capture_output=True, text=True, timeout=120)
    assert '"stock": "3"' in out.stdout, (out.stdout, out.stderr)
    assert "deadline_exceeded" in out.stderr, out.stderr


@pytest.fixture(scope="module")
def mesh_http(shop):
    """An HTTP/2 client with the mesh's client certificate (mTLS), as a team's Connect client
    behind a plain HTTP load balancer would hold: Connect straight to a service, no edge."""
    from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport
    transport = SyncHTTPTransport(tls_ca_cert=(shop.certs / "ca.pem").read_bytes(),
                                  tls_cert=(shop.certs / "client.pem").read_bytes(),
                                  tls_key=(shop.certs / "client-key.pem").read_bytes(),
                                  http_version=HTTPVersion.HTTP2)
    return SyncClient(transport)


@pytest.mark.parametrize("codec", ["json", "proto"])
def test_a_service_answers_connect_itself(shop, m, admin, methods, mesh_http, codec):
    """The mesh server speaks Connect beside gRPC on its own port: unary POST and GET, a server
    stream to its deadline, and an error with its details, from the official client."""
    p = make_product(admin, m, name=f"Direct {uuid.uuid4().hex[:8]}", price=777, stock=5)
    service = f"https://127.0.0.1:{shop.ports['catalog']}"
    with client(service, codec, http_client=mesh_http) as c:
        got = c.execute_unary(request=m.catalog.GetProductRequest(id=p.id), method=methods["get"])
        assert got.id == p.id and got.price.amount_minor == 777
        assert c.execute_unary(request=m.catalog.GetProductRequest(id=p.id), method=methods["get"], use_get=True) == got
        levels = c.execute_server_stream(request=m.catalog.WatchStockRequest(product_ids=[p.id]),
                                         method=methods["watch"], timeout_ms=1500)
        assert next(levels).stock == 5
        with pytest.raises(ConnectError) as ended:
            for _ in levels:
                pass
        assert ended.value.code == Code.DEADLINE_EXCEEDED
        # The schema's rules, checked by the service, with their BadRequest.
        with pytest.raises(ConnectError) as bad:
            c.execute_unary(request=m.catalog.ListProductsRequest(min_price_minor=-1), method=methods["list"])
        assert bad.value.code == Code.INVALID_ARGUMENT
        assert [d.type_name for d in bad.value.details] == ["google.rpc.BadRequest"]
        # The mesh's authorization holds for Connect too: an internal method refuses this caller.
        reserve = method(m, "CatalogService", "ReserveStock", m.catalog.ReserveStockRequest,
                         m.catalog.ReserveStockResponse)
        with pytest.raises(ConnectError) as denied:
            c.execute_unary(request=m.catalog.ReserveStockRequest(
                order_id=str(uuid.uuid4()), lines=[m.catalog.StockLine(product_id=p.id, quantity=1)]), method=reserve)
        assert denied.value.code == Code.PERMISSION_DENIED


def test_buf_curl_speaks_connect_to_a_service(shop, m, admin):
    p = make_product(admin, m, name=f"Buf direct {uuid.uuid4().hex[:8]}", price=55, stock=2)
    tls = ["--cacert", str(shop.certs / "ca.pem"), "--cert", str(shop.certs / "client.pem"),
           "--key", str(shop.certs / "client-key.pem")]
    url = f"https://127.0.0.1:{shop.ports['catalog']}/shop.v1.CatalogService/GetProduct"
    out = subprocess.run([buf(), "curl", "--protocol", "connect", "--schema", str(ROOT / "proto"), *tls,
                          "--data", json.dumps({"id": p.id}), url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["price"]["amountMinor"] == "55"


def test_malformed_connect_to_a_service_gets_the_protocols_answers(shop, m, mesh_http):
    """Raw requests the official client never sends, straight to a service."""
    base = f"https://127.0.0.1:{shop.ports['catalog']}/shop.v1.CatalogService"

    def send(path, body, headers, method="POST"):
        r = mesh_http.post(base + path, headers=headers, content=body) if method == "POST" else \
            mesh_http.get(base + path, headers=headers)
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.content

    # An unknown codec: not Connect, not gRPC.
    status, headers, _ = send("/GetProduct", b"{}", {"content-type": "application/xml"})
    assert status == 415 and "application/connect+json" in headers["accept-post"]
    # A bad timeout, a bad version, a body that is not JSON: the protocol's error JSON.
    for hdrs, code in [({"connect-timeout-ms": "soon"}, "invalid_argument"),
                       ({"connect-protocol-version": "2"}, "invalid_argument")]:
        status, headers, body = send("/GetProduct", b"{}", {"content-type": "application/json", **hdrs})
        assert status == 400 and json.loads(body)["code"] == code
    status, _, body = send("/GetProduct", b"{nope", {"content-type": "application/json"})
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    # A unary method called as a stream and the other way round.
    status, _, body = send("/GetProduct", envelope(b"{}"), {"content-type": "application/connect+json"})
    assert status == 200 and end_of_stream(body)["error"]["code"] == "unimplemented"
    status, _, body = send("/WatchStock", b"{}", {"content-type": "application/json"})
    assert status == 501 and json.loads(body)["code"] == "unimplemented"
    # A stream whose envelope is cut short.
    status, _, body = send("/WatchStock", envelope(b'{"productIds": []}')[:-3], {"content-type": "application/connect+json"})
    assert status == 200 and end_of_stream(body)["error"]["code"] == "invalid_argument"
    # GET only for side-effect-free methods.
    q = "?connect=v1&encoding=json&message=" + urllib.parse.quote(json.dumps({"orderId": str(uuid.uuid4())}))
    status, _, body = send("/ReleaseStock" + q, b"", {}, method="GET")
    assert status in (403, 501) and json.loads(body)["code"] in ("permission_denied", "unimplemented")
    # Unknown method.
    status, _, body = send("/Nope", b"{}", {"content-type": "application/json"})
    assert status == 404 and json.loads(body)["code"] == "unimplemented"


def test_a_grpc_channel_can_speak_connect_to_a_service_and_through_the_edge(shop, m, admin, gw, tmp_path):
    """`bazaar call --protocol connect`: the mesh's own client (GRPCChannel configured for Connect)
    against a service directly (reflection and health over Connect too) and against the edge,
    whose Connect was checked with the official client above."""
    from rpc_fixtures import binary
    p = make_product(admin, m, name=f"Channel {uuid.uuid4().hex[:8]}", price=4242, stock=6)
    env = dict(os.environ, BAZAAR_TLS_DIR=str(shop.certs))
    direct = subprocess.run([binary("bazaar"), "call", "--protocol", "connect", f"127.0.0.1:{shop.ports['catalog']}",
                             "shop.v1.CatalogService/GetProduct", "-d", json.dumps({"id": p.id}), "--compact"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout)["price"]["amountMinor"] == "4242"
    missing = subprocess.run([binary("bazaar"), "call", "--protocol", "connect", f"127.0.0.1:{shop.ports['catalog']}",
                              "shop.v1.CatalogService/GetProduct", "-d", json.dumps({"id": str(uuid.uuid4())})],
                             capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr, missing.stderr
    # A procedure no upstream serves is Connect's unimplemented at the edge (what lets the mesh
    # client's health check pass through it), not a page or a REST 404.
    status, _, body = post(gw, "/grpc.health.v1.Health/Check", b"", {"content-type": "application/proto"})
    assert status == 404 and json.loads(body)["code"] == "unimplemented"
    # Through the edge: no reflection there, so the schema comes from a descriptor set.
    fds = tmp_path / "shop.pb"
    subprocess.run([os.environ.get("BAZAAR_CODEGEN", str(ROOT / ".build/debug/bazaar-codegen")), "-I", str(ROOT / "proto"),
                    "-I", "/usr/include", "--descriptor_set_out", str(fds), "shop/v1/catalog.proto"], check=True)
    edge = subprocess.run([binary("bazaar"), "call", "--plaintext", "--protocol", "connect", "--descriptors", str(fds),
                           gw.removeprefix("http://"), "shop.v1.CatalogService/WatchStock", "--deadline", "2s",
                           "-d", json.dumps({"productIds": [p.id]}), "--compact"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert edge.stdout, edge.stderr
    assert json.loads(edge.stdout.splitlines()[0])["stock"] == "6", (edge.stdout, edge.stderr)
    assert edge.returncode == 1 and "DEADLINE_EXCEEDED" in edge.stderr, edge.stderr

"""The edge gateway against the real services: REST/JSON golden cases (routes, body/query/path
mapping, JSON rules, every error status), JWTs minted and mangled with PyJWT, rate limits, CORS,
streams as SSE and NDJSON, HTTP/2 and TLS with curl, and the published OpenAPI document."""
import base64
import json
import pathlib
import subprocess
import threading
import time
import urllib.request
import uuid

import jwt as pyjwt
import pytest

from rpc_fixtures import binary
from shop_clients import make_product, Client, grpc_web, http
from shop_fixtures import SERVICES
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gw(shop):
    return shop.start_gateway("gateway-main", env={"BAZAAR_RATE_LIMIT": "1000", "BAZAAR_RATE_BURST": "1000"})


def test_rest_mapping_golden(shop, m, gw):
    admin = shop.token(str(uuid.uuid4()), roles=("admin",))
    tag = uuid.uuid4().hex[:6]
    # POST with body "product": 201 from the IDL, int64 as strings, camelCase names, enums by name.
    status, hdrs, p = http(gw, "POST", "/v1/products", {"sku": f"GW-{tag}", "name": f"Gateway kettle {tag}", "description": "boils",
                                                        "price": {"currency_code": "EUR", "amountMinor": 2599}, "stock": "7",
                                                        "categories": [f"gw-{tag}"], "attributes": {"colour": "red"}}, token=admin)
    assert status == 201, p
    assert p["price"] == {"currencyCode": "EUR", "amountMinor": "2599"} and p["stock"] == "7" and p["attributes"] == {"colour": "red"}
    assert hdrs["content-type"] == "application/json" and hdrs["x-request-id"]
    # Path variables, a nested path variable, and query parameters (dotted, enum by name).
    assert http(gw, "GET", f"/v1/products/{p['id']}")[2]["name"] == f"Gateway kettle {tag}"
    assert http(gw, "GET", f"/v1/skus/GW-{tag}")[2]["id"] == p["id"]
    status, _, listed = http(gw, "GET", f"/v1/products?category=gw-{tag}&page.pageSize=1&sort=PRODUCT_SORT_PRICE_DESC&maxPriceMinor=99999")
    assert status == 200 and [x["id"] for x in listed["products"]] == [p["id"]]
    status, _, patched = http(gw, "PATCH", f"/v1/products/{p['id']}?updateMask=name,stock", {"name": "Renamed", "stock": 9}, token=admin)
    assert status == 200 and patched["name"] == "Renamed" and patched["stock"] == "9" and patched["description"] == "boils"
    # Zero values are left out: an empty cart is {"userId": ...} only.
    me = shop.token(str(uuid.uuid4()))
    assert set(http(gw, "GET", "/v1/cart", token=me)[2]) == {"userId"}
    # Query parameters for a batch read (repeated keys), and a request id passed through.
    status, hdrs, batch = http(gw, "GET", f"/v1/products:batchGet?ids={p['id']}&ids={p['id']}", headers={"x-request-id": "trace-me-1"})
    assert status == 200 and hdrs["x-request-id"] == "trace-me-1" and len(batch["products"]) == 1
    # 204 from the IDL for a delete, with no body.
    status, _, body = http(gw, "DELETE", f"/v1/products/{p['id']}", token=admin)
    assert status == 204 and body is None


def test_error_statuses(shop, gw):
    me = shop.token(str(uuid.uuid4()))
    # Under the API's root an unknown path is the API's JSON 404 (outside it, the storefront's page).
    status, _, body = http(gw, "GET", "/v1/nothing/here")
    assert status == 404 and body["code"] == 5 and set(body) == {"code", "message", "details"}
    status, hdrs, body = http(gw, "PUT", "/v1/products/abc")
    assert status == 405 and set(hdrs["allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}
    status, _, body = http(gw, "POST", "/v1/cart/items", raw=b"productId=x", token=me, headers={"content-type": "application/x-www-form-urlencoded"})
    assert status == 415
    assert http(gw, "GET", "/v1/products", headers={"accept": "text/html"})[0] == 406
    assert http(gw, "GET", "/v1/products", headers={"accept": "text/html, application/json;q=0.5"})[0] == 200
    status, _, body = http(gw, "POST", "/v1/cart/items", raw=b'{"productId": ', token=me, headers={"content-type": "application/json"})
    assert status == 400 and "malformed JSON" in body["message"]
    status, _, body = http(gw, "POST", "/v1/cart/items", {"productId": "x", "quantity": "many"}, token=me)
    assert status == 400 and "quantity" in body["message"]
    status, _, body = http(gw, "POST", "/v1/cart/items", {"productId": "x", "colour": "red"}, token=me)
    assert status == 400 and "colour" in body["message"]
    assert http(gw, "GET", "/v1/products?nonsense=1")[0] == 400
    # Service errors map as grpc-gateway does: NOT_FOUND 404, INVALID_ARGUMENT 400, UNAUTHENTICATED 401.
    status, _, body = http(gw, "GET", f"/v1/products/{uuid.uuid4()}")
    assert status == 404 and body["code"] == 5
    assert http(gw, "GET", "/v1/products/not-a-uuid")[0] == 400
    # Over the body limit (1 MiB by default): 413, and the gateway keeps serving.
    status, _, body = http(gw, "POST", "/v1/cart/items", raw=b"{" + b" " * (1 << 21) + b"}", token=me, headers={"content-type": "application/json"})
    assert status == 413
    assert http(gw, "GET", "/healthz")[0] == 200


def test_jwt_rules(shop, gw):
    sub = str(uuid.uuid4())
    good = shop.token(sub)
    assert http(gw, "GET", "/v1/cart", token=good)[0] == 200
    now = int(time.time())
    claims = {"sub": sub, "iss": "bazaar", "aud": "bazaar", "iat": now, "exp": now + 300}
    public = (shop.dir / "jwt" / "jwt-pub.pem").read_bytes()
    header, payload, sig = good.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["roles"] = ["admin"]
    tampered = header + "." + base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).decode().rstrip("=") + "." + sig
    hs_header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    hs_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    import hashlib
    import hmac
    hs_sig = base64.urlsafe_b64encode(hmac.new(public, f"{hs_header}.{hs_body}".encode(), hashlib.sha256).digest()).decode().rstrip("=")
    bad = {
        "alg none": pyjwt.encode(claims, None, algorithm="none"),
        "HMAC with the public key": f"{hs_header}.{hs_body}.{hs_sig}",
        "expired": shop.token(sub, lifetime=-300),
        "wrong audience": pyjwt.encode({**claims, "aud": "someone-else"}, shop.jwt_key, algorithm="EdDSA"),
        "tampered": tampered,
    }
    for what, token in bad.items():
        status, hdrs, body = http(gw, "GET", "/v1/cart", token=token)
        assert status == 401, what
        assert hdrs["www-authenticate"].startswith("Bearer"), what
    # Missing credentials: 401; credentials without the role: 403.
    status, hdrs, _ = http(gw, "GET", "/v1/cart")
    assert status == 401 and "Bearer" in hdrs["www-authenticate"]
    assert http(gw, "GET", "/v1/admin/orders", token=good)[0] == 403
    # Forged identity headers from a client are not forwarded as identity.
    assert http(gw, "GET", "/v1/cart", headers={"x-bazaar-user-id": sub})[0] == 401


def test_a_token_from_bazaar_jwt_sign_with_its_defaults_is_accepted(shop, gw):
    """`bazaar jwt sign` used to sign with issuer `bazaar-accounts` and key id `k1`, which every
    service and the gateway refuse (they require BAZAAR_JWT_ISSUER, default `bazaar`, and know a key
    listed without an id by its thumbprint)."""
    token = subprocess.run([binary("bazaar"), "jwt", "sign", "--key", str(shop.dir / "jwt" / "jwt-key.pem"), "--sub", str(uuid.uuid4())],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert http(gw, "GET", "/v1/cart", token=token)[0] == 200


def test_rate_limit_and_cors(shop):
    base = shop.start_gateway("gateway-limited", env={"BAZAAR_RATE_LIMIT": "1", "BAZAAR_RATE_BURST": "3",
                                                      "BAZAAR_CORS_ORIGINS": "https://shop.example"})
    # The burst passes; then a request is refused once they come faster than the refill (1 a second).
    assert [http(base, "GET", "/v1/products?page.pageSize=1")[0] for _ in range(3)] == [200, 200, 200]

    def refused():
        answer = http(base, "GET", "/v1/products?page.pageSize=1")
        return answer if answer[0] == 429 else None
    limited = wait_for("a request over the limit", refused)
    assert int(limited[1]["retry-after"]) >= 1 and limited[2]["code"] == 8
    # Per user, not per address: a signed-in user has a bucket of their own.
    assert http(base, "GET", "/v1/cart", token=shop.token(str(uuid.uuid4())))[0] == 200
    # CORS: preflight answers with the methods the route table has for the path.
    status, hdrs, _ = http(base, "OPTIONS", "/v1/products/abc", headers={"origin": "https://shop.example", "access-control-request-method": "PATCH"})
    assert status == 204 and hdrs["access-control-allow-origin"] == "https://shop.example"
    assert hdrs["access-control-allow-methods"] == "PATCH" and "authorization" in hdrs["access-control-allow-headers"]
    status, hdrs, _ = http(base, "OPTIONS", "/v1/products/abc", headers={"origin": "https://evil.example", "access-control-request-method": "GET"})
    assert status == 403 and "access-control-allow-origin" not in hdrs
    # (/healthz is not rate limited.)
    status, hdrs, _ = http(base, "GET", "/healthz", headers={"origin": "https://shop.example"})
    assert hdrs["access-control-allow-origin"] == "https://shop.example"


def test_streams_as_sse_and_ndjson(shop, m, gw):
    admin = Client(shop, m, shop.token(str(uuid.uuid4()), roles=("admin",)))
    product = make_product(admin, m, stock=5)
    user = shop.token(str(uuid.uuid4()))
    http(gw, "POST", "/v1/cart/items", {"productId": product.id, "quantity": 1}, token=user)
    status, _, order = http(gw, "POST", "/v1/orders", {"requestId": "sse-1", "shippingAddress": {
        "recipient": "A", "lines": ["1 St"], "city": "C", "postalCode": "1", "countryCode": "DE"}}, token=user)
    assert status == 201 and order["status"] == "ORDER_STATUS_PAID"
    events = []

    def read(accept, into):
        req = urllib.request.Request(f"{gw}/v1/orders/{order['id']}:watch", headers={"authorization": f"Bearer {user}", "accept": accept})
        with urllib.request.urlopen(req, timeout=20) as r:
            into.append(r.headers["content-type"])
            for line in r:
                into.append(line.decode())

    sse, ndjson = [], []
    readers = [threading.Thread(target=read, args=("text/event-stream", sse)), threading.Thread(target=read, args=("application/x-ndjson", ndjson))]
    for t in readers:
        t.start()
    # Each watch answers with the order's status first: once both have, both are watching.
    wait_for("both watches to start", lambda: any(l.startswith("data: ") for l in sse[1:])
             and any(l.strip() for l in ndjson[1:]))
    a = shop.token(str(uuid.uuid4()), roles=("admin",))
    assert http(gw, "POST", f"/v1/orders/{order['id']}:setStatus", {"status": "ORDER_STATUS_SHIPPED"}, token=a)[0] == 200
    assert http(gw, "PATCH", f"/v1/admin/orders/{order['id']}", {"status": "ORDER_STATUS_DELIVERED"}, token=a)[0] == 200
    for t in readers:
        t.join(timeout=20)
    assert sse[0] == "text/event-stream" and ndjson[0] == "application/x-ndjson"
    sse_statuses = [json.loads(l[len("data: "):])["status"] for l in sse[1:] if l.startswith("data: ")]
    nd_statuses = [json.loads(l)["status"] for l in ndjson[1:] if l.strip()]
    expected = ["ORDER_STATUS_PAID", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"]
    assert sse_statuses == expected and nd_statuses == expected
    # A stream that fails before its first message is an ordinary error response.
    assert http(gw, "GET", f"/v1/orders/{uuid.uuid4()}:watch", token=user)[0] == 404


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True, text=True).stdout


def test_http2_and_tls(shop, gw):
    out = curl("--http2-prior-knowledge", "-w", " %{http_code} %{http_version}", f"{gw}/v1/products?page.pageSize=1")
    assert out.endswith(" 200 2") and json.loads(out.rsplit(" ", 2)[0])["products"]
    secure = shop.start_gateway("gateway-tls", tls=True)
    ca = str(shop.certs / "ca.pem")
    assert curl("--cacert", ca, "-w", " %{http_version}", f"{secure}/healthz").endswith(" 2")
    assert curl("--http1.1", "--cacert", ca, "-w", " %{http_version}", f"{secure}/healthz").endswith(" 1.1")


def test_openapi_is_published_and_current(gw):
    status, _, doc = http(gw, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert doc == committed, "docs/openapi.json is stale: run `make generate`"
    ops = {(p, verb) for p, item in doc["paths"].items() for verb in item}
    assert ("/v1/products/{id}", "get") in ops and ("/v1/orders/{id}:cancel", "post") in ops
    assert not any("ReserveStock" in json.dumps(item) for item in doc["paths"].values())


def test_grpc_clients_through_the_gateway_port(shop, m, gw):
    """grpcio over h2c to the gateway's port: unary, server streaming, the bearer token checked
    at the edge, statuses passed through, internal methods unreachable."""
    import grpc
    target = gw.removeprefix("http://")
    user = shop.token(str(uuid.uuid4()))
    admin = Client(shop, m, shop.token(str(uuid.uuid4()), roles=("admin",)))
    make_product(admin, m)
    make_product(admin, m)
    with grpc.insecure_channel(target) as ch:
        listed = ch.unary_unary("/shop.v1.CatalogService/ListProducts", request_serializer=lambda x: x.SerializeToString(),
                                response_deserializer=m.catalog.ListProductsResponse.FromString)(
            m.catalog.ListProductsRequest(page=m.common.PageRequest(page_size=2)), timeout=10)
        assert len(listed.products) == 2
        get_cart = ch.unary_unary("/shop.v1.CartService/GetCart", request_serializer=lambda x: x.SerializeToString(),
                                  response_deserializer=m.cart.Cart.FromString)
        with pytest.raises(grpc.RpcError) as e:
            get_cart(m.cart.GetCartRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        cart = get_cart(m.cart.GetCartRequest(), timeout=10, metadata=[("authorization", f"Bearer {user}")])
        assert cart.user_id
        # A forged identity header is dropped, not believed.
        with pytest.raises(grpc.RpcError) as e:
            get_cart(m.cart.GetCartRequest(), timeout=10, metadata=[("x-bazaar-user-id", str(uuid.uuid4()))])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/shop.v1.CatalogService/GetProduct", request_serializer=lambda x: x.SerializeToString(),
                           response_deserializer=m.catalog.Product.FromString)(m.catalog.GetProductRequest(id=str(uuid.uuid4())), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/shop.v1.CatalogService/ReserveStock", request_serializer=lambda x: x.SerializeToString(),
                           response_deserializer=m.catalog.ReserveStockResponse.FromString)(m.catalog.ReserveStockRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stream = ch.unary_stream("/shop.v1.NotificationsService/Subscribe", request_serializer=lambda x: x.SerializeToString(),
                                 response_deserializer=m.notifications.Notification.FromString)
        with pytest.raises(grpc.RpcError) as e:
            list(stream(m.notifications.SubscribeRequest(), timeout=1.5, metadata=[("authorization", f"Bearer {user}")]))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpc_web_binary_and_text_over_http1(shop, m, gw):
    make_product(Client(shop, m, shop.token(str(uuid.uuid4()), roles=("admin",))), m)
    req = m.catalog.ListProductsRequest(page=m.common.PageRequest(page_size=1)).SerializeToString()
    for text in (False, True):
        ctype, messages, trailers = grpc_web(gw, "/shop.v1.CatalogService/ListProducts", req, text=text)
        assert ctype.startswith("application/grpc-web")
        assert trailers["grpc-status"] == "0" and len(messages) == 1
        assert len(m.catalog.ListProductsResponse.FromString(messages[0]).products) == 1
    _, messages, trailers = grpc_web(gw, "/shop.v1.CartService/GetCart", m.cart.GetCartRequest().SerializeToString())
    assert trailers["grpc-status"] == "16" and not messages
    # Browsers preflight gRPC-Web calls.
    base = shop.start_gateway("gateway-web", env={"BAZAAR_CORS_ORIGINS": "*"})
    status, hdrs, _ = http(base, "OPTIONS", "/shop.v1.CatalogService/ListProducts",
                           headers={"origin": "https://app.example", "access-control-request-method": "POST"})
    # ListProducts has no side effects: Connect may GET it too; CreateProduct is POST only.
    assert status == 204 and hdrs["access-control-allow-methods"] == "GET, POST" and "x-grpc-web" in hdrs["access-control-allow-headers"]
    assert "connect-timeout-ms" in hdrs["access-control-allow-headers"]
    status, hdrs, _ = http(base, "OPTIONS", "/shop.v1.CatalogService/CreateProduct",
                           headers={"origin": "https://app.example", "access-control-request-method": "POST"})
    assert status == 204 and hdrs["access-control-allow-methods"] == "POST"


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(shop, m, gw):
    """schemathesis (PyPI) generates requests from /openapi.json for every operation, as an admin,
    against the real services: no 5xx, and every status, content type and body as documented.
    The endless streams (subscribe, watch) are left to the stream tests."""
    admin = shop.token(str(uuid.uuid4()), roles=("admin", "customer"), lifetime=3600)
    make_product(Client(shop, m, admin), m)
    import sys
    st = pathlib.Path(sys.executable).parent / "schemathesis"
    out = subprocess.run([str(st), "run", f"{gw}/openapi.json",
                          "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                          "--max-examples", "10", "--generation-deterministic", "--request-timeout", "20",
                          "--exclude-path-regex", ":(subscribe|watch|watchStock)$",
                          "-H", f"Authorization: Bearer {admin}"], capture_output=True, text=True, timeout=900,
                         cwd=shop.dir)  # its cache (.schemathesis/) goes there, not into the repository
    summary = out.stdout[-3000:]
    assert out.returncode == 0, summary
    assert "generated" in summary


def test_metrics_and_access_logs(shop):
    base = shop.start_gateway("gateway-observed", env={"BAZAAR_METRICS_PORT": "0", "BAZAAR_LOG_LEVEL": "info", "BAZAAR_ACCESS_LOG_SAMPLE": "1"})
    log = shop.log("gateway-observed")
    metrics_port = int(next(l for l in log.splitlines() if "metrics on port" in l).rsplit(" ", 1)[1])
    token = shop.token(str(uuid.uuid4()))
    for _ in range(3):
        assert http(base, "GET", f"/v1/products/{uuid.uuid4()}")[0] == 404
    assert http(base, "GET", "/v1/cart", token=token)[0] == 200
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert 'bazaar_http_requests_total{route="/v1/products/{id}",method="GET",code="404"} 3' in text
    assert 'bazaar_http_requests_total{route="/v1/cart",method="GET",code="200"} 1' in text
    assert "bazaar_http_request_duration_seconds_bucket" in text
    # Upstream calls are counted as client RPCs too.
    assert 'grpc_client_handled_total{grpc_type="unary",grpc_service="shop.v1.CartService",grpc_method="GetCart",grpc_code="OK"} 1' in text
    lines = [json.loads(l) for l in shop.log("gateway-observed").splitlines() if l.startswith("{") and '"http request"' in l]
    assert any(l["route"] == "/v1/cart" and l["status"] == 200 for l in lines)
    assert token not in shop.log("gateway-observed")


def test_es256_keys_from_configuration(shop, tmp_path):
    """A second issuer's P-256 key configured next to the shop's Ed25519 key (`kid=path`): its
    ES256 tokens (PyJWT) are accepted, others' refused, and each key only verifies its algorithm."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    idp, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "idp.pem"
    pub.write_bytes(idp.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    keys = f"{shop.dir / 'jwt' / 'jwt-pub.pem'},partner-idp={pub}"
    base = shop.start_gateway("gateway-es256", env={"BAZAAR_JWT_PUBLIC_KEY": keys})
    now = int(time.time())
    claims = {"sub": str(uuid.uuid4()), "iss": "bazaar", "aud": "bazaar", "iat": now, "exp": now + 300}
    assert http(base, "GET", "/v1/cart", token=pyjwt.encode(claims, idp, algorithm="ES256", headers={"kid": "partner-idp"}))[0] == 200
    assert http(base, "GET", "/v1/cart", token=pyjwt.encode(claims, idp, algorithm="ES256"))[0] == 200
    assert http(base, "GET", "/v1/cart", token=pyjwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "partner-idp"}))[0] == 401
    assert http(base, "GET", "/v1/cart", token=shop.token(claims["sub"]))[0] == 200  # the shop's own EdDSA tokens still work
    # ES384 is no configured key's algorithm.
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert http(base, "GET", "/v1/cart", token=pyjwt.encode(claims, p384, algorithm="ES384"))[0] == 401


def test_readiness_waits_for_the_upstreams_once_and_survives_an_outage(shop):
    """/readyz (the Kubernetes readiness probe) is 503 until every upstream has answered its
    health check once and its schema is in; after that, one service going away fails its own
    routes (kept from its last schema, answering 503 UNAVAILABLE) but keeps the gateway in its load
    balancer, so the other routes keep serving."""
    from mesh_fixtures import free_port
    cold = shop.start_gateway("gateway-cold", env={"BAZAAR_NOTIFICATIONS_TARGET": f"127.0.0.1:{free_port()}"},
                              schemas=[s for s in SERVICES if s != "notifications"])
    # Every other upstream is in (start_gateway waited for their schemas) and notifications has
    # been tried and found missing: still not ready.
    wait_for("the gateway to find notifications missing",
             lambda: any('"cannot read the upstream\'s schema yet"' in line and '"upstream":"notifications"' in line
                         for line in shop.log("gateway-cold").splitlines()),
             detail=lambda: shop.log("gateway-cold")[-2000:])
    assert http(cold, "GET", "/readyz")[0] == 503
    assert http(cold, "GET", "/healthz")[0] == 200

    base = shop.start_gateway("gateway-ready")
    wait_for("the gateway to be ready", lambda: http(base, "GET", "/readyz")[0] == 200)
    token = shop.token(str(uuid.uuid4()))
    shop.stop("notifications")
    try:
        # Once the gateway has seen the service go, its routes answer 503.
        wait_for("the gateway to fail the routes of the stopped service",
                 lambda: http(base, "GET", "/v1/notifications", token=token)[0] == 503)
        assert http(base, "GET", "/readyz")[0] == 200
        assert http(base, "GET", "/v1/cart", token=token)[0] == 200
    finally:
        shop.start("notifications")


def test_behind_a_trusted_proxy_each_client_gets_its_own_rate_limit(shop):
    """Behind an Ingress every request comes from the controller's address; with
    BAZAAR_TRUSTED_PROXIES the client address comes from X-Forwarded-For, so anonymous clients are
    limited one by one instead of all together. From an untrusted peer the header is ignored."""
    limits = {"BAZAAR_RATE_LIMIT": "1", "BAZAAR_RATE_BURST": "2"}
    behind = shop.start_gateway("gateway-behind-proxy", env={**limits, "BAZAAR_TRUSTED_PROXIES": "127.0.0.0/8, ::1"})

    def get(base, client):
        return http(base, "GET", "/v1/products?page.pageSize=1", headers={"x-forwarded-for": f"203.0.113.77, {client}"})[0]

    assert [get(behind, "198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert get(behind, "198.51.100.2") == 200  # another client, its own bucket
    direct = shop.start_gateway("gateway-no-proxy", env=limits)
    assert [get(direct, "198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert get(direct, "198.51.100.2") == 429  # the header is not believed: same peer, same bucket

    bad = subprocess.run([binary("bazaar"), "gateway", "--port", "0"], capture_output=True, text=True, timeout=30,
                         env={**shop.env("gateway"), "BAZAAR_TRUSTED_PROXIES": "10.0.0.0/8,ingress"})
    assert bad.returncode != 0 and "BAZAAR_TRUSTED_PROXIES" in bad.stderr and "ingress" in bad.stderr

"""One error model on every protocol: an error a service throws with google.rpc details reaches
grpcio (grpc-status-details-bin, read with grpcio-status and Google's own google.rpc classes),
gRPC-Web, Connect (the official client), REST (the google.rpc.Status body) and Server-Sent Events
and NDJSON (the stream's error) with the same code, message and details; and the field rules the
.proto files declare are checked before the handler, on every protocol, as BadRequest violations."""
import base64
import http.client as httpclient
import json
import struct
import threading
import urllib.parse
import uuid

import grpc
import pytest
from connectrpc.client import ConnectClientSync
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import abuse
from shop_clients import Client, http, make_product, new_customer

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO = "type.googleapis.com/google.rpc.ResourceInfo"


@pytest.fixture(scope="module")
def gw(shop):
    return shop.start_gateway("gateway-errors", env={"BAZAAR_RATE_LIMIT": "1000", "BAZAAR_RATE_BURST": "1000"})


def unpack(status):
    """A google.rpc.Status's details as comparable tuples, whatever carried them."""
    out = []
    for any_ in status.details:
        if any_.type_url == BAD_REQUEST:
            m = error_details_pb2.BadRequest()
            any_.Unpack(m)
            out.append(("BadRequest", tuple((v.field, v.reason, v.description) for v in m.field_violations)))
        elif any_.type_url == ERROR_INFO:
            m = error_details_pb2.ErrorInfo()
            any_.Unpack(m)
            out.append(("ErrorInfo", m.reason, m.domain, tuple(sorted(m.metadata.items()))))
        elif any_.type_url == RESOURCE_INFO:
            m = error_details_pb2.ResourceInfo()
            any_.Unpack(m)
            out.append(("ResourceInfo", m.resource_type, m.resource_name))
        else:
            out.append(("other", any_.type_url))
    return out


def from_json(body):
    """The same tuples from a google.rpc.Status in proto3 JSON (REST, SSE, NDJSON)."""
    out = []
    for d in body.get("details", []):
        t = d["@type"]
        if t == BAD_REQUEST:
            out.append(("BadRequest", tuple((v.get("field", ""), v.get("reason", ""), v.get("description", ""))
                                            for v in d["fieldViolations"])))
        elif t == ERROR_INFO:
            out.append(("ErrorInfo", d["reason"], d["domain"], tuple(sorted(d.get("metadata", {}).items()))))
        elif t == RESOURCE_INFO:
            out.append(("ResourceInfo", d["resourceType"], d["resourceName"]))
        else:
            out.append(("other", t))
    return out


def from_connect(error):
    """The same tuples from a ConnectError's details (each an Any with its bytes)."""
    status = status_pb2.Status()
    for d in error.details:
        status.details.add(type_url="type.googleapis.com/" + d.type_name, value=d.message_bytes)
    return unpack(status)


def grpc_call(target_or_channel, path, request, response_cls, token=None, stream=False):
    """grpcio; returns the google.rpc.Status of the failure (the call must fail)."""
    md = [("authorization", f"Bearer {token}")] if token else []
    ch = grpc.insecure_channel(target_or_channel) if isinstance(target_or_channel, str) else target_or_channel
    try:
        kind = ch.unary_stream if stream else ch.unary_unary
        call = kind(path, request_serializer=lambda x: x.SerializeToString(),
                    response_deserializer=response_cls.FromString)
        with pytest.raises(grpc.RpcError) as e:
            result = call(request, metadata=md, timeout=30)
            if stream:
                for _ in result:
                    pass
        status = rpc_status.from_call(e.value)
        assert status is not None, "no grpc-status-details-bin"
        assert status.code == e.value.code().value[0] and status.message == e.value.details()
        return status
    finally:
        if isinstance(target_or_channel, str):
            ch.close()


def grpc_web(gw, path, request, token=None):
    """A gRPC-Web call by hand: the trailers frame's grpc-status-details-bin, decoded."""
    u = urllib.parse.urlsplit(gw)
    c = httpclient.HTTPConnection(u.hostname, u.port, timeout=30)
    body = request.SerializeToString()
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    c.request("POST", path, body=b"\0" + struct.pack(">I", len(body)) + body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    trailers = {}
    while data:
        flags, n = data[0], struct.unpack(">I", data[1:5])[0]
        if flags & 0x80:
            for line in data[5:5 + n].decode().split("\r\n"):
                if line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        data = data[5 + n:]
    raw = trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    assert status.code == int(trailers["grpc-status"])
    return status


def connect_method(name, service, req, res, stream=StreamType.UNARY):
    return MethodInfo(name=name, service_name=f"shop.v1.{service}", input=req, output=res,
                      idempotency_level=IdempotencyLevel.UNKNOWN, stream_type=stream)


def connect_error(gw, method, request, codec, token=None):
    codec = google_protobuf_json_codec() if codec == "json" else google_protobuf_binary_codec()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with ConnectClientSync(gw, codec=codec) as c:
        with pytest.raises(ConnectError) as e:
            if method.stream_type == StreamType.SERVER_STREAM:
                for _ in c.execute_server_stream(request=request, method=method, headers=headers, timeout_ms=30000):
                    pass
            else:
                c.execute_unary(request=request, method=method, headers=headers, timeout_ms=30000)
    return e.value


def test_a_services_error_details_look_the_same_on_every_unary_protocol(shop, m, admin, gw):
    """The cart refuses an archived product with FAILED_PRECONDITION, a ResourceInfo naming it and
    an ErrorInfo (PRODUCT_NOT_SOLD): gRPC to the service and through the edge, gRPC-Web, Connect
    with both codecs and REST all show the same details."""
    product = make_product(admin, m)
    admin.call("catalog", "DeleteProduct", m.catalog.DeleteProductRequest(id=product.id),
               m.catalog.DeleteProductResponse)
    me = new_customer(shop, m)
    request = m.cart.AddItemRequest(product_id=product.id, quantity=1)
    expected = [("ResourceInfo", "shop.v1.Product", product.id),
                ("ErrorInfo", "PRODUCT_NOT_SOLD", "catalog.shop.bazaar", (("product_id", product.id),))]
    path = "/shop.v1.CartService/AddItem"

    direct = grpc_call(shop.channel("cart"), path, request, m.cart.Cart, token=me.token)
    assert direct.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert unpack(direct) == expected
    message = direct.message
    assert "no longer sold" in message

    edge = grpc_call(gw.removeprefix("http://"), path, request, m.cart.Cart, token=me.token)
    assert (edge.code, edge.message, unpack(edge)) == (direct.code, message, expected)

    web = grpc_web(gw, path, request, token=me.token)
    assert (web.code, web.message, unpack(web)) == (direct.code, message, expected)

    for codec in ("json", "proto"):
        e = connect_error(gw, connect_method("AddItem", "CartService", m.cart.AddItemRequest, m.cart.Cart),
                          request, codec, token=me.token)
        assert e.code.value == "failed_precondition" and e.message == message
        assert from_connect(e) == expected
        # The human-readable copy of each detail is there too.
        assert all(d.type_name.startswith("google.rpc.") for d in e.details)

    status, _, body = http(gw, "POST", "/v1/cart/items", {"productId": product.id, "quantity": 1}, token=me.token)
    assert status == 400 and body["code"] == direct.code and body["message"] == message
    assert from_json(body) == expected


def test_a_stream_ends_with_the_same_details_on_every_streaming_protocol(shop, m, admin, gw):
    """A stock watch ends when its product is archived: FAILED_PRECONDITION with the product's
    ResourceInfo and ErrorInfo, mid-stream, through grpcio, Connect, SSE and NDJSON alike."""
    product = make_product(admin, m, stock=3)
    expected = [("ResourceInfo", "shop.v1.Product", product.id),
                ("ErrorInfo", "PRODUCT_NOT_SOLD", "catalog.shop.bazaar", (("product_id", product.id),))]
    request = m.catalog.WatchStockRequest(product_ids=[product.id])
    results, started = {}, {}

    def watch_grpc():
        results["grpc"] = grpc_call(gw.removeprefix("http://"), "/shop.v1.CatalogService/WatchStock", request,
                                    m.catalog.StockLevel, stream=True)

    def watch_connect():
        results["connect"] = connect_error(
            gw, connect_method("WatchStock", "CatalogService", m.catalog.WatchStockRequest, m.catalog.StockLevel,
                               stream=StreamType.SERVER_STREAM), request, "json")

    def watch_http(accept):
        u = urllib.parse.urlsplit(gw)
        c = httpclient.HTTPConnection(u.hostname, u.port, timeout=60)
        c.request("GET", f"/v1/products:watchStock?productIds={product.id}", headers={"accept": accept})
        r = c.getresponse()
        lines = []
        for line in r:
            lines.append(line.decode().rstrip("\r\n"))
            if len(lines) == 1:
                started[accept] = True
        results[accept] = (r.status, lines)
        c.close()

    threads = [threading.Thread(target=watch_grpc), threading.Thread(target=watch_connect),
               threading.Thread(target=watch_http, args=("text/event-stream",)),
               threading.Thread(target=watch_http, args=("application/x-ndjson",))]
    for t in threads:
        t.start()
    # Archive only once both HTTP streams have their first message: the error is then mid-stream.
    abuse.wait_for("both HTTP streams to start", lambda: len(started) == 2)
    admin.call("catalog", "DeleteProduct", m.catalog.DeleteProductRequest(id=product.id),
               m.catalog.DeleteProductResponse)
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert results["grpc"].code == code and unpack(results["grpc"]) == expected
    message = results["grpc"].message
    assert results["connect"].code.value == "failed_precondition" and results["connect"].message == message
    assert from_connect(results["connect"]) == expected

    status, sse = results["text/event-stream"]
    assert status == 200 and "event: error" in sse
    error = json.loads(sse[sse.index("event: error") + 1].removeprefix("data: "))
    assert error["code"] == code and error["message"] == message and from_json(error) == expected

    status, nd = results["application/x-ndjson"]
    assert status == 200
    error = [json.loads(l)["error"] for l in nd if l.strip() and "error" in json.loads(l)][0]
    assert error["code"] == code and error["message"] == message and from_json(error) == expected


# Requests that break the rules the .proto files declare, and the violations each must produce:
# (field, reason) in field order. Checked by generated code in the service, before the handler.
ADDRESS = {"recipient": "Ada", "lines": ["1 Main St"], "city": "Paris", "postal_code": "75001", "country_code": "FR"}
RULE_CASES = [
    ("required and pattern", {"shipping_address": dict(ADDRESS, recipient=" ", country_code="fr")},
     [("shipping_address.recipient", "REQUIRED"), ("shipping_address.country_code", "PATTERN_MISMATCH")]),
    ("length and line breaks", {"shipping_address": dict(ADDRESS, city="x" * 101, postal_code="75\n001")},
     [("shipping_address.city", "STRING_TOO_LONG"), ("shipping_address.postal_code", "CONTROL_CHARACTERS")]),
    ("list size and element length", {"shipping_address": dict(ADDRESS, lines=["a", "", "c", "d", "e", "f"])},
     [("shipping_address.lines", "TOO_MANY_ITEMS"), ("shipping_address.lines[1]", "STRING_TOO_SHORT")]),
    ("required message", {}, [("shipping_address", "REQUIRED")]),
    ("no request id", {"request_id": "", "shipping_address": ADDRESS}, [("request_id", "REQUIRED")]),
]


def place_request(m, fields):
    r = m.orders.PlaceOrderRequest(request_id=fields.get("request_id", str(uuid.uuid4())))
    if "shipping_address" in fields:
        r.shipping_address.CopyFrom(m.common.Address(**fields["shipping_address"]))
    return r


def camel(d):
    out = {}
    for k, v in d.items():
        parts = k.split("_")
        out[parts[0] + "".join(p.title() for p in parts[1:])] = camel(v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize("name,fields,violations", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_the_schemas_rules_refuse_a_request_the_same_way_on_every_protocol(shop, m, gw, name, fields, violations):
    uid = str(uuid.uuid4())
    me = Client(shop, m, shop.token(uid))
    request = place_request(m, fields)
    path = "/shop.v1.OrdersService/PlaceOrder"
    direct = grpc_call(shop.channel("orders"), path, request, m.orders.Order, token=me.token)
    assert direct.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    [(kind, got)] = unpack(direct)
    assert kind == "BadRequest" and [(f, r) for f, r, _ in got] == violations
    # Every description names its field, and the message repeats them.
    assert all(d.startswith(f) for f, _, d in got) and got[0][2] in direct.message

    web = grpc_web(gw, path, request, token=me.token)
    assert unpack(web) == unpack(direct) and web.message == direct.message
    e = connect_error(gw, connect_method("PlaceOrder", "OrdersService", m.orders.PlaceOrderRequest, m.orders.Order),
                      request, "proto", token=me.token)
    assert e.code.value == "invalid_argument" and from_connect(e) == unpack(direct)
    body = camel({k: v for k, v in fields.items()})
    body.setdefault("requestId", str(uuid.uuid4()))
    status, _, answer = http(gw, "POST", "/v1/orders", body, token=me.token)
    assert status == 400 and from_json(answer) == unpack(direct)
    # Nothing was placed.
    assert shop.sql("orders", f"SELECT count(*) FROM orders WHERE user_id = '{uid}'") == "0"


def test_a_valid_request_passes_the_rules_and_numbers_are_checked_too(shop, m, admin, gw):
    """The same rules let good values through, and bound numbers and list sizes: a quantity below
    the schema's minimum is refused before the cart is touched; an empty stock watch is refused."""
    product = make_product(admin, m, stock=5)
    me = new_customer(shop, m)
    status, _, body = http(gw, "POST", "/v1/cart/items", {"productId": product.id, "quantity": 0}, token=me.token)
    assert status == 400 and [(v["field"], v["reason"]) for v in body["details"][0]["fieldViolations"]] == \
        [("quantity", "NUMBER_TOO_SMALL")]
    status, _, body = http(gw, "POST", "/v1/cart/items", {"productId": product.id, "quantity": 2}, token=me.token)
    assert status == 200 and body["items"][0]["quantity"] in ("2", 2)
    status, _, body = http(gw, "GET", "/v1/products:watchStock")
    assert status == 400 and body["details"][0]["fieldViolations"][0]["reason"] == "TOO_FEW_ITEMS"
    status, _, body = http(gw, "GET", "/v1/products?minPriceMinor=-1&query=" + urllib.parse.quote("a\nb"))
    assert status == 400 and [(v["field"], v["reason"]) for v in body["details"][0]["fieldViolations"]] == \
        [("query", "CONTROL_CHARACTERS"), ("min_price_minor", "NUMBER_TOO_SMALL")]


def test_the_edges_own_refusals_carry_details_too(shop, m):
    """The edge's rate limit answers with RetryInfo and ErrorInfo (RATE_LIMITED) beside Retry-After."""
    gw = shop.start_gateway("gateway-errors-limited", env={"BAZAAR_RATE_LIMIT": "1", "BAZAAR_RATE_BURST": "1"})
    statuses = [http(gw, "GET", "/v1/products?page.pageSize=1") for _ in range(3)]
    limited = [s for s in statuses if s[0] == 429]
    assert limited, [s[0] for s in statuses]
    _, headers, body = limited[0]
    types = [d["@type"] for d in body["details"]]
    assert types == [ERROR_INFO, "type.googleapis.com/google.rpc.RetryInfo"]
    assert body["details"][0]["reason"] == "RATE_LIMITED"
    retry = body["details"][1]["retryDelay"]
    assert retry.endswith("s") and int(float(retry[:-1])) == int({k.lower(): v for k, v in headers.items()}["retry-after"])


# More rules, each through gRPC (to the service), gRPC-Web, Connect and REST: numbers, enums
# (defined_only), list sizes (max_items) and a valid request beside each invalid one.
# (service, method, request fields, REST method and path, violations; [] for a valid request)
MORE_RULES = [
    ("cart", "CartService", "AddItem", "AddItemRequest", "Cart", {"quantity": 0}, ("POST", "/v1/cart/items"),
     [("quantity", "NUMBER_TOO_SMALL")]),
    ("catalog", "CatalogService", "ListProducts", "ListProductsRequest", "ListProductsResponse", {"sort": 99},
     ("GET", "/v1/products?sort=99"), [("sort", "ENUM_UNDEFINED")]),
    ("catalog", "CatalogService", "ListProducts", "ListProductsRequest", "ListProductsResponse",
     {"min_price_minor": -5, "query": "x" * 201}, ("GET", "/v1/products?minPriceMinor=-5&query=" + "x" * 201),
     [("query", "STRING_TOO_LONG"), ("min_price_minor", "NUMBER_TOO_SMALL")]),
    ("catalog", "CatalogService", "BatchGetProducts", "BatchGetProductsRequest", "BatchGetProductsResponse",
     {"ids": [str(uuid.UUID(int=i)) for i in range(101)]},
     ("GET", "/v1/products:batchGet?" + "&".join(f"ids={uuid.UUID(int=i)}" for i in range(101))),
     [("ids", "TOO_MANY_ITEMS")]),
    ("catalog", "CatalogService", "ListProducts", "ListProductsRequest", "ListProductsResponse",
     {"min_price_minor": 0, "query": "tea"}, ("GET", "/v1/products?query=tea"), []),
]


@pytest.mark.parametrize("case", MORE_RULES, ids=[f"{c[2]}-{'-'.join(v[1] for v in c[7]) or 'valid'}" for c in MORE_RULES])
def test_number_enum_and_list_rules_on_every_protocol(shop, m, gw, case):
    service, svc, method, req_name, res_name, fields, (verb, rest_path), violations = case
    module = getattr(m, service)
    request = getattr(module, req_name)(**{k: v for k, v in fields.items()})
    response_cls = getattr(module, res_name)
    me = new_customer(shop, m)
    path = f"/shop.v1.{svc}/{method}"
    connect_m = connect_method(method, svc, getattr(module, req_name), response_cls)
    expected = [(f, r) for f, r in violations]
    if not violations:
        shop.channel(service)  # the valid request: every protocol answers it
        assert me.call(service, method, request, response_cls) is not None
        assert http(gw, verb, rest_path, token=me.token)[0] == 200
        return
    direct = grpc_call(shop.channel(service), path, request, response_cls, token=me.token)
    [(kind, got)] = unpack(direct)
    assert kind == "BadRequest" and [(f, r) for f, r, _ in got] == expected
    assert direct.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    web = grpc_web(gw, path, request, token=me.token)
    assert unpack(web) == unpack(direct)
    e = connect_error(gw, connect_m, request, "json", token=me.token)
    assert e.code.value == "invalid_argument" and from_connect(e) == unpack(direct)
    body = {"productId": str(uuid.uuid4()), "quantity": 0} if method == "AddItem" else None
    status, _, answer = http(gw, verb, rest_path, body, token=me.token)
    assert status == 400 and from_json(answer) == unpack(direct)

"""One thread per call within each process: the traces of real calls show where each step ran.

Every span records the kernel id of the thread it started on (`thread.id`, with `thread.name`
for an event loop) and the one it ended on (`bazaar.thread.end.id`). A REST call through the
gateway to catalog (which reads PostgreSQL), and a REST call to cart (which calls catalog over
the mesh and writes Redis), must show, inside each process, every step on one loop thread: the
gateway's HTTP span and its upstream call; the service's server span, its database statements and
its outbound call. Client spans (calls, statements) also record the thread their connection's I/O
ran on (`bazaar.io.thread.id`), so a connection living on another loop shows too. A hop to another thread (a channel's own loop, a pool's own loop, the global
executor) would show as a second id."""
import json
import pathlib
import subprocess
import sys
import uuid

import pytest

from mesh_fixtures import free_port
from shop_clients import http
from shop_fixtures import Shop
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "Tests" / "Interop" / "otlp_collector.py"


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one-loop")
    port = free_port()
    out = workdir / "spans.jsonl"
    collector = subprocess.Popen([sys.executable, str(COLLECTOR), str(port), str(out)], stdout=subprocess.PIPE, text=True)
    assert "listening" in collector.stdout.readline()
    otel = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    shop = Shop(workdir, env={"catalog": otel, "cart": otel, "orders": otel})
    try:
        gw = shop.start_gateway("gateway-traced", env={**otel, "BAZAAR_RATE_LIMIT": "1000", "BAZAAR_RATE_BURST": "1000"})
        yield shop, gw, out
    finally:
        shop.close()
        collector.terminate()
        collector.wait(timeout=10)


def threads(span):
    """The threads a span's work ran on: where it started and ended and, for a call or a
    statement, where its connection's I/O ran."""
    a = span["attributes"]
    ids = {int(a["thread.id"]["intValue"]), int(a["bazaar.thread.end.id"]["intValue"])}
    if "bazaar.io.thread.id" in a:
        ids.add(int(a["bazaar.io.thread.id"]["intValue"]))
    return ids


def assert_one_loop(spans, service):
    mine = [s for s in spans if s["resource"]["service.name"] == service]
    assert mine, f"no spans from {service}"
    steps = [(s["name"], s["kind"], sorted(threads(s)), s["attributes"].get("thread.name")) for s in mine]
    seen = set().union(*(threads(s) for s in mine))
    assert len(seen) == 1, f"{service} ran one call on {len(seen)} threads: {steps}"
    for s in mine:
        name = s["attributes"].get("thread.name", {}).get("stringValue", "")
        assert name.startswith("bazaar-loop-"), f"{service}: {s['name']} ran off the event loops: {steps}"
    clients = [s for s in mine if s["kind"] == "SPAN_KIND_CLIENT"]
    assert all("bazaar.io.thread.id" in s["attributes"] for s in clients), f"{service}: a client span without its I/O thread: {steps}"


def test_a_rest_read_stays_on_one_loop_in_each_process(traced):
    shop, gw, out = traced
    admin = shop.token(str(uuid.uuid4()), roles=("admin",))
    tag = uuid.uuid4().hex[:6]
    status, _, product = http(gw, "POST", "/v1/products", {"sku": f"LOOP-{tag}", "name": f"Loop lamp {tag}", "stock": "5",
                                                          "price": {"currency_code": "EUR", "amountMinor": 1200}}, token=admin)
    assert status == 201, product
    # A few reads: the first also opens catalog's database connection (on the calling loop).
    for _ in range(3):
        status, _, body = http(gw, "GET", f"/v1/products/{product['id']}")
        assert status == 200 and body["name"] == f"Loop lamp {tag}"
    spans = find_trace(out, lambda s: s["name"] == "GET /v1/products/{id}", count=3)
    gateway = [s for s in spans if s["resource"]["service.name"] == "gateway"]
    catalog = [s for s in spans if s["resource"]["service.name"] == "catalog"]
    assert {s["kind"] for s in gateway} == {"SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"}, gateway
    assert any(s["kind"] == "SPAN_KIND_SERVER" for s in catalog), catalog
    database = [s for s in catalog if s["attributes"].get("db.system.name") == {"stringValue": "postgresql"}]
    assert database, f"catalog read no database rows in this call: {catalog}"
    assert all(s["attributes"]["db.query.text"]["stringValue"].lstrip().upper().startswith("SELECT") for s in database)
    assert_one_loop(spans, "gateway")
    assert_one_loop(spans, "catalog")


def test_a_call_to_another_service_stays_on_one_loop(traced):
    shop, gw, out = traced
    admin = shop.token(str(uuid.uuid4()), roles=("admin",))
    me = shop.token(str(uuid.uuid4()))
    tag = uuid.uuid4().hex[:6]
    status, _, product = http(gw, "POST", "/v1/products", {"sku": f"LOOP2-{tag}", "name": f"Loop mug {tag}", "stock": "50",
                                                          "price": {"currency_code": "EUR", "amountMinor": 800}}, token=admin)
    assert status == 201, product
    for _ in range(3):
        status, _, cart = http(gw, "POST", "/v1/cart/items", {"productId": product["id"], "quantity": 1}, token=me)
        assert status == 200, cart
    spans = find_trace(out, lambda s: s["name"] == "POST /v1/cart/items", count=3,
                       complete=lambda spans: {("cart", "SPAN_KIND_SERVER"), ("cart", "SPAN_KIND_CLIENT"),
                                               ("catalog", "SPAN_KIND_SERVER")}
                       <= {(s["resource"]["service.name"], s["kind"]) for s in spans})
    cart_client = [s for s in spans if s["resource"]["service.name"] == "cart" and s["kind"] == "SPAN_KIND_CLIENT"]
    assert cart_client and all(s["attributes"]["server.address"] == {"stringValue": "catalog"} for s in cart_client)
    assert_one_loop(spans, "gateway")
    assert_one_loop(spans, "cart")
    assert_one_loop(spans, "catalog")


def test_a_checkout_stays_on_one_loop(traced):
    """The checkout saga runs detached from its handler (it must finish even if the caller goes
    away), yet on the handler's loop: its statements and its calls to cart and catalog too."""
    shop, gw, out = traced
    admin = shop.token(str(uuid.uuid4()), roles=("admin",))
    tag = uuid.uuid4().hex[:6]
    status, _, product = http(gw, "POST", "/v1/products", {"sku": f"LOOP3-{tag}", "name": f"Loop jug {tag}", "stock": "50",
                                                          "price": {"currency_code": "EUR", "amountMinor": 900}}, token=admin)
    assert status == 201, product
    address = {"recipient": "Ada", "lines": ["1 Main St"], "city": "London", "postalCode": "N1 9GU", "countryCode": "GB"}
    for n in range(3):
        me = shop.token(str(uuid.uuid4()))
        status, _, cart = http(gw, "POST", "/v1/cart/items", {"productId": product["id"], "quantity": 1}, token=me)
        assert status == 200, cart
        status, _, order = http(gw, "POST", "/v1/orders", {"requestId": f"loop-{tag}-{n}", "shippingAddress": address}, token=me)
        assert status in (200, 201) and order["status"] == "ORDER_STATUS_PAID", order
    spans = find_trace(out, lambda s: s["name"] == "POST /v1/orders", count=3,
                       complete=lambda spans: {("orders", "SPAN_KIND_SERVER"), ("catalog", "SPAN_KIND_SERVER"),
                                               ("cart", "SPAN_KIND_SERVER")}
                       <= {(s["resource"]["service.name"], s["kind"]) for s in spans})
    orders = [s for s in spans if s["resource"]["service.name"] == "orders"]
    assert any(s["attributes"].get("db.system.name") for s in orders), orders
    assert {s["attributes"]["server.address"]["stringValue"] for s in orders if s["kind"] == "SPAN_KIND_CLIENT"
            and "server.address" in s["attributes"]} >= {"cart", "catalog"}
    for service in ("gateway", "orders", "cart", "catalog"):
        assert_one_loop(spans, service)


def find_trace(out, is_root, count, complete=None):
    """The last of `count` traces whose gateway span satisfies `is_root`, once it is complete: the
    earlier ones warm connections up (each loop's first call to a peer may still find its own
    connection being made)."""
    spans = []

    def arrived():
        nonlocal spans
        # Whole lines only: the collector may be writing one now.
        every = [json.loads(line) for line in out.read_text().split("\n")[:-1]] if out.exists() else []
        roots = sorted((s for s in every if s["resource"]["service.name"] == "gateway" and s["kind"] == "SPAN_KIND_SERVER"
                        and is_root(s)), key=lambda s: int(s["start_time_unix_nano"]))
        if len(roots) >= count:
            trace = roots[count - 1]["trace_id"]
            spans = [s for s in every if s["trace_id"] == trace]
            services = {s["resource"]["service.name"] for s in spans}
            if {"gateway", "catalog"} <= services and (complete is None or complete(spans)):
                return spans
        return None
    return wait_for("the trace to arrive complete", arrived, detail=lambda: json.dumps(spans, indent=1))

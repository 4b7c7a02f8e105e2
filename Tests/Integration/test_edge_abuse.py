"""The attacks of issue 15 as tests, against the real gateway and the real services: each asserts
a bound (memory, connections, counts, statuses), never a duration. Timeouts in the gateways
started here are short so that the events come soon; every wait ends at the event itself and has
a generous guard only against a hang."""
import base64
import json
import resource
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import grpc
import pytest

from abuse import (HANG_GUARD, closed_by_peer, connect, free_port, http_get, metric, open_fds, read_response, shed,
                   status_kb, wait_for)
from rpc_fixtures import binary
from shop_clients import Client, grpc_web, http, make_product, new_customer

C = grpc.StatusCode


def start(shop, name, tls=False, preexec_fn=None, **env):
    """A gateway of its own, with metrics on a port of their own; (port, metrics port, pid)."""
    mport = free_port()
    settings = {"BAZAAR_METRICS_PORT": str(mport), **{f"BAZAAR_{k}": str(v) for k, v in env.items()}}
    base = shop.start_gateway(name, env=settings, tls=tls, preexec_fn=preexec_fn)
    return int(base.rsplit(":", 1)[1]), mport, shop.procs[name].pid


# 1. Pipelining amplification.

def test_a_pipelined_flood_that_never_reads_holds_bounded_memory(shop):
    port, mport, pid = start(shop, "gw-pipeline", WRITE_TIMEOUT="3s")
    before_kb = status_kb(pid, "VmRSS")
    attacker = connect(port, rcvbuf=4096, timeout=10)
    # A small, fixed send buffer: what the gateway does not read stays in this process.
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    sent, stopped = 0, None
    try:
        for _ in range(100_000):
            attacker.sendall(request)
            sent += 1
    except (socket.timeout, BrokenPipeError, ConnectionResetError) as e:
        stopped = e
    # The gateway stopped reading (or cut the client off) long before the flood was in.
    assert stopped is not None and sent < 100_000, f"all {sent} pipelined requests were read"
    # Everyone else is served meanwhile.
    assert http_get(port, "/healthz") == 200
    # The client that reads nothing is cut off by the write timeout.
    wait_for("the write-stall timeout", lambda: shed(mport, "write_timeout") >= 1)
    peak_kb = status_kb(pid, "VmHWM")
    assert peak_kb - before_kb < 64 * 1024, f"peak RSS {peak_kb // 1024} MiB, {before_kb // 1024} MiB before the attack"
    answered = metric(mport, "bazaar_http_requests_total", route="/openapi.json")
    assert answered < 200, f"{answered} pipelined requests were answered into a closed window"
    attacker.close()


# 2. Every phase has its timeout; connections are capped per process and per address.

def test_stalled_headers_bodies_and_silent_connections_are_closed(shop):
    port, mport, _ = start(shop, "gw-stall", HEADER_TIMEOUT="2s", BODY_TIMEOUT="2s")
    body_stalled = []
    for _ in range(25):
        s = connect(port, timeout=HANG_GUARD)
        s.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        body_stalled.append(s)
    header_stalled = []
    for _ in range(20):
        s = connect(port, timeout=HANG_GUARD)
        s.sendall(b"GET /v1/products HTTP/1.1\r\nHost: x\r\n")
        header_stalled.append(s)
    silent = [connect(port, timeout=HANG_GUARD) for _ in range(5)]
    assert http_get(port, "/healthz") == 200
    for s in body_stalled:
        answer = read_response(s)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        s.close()
    for s in header_stalled + silent:
        answer = read_response(s)  # the peer closes: this returns
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        s.close()
    assert shed(mport, "body_timeout") >= 25
    assert shed(mport, "header_timeout") >= 25
    assert http_get(port, "/healthz") == 200


@pytest.mark.parametrize("limit", ["MAX_CONNECTIONS_PER_CLIENT", "MAX_CONNECTIONS"])
def test_connections_beyond_the_caps_are_refused_and_the_rest_served(shop, limit):
    port, mport, _ = start(shop, f"gw-cap-{limit.lower()}", HEADER_TIMEOUT="120s", **{limit: 10})
    held = [connect(port, timeout=HANG_GUARD) for _ in range(20)]
    reason = "address_limit" if limit == "MAX_CONNECTIONS_PER_CLIENT" else "process_limit"
    wait_for("the refusals", lambda: shed(mport, reason) >= 10)
    refused = [s for s in held if closed_by_peer(s)]
    assert len(refused) == 10
    admitted = [s for s in held if s not in refused]
    # The admitted ones are served.
    admitted[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert admitted[0].recv(4096).startswith(b"HTTP/1.1 200 ")
    for s in held:
        s.close()
    # Places come back as connections close.
    wait_for("a place for a new connection", lambda: http_get(port, "/healthz") == 200)


def test_a_tls_handshake_that_never_comes_is_closed(shop):
    port, mport, _ = start(shop, "gw-tls-stall", tls=True, HANDSHAKE_TIMEOUT="2s")
    s = connect(port, timeout=HANG_GUARD)
    assert read_response(s) == b""
    s.close()
    assert shed(mport, "handshake_timeout") >= 1


# 10. EMFILE: the listener backs off instead of spinning, and keeps serving what it has.

def test_out_of_descriptors_the_gateway_backs_off_and_recovers(shop):
    port, mport, pid = start(shop, "gw-emfile")
    keep = connect(port, timeout=HANG_GUARD)
    keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert keep.recv(4096).startswith(b"HTTP/1.1 200 ")
    limit = open_fds(pid) + 6
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    flood = [connect(port, timeout=HANG_GUARD) for _ in range(40)]
    wait_for("the descriptor table to fill", lambda: open_fds(pid) >= limit)
    # The connection it has keeps being served while new ones wait in the backlog.
    keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert keep.recv(4096).startswith(b"HTTP/1.1 200 ")
    for s in flood:
        s.close()
    wait_for("a new connection to be served", lambda: http_get(port, "/healthz") == 200)
    failures = shed(mport, "accept_failed")
    # A spinning loop counts millions; backing off counts a few per second.
    assert 1 <= failures < 1000, failures
    keep.close()


# 3. Every protocol at the edge draws from the same rate-limit buckets.

def test_grpc_and_grpc_web_share_the_rest_rate_limit(shop, m):
    port, _, _ = start(shop, "gw-limits", RATE_LIMIT=1, RATE_BURST=5)
    req = m.catalog.ListProductsRequest(page=m.common.PageRequest(page_size=1)).SerializeToString()
    trailers = [grpc_web(f"http://127.0.0.1:{port}", "/shop.v1.CatalogService/ListProducts", req)[2] for _ in range(20)]
    statuses = [t["grpc-status"] for t in trailers]
    assert statuses[:5] == ["0"] * 5 and statuses.count("8") >= 10, statuses
    limited = next(t for t in trailers if t["grpc-status"] == "8")
    assert int(limited["grpc-retry-pushback-ms"]) >= 1000
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary("/shop.v1.CatalogService/ListProducts", request_serializer=lambda x: x,
                              response_deserializer=lambda x: x)
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=10)
        assert e.value.code() == C.RESOURCE_EXHAUSTED
        assert dict(e.value.trailing_metadata() or ())["grpc-retry-pushback-ms"]
    # ... and the REST bucket is the same one.
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/products?page.pageSize=1", timeout=15)
        status = 200
    except urllib.error.HTTPError as err:
        status = err.code
    assert status == 429


# 4. Data never crashes a service.

def test_a_price_that_overflows_fails_the_call_and_never_the_cart(shop, m, admin):
    overflowing = m.catalog.Product(sku=f"T-{uuid.uuid4().hex[:12]}", name="Priceless", stock=10, categories=["test"],
                                    price=m.common.Money(currency_code="EUR", amount_minor=2**63 - 1))
    assert admin.code("catalog", "CreateProduct", m.catalog.CreateProductRequest(product=overflowing), m.catalog.Product) == C.INVALID_ARGUMENT
    # A price from before the bound (written straight to the database) still cannot crash anything.
    product = make_product(admin, m, stock=10)
    shop.sql("catalog", f"UPDATE products SET price_minor = {2**63 - 1} WHERE id = '{product.id}'")
    cart_pid = shop.procs["cart"].pid
    me = new_customer(shop, m)
    assert me.code("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=2), m.cart.Cart) == C.OUT_OF_RANGE
    for _ in range(3):
        assert me.code("cart", "GetCart", m.cart.GetCartRequest(), m.cart.Cart) == C.OUT_OF_RANGE
    req = m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address())
    assert me.code("orders", "PlaceOrder", req, m.orders.Order) == C.OUT_OF_RANGE
    assert shop.procs["cart"].poll() is None and shop.procs["cart"].pid == cart_pid
    assert shop.procs["orders"].poll() is None
    # The stock reserved for the refused checkout went back.
    assert int(shop.sql("catalog", f"SELECT stock FROM products WHERE id = '{product.id}'")) == 10
    # Everyone else's cart works; the customer can remove the line and carry on.
    other = new_customer(shop, m)
    fine = make_product(admin, m)
    assert other.call("cart", "AddItem", m.cart.AddItemRequest(product_id=fine.id, quantity=2), m.cart.Cart).subtotal.amount_minor == 2000
    me.call("cart", "RemoveItem", m.cart.RemoveItemRequest(product_id=product.id), m.cart.Cart)
    assert me.call("cart", "GetCart", m.cart.GetCartRequest(), m.cart.Cart).items == []


def test_forged_page_tokens_are_invalid_argument(shop, m):
    me = new_customer(shop, m)

    def token(*parts):
        return base64.urlsafe_b64encode("\n".join(("p1",) + parts).encode()).decode().rstrip("=")

    relevance = m.catalog.ProductSort.Value("PRODUCT_SORT_RELEVANCE")
    newest = m.catalog.ProductSort.Value("PRODUCT_SORT_NEWEST")
    forged = [(relevance, "lamp", token(str(relevance), "-5", "")),
              (relevance, "lamp", token(str(relevance), str(2**63 - 1), "")),
              (newest, "", token(str(newest), "not a time", str(uuid.uuid4()))),
              (newest, "", token(str(newest), "99999-99-99 99:99:99+00", str(uuid.uuid4())))]
    for sort, query, page_token in forged:
        req = m.catalog.ListProductsRequest(query=query, sort=sort, page=m.common.PageRequest(page_size=5, page_token=page_token))
        assert me.code("catalog", "ListProducts", req, m.catalog.ListProductsResponse) == C.INVALID_ARGUMENT, page_token


# 5. The production profile refuses test-only components.

def test_the_production_profile_refuses_the_test_payment_provider(shop):
    env = {**shop.env("orders"), "BAZAAR_ENV": "production"}
    run = subprocess.run([binary("bazaar"), "serve", "orders", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 1 and "BAZAAR_PAYMENT_PROVIDER is required" in run.stderr, run.stderr[-2000:]
    # As the prod overlay and the chart configure it.
    env["BAZAAR_PAYMENT_PROVIDER"] = "test"
    run = subprocess.run([binary("bazaar"), "serve", "orders", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 1
    refusal = [line for line in run.stderr.splitlines() if "cannot start" in line]
    assert len(refusal) == 1 and "BAZAAR_ALLOW_TEST_PAYMENTS" in refusal[0], run.stderr[-2000:]
    env["BAZAAR_PAYMENT_PROVIDER"] = "stripe"
    run = subprocess.run([binary("bazaar"), "serve", "orders", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 1 and "BAZAAR_PAYMENT_PROVIDER='stripe'" in run.stderr
    env.update({"BAZAAR_ENV": "staging"})
    run = subprocess.run([binary("bazaar"), "serve", "orders", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 1 and "BAZAAR_ENV='staging'" in run.stderr


# 13. Control characters in emails and other one-line fields.

@pytest.mark.parametrize("email", ["customer@bazaar.lo\ncal", "customer@bazaar.local\r\nRCPT TO:<x@evil.example>",
                                   "a b@example.com", "<a@example.com>", "a@example", "a..b@example.com", "a@-example.com",
                                   "ä@example.com", "a@example.com\u2028"])
def test_emails_with_line_breaks_or_junk_are_refused(shop, m, email):
    me = Client(shop, m)
    req = m.accounts.RegisterRequest(email=email, password="a long password")
    assert me.code("accounts", "Register", req, m.accounts.User) == C.INVALID_ARGUMENT


def test_one_line_fields_refuse_line_breaks(shop, m, admin):
    me = Client(shop, m)
    req = m.accounts.RegisterRequest(email=f"{uuid.uuid4().hex[:10]}@example.com", password="a long password", display_name="Eve\nAdmin")
    assert me.code("accounts", "Register", req, m.accounts.User) == C.INVALID_ARGUMENT
    bad = m.catalog.Product(sku=f"T-{uuid.uuid4().hex[:12]}", name="Two\nlines", stock=1, categories=["test"],
                            price=m.common.Money(currency_code="EUR", amount_minor=100))
    assert admin.code("catalog", "CreateProduct", m.catalog.CreateProductRequest(product=bad), m.catalog.Product) == C.INVALID_ARGUMENT
    # A description may hold paragraphs.
    good = make_product(admin, m, description="First paragraph.\n\nSecond paragraph.")
    assert "\n\n" in good.description


def test_rest_errors_name_the_limit(shop):
    port, _, _ = start(shop, "gw-json")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/users", data=json.dumps({"email": "x@y.lo\ncal", "password": "a long password"}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=15)
    assert e.value.code == 400 and "email" in json.loads(e.value.read())["message"]


# 7 and 8. Password checks: per-address throttling that never locks the owner out, and a bounded
# argon2 queue that sheds.

def test_guessing_at_an_account_throttles_the_guesser_never_the_owner(shop):
    port, _, _ = start(shop, "gw-lockout", TRUSTED_PROXIES="127.0.0.1/32", AUTH_RATE_LIMIT=1000, AUTH_RATE_BURST=1000)
    base = f"http://127.0.0.1:{port}"
    email, password = f"owner-{uuid.uuid4().hex[:8]}@example.com", "the owner's password"
    assert http(base, "POST", "/v1/users", {"email": email, "password": password})[0] == 201
    attacker, owner = {"x-forwarded-for": "203.0.113.7"}, {"x-forwarded-for": "198.51.100.9"}
    statuses = [http(base, "POST", "/v1/sessions", {"email": email, "password": f"guess {n}"}, headers=attacker)[0] for n in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
    # During the attack the owner signs in from their own address with the right password ...
    status, _, session = http(base, "POST", "/v1/sessions", {"email": email, "password": password}, headers=owner)
    assert status == 201 and session["accessToken"]
    # ... while the guesser's address waits, even with the right password.
    assert http(base, "POST", "/v1/sessions", {"email": email, "password": password}, headers=attacker)[0] == 429
    # Guessing across many accounts from one address throttles that address.
    stuffer = {"x-forwarded-for": "203.0.113.99"}
    spread = [http(base, "POST", "/v1/sessions", {"email": f"victim{n}@example.com", "password": "password1"}, headers=stuffer)[0]
              for n in range(32)]
    assert spread[:30] == [401] * 30 and spread[-1] == 429, spread
    assert http(base, "POST", "/v1/sessions", {"email": email, "password": password}, headers=owner)[0] == 201


def test_a_flood_of_password_checks_is_shed_not_queued(shop, m):
    mport = free_port()
    shop.start("accounts", replica="accounts-argon", env={"BAZAAR_ARGON2_QUEUE": "2", "BAZAAR_METRICS_PORT": str(mport)})
    port = int(shop.log("accounts-argon").split("listening on ")[-1].split()[0].rsplit(":", 1)[1])
    creds = grpc.ssl_channel_credentials(root_certificates=(shop.certs / "ca.pem").read_bytes(),
                                         private_key=(shop.certs / "client-key.pem").read_bytes(),
                                         certificate_chain=(shop.certs / "client.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        login = ch.unary_unary("/shop.v1.AccountsService/Login", request_serializer=lambda x: x.SerializeToString(),
                               response_deserializer=m.accounts.Session.FromString)
        calls = [login.future(m.accounts.LoginRequest(email=f"nobody{n}@example.com", password="password1"), timeout=HANG_GUARD)
                 for n in range(60)]
        codes = []
        for c in calls:
            try:
                c.result()
                codes.append(C.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    assert set(codes) <= {C.UNAUTHENTICATED, C.RESOURCE_EXHAUSTED}, set(codes)
    assert codes.count(C.RESOURCE_EXHAUSTED) >= 1 and codes.count(C.UNAUTHENTICATED) >= 1
    assert metric(mport, "bazaar_password_checks_shed_total") == codes.count(C.RESOURCE_EXHAUSTED)
    shop.stop("accounts-argon")


# 6. Long streams must not starve short calls.

def test_open_streams_are_capped_per_caller_and_in_all(shop):
    port, mport, _ = start(shop, "gw-streams", MAX_STREAMS_PER_CLIENT=3, MAX_OPEN_STREAMS=5, AUTH_RATE_LIMIT=1000)
    users = [shop.token(str(uuid.uuid4())) for _ in range(4)]

    def subscribe(token):
        s = connect(port, timeout=HANG_GUARD)
        s.sendall(f"GET /v1/notifications:subscribe HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n".encode())
        return s

    def open_streams():
        return metric(mport, "bazaar_gateway_open_streams")

    held = [subscribe(users[0]) for _ in range(3)]
    wait_for("three open streams", lambda: open_streams() == 3)
    fourth = subscribe(users[0])
    assert fourth.recv(4096).startswith(b"HTTP/1.1 429 ")
    held += [subscribe(users[1]), subscribe(users[2])]
    wait_for("five open streams", lambda: open_streams() == 5)
    refused = subscribe(users[3])
    assert refused.recv(4096).startswith(b"HTTP/1.1 429 ")
    # Short calls go on meanwhile.
    assert http_get(port, "/v1/products?page.pageSize=1") == 200
    for s in held + [fourth, refused]:
        s.close()
    wait_for("the streams to be released", lambda: open_streams() == 0)
    again = subscribe(users[3])
    wait_for("a stream for the last user", lambda: open_streams() == 1)
    again.close()


# 12. A stopped database: requests end at their deadline, nothing piles up, and once it is back
# new requests do not wait behind dead ones.

def test_a_stopped_database_fails_calls_at_their_deadline_and_recovers(shop, m, admin):
    import os
    import signal as sig
    import threading
    product = make_product(admin, m)
    data_dir = shop.base_conninfo.split("host=")[1].split()[0]
    postmaster = int(open(f"{data_dir}/data/postmaster.pid").readline())
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()]
    me = new_customer(shop, m)
    catalog_pid = shop.procs["catalog"].pid
    before_kb = status_kb(catalog_pid, "VmRSS")
    codes = []
    os.kill(postmaster, sig.SIGSTOP)
    for c in children:
        os.kill(c, sig.SIGSTOP)
    try:
        def call():
            codes.append(me.code("catalog", "GetProduct", m.catalog.GetProductRequest(id=product.id), m.catalog.Product, timeout=1))
        # More callers than the pool (10 connections) lets wait (200): the rest are refused at once.
        threads = [threading.Thread(target=call) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD)
        assert len(codes) == 300 and set(codes) <= {C.DEADLINE_EXCEEDED, C.UNAVAILABLE}, set(codes)
        assert C.UNAVAILABLE in codes, "no caller was refused: the pool's waiters are unbounded"
        assert status_kb(catalog_pid, "VmRSS") - before_kb < 64 * 1024
    finally:
        for c in children:
            os.kill(c, sig.SIGCONT)
        os.kill(postmaster, sig.SIGCONT)
    # Back: the next calls are answered, not queued behind the abandoned statements.
    wait_for("the catalog to answer again", lambda: me.code("catalog", "GetProduct", m.catalog.GetProductRequest(id=product.id),
                                                            m.catalog.Product, timeout=5) == C.OK)
    assert shop.procs["catalog"].poll() is None


def test_no_transaction_stays_open_across_a_stalled_redis(shop):
    """The outbox relay leases its rows and calls Redis outside any transaction: with Redis
    stopped, the orders database holds no open transaction (and no row locks) for it."""
    import os
    import signal as sig
    order = str(uuid.uuid4())
    os.kill(shop.redis.pid, sig.SIGSTOP)
    try:
        row = shop.sql("orders", f"INSERT INTO outbox (order_id, type, payload) VALUES ('{order}', 'test.stalled', '{{}}') RETURNING id").splitlines()[0]
        wait_for("the relay to lease the row", lambda: shop.sql("orders", f"SELECT lease_until IS NOT NULL FROM outbox WHERE id = {row}") == "t")
        database = shop.databases["orders"].split("dbname=")[1].split()[0]
        open_tx = shop.sql("orders", f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' "
                                     "AND state LIKE 'idle in transaction%'")
        assert open_tx == "0", f"{open_tx} transactions stay open while Redis is stopped"
    finally:
        os.kill(shop.redis.pid, sig.SIGCONT)
    # Once Redis answers (the relay's XADD failed at its timeout, or goes through), the row is
    # published when its lease allows.
    wait_for("the row to be published", lambda: shop.sql("orders", f"SELECT published_at IS NOT NULL FROM outbox WHERE id = {row}") == "t",
             timeout=HANG_GUARD + 60)


# A poison event must not stall the order-event consumer.

def test_a_poison_event_is_parked_and_the_rest_go_on(shop, m):
    """An event that fails for a reason of its own (here a trigger in the notifications database
    refuses its type) is retried a few times, then parked in the dead-letter stream, and the
    events behind it are processed."""
    shop.sql("notifications", """
        CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger AS $$
        BEGIN IF NEW.type = 'order.poison' THEN RAISE EXCEPTION 'poison event'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS refuse_poison ON processed_events;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON processed_events FOR EACH ROW EXECUTE FUNCTION refuse_poison();
    """)
    redis = ["redis-cli", "-p", str(shop.redis_port)]
    try:
        poison = str(uuid.uuid4())
        subprocess.run(redis + ["XADD", "bazaar:order-events", "*", "event_id", poison, "type", "order.poison", "payload", "{}"],
                       check=True, capture_output=True)
        after = str(uuid.uuid4())
        subprocess.run(redis + ["XADD", "bazaar:order-events", "*", "event_id", after, "type", "order.unknown", "payload", "{}"],
                       check=True, capture_output=True)
        # The event behind the poison one is processed (an unknown type is recorded, not notified) ...
        wait_for("the event after the poison one", lambda: shop.sql("notifications", f"SELECT count(*) FROM processed_events WHERE event_id = '{after}'") == "1")
        # ... and the poison one waits in the dead-letter stream, with its error.
        dead = subprocess.run(redis + ["XRANGE", "bazaar:order-events:dead", "-", "+"], capture_output=True, text=True).stdout
        assert poison in dead and "poison event" in dead
    finally:
        shop.sql("notifications", "DROP TRIGGER IF EXISTS refuse_poison ON processed_events")


# Tables that grew without bound get a retention job each.

def test_expired_rows_are_deleted_and_fresh_ones_kept(shop):
    user = str(uuid.uuid4())
    shop.sql("accounts", f"INSERT INTO users (id, email, display_name, password_hash) VALUES ('{user}', '{user}@example.com', 'x', 'x')")
    shop.sql("accounts", "INSERT INTO login_throttle (key, failures, last_failure_at) VALUES "
                         "('addr:old-retention', 9, clock_timestamp() - interval '3 days'), ('addr:new-retention', 9, clock_timestamp())")
    shop.sql("accounts", f"INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at) VALUES "
                         f"(gen_random_uuid(), '{user}', 'old-{user}', clock_timestamp() - interval '30 days'), "
                         f"(gen_random_uuid(), '{user}', 'new-{user}', clock_timestamp() + interval '30 days')")
    shop.start("accounts", replica="accounts-retention", env={"BAZAAR_RETENTION_INTERVAL": "1s"})
    wait_for("the expired rows to go", lambda: shop.sql("accounts", "SELECT count(*) FROM login_throttle WHERE key = 'addr:old-retention'") == "0"
             and shop.sql("accounts", f"SELECT count(*) FROM refresh_tokens WHERE token_hash = 'old-{user}'") == "0")
    assert shop.sql("accounts", "SELECT count(*) FROM login_throttle WHERE key = 'addr:new-retention'") == "1"
    assert shop.sql("accounts", f"SELECT count(*) FROM refresh_tokens WHERE token_hash = 'new-{user}'") == "1"
    shop.stop("accounts-retention")


# Role changes, sign-outs and password changes take effect at the edge at once.

def test_revoked_access_tokens_are_refused_at_the_edge(shop):
    port, _, _ = start(shop, "gw-revocations", REVOCATION_POLL="200ms", AUTH_RATE_LIMIT=1000, AUTH_RATE_BURST=1000)
    base = f"http://127.0.0.1:{port}"
    email, password = f"demoted-{uuid.uuid4().hex[:8]}@example.com", "a long password"
    status, _, user = http(base, "POST", "/v1/users", {"email": email, "password": password})
    assert status == 201
    admin = {"authorization": f"Bearer {shop.token(str(uuid.uuid4()), roles=('admin',))}"}
    assert http(base, "PUT", f"/v1/admin/users/{user['id']}/roles", {"roles": ["admin", "customer"]}, headers=admin)[0] == 200
    # Signed in as an admin (the token says to the microsecond that it is newer than the promotion).
    status, _, session = http(base, "POST", "/v1/sessions", {"email": email, "password": password})
    assert status == 201
    theirs = {"authorization": f"Bearer {session['accessToken']}"}
    assert http(base, "GET", "/v1/admin/orders", headers=theirs)[0] == 200
    # Demoted: the admin token they hold stops working at once, on every route.
    assert http(base, "PUT", f"/v1/admin/users/{user['id']}/roles", {"roles": ["customer"]}, headers=admin)[0] == 200
    wait_for("the demotion to reach the edge", lambda: http(base, "GET", "/v1/admin/orders", headers=theirs)[0] == 401)
    status, _, body = http(base, "GET", "/v1/cart", headers=theirs)
    assert status == 401 and "revoked" in body["message"]
    # Signing in again gives a token with the current roles.
    status, _, session = http(base, "POST", "/v1/sessions", {"email": email, "password": password})
    fresh = {"authorization": f"Bearer {session['accessToken']}"}
    assert http(base, "GET", "/v1/cart", headers=fresh)[0] == 200
    assert http(base, "GET", "/v1/admin/orders", headers=fresh)[0] == 403
    # Signing out voids it too.
    assert http(base, "POST", "/v1/sessions:logout", {"refreshToken": session["refreshToken"]}, headers=fresh)[0] == 200
    wait_for("the sign-out to reach the edge", lambda: http(base, "GET", "/v1/cart", headers=fresh)[0] == 401)


def test_a_clients_trace_becomes_a_link_not_the_parent(shop, tmp_path):
    import json as _json
    import pathlib
    import sys
    collector_port = free_port()
    out = tmp_path / "spans.jsonl"
    collector = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).parents[1] / "Interop" / "otlp_collector.py"),
                                  str(collector_port), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in collector.stdout.readline()
        mport = free_port()
        base = shop.start_gateway("gw-traces", env={"BAZAAR_METRICS_PORT": str(mport), "OTEL_TRACES_EXPORTER": "otlp",
                                                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}"})
        theirs = "4bf92f3577b34da6a3ce929d0e0e4736"
        req = urllib.request.Request(base + "/v1/products?page.pageSize=1",
                                     headers={"traceparent": f"00-{theirs}-00f067aa0ba902b7-01"})
        with urllib.request.urlopen(req, timeout=15) as r:
            assert r.status == 200

        def gateway_span():
            if not out.exists():
                return None
            spans = [_json.loads(line) for line in out.read_text().splitlines()]
            return next((s for s in spans if s["resource"].get("service.name") == "gateway" and s.get("links")), None)
        span = wait_for("the gateway's span at the collector", gateway_span)
        # Its own trace, sampled by the gateway; the client's trace as a link (decoded by the
        # official OpenTelemetry classes).
        assert span["trace_id"] != theirs
        import base64 as _b64
        assert [_b64.b64decode(link["trace_id"]).hex() for link in span["links"]] == [theirs]
    finally:
        collector.terminate()
        collector.wait(timeout=10)

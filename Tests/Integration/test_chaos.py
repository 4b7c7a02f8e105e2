"""Chaos under load: while the mixed shop workload runs through the gateway (registered shoppers,
so their mail can be checked), each service is killed with SIGKILL and restarted (the test plays
the supervisor), PostgreSQL restarts, Redis restarts, and the catalog is paused with SIGSTOP for
longer than the gateway's deadline. Every step waits for the workload to make progress again
before the next. Afterwards: no acknowledged order is lost, none is charged twice, no stock leaked,
every order's confirmation went out as one message (repeats only under the same Message-ID), and
the share of requests the shop answered is reported (docs/reliability.md)."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import uuid

import pytest

from shop_fixtures import SERVICES, Shop, psql
from soak import Workload, start_shop
from waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USERS = 8
STOCK = 1_000_000


def postgres(cmd, directory, port=None):
    args = ["bash", os.path.join(ROOT, "scripts", "postgres.sh"), cmd, str(directory)] + ([str(port)] if port else [])
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def redis(port, directory):
    """redis-server as production runs it: an append-only file, so a restart keeps the event streams."""
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def redis_answers(port):
    return subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0


def request(port, method, path, body):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=json.dumps(body).encode(), headers={"content-type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


@pytest.fixture
def chaos_shop(tmp_path, monkeypatch):
    """The soak's shop on a PostgreSQL of its own (the test restarts it) and a persistent Redis."""
    from mesh_fixtures import free_port
    pg_port = free_port()
    # Outside pytest's private tmp: PostgreSQL runs as its own user, who must reach its folder.
    pg_dir = pathlib.Path(tempfile.mkdtemp(prefix="bazaar-chaos-pg."))
    pg_dir.chmod(0o755)
    monkeypatch.setenv("BAZAAR_TEST_POSTGRES", postgres("start", pg_dir, pg_port))
    # A reservation whose checkout died before its order existed (or whose release failed) is the
    # catalog's sweep to return, at its expiry: short here, so the test can wait for it.
    shop, gateway_port, metrics_ports = start_shop(
        tmp_path / "shop", env={"catalog": {"BAZAAR_RESERVATION_TTL": "20s", "BAZAAR_RESERVATION_SWEEP_INTERVAL": "1s"}})
    # Swap the shop's throwaway Redis for a persistent one on the same port: the services reconnect.
    shop.redis.terminate()
    shop.redis.wait()
    (tmp_path / "redis").mkdir()
    shop.redis = redis(shop.redis_port, tmp_path / "redis")
    wait_for("the persistent redis-server to answer", lambda: redis_answers(shop.redis_port))
    try:
        yield shop, gateway_port, tmp_path, pg_dir, pg_port
    finally:
        shop.close()
        postgres("stop", pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)


def test_the_shop_survives_kills_restarts_and_a_pause_under_load(chaos_shop):
    shop, port, tmp, pg_dir, pg_port = chaos_shop
    tokens, emails = [], []
    for n in range(USERS):
        email = f"chaos-{n}-{uuid.uuid4().hex[:6]}@example.com"
        status, _ = request(port, "POST", "/v1/users", {"email": email, "password": "correct horse battery", "displayName": f"C{n}"})
        assert status == 201, status
        status, session = request(port, "POST", "/v1/sessions", {"email": email, "password": "correct horse battery"})
        assert status in (200, 201), (status, session)
        tokens.append(session["accessToken"])
        emails.append(email)

    load = Workload(shop, port, USERS, tokens=tokens)
    load.start()
    steps = []

    def progress(after, what):
        """Waits until the shop has answered 200 more requests than at `after`."""
        target = after + 200
        wait_for(f"the workload to go on after {what}", lambda: load.answered() >= target,
                 detail=lambda: "\n".join(load.failures[-5:]))

    try:
        progress(0, "the start")
        steps.append(("warm-up", load.failed()))
        for service in SERVICES:
            mark = load.answered()
            shop.stop(service, sig=signal.SIGKILL)
            shop.start(service)  # the supervisor's part
            progress(mark, f"{service} was killed and restarted")
            steps.append((f"kill -9 {service}", load.failed()))

        mark = load.answered()
        postgres("stop", pg_dir)
        postgres("start", pg_dir, pg_port)
        progress(mark, "PostgreSQL restarted")
        steps.append(("restart PostgreSQL", load.failed()))

        mark = load.answered()
        shop.redis.send_signal(signal.SIGTERM)  # Redis writes its append-only file and exits
        shop.redis.wait(timeout=60)
        shop.redis = redis(shop.redis_port, tmp / "redis")
        wait_for("redis-server to answer again", lambda: redis_answers(shop.redis_port))
        progress(mark, "Redis restarted")
        steps.append(("restart Redis", load.failed()))

        mark, failed = load.answered(), load.failed()
        catalog = shop.procs["catalog"]
        catalog.send_signal(signal.SIGSTOP)
        try:
            # Paused past the gateway's deadline: calls to it fail (and only then is it resumed).
            wait_for("a call to the paused catalog to fail", lambda: load.failed() > failed)
        finally:
            catalog.send_signal(signal.SIGCONT)
        progress(mark, "the catalog resumed")
        steps.append(("SIGSTOP catalog past its deadline", load.failed()))
    finally:
        load.finish()

    total = load.answered() + load.failed()
    share = load.answered() / total
    print(f"\nchaos: {load.answered()} of {total} requests answered ({share:.2%}), {len(load.orders)} orders acknowledged")
    before = 0
    for what, failed in steps:
        print(f"  {what}: {failed - before} requests failed")
        before = failed
    for line in load.failures[:10]:
        print("  e.g.", line)
    for kind, (ok, refused, bad) in sorted(load.counts.items()):
        print(f"  {kind}: {ok} ok, {refused} refused (stock), {bad} failed")
    assert load.orders, "no checkout was acknowledged: the test proved nothing"

    # Settled: no order waiting on a step, nothing still queued for mail.
    def unsettled():
        return int(shop.sql("orders", """SELECT count(*) FROM orders WHERE status = 'PENDING' OR (status = 'PAID' AND stock_state <> 'committed')
                                         OR (status = 'CANCELLED' AND (stock_state <> 'released' OR refund_state = 'pending'))""")) + \
            int(shop.sql("orders", "SELECT count(*) FROM checkouts WHERE state = 'started'"))
    wait_for("recovery to settle every order", lambda: unsettled() == 0, detail=lambda: shop.log("orders")[-3000:])

    # No acknowledged order lost: each is in the database; one answered PAID is paid. (A checkout
    # whose payment's outcome was unknown when it answered says PENDING; recovery settled it above.)
    paid = set(shop.sql("orders", "SELECT id FROM orders WHERE status = 'PAID'").split())
    known = set(shop.sql("orders", "SELECT id FROM orders").split())
    for order, status in load.orders:
        assert order in known, f"acknowledged order {order} ({status}) is not in the database"
        if status == "ORDER_STATUS_PAID":
            assert order in paid, f"order {order} was answered PAID but is not paid in the database"
    # No order charged twice, every paid order charged once, no charge without an order.
    assert shop.sql("orders", "SELECT count(*) FROM (SELECT idempotency_key FROM test_payments WHERE status = 'succeeded' "
                              "GROUP BY 1 HAVING count(*) > 1) d") == "0"
    for order in paid:
        assert shop.sql("orders", f"SELECT count(*) FROM test_payments WHERE idempotency_key = '{order}' AND status = 'succeeded'") == "1"
    assert shop.sql("orders", "SELECT count(*) FROM test_payments WHERE status = 'succeeded' AND idempotency_key NOT IN "
                              "(SELECT id::text FROM orders WHERE status = 'PAID')") == "0"
    # No stock leaked: nothing still reserved, and for every product stock + committed units is what
    # there was, and the committed units are what paid orders hold.
    wait_for("every open reservation to be committed or returned",
             lambda: shop.sql("catalog", "SELECT count(*) FROM reservations WHERE state = 'reserved'") == "0")
    leaks = shop.sql("catalog", f"""SELECT p.id, p.stock, COALESCE(sum(l.quantity) FILTER (WHERE r.state = 'committed'), 0)
                                    FROM products p LEFT JOIN reservation_lines l ON l.product_id = p.id
                                    LEFT JOIN reservations r ON r.order_id = l.order_id
                                    GROUP BY p.id, p.stock HAVING p.stock + COALESCE(sum(l.quantity) FILTER (WHERE r.state = 'committed'), 0) <> {STOCK}""")
    assert leaks == "", leaks
    sold = int(shop.sql("orders", "SELECT COALESCE(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'PAID'"))
    committed = int(shop.sql("catalog", "SELECT COALESCE(sum(l.quantity), 0) FROM reservation_lines l JOIN reservations r USING (order_id) "
                                        "WHERE r.state = 'committed'"))
    assert sold == committed

    # Every paid order's confirmation went out: one notification each, sent, and the mail sink
    # holds it under that notification's Message-ID (a repeat after a crash keeps the same one).
    def confirmed():
        return set(shop.sql("notifications", "SELECT DISTINCT order_id FROM notifications WHERE order_id IS NOT NULL "
                                             "AND subject ILIKE '%confirm%'").split())
    # The events travel: outbox, relay, stream, consumer. Wait until each paid order's arrived.
    wait_for("a confirmation for every paid order", lambda: paid <= confirmed(), timeout=400,
             detail=lambda: f"missing: {sorted(paid - confirmed())[:5]}\n" + shop.log("notifications")[-2000:])

    def mailed():
        return int(shop.sql("notifications", "SELECT count(*) FROM notifications WHERE email_state = 'pending'")) == 0
    # Mail a round had taken when a kill or a database restart cut it short waits for the round's
    # lease to run out (130 s by default) before it is sent again: the guard allows for that.
    wait_for("every queued email to be sent", mailed, timeout=400, detail=lambda: shop.log("notifications")[-3000:])
    rows = shop.sql("notifications", "SELECT order_id, count(*), min(id::text), min(email_state) FROM notifications "
                                     "WHERE order_id IS NOT NULL AND subject ILIKE '%confirm%' GROUP BY order_id")
    by_order = {}
    for line in rows.splitlines():
        order, n, nid, state = line.split("|")
        by_order[order] = (int(n), nid, state)
    with shop.mail.lock:
        received = [m for _, m in shop.mail.messages]
    ids = [re.search(r"Message-ID: <([^>]+)>", m).group(1) for m in received if "Message-ID" in m]
    for order in paid:
        assert order in by_order, f"paid order {order} has no confirmation notification"
        n, nid, state = by_order[order]
        assert n == 1 and state == "sent", (order, by_order[order])
        assert any(nid in i for i in ids), f"the confirmation of {order} never reached the mail sink"

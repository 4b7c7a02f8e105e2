"""Soak: the mixed shop workload through the gateway for a set time, with every process of the shop
sampled as it runs (open file descriptors, resident memory, RPCs in flight, database connections),
then a verdict: after warm-up, does anything grow without bound?

`make soak` runs it for 30 minutes against release binaries (scripts/soak.sh); `test_soak.py` runs
a short one in `make test`. As a program:

    python Tests/Integration/soak.py --seconds 1800 --users 24 --report .build/soak

(needs BAZAAR_TEST_POSTGRES; BAZAAR_BIN_DIR picks the binaries, .build/debug by default).

The workload is the one `make bench-mix` drives with locust (Benchmarks/locust/shop.py): shoppers
browse, search, open products, fill carts and check out, signed in with tokens minted from the
shop's key. It is written here on the standard library so that the test needs no locust."""
import argparse
import http.client
import json
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from shop_fixtures import SERVICES, Shop, psql  # noqa: E402
from mesh_fixtures import free_port  # noqa: E402
from rpc_fixtures import binary  # noqa: E402
from waiting import wait_for  # noqa: E402

WORDS = ["lamp", "mug", "desk", "chair", "green", "office", "kettle", "handmade", "blue", "garden"]
ADDRESS = {"recipient": "Soak", "lines": ["1 Main St"], "city": "London", "postalCode": "N1 9GU", "countryCode": "GB"}
# A service's database connections at most: its pool (BAZAAR_DB_POOL_SIZE, 10 by default), its
# pool for writes that need no fsync (a quarter of that, at least 2), and 2 more for a moment when
# a connection is replaced (a statement cancelled at its deadline closes its connection; the backend
# leaves pg_stat_activity a little after the new one arrives).
DB_CONNECTIONS_MAX = 10 + 2 + 2


class Workload:
    """Shoppers on threads, each with its own keep-alive HTTP/1.1 connection to the gateway."""

    def __init__(self, shop, port, users, tokens=None, host="127.0.0.1"):
        """`tokens`: one access token per shopper, of registered users (their mail can be
        checked); without, each shopper signs in with a token minted by `shop.token`."""
        self.shop, self.port, self.users, self.host = shop, port, users, host
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}  # kind -> [ok, refused by the shop (4xx it may give), failed]
        self.failures = []  # the first few, in words
        self.failed_by = {}  # HTTP status (or "error": no answer at all) -> requests that failed so
        self.orders = []  # (order id, status) of every checkout the shop acknowledged
        self.threads = [threading.Thread(target=self.shopper, args=(tokens[n] if tokens else None,), daemon=True)
                        for n in range(users)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def answered(self):
        """Requests answered as the shop may answer (successes and stock refusals) so far."""
        with self.lock:
            return sum(c[0] + c[1] for c in self.counts.values())

    def failed(self):
        with self.lock:
            return sum(c[2] for c in self.counts.values())

    def note(self, kind, outcome, detail=None, status=None):
        with self.lock:
            c = self.counts.setdefault(kind, [0, 0, 0])
            c[outcome] += 1
            if outcome == 2:
                key = status or "error"
                self.failed_by[key] = self.failed_by.get(key, 0) + 1
                if len(self.failures) < 20:
                    self.failures.append(f"{kind}: {detail}")

    def shopper(self, token):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        user = str(uuid.uuid4())
        # Access tokens live 15 minutes (the shop refuses longer ones): a shopper takes a new one
        # every 10, as a signed-in browser would refresh.
        auth, minted = {}, -1e9

        products, in_cart = [], 0

        def call(kind, method, path, body=None, headers=None, allowed=()):
            nonlocal conn
            h = dict(headers or {})
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["content-type"] = "application/json"
            try:
                conn.request(method, path, body=data, headers=h)
                r = conn.getresponse()
                payload = r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.note(kind, 2, repr(e))
                return None, None
            if 200 <= r.status < 300:
                self.note(kind, 0)
                return r.status, payload
            self.note(kind, 1 if r.status in allowed else 2, f"{r.status} {payload[:200]!r}", r.status)
            return r.status, None

        _, page = call("browse", "GET", "/v1/products?page.pageSize=50")
        if page:
            products = [p["id"] for p in json.loads(page).get("products", [])]
        kinds = ["browse"] * 30 + ["search"] * 20 + ["product"] * 30 + ["add"] * 12 + ["cart"] * 5 + ["checkout"] * 3
        while not self.stop.is_set():
            if time.monotonic() - minted > 600:
                auth = {"authorization": f"Bearer {token or self.shop.token(user)}"}
                minted = time.monotonic()
            kind = random.choice(kinds)
            if kind == "browse":
                category = random.choice(["", "&category=office", "&category=kitchen"])
                call(kind, "GET", f"/v1/products?page.pageSize=20&sort=PRODUCT_SORT_PRICE_ASC{category}")
            elif kind == "search":
                call(kind, "GET", f"/v1/products?query={random.choice(WORDS)}&page.pageSize=10")
            elif kind == "product" and products:
                call(kind, "GET", f"/v1/products/{random.choice(products)}")
            elif kind == "add" and products:
                status, _ = call(kind, "POST", "/v1/cart/items", {"productId": random.choice(products), "quantity": 1}, auth,
                                 allowed=(400, 409))
                in_cart += status == 200
            elif kind == "cart":
                call(kind, "GET", "/v1/cart", headers=auth)
            elif kind == "checkout" and in_cart:
                status, body = call(kind, "POST", "/v1/orders", {"requestId": str(uuid.uuid4()), "shippingAddress": ADDRESS},
                                    auth, allowed=(400, 409))
                if body:
                    order = json.loads(body)
                    with self.lock:
                        self.orders.append((order["id"], order.get("status")))
                in_cart = 0
        conn.close()


def metrics(port, host="127.0.0.1"):
    c = http.client.HTTPConnection(host, port, timeout=10)
    try:
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()
    finally:
        c.close()


def in_flight(text):
    """Unary RPCs started and not yet handled, served and sent (from the go-grpc-prometheus
    counters). Streams are left out: health watches and stock watches stay open by design."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"grpc_(server|client)_(started|handled)_total\{([^}]*)\} ([0-9.e+]+)$", line)
        if m and 'grpc_type="unary"' in m.group(3):
            total += float(m.group(4)) * (1 if m.group(2) == "started" else -1)
    return round(total)


def process_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss_kib = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return fds, rss_kib


class Sampler:
    """Samples every process of the shop every `every` seconds (a measurement's cadence, not a
    synchronisation): fds and RSS from /proc, RPCs in flight from its metrics, database connections
    from pg_stat_activity (each service owns its database)."""

    def __init__(self, shop, metrics_ports, every):
        self.shop, self.metrics_ports, self.every = shop, metrics_ports, every
        self.samples = []  # (seconds since start, {process: {fds, rss_kib, in_flight, db}})
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.error = None  # what ended sampling early (a process that died), raised by soak()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=60)

    def db_connections(self):
        rows = psql(self.shop.base_conninfo, "SELECT datname, count(*) FROM pg_stat_activity WHERE datname IS NOT NULL "
                                             "GROUP BY datname")
        by_db = {}
        for line in rows.splitlines():
            if "|" in line:
                name, n = line.split("|")
                by_db[name.strip()] = int(n)
        return {s: by_db.get(url.split("dbname=")[1].split()[0], 0) for s, url in self.shop.databases.items()}

    def sample(self):
        db = self.db_connections()
        row = {}
        for name, proc in self.shop.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} during the soak")
            fds, rss = process_figures(proc.pid)
            row[name] = {"fds": fds, "rss_kib": rss, "in_flight": in_flight(metrics(self.metrics_ports[name])),
                         "db": db.get(name, 0)}
        self.samples.append((round(time.monotonic() - self.started, 1), row))

    def run(self):
        try:
            while not self.stop.is_set():
                self.sample()
                self.stop.wait(self.every)
        except Exception as e:  # noqa: BLE001 - kept for soak() to raise in the test's thread
            self.error = e


def verdict(samples, warmup_fraction=0.25):
    """Growth after warm-up, per process and figure: the largest value in the second half of the
    samples after warm-up against the largest in the first half, within bounds that allow for
    noise (allocator arenas, connection churn) but not for growth with the number of requests.
    Database connections are bounded by what the pools may hold, wherever they are in filling."""
    after = samples[int(len(samples) * warmup_fraction):]
    if len(after) < 4:
        raise ValueError(f"too few samples after warm-up ({len(after)}): soak longer or sample more often")
    early, late = after[: len(after) // 2], after[len(after) // 2:]
    problems, table = [], []
    for name in late[-1][1]:
        for figure, bound in (("fds", lambda e: e + 16), ("rss_kib", lambda e: e * 1.25 + 16 * 1024),
                              # A pool opens connections as bursts need them, up to its size: a
                              # short run may still be filling it, so the bound is the size.
                              ("db", lambda e: DB_CONNECTIONS_MAX)):
            e = max(s[1][name][figure] for s in early)
            lt = max(s[1][name][figure] for s in late)
            table.append((name, figure, samples[0][1][name][figure], e, lt))
            if lt > bound(e):
                problems.append(f"{name}: {figure} grew from at most {e} to {lt} (bound {bound(e):.0f})")
    return problems, table


def print_table(table, out=sys.stdout):
    print("| process | figure | first sample | max, early after warm-up | max, late |", file=out)
    print("|---|---|---:|---:|---:|", file=out)
    for name, figure, first, e, lt in table:
        print(f"| {name} | {figure} | {first} | {e} | {lt} |", file=out)


def start_shop(workdir, env=None):
    """The shop with metrics on, the demo catalog with plenty of stock, and a gateway whose
    per-client limits do not throttle a workload that comes from one address. `env`: more
    settings by service."""
    metrics_ports = {name: free_port() for name in SERVICES + ["gateway"]}
    env = {s: {"BAZAAR_METRICS_PORT": str(metrics_ports[s]), **(env or {}).get(s, {})} for s in SERVICES}
    shop = Shop(workdir, env=env)
    subprocess.run([binary("bazaar"), "seed", "--catalog-db", shop.databases["catalog"], "--accounts-db",
                    shop.databases["accounts"]], check=True, capture_output=True)
    shop.sql("catalog", "UPDATE products SET stock = 1000000")
    url = shop.start_gateway(env={"BAZAAR_METRICS_PORT": str(metrics_ports["gateway"]), "BAZAAR_RATE_LIMIT": "1000000",
                                  "BAZAAR_RATE_BURST": "1000000", "BAZAAR_MAX_STREAMS_PER_CLIENT": "1000"})
    return shop, int(url.rsplit(":", 1)[1]), metrics_ports


def soak(workdir, seconds, users, every, progress=None):
    """Runs the soak; returns (workload, sampler). Raises if a process dies."""
    shop, port, metrics_ports = start_shop(workdir)
    try:
        sampler = Sampler(shop, metrics_ports, every)
        load = Workload(shop, port, users)
        sampler.start()
        load.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end and sampler.thread.is_alive():
            sampler.stop.wait(min(30, max(0.1, end - time.monotonic())))
            if progress:
                progress(seconds - max(0, end - time.monotonic()), load)
        load.finish()
        sampler.finish()
        if sampler.error is not None:
            raise sampler.error
        # Once the load has stopped, nothing stays in flight anywhere: no call is stuck.
        for name in shop.procs:
            wait_for(f"{name} to have no RPC in flight after the load", lambda: in_flight(metrics(metrics_ports[name])) == 0)
        return load, sampler
    finally:
        shop.close()


def main():
    ap = argparse.ArgumentParser(description="Soak the shop: the mixed workload for a set time, every process sampled.")
    ap.add_argument("--seconds", type=float, default=1800, help="how long the workload runs (default 1800)")
    ap.add_argument("--users", type=int, default=24, help="concurrent shoppers (default 24)")
    ap.add_argument("--every", type=float, default=10, help="seconds between samples (default 10)")
    ap.add_argument("--report", default=".build/soak", help="where samples.json and report.md go")
    args = ap.parse_args()
    out = pathlib.Path(args.report)
    out.mkdir(parents=True, exist_ok=True)

    def progress(elapsed, load):
        with load.lock:
            done = sum(sum(c) for c in load.counts.values())
            failed = sum(c[2] for c in load.counts.values())
        print(f"soak: {elapsed:.0f}/{args.seconds:.0f} s, {done} requests, {failed} failed", flush=True)

    with tempfile.TemporaryDirectory(prefix="bazaar-soak-") as work:
        load, sampler = soak(work, args.seconds, args.users, args.every, progress)
    problems, table = verdict(sampler.samples)
    (out / "samples.json").write_text(json.dumps(sampler.samples))
    with open(out / "report.md", "w") as f:
        total = sum(sum(c) for c in load.counts.values())
        failed = sum(c[2] for c in load.counts.values())
        print(f"{args.seconds:.0f} s, {args.users} shoppers, {total} requests ({total / args.seconds:.0f}/s), "
              f"{failed} failed, {len(sampler.samples)} samples every {args.every:g} s\n", file=f)
        print("| request | ok | refused (stock) | failed |\n|---|---:|---:|---:|", file=f)
        for kind, (ok, refused, bad) in sorted(load.counts.items()):
            print(f"| {kind} | {ok} | {refused} | {bad} |", file=f)
        print(file=f)
        print_table(table, f)
        print("\n" + ("no growth after warm-up" if not problems else "GROWTH:\n" + "\n".join(problems)), file=f)
    print((out / "report.md").read_text())
    for line in load.failures:
        print("failure:", line)
    return 1 if problems or any(c[2] for c in load.counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Separate hosts: every service, PostgreSQL and Redis on a host of its own (a network namespace
with its own address on a bridge, names from dnsmasq through the namespace's resolv.conf), the mesh
over mutual TLS with SPIFFE identities, two catalog replicas behind one DNS name. While the mixed
workload runs through the gateway, one catalog replica is cut off (its link drops every packet,
so its connections hang rather than fail), then healed: calls move to the survivor and come back;
the only failures are calls sent on the silent link, which end at their deadline (a deadline is
not retried), and none once the healed replica answers again.

Needs root (network namespaces, a bridge, /etc/netns); skipped otherwise."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from rpc_fixtures import binary
from shop_fixtures import mint_token, psql
from soak import Workload, metrics
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
NET = "10.77.0"
BRIDGE = "bzbr0"
# host -> last octet of its address
HOSTS = {"postgres": 10, "redis": 11, "gateway": 20, "catalog-1": 21, "catalog-2": 22, "cart": 23, "accounts": 24,
         "orders": 25, "notifications": 26}
SERVICE_OF = {"catalog-1": "catalog", "catalog-2": "catalog", "cart": "cart", "accounts": "accounts", "orders": "orders",
              "notifications": "notifications"}
UPSTREAMS = {"cart": ["catalog"], "orders": ["catalog", "cart"], "notifications": ["accounts"]}
PORT, METRICS = 7000, 9100

def namespaces_work():
    """Root, iproute2, dnsmasq, and the right to make a namespace (a container may lack it)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dnsmasq"):
        return False
    made = subprocess.run(["ip", "netns", "add", "bz-probe"], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", "bz-probe"], capture_output=True)
    return made


pytestmark = pytest.mark.skipif(not namespaces_work(), reason="network namespaces need root (CAP_SYS_ADMIN), iproute2 and dnsmasq")


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, text=True)


def address(host):
    return f"{NET}.{HOSTS[host]}"


class Network:
    """The hosts: a namespace each, joined to a bridge in the root namespace (the test's own
    host, 10.77.0.1, which runs dnsmasq and drives the workload)."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.procs = []
        self.close()  # what an interrupted earlier run may have left
        try:
            self.build()
        except BaseException:
            self.close()
            raise

    def build(self):
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for host, n in HOSTS.items():
            ns = f"bz-{host}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"bzv{n}", "type", "veth", "peer", "name", f"bzp{n}")
            sh("ip", "link", "set", f"bzp{n}", "netns", ns)
            sh("ip", "link", "set", f"bzv{n}", "master", BRIDGE, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", f"bzp{n}", "name", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NET}.{n}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            # `ip netns exec` mounts this over /etc/resolv.conf: libc and the mesh's resolver ask dnsmasq.
            etc = pathlib.Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {NET}.1\n")
        hosts = self.dir / "hosts"
        hosts.write_text("".join(f"{NET}.{n} {SERVICE_OF.get(h, h)}.bazaar.test\n" for h, n in HOSTS.items()))
        self.dns_log = self.dir / "dnsmasq.log"
        self.start(None, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                          f"--addn-hosts={hosts}", f"--listen-address={NET}.1", "--bind-interfaces", "--port=53",
                          "--user=root", "--pid-file=", "--log-facility=-"], self.dns_log)
        wait_for("dnsmasq to read its hosts", lambda: f"read {hosts}" in self.dns_log.read_text())

    def start(self, host, args, log, env=None):
        prefix = ["ip", "netns", "exec", f"bz-{host}"] if host else []
        p = subprocess.Popen(prefix + args, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def cut(self, host):
        """Every packet to and from the host is dropped from now on (its peers see silence)."""
        sh("ip", "link", "set", f"bzv{HOSTS[host]}", "down")

    def heal(self, host):
        sh("ip", "link", "set", f"bzv{HOSTS[host]}", "up")

    def close(self):
        for p in getattr(self, "procs", []):
            if p.poll() is None:
                p.terminate()
        for p in getattr(self, "procs", []):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for host, n in HOSTS.items():
            # Deleting a namespace leaves its processes running: end them first (an interrupted run's too).
            pids = subprocess.run(["ip", "netns", "pids", f"bz-{host}"], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", f"bz-{host}"], capture_output=True)
            subprocess.run(["ip", "link", "del", f"bzv{n}"], capture_output=True)
            shutil.rmtree(pathlib.Path("/etc/netns") / f"bz-{host}", ignore_errors=True)
        subprocess.run(["pkill", "-f", f"dnsmasq.*--listen-address={NET}.1"], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


class Minter:
    """Access tokens signed with the shop's key, for the workload's shoppers."""

    def __init__(self, key):
        self.key = key

    def token(self, user_id, lifetime=900):
        return mint_token(self.key, user_id, lifetime=lifetime)


def handled(host):
    """RPCs a service replica has completed, from its metrics."""
    text = metrics(METRICS, address(host))
    return sum(float(v) for v in re.findall(r"^grpc_server_handled_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


@pytest.fixture
def hosts(tmp_path):
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.close()


def test_a_replica_cut_off_and_healed_fails_only_the_calls_caught_on_its_link(hosts, tmp_path):
    net = hosts
    # PostgreSQL: its folder must be reachable by its own user, so not under pytest's private tmp.
    pg_dir = pathlib.Path(subprocess.run(["mktemp", "-d", "/tmp/bazaar-hosts-pg.XXXXXX"], check=True, capture_output=True,
                                         text=True).stdout.strip())
    pg_dir.chmod(0o755)
    try:
        pg = subprocess.run(["ip", "netns", "exec", "bz-postgres", "bash", str(ROOT / "scripts" / "postgres.sh"), "start",
                             str(pg_dir), "5432"], env={**os.environ, "PG_LISTEN": address("postgres"), "PG_TRUST": f"{NET}.0/24"}, capture_output=True,
                            text=True)
        assert pg.returncode == 0, pg.stderr
        run_the_test(net, tmp_path)
    finally:
        subprocess.run(["ip", "netns", "exec", "bz-postgres", "bash", str(ROOT / "scripts" / "postgres.sh"), "stop",
                        str(pg_dir)], capture_output=True)
        shutil.rmtree(pg_dir, ignore_errors=True)


def run_the_test(net, tmp):
    admin = f"host={address('postgres')} port=5432 user=postgres dbname=postgres"
    databases = {}
    for s in ("catalog", "accounts", "orders", "notifications"):
        psql(admin, f"CREATE DATABASE hosts_{s}")
        databases[s] = f"host=postgres.bazaar.test port=5432 user=postgres dbname=hosts_{s}"
    # protected-mode off: clients come from other hosts, and this test Redis has no password.
    net.start("redis", ["redis-server", "--port", "6379", "--bind", address("redis"), "--protected-mode", "no", "--save", "",
                        "--appendonly", "no"],
              tmp / "redis.log")
    certs, keys = tmp / "certs", tmp / "jwt"
    subprocess.run([binary("bazaar"), "certs", "--dir", str(certs), "catalog", "cart", "accounts", "orders", "notifications",
                    "gateway", "client"], check=True, capture_output=True)
    subprocess.run([binary("bazaar"), "jwt", "keygen", "--dir", str(keys)], check=True, capture_output=True)

    def env(extra):
        return {**os.environ, "BAZAAR_TLS_DIR": str(certs), "BAZAAR_REDIS_ADDR": "redis.bazaar.test:6379",
                "BAZAAR_JWT_PUBLIC_KEY": str(keys / "jwt-pub.pem"), "BAZAAR_JWT_PRIVATE_KEY": str(keys / "jwt-key.pem"),
                "BAZAAR_METRICS_PORT": str(METRICS), "BAZAAR_METRICS_HOST": "0.0.0.0", "OTEL_TRACES_EXPORTER": "none",
                "BAZAAR_ACCESS_LOG_SAMPLE": "0", **extra}

    def listening(log, proc, what):
        def check():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
            return "listening on" in log.read_text()
        wait_for(f"{what} to listen", check, detail=lambda: log.read_text()[-2000:])

    for host in ("accounts", "catalog-1", "catalog-2", "cart", "notifications", "orders"):
        service = SERVICE_OF[host]
        extra = {"BAZAAR_CONSUMER_NAME": host}
        if service in databases:
            extra["BAZAAR_DATABASE_URL"] = databases[service]
        for up in UPSTREAMS.get(service, []):
            extra[f"BAZAAR_{up.upper()}_TARGET"] = f"dns:///{up}.bazaar.test:{PORT}"
        log = tmp / f"{host}.log"
        proc = net.start(host, [binary("bazaar"), "serve", service, "--host", "0.0.0.0", "--port", str(PORT)], log, env(extra))
        listening(log, proc, host)
    upstreams = ["catalog", "accounts", "cart", "orders", "notifications"]
    gateway_env = {"BAZAAR_UPSTREAMS": ",".join(upstreams), "BAZAAR_RATE_LIMIT": "1000000", "BAZAAR_RATE_BURST": "1000000",
                   "BAZAAR_MAX_STREAMS_PER_CLIENT": "1000"}
    for up in upstreams:
        gateway_env[f"BAZAAR_{up.upper()}_TARGET"] = f"dns:///{up}.bazaar.test:{PORT}"
    glog = tmp / "gateway.log"
    gateway = net.start("gateway", [binary("bazaar"), "gateway", "--host", "0.0.0.0", "--port", "8080"], glog, env(gateway_env))
    listening(glog, gateway, "the gateway")
    def schemas():
        installed = {json.loads(line).get("upstream") for line in glog.read_text().splitlines()
                     if line.startswith("{") and '"upstream schema installed"' in line}
        return set(upstreams) <= installed
    wait_for("the gateway to learn every upstream's schema", schemas, detail=lambda: glog.read_text()[-2000:])
    subprocess.run([binary("bazaar"), "seed", "--catalog-db", databases["catalog"].replace("postgres.bazaar.test", address("postgres")),
                    "--accounts-db", databases["accounts"].replace("postgres.bazaar.test", address("postgres"))],
                   check=True, capture_output=True)
    psql(databases["catalog"].replace("postgres.bazaar.test", address("postgres")), "UPDATE products SET stock = 1000000")

    load = Workload(Minter((keys / "jwt-key.pem").read_text()), 8080, 8, host=address("gateway"))
    load.start()
    try:
        # Both replicas serve (the gateway, cart and orders each resolved two addresses).
        wait_for("both catalog replicas to serve the workload",
                 lambda: handled("catalog-1") > 50 and handled("catalog-2") > 50)
        before = handled("catalog-1")
        answered = load.answered()
        net.cut("catalog-2")
        # Calls move to the survivor: it serves many more, and the shop keeps answering.
        wait_for("the survivor to take the cut replica's calls",
                 lambda: handled("catalog-1") > before + 500 and load.answered() > answered + 500,
                 detail=lambda: "\n".join(load.failures[-5:]))
        failed_while_cut = load.failed()
        net.heal("catalog-2")
        back = handled("catalog-2")
        # ... and come back to the healed one.
        wait_for("calls to come back to the healed replica", lambda: handled("catalog-2") > back + 100,
                 detail=lambda: glog.read_text()[-2000:])
        # From here both replicas serve: nothing more fails.
        failed_once_back, answered = load.failed(), load.answered()
        wait_for("the workload to go on with both replicas", lambda: load.answered() > answered + 500)
        failed_after = load.failed() - failed_once_back
    finally:
        load.finish()

    total = load.answered() + load.failed()
    print(f"\nseparate hosts: {load.answered()} of {total} requests answered; failed: {failed_while_cut} while a replica "
          f"was cut off, {failed_once_back - failed_while_cut} between the heal and its first answers, {failed_after} after")
    print(f"  failed by status: {load.failed_by}")
    for line in load.failures[:10]:
        print("  e.g.", line)
    # What retries cannot save: calls sent on the silent link, which end at their deadline (504; a
    # deadline is not retried). Nothing else fails: no UNAVAILABLE reaches a shopper while the
    # survivor serves, and once the healed replica answers again, nothing fails at all.
    assert set(load.failed_by) <= {504}, (load.failed_by, load.failures)
    assert failed_after == 0, load.failures

"""The mesh under failure, with real processes on loopback: replicas killed, failing or hanging,
DNS records changing, deadlines and cancellation crossing three hops, certificates rotated."""
import signal
import subprocess

import grpc
import pytest

from mesh_fixtures import Dnsmasq, Load, Replica, duplicates, free_port, generic_unary
from rpc_fixtures import binary
from waiting import HANG_GUARD, wait_for


@pytest.fixture(scope="module")
def mt(pb2):
    return pb2("meshtest/v1/mesh_test.proto")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh-certs")
    subprocess.run([binary("bazaar"), "certs", "--dir", str(d), "server", "client"], check=True, capture_output=True)
    return d


def start(n, workdir, **kw):
    return [Replica(f"r{i + 1}", workdir, **kw) for i in range(n)]


def stop_all(replicas):
    for r in replicas:
        if r.proc.poll() is None:
            r.stop()


def set_fault(mt, replica, fault):
    with grpc.insecure_channel(replica.address) as ch:
        generic_unary(ch, "/meshtest.v1.MeshTest/SetFault", mt.FaultRequest(fault=fault), mt.MeshReply)


def endpoint(report, replica):
    """How `replica` looks in a load report's endpoints ("READY", "READY/NOT_SERVING", ...), or
    None when the channel does not have it."""
    return next((e.split("=", 1)[1] for e in report["endpoints"] if e.split("=", 1)[0] == replica.address), None)


# ---------------------------------------------------------------- replica failure

def test_kill9_of_a_replica_fails_no_retry_safe_call(tmp_path, certs):
    replicas = start(3, tmp_path, tls_dir=certs)
    try:
        target = ",".join(r.address for r in replicas)
        load = Load(target, method="get", duration=4, concurrency=8, tls_dir=certs)
        load.wait_for_replicas("the load to reach every replica", {"r1", "r2", "r3"})
        replicas[1].kill9()
        killed = load.mark()
        # The reports after the first one that follows the kill count only calls made after it.
        load.wait_for_replicas("both survivors to answer after the kill", {"r1", "r3"}, after=killed + 1)
        result = load.wait()
        assert result["failed"] == 0, (result, load.errors[:10])
        assert load.replicas_between(killed + 1) == {"r1", "r3"}
        assert "r2" in load.replicas_between(0, killed)
        # Calls were made before the kill and after it.
        assert 0 < load.progress[killed - 1]["ok"] < result["ok"], (load.progress[killed - 1], result)
    finally:
        stop_all(replicas)


def test_non_idempotent_calls_are_never_sent_twice(tmp_path, certs):
    replicas = start(3, tmp_path, tls_dir=certs)
    try:
        target = ",".join(r.address for r in replicas)
        load = Load(target, method="add", duration=3, concurrency=8, tls_dir=certs)
        load.wait_for_replicas("the load to reach every replica", {"r1", "r2", "r3"})
        replicas[1].kill9()
        killed = load.mark()
        result = load.wait()
        assert load.progress[killed - 1]["ok"] < result["ok"], "no call was made after the kill"
        logs = [r.calls("add") for r in replicas]
        served = sum(len(log) for log in logs)
        # Each id reached at most one replica, the killed one included: nothing was retried.
        assert duplicates(*logs) == set()
        # The counts agree: every success was served once; failures were served at most once.
        assert result["ok"] <= served <= result["ok"] + result["failed"]
        assert set(result["codes"]) <= {"UNAVAILABLE"}, result
    finally:
        stop_all(replicas)


# ---------------------------------------------------------------- outlier detection

BREAKER_ENV = {"BAZAAR_OUTLIER_CONSECUTIVE_FAILURES": "3", "BAZAAR_OUTLIER_BASE_EJECTION": "500ms",
               "BAZAAR_OUTLIER_MAX_EJECTION": "1s", "BAZAAR_OUTLIER_MAX_EJECTION_PERCENT": "50"}


@pytest.mark.parametrize("fault", ["UNAVAILABLE", "HANG"])
def test_failing_replica_is_ejected_and_comes_back(tmp_path, mt, fault):
    replicas = start(3, tmp_path)
    try:
        target = ",".join(r.address for r in replicas)
        load = Load(target, method="get", duration=7, concurrency=6, timeout_ms=300, env=BREAKER_ENV)
        load.wait_for_replicas("the load to reach every replica", {"r1", "r2", "r3"})
        set_fault(mt, replicas[1], getattr(mt.FaultRequest, fault))
        failing = load.mark()
        kind = f"get-{'refused' if fault == 'UNAVAILABLE' else 'hung'}"
        # r2 is ejected; when its ejection ends it is tried again, still fails and is ejected again.
        ejected = load.wait_for_report("r2 to be ejected", lambda p: "EJECTED" in (endpoint(p, replicas[1]) or ""),
                                       after=failing)
        tried = len(replicas[1].calls(kind))
        wait_for("r2 to be tried again after its ejection", lambda: len(replicas[1].calls(kind)) > tried)
        load.wait_for_report("r2 to be ejected again", lambda p: "EJECTED" in (endpoint(p, replicas[1]) or ""),
                             after=load.mark())
        load.wait_for_replicas("r1 and r3 to answer while r2 fails", {"r1", "r3"}, after=ejected + 1)
        recovering = load.mark()
        set_fault(mt, replicas[1], mt.FaultRequest.NONE)
        # After recovery a half-open probe succeeds and r2 serves again.
        load.wait_for_replicas("r2 to serve again", {"r2"}, after=recovering)
        result = load.wait()
        # While failing, r2 answered nothing and the others took the traffic.
        assert "r2" not in load.replicas_between(ejected + 1, recovering), load.progress[ejected + 1:recovering]
        probes = replicas[1].calls(kind)
        assert 3 <= len(probes) <= 30, len(probes)
        if fault == "UNAVAILABLE":
            # UNAVAILABLE is retried elsewhere: the callers saw nothing.
            assert result["failed"] == 0, result
        else:
            # A hung call runs out its deadline (not retryable); ejection bounds how many.
            assert set(result["codes"]) <= {"DEADLINE_EXCEEDED"} and result["failed"] <= 30, result
    finally:
        stop_all(replicas)


def test_the_retry_throttle_keeps_an_outage_from_multiplying(tmp_path, mt):
    # Every replica fails: without the throttle each call would be tried three times.
    replicas = start(2, tmp_path)
    try:
        for r in replicas:
            set_fault(mt, r, mt.FaultRequest.UNAVAILABLE)
        load = Load(",".join(r.address for r in replicas), duration=1.5, concurrency=4,
                    env={"BAZAAR_OUTLIER_DETECTION": "false"})
        result = load.wait()
        calls = result["ok"] + result["failed"]
        attempts = sum(len(r.calls("get-refused")) for r in replicas)
        # Enough calls that, without the throttle, their retries (two each) would exceed what the
        # bucket allows (10 tokens, retries only above 5): 3 x calls > calls + 10 from 6 calls on.
        # A count, not a rate: a slow machine makes fewer calls in the load's time, still far more.
        assert result["ok"] == 0 and calls > 10, result
        # The bucket allows a handful of retries, then none.
        assert calls <= attempts <= calls + 10, (calls, attempts)
    finally:
        stop_all(replicas)


# ---------------------------------------------------------------- DNS

def test_dns_records_decide_the_endpoints(tmp_path):
    dns = Dnsmasq(tmp_path)
    port = free_port("127.0.0.2")
    replicas = [Replica(f"r{i}", tmp_path, host=f"127.0.0.{i}", port=port) for i in (2, 3, 4)]
    try:
        dns.set("shop.test", ["127.0.0.2", "127.0.0.3"])
        env = {"BAZAAR_DNS_REFRESH": "300ms"}
        load = Load(f"dns://{dns.nameserver}/shop.test:{port}", duration=6, concurrency=6, env=env)
        load.wait_for_replicas("the load on the first two records", {"r2", "r3"})
        added = load.mark()
        dns.set("shop.test", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        found = load.wait_for_report("r4 to answer", lambda p: "r4" in p["replicas"], after=added)
        load.wait_for_replicas("all three records to answer", {"r2", "r3", "r4"}, after=found)
        removed = load.mark()
        dns.set("shop.test", ["127.0.0.3", "127.0.0.4"])
        gone = load.wait_for_report("the channel to drop r2's record", lambda p: endpoint(p, replicas[0]) is None,
                                    after=removed)
        served = len(replicas[0].calls("get"))
        load.wait_for_replicas("r3 and r4 to answer without r2", {"r3", "r4"}, after=gone + 1)
        result = load.wait()
        assert result["failed"] == 0, (result, load.errors[:10])
        assert load.replicas_between(0, added) == {"r2", "r3"}
        assert load.replicas_between(found, removed) == {"r2", "r3", "r4"}
        # Once its record was gone, only calls already on their way (6 at most) can have reached r2.
        assert len(replicas[0].calls("get")) <= served + 6
    finally:
        stop_all(replicas)
        dns.stop()


def ipv6_loopback():
    import socket
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_a_and_aaaa_records_are_both_used(tmp_path):
    dns = Dnsmasq(tmp_path)
    port = free_port("127.0.0.2")
    replicas = [Replica("v4", tmp_path, host="127.0.0.2", port=port), Replica("v6", tmp_path, host="::1", port=port)]
    try:
        dns.set("dual.test", ["127.0.0.2", "::1"])
        load = Load(f"dns://{dns.nameserver}/dual.test:{port}", duration=1.5, concurrency=4)
        result = load.wait()
        assert result["failed"] == 0, (result, load.errors[:10])
        assert load.replicas_between(0) == {"v4", "v6"}
        assert any(f"[::1]:{port}=READY" in e for e in load.endpoints_seen()), load.endpoints_seen()
    finally:
        stop_all(replicas)
        dns.stop()


def test_a_connection_failure_makes_the_channel_look_again(tmp_path):
    # Periodic resolution is an hour away; only the failure can make the channel find r4.
    dns = Dnsmasq(tmp_path)
    port = free_port("127.0.0.2")
    replicas = [Replica(f"r{i}", tmp_path, host=f"127.0.0.{i}", port=port) for i in (2, 3, 4)]
    try:
        dns.set("shop.test", ["127.0.0.2", "127.0.0.3"])
        env = {"BAZAAR_DNS_REFRESH": "1h", "BAZAAR_DNS_MIN_REFRESH": "100ms"}
        load = Load(f"dns://{dns.nameserver}/shop.test:{port}", duration=4, concurrency=6, env=env)
        load.wait_for_replicas("the load on the first two records", {"r2", "r3"})
        changed = load.mark()
        dns.set("shop.test", ["127.0.0.3", "127.0.0.4"])
        replicas[0].kill9()
        found = load.wait_for_report("r4 to answer", lambda p: "r4" in p["replicas"], after=load.mark())
        # (The report that first has r4 may still count calls r2 answered before it was killed.)
        load.wait_for_replicas("r3 and r4 to answer", {"r3", "r4"}, after=found + 1)
        result = load.wait()
        assert result["failed"] == 0, (result, load.errors[:10])
        assert load.replicas_between(0, changed) == {"r2", "r3"}
        assert load.replicas_between(found + 1) == {"r3", "r4"}
    finally:
        stop_all(replicas)
        dns.stop()


def test_unresolvable_name_fails_calls_with_a_clear_status(tmp_path):
    dns = Dnsmasq(tmp_path)
    try:
        load = Load(f"dns://{dns.nameserver}/nowhere.test:1", duration=0.5, concurrency=1)
        result = load.wait()
        assert result["ok"] == 0 and set(result["codes"]) == {"UNAVAILABLE"}, result
        assert any("nowhere.test" in e for e in load.errors), load.errors[:3]
    finally:
        dns.stop()


# ---------------------------------------------------------------- deadlines and cancellation

def chain(tmp_path):
    c = Replica("C", tmp_path)
    b = Replica("B", tmp_path, next_target=c.address)
    a = Replica("A", tmp_path, next_target=b.address)
    return a, b, c


def test_deadline_shrinks_along_the_chain(tmp_path, mt):
    a, b, c = chain(tmp_path)
    try:
        with grpc.insecure_channel(a.address) as ch:
            reply = generic_unary(ch, "/meshtest.v1.MeshTest/Relay", mt.RelayRequest(id="d1"), mt.RelayReply,
                                  timeout=HANG_GUARD)
        hops = [(h.replica, h.deadline_ms) for h in reply.hops]
        assert [h[0] for h in hops] == ["A", "B", "C"]
        left = [h[1] for h in hops]
        # Each hop sees the caller's deadline, less the margin at each hop (so strictly less) and
        # whatever time passed; C still has one. The caller's deadline is the hang guard: at most
        # that (grpc-timeout travels in whole units of the sender's choosing, here tenths of a
        # second: allow 1% of rounding up), and more than half of it, which only rules out a wrong unit.
        assert HANG_GUARD * 500 < left[0] <= HANG_GUARD * 1010 and 0 < left[2] < left[1] < left[0], hops
    finally:
        for r in (a, b, c):
            r.stop()


def test_cancelling_at_the_edge_cancels_the_last_hop(tmp_path, mt):
    a, b, c = chain(tmp_path)
    try:
        with grpc.insecure_channel(a.address) as ch:
            call = ch.unary_unary("/meshtest.v1.MeshTest/Relay", request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=mt.RelayReply.FromString)
            future = call.future(mt.RelayRequest(id="c1", hang=True), timeout=HANG_GUARD)
            wait_for("the call to reach C", lambda: any(x.startswith("c1 ") for x in c.calls("relay")))
            future.cancel()
            wait_for("C to see the cancellation", lambda: "c1" in c.calls("relay-cancelled"))
    finally:
        for r in (a, b, c):
            r.stop()


# ---------------------------------------------------------------- certificate rotation

def peer_certificate_serial(address, certs):
    import ssl
    from cryptography import x509
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client-key.pem"))
    ctx.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket_connect(host, int(port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def socket_connect(host, port):
    import socket
    return socket.create_connection((host, port), timeout=5)


def file_serial(path):
    from cryptography import x509
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_rotating_certificates_under_load_fails_nothing(tmp_path, certs):
    env = {"BAZAAR_TLS_RELOAD_INTERVAL": "100ms"}
    replicas = start(2, tmp_path, tls_dir=certs, env=env)
    try:
        old = file_serial(certs / "server.pem")
        assert peer_certificate_serial(replicas[0].address, certs) == old
        load = Load(",".join(r.address for r in replicas), duration=4, concurrency=8, tls_dir=certs, env=env)
        load.wait_for_replicas("the load on both replicas", {"r1", "r2"})
        subprocess.run([binary("bazaar"), "certs", "--dir", str(certs), "server"], check=True, capture_output=True)
        new = file_serial(certs / "server.pem")
        assert new != old
        # Each replica notices the new files (it looks every 100 ms) and says so.
        wait_for("both replicas to reload the certificate",
                 lambda: all(any(o.startswith("tls: reloaded the server certificate") for o in r.output) for r in replicas),
                 detail=lambda: [r.output for r in replicas])
        rotated = load.mark()
        # New connections get the new certificate ...
        assert peer_certificate_serial(replicas[0].address, certs) == new
        assert peer_certificate_serial(replicas[1].address, certs) == new
        load.wait_for_replicas("both replicas to answer after the reload", {"r1", "r2"}, after=rotated)
        result = load.wait()
        # ... while the calls on the connections made before went on.
        assert result["failed"] == 0, (result, load.errors[:10])
    finally:
        stop_all(replicas)


def test_sighup_reloads_certificates(tmp_path, certs):
    # No periodic check: only the signal can make the server notice.
    replicas = start(1, tmp_path, tls_dir=certs, env={"BAZAAR_TLS_RELOAD_INTERVAL": "0"})
    try:
        subprocess.run([binary("bazaar"), "certs", "--dir", str(certs), "server"], check=True, capture_output=True)
        new = file_serial(certs / "server.pem")
        assert peer_certificate_serial(replicas[0].address, certs) != new
        replicas[0].proc.send_signal(signal.SIGHUP)
        wait_for("the new certificate to be served", lambda: peer_certificate_serial(replicas[0].address, certs) == new)
    finally:
        stop_all(replicas)


# ---------------------------------------------------------------- draining with health checks

def test_a_draining_replica_leaves_the_rotation_before_it_goes_away(tmp_path):
    # The drain delay is what a Kubernetes preStop would give: health says NOT_SERVING while
    # the replica still serves; health-checking clients move away, so no call meets a GOAWAY race.
    replicas = start(3, tmp_path, env={"BAZAAR_DRAIN_DELAY": "1500ms"})
    try:
        load = Load(",".join(r.address for r in replicas), duration=4, concurrency=8)
        load.wait_for_replicas("the load on every replica", {"r1", "r2", "r3"})
        replicas[1].proc.send_signal(signal.SIGTERM)
        # The channel hears NOT_SERVING while r2's connection is still up: out of the rotation
        # before it goes away.
        out = load.wait_for_report("the channel to see r2 draining",
                                   lambda p: endpoint(p, replicas[1]) == "READY/NOT_SERVING", after=load.mark())
        served = len(replicas[1].calls("get"))
        load.wait_for_replicas("r1 and r3 to answer", {"r1", "r3"}, after=out + 1)
        result = load.wait()
        assert replicas[1].proc.wait(timeout=HANG_GUARD) == 0
        assert result["failed"] == 0, (result, load.errors[:10])
        # From then on only calls already on their way (8 at most) can have reached r2.
        assert len(replicas[1].calls("get")) <= served + 8
        assert served, "r2 served nothing before the drain"
    finally:
        stop_all(replicas)

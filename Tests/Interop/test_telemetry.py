"""Telemetry with real peers: Debian's Prometheus scrapes a replica and answers PromQL, promtool
checks the exposition, the rules and the configuration, a collector built on PyPI's
opentelemetry-proto receives the spans of a three-hop chain, and every log line is JSON."""
import json
import pathlib
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import grpc
import pytest
import yaml

from mesh_fixtures import Replica, free_port, generic_unary
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
OBS = ROOT / "deployments" / "observability"
NO_TRACES = {"OTEL_TRACES_EXPORTER": "none"}


@pytest.fixture(scope="module")
def mt(pb2):
    return pb2("meshtest/v1/mesh_test.proto")


def get_metrics(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def call(mt, replica, method, request, response, metadata=(), timeout=5):
    with grpc.insecure_channel(replica.address) as ch:
        return generic_unary(ch, f"/meshtest.v1.MeshTest/{method}", request, response, timeout=timeout, metadata=metadata)


class Prometheus:
    def __init__(self, workdir, targets):
        self.port = free_port()
        cfg = pathlib.Path(workdir) / "prometheus.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(OBS / "prometheus" / "alerts.yml")],
            "scrape_configs": [{"job_name": "bazaar", "static_configs": [{"targets": targets}]}],
        }))
        self.proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={workdir}/tsdb",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        def ready():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5)
                return True
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited: {self.proc.stderr.read()}")
                return False
        wait_for("prometheus to be ready", ready)

    def query(self, expr):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
        except urllib.error.HTTPError as e:
            answer = json.loads(e.read())
        return answer

    def value(self, expr):
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr, expected):
        wait_for(f"{expr} = {expected}", lambda: self.value(expr) == expected,
                 detail=lambda: f"{expr} = {self.value(expr)}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, mt):
    """A replica with 37 good Get calls, 5 Add calls and 3 failed Gets, scraped by Prometheus."""
    workdir = tmp_path_factory.mktemp("prometheus")
    replica = Replica("scraped", workdir, telemetry=True, env={"BAZAAR_METRICS_PORT": "0", **NO_TRACES})
    for i in range(37):
        call(mt, replica, "Get", mt.MeshRequest(id=f"g{i}"), mt.MeshReply)
    for i in range(5):
        call(mt, replica, "Add", mt.MeshRequest(id=f"a{i}"), mt.MeshReply)
    call(mt, replica, "SetFault", mt.FaultRequest(fault=mt.FaultRequest.UNAVAILABLE), mt.MeshReply)
    for i in range(3):
        with pytest.raises(grpc.RpcError):
            call(mt, replica, "Get", mt.MeshRequest(id=f"f{i}"), mt.MeshReply)
    prometheus = Prometheus(workdir, [f"127.0.0.1:{replica.metrics_port}"])
    yield replica, prometheus
    prometheus.stop()
    replica.stop()


def test_prometheus_counts_the_calls(scraped):
    replica, prometheus = scraped
    prometheus.wait_for('up{job="bazaar"}', 1)
    prometheus.wait_for('sum(grpc_server_handled_total{grpc_method="Get",grpc_code="OK"})', 37)
    assert prometheus.value('sum(grpc_server_handled_total{grpc_method="Get",grpc_code="Unavailable"})') == 3
    assert prometheus.value('sum(grpc_server_started_total{grpc_method="Get"})') == 40
    assert prometheus.value('sum(grpc_server_handled_total{grpc_method="Add",grpc_type="unary",grpc_service="meshtest.v1.MeshTest"})') == 5
    assert prometheus.value('sum(grpc_server_handling_seconds_count{grpc_method="Get"})') == 40
    # Process and transport metrics are there too.
    assert prometheus.value("process_resident_memory_bytes") > 1e6
    assert prometheus.value("process_open_fds") > 3
    assert prometheus.value('count(bazaar_event_loop_lag_seconds_bucket)') > 0


def test_promtool_accepts_the_exposition(scraped):
    replica, _ = scraped
    text = get_metrics(replica.metrics_port)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="meshtest.v1.MeshTest",grpc_method="Get",le="+Inf"} 40' in text


def test_admin_endpoint_answers_http_correctly(scraped):
    replica, _ = scraped
    base = f"http://127.0.0.1:{replica.metrics_port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nothing", timeout=5)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(base + "/metrics", data=b"x", method="POST"), timeout=5)
    assert e.value.code == 405 and e.value.headers["Allow"] == "GET, HEAD"
    # Garbage is refused and the endpoint goes on serving.
    import socket
    with socket.create_connection(("127.0.0.1", replica.metrics_port), timeout=5) as s:
        s.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
        s.recv(4096)
    assert "grpc_server_started_total" in get_metrics(replica.metrics_port)


def test_rules_config_and_the_alert_tests_pass():
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=OBS / "prometheus", capture_output=True, text=True)
        assert result.returncode == 0, (args, result.stdout + result.stderr)


def test_dashboards_parse_and_every_query_is_valid_promql(scraped):
    _, prometheus = scraped
    uids = set()
    for path in sorted((OBS / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert board["panels"], path
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$service", ".*")
                answer = prometheus.query(expr)
                assert answer["status"] == "success", (path.name, panel["title"], answer)
    # The RED dashboard's request rate has data once two scrapes are in.
    wait_for("a request rate from two scrapes",
             lambda: prometheus.value('sum(rate(grpc_server_started_total{grpc_service=~".*"}[1m]))') is not None)


def test_fluent_bit_config_ships_json_logs_to_elasticsearch():
    config = yaml.safe_load((OBS / "fluent-bit" / "fluent-bit.yaml").read_text())
    parsers = yaml.safe_load((OBS / "fluent-bit" / "parsers.yaml").read_text())
    pipeline = config["pipeline"]
    assert [o["name"] for o in pipeline["outputs"]] == ["es"]
    kubernetes = next(f for f in pipeline["filters"] if f["name"] == "kubernetes")
    assert kubernetes["merge_log"] is True
    cri = next(p for p in parsers["parsers"] if p["name"] == "cri")
    import re
    pattern = re.compile(cri["regex"].replace("(?<", "(?P<"))
    m = pattern.match('2026-11-29T08:00:00.123456789Z stdout F {"level":"info","message":"rpc served"}')
    assert json.loads(m.group("log"))["message"] == "rpc served"


# ---------------------------------------------------------------- tracing

@pytest.fixture
def collector(tmp_path):
    port = free_port()
    out = tmp_path / "spans.jsonl"
    proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).parent / "otlp_collector.py"), str(port), str(out)],
                            stdout=subprocess.PIPE, text=True)
    assert "listening" in proc.stdout.readline()
    yield f"http://127.0.0.1:{port}", out
    proc.terminate()
    proc.wait(timeout=10)


def spans_in(path):
    """The spans the collector has written (whole lines only: it may be writing one now)."""
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []


def wait_for_spans(path, what, enough):
    """The spans in `path` once `enough(spans)` holds."""
    def got():
        spans = spans_in(path)
        return spans if enough(spans) else None
    return wait_for(what, got, detail=lambda: spans_in(path))


def read_spans(path, count):
    return wait_for_spans(path, f"{count} spans", lambda spans: len(spans) >= count)


def test_a_three_hop_chain_is_one_trace(tmp_path, mt, collector):
    endpoint, out = collector
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "BAZAAR_METRICS_PORT": "off"}
    c = Replica("C", tmp_path, telemetry=True, env=env)
    b = Replica("B", tmp_path, telemetry=True, env=env, next_target=c.address)
    a = Replica("A", tmp_path, telemetry=True, env=env, next_target=b.address)
    try:
        trace_id, edge_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        call(mt, a, "Relay", mt.RelayRequest(id="t1"), mt.RelayReply, metadata=(("traceparent", f"00-{trace_id}-{edge_span}-01"),))
        spans = read_spans(out, 5)
        assert {s["trace_id"] for s in spans} == {trace_id}
        by = {(s["resource"]["service.name"], s["kind"]): s for s in spans}
        assert set(by) == {("A", "SPAN_KIND_SERVER"), ("A", "SPAN_KIND_CLIENT"), ("B", "SPAN_KIND_SERVER"),
                           ("B", "SPAN_KIND_CLIENT"), ("C", "SPAN_KIND_SERVER")}
        chain = [by[("A", "SPAN_KIND_SERVER")], by[("A", "SPAN_KIND_CLIENT")], by[("B", "SPAN_KIND_SERVER")],
                 by[("B", "SPAN_KIND_CLIENT")], by[("C", "SPAN_KIND_SERVER")]]
        assert chain[0]["parent_span_id"] == edge_span
        for parent, child in zip(chain, chain[1:]):
            assert child["parent_span_id"] == parent["span_id"], (parent, child)
        for s in spans:
            attrs = s["attributes"]
            assert s["name"] == "meshtest.v1.MeshTest/Relay"
            assert attrs["rpc.system"] == {"stringValue": "grpc"}
            assert attrs["rpc.service"] == {"stringValue": "meshtest.v1.MeshTest"}
            assert attrs["rpc.method"] == {"stringValue": "Relay"}
            assert attrs["rpc.grpc.status_code"] == {"intValue": "0"}
            assert int(s["start_time_unix_nano"]) <= int(s["end_time_unix_nano"])
            if s["kind"] == "SPAN_KIND_SERVER":
                assert attrs["client.address"] == {"stringValue": "127.0.0.1"}
            else:
                assert "server.address" in attrs
        # Children start and end within their parents.
        for parent, child in zip(chain, chain[1:]):
            assert int(parent["start_time_unix_nano"]) <= int(child["start_time_unix_nano"])
            assert int(child["end_time_unix_nano"]) <= int(parent["end_time_unix_nano"])
    finally:
        for r in (a, b, c):
            r.stop()


def test_an_unsampled_caller_is_followed_and_errors_are_marked(tmp_path, mt, collector):
    endpoint, out = collector
    r = Replica("R", tmp_path, telemetry=True, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "BAZAAR_METRICS_PORT": "off"})
    try:
        call(mt, r, "Get", mt.MeshRequest(id="quiet"), mt.MeshReply,
             metadata=(("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),))
        call(mt, r, "SetFault", mt.FaultRequest(fault=mt.FaultRequest.UNAVAILABLE), mt.MeshReply)
        with pytest.raises(grpc.RpcError):
            call(mt, r, "Get", mt.MeshRequest(id="loud"), mt.MeshReply)
        # A sampled call after those: spans leave in the order they end, so once its span is in,
        # any span of the calls before it would be in too.
        marker = "1bf92f3577b34da6a3ce929d0e0e4736"
        call(mt, r, "SetFault", mt.FaultRequest(fault=mt.FaultRequest.NONE), mt.MeshReply,
             metadata=(("traceparent", f"00-{marker}-00f067aa0ba902b7-01"),))
        spans = wait_for_spans(out, "the marker call's span", lambda spans: marker in {s["trace_id"] for s in spans})
        assert "0af7651916cd43dd8448eb211c80319c" not in {s["trace_id"] for s in spans}
        failed = [s for s in spans if s["name"] == "meshtest.v1.MeshTest/Get"]
        assert len(failed) == 1 and failed[0]["status"]["code"] == "STATUS_CODE_ERROR"
        assert failed[0]["attributes"]["rpc.grpc.status_code"] == {"intValue": "14"}
    finally:
        r.stop()


def test_spans_are_dropped_and_counted_when_the_collector_is_down(tmp_path, mt):
    r = Replica("R", tmp_path, telemetry=True, env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                                     "BAZAAR_METRICS_PORT": "0"})
    try:
        for i in range(20):
            call(mt, r, "Get", mt.MeshRequest(id=f"x{i}"), mt.MeshReply)  # never slowed down by export

        def dropped():
            return next((float(line.split()[1]) for line in get_metrics(r.metrics_port).splitlines()
                         if line.startswith("bazaar_spans_dropped_total ")), 0)
        wait_for("20 spans counted as dropped", lambda: dropped() >= 20, detail=dropped)
    finally:
        r.stop()


# ---------------------------------------------------------------- logs

def test_every_log_line_is_json_with_its_trace_and_no_secret(tmp_path, mt):
    r = Replica("L", tmp_path, telemetry=True, env={"BAZAAR_LOG_LEVEL": "debug", "BAZAAR_METRICS_PORT": "off", **NO_TRACES,
                                                     "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    secret = "s3cr3t-token-4f9a"
    trace_id = "5af7651916cd43dd8448eb211c80319c"
    try:
        for i in range(10):
            call(mt, r, "Get", mt.MeshRequest(id=f"l{i}"), mt.MeshReply,
                 metadata=(("authorization", f"Bearer {secret}"), ("x-api-token", secret), ("password", secret),
                           ("traceparent", f"00-{trace_id}-b7ad6b716920333{i}-01")))
    finally:
        assert r.stop() == 0  # (returns once every line it wrote is in r.logs)
    records = [json.loads(line) for line in r.logs]  # raises on any line that is not JSON
    access = [x for x in records if x.get("kind") == "access"]
    started = [x for x in records if x["message"] == "rpc started"]
    assert len(access) == 10 and len(started) == 10
    for x in records:
        assert {"time", "level", "service", "message"} <= set(x)
        assert x["time"].endswith("Z") and "T" in x["time"]
    for x in access + started:
        assert x["trace_id"] == trace_id and len(x["span_id"]) == 16
        assert x["method"] == "/meshtest.v1.MeshTest/Get"
    assert all(x["code"] == "OK" and x["duration_ms"] >= 0 for x in access)
    assert started[0]["metadata.authorization"] == "[redacted]"
    everything = "".join(r.logs) + "".join(r.output)
    assert secret not in everything


def test_access_logs_can_be_sampled_away(tmp_path, mt):
    r = Replica("S", tmp_path, telemetry=True, env={"BAZAAR_ACCESS_LOG_SAMPLE": "0", "BAZAAR_METRICS_PORT": "off", **NO_TRACES})
    try:
        for i in range(10):
            call(mt, r, "Get", mt.MeshRequest(id=f"s{i}"), mt.MeshReply)
    finally:
        r.stop()  # (returns once every line it wrote is in r.logs)
    assert [line for line in r.logs if '"access"' in line] == []


def test_bad_telemetry_settings_stop_the_process_with_a_message(tmp_path):
    from rpc_fixtures import binary
    for key, value in [("BAZAAR_LOG_LEVEL", "loud"), ("OTEL_TRACES_SAMPLER", "sometimes"), ("BAZAAR_METRICS_PORT", "99999")]:
        p = subprocess.run([binary("mesh-test"), "serve", "--telemetry"], env={**__import__("os").environ, key: value},
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and key in p.stderr, (key, p.stderr)


def test_outbound_calls_are_counted_under_client_names(tmp_path, mt):
    c = Replica("C", tmp_path)
    b = Replica("B", tmp_path, telemetry=True, next_target=c.address, env={"BAZAAR_METRICS_PORT": "0", **NO_TRACES})
    try:
        for i in range(3):
            call(mt, b, "Relay", mt.RelayRequest(id=f"o{i}"), mt.RelayReply)
        text = get_metrics(b.metrics_port)
        labels = 'grpc_type="unary",grpc_service="meshtest.v1.MeshTest",grpc_method="Relay"'
        assert f"grpc_client_started_total{{{labels}}} 3" in text
        assert f'grpc_client_handled_total{{{labels},grpc_code="OK"}} 3' in text
        assert f"grpc_client_handling_seconds_count{{{labels}}} 3" in text
        assert f"grpc_server_started_total{{{labels}}} 3" in text
    finally:
        b.stop()
        c.stop()


def test_libevent_messages_become_json_log_lines(tmp_path, mt):
    """evdns reports a DNS server that refuses a query ("Nameserver ... has failed") through
    libevent's log, which by default writes its own format to stderr. dnsmasq with no upstream
    refuses the AAAA query for a name it has only an A record for, so resolving a dns:/// target
    makes such a message: it must arrive as a JSON log line, not as stray stderr text."""
    from mesh_fixtures import Dnsmasq
    dns = Dnsmasq(tmp_path)
    c = Replica("C", tmp_path)
    dns.set("upstream.test", ["127.0.0.1"])
    b = Replica("B", tmp_path, telemetry=True, next_target=f"dns:///upstream.test:{c.port}",
                env={"BAZAAR_METRICS_PORT": "off", "BAZAAR_DNS_SERVER": dns.nameserver, **NO_TRACES})
    try:
        call(mt, b, "Relay", mt.RelayRequest(id="dns1"), mt.RelayReply)
    finally:
        b.stop()  # (returns once every line it wrote is in b.logs and b.output)
        c.stop()
        dns.stop()
    records = [json.loads(line) for line in b.logs]  # raises on any line that is not JSON
    from_libevent = [x for x in records if x.get("library") == "libevent"]
    assert from_libevent and any("Nameserver" in x["message"] for x in from_libevent), records
    assert not [line for line in b.output if line.startswith("[") or "Nameserver" in line], b.output

"""The kustomize base and overlays: they build, kubernetes-validate --strict accepts them for the
oldest and newest Kubernetes we support, and every workload has the pod hygiene the issue asks for
(probes, resources, a locked-down securityContext, spread, mesh identity, a prod that survives a
node drain)."""
import subprocess
import sys

import pytest

from deploy_fixtures import (BAZAAR, K8S, KUBE_VERSIONS, OVERLAYS, ROOT, by_kind, check_the_storefront,
                             kubernetes_validate, kustomize, kustomize_text, pod_spec, workloads)


def test_generated_manifests_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-kustomize.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(overlay, version, tmp_path):
    problems = kubernetes_validate(kustomize_text(f"overlays/{overlay}"), tmp_path, version)
    assert not problems, "\n".join(problems)


def test_kubernetes_validate_catches_an_unknown_field(tmp_path):
    """The check above can fail: a typo in a Deployment is reported."""
    text = kustomize_text("overlays/dev").replace("revisionHistoryLimit:", "revisionHistoryLimits:", 1)
    assert kubernetes_validate(text, tmp_path, KUBE_VERSIONS[-1])


def config_of(docs, name):
    maps = by_kind(docs, "ConfigMap")
    data = dict(maps["bazaar-common"]["data"])
    data.update(maps[f"{name}-config"]["data"])
    return data


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_locked_down(overlay):
    docs = kustomize(f"overlays/{overlay}")
    for w in workloads(docs):
        name = f"{w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == w["metadata"]["name"], f"{name}: its own ServiceAccount"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"
            if w["kind"] != "Job":
                assert "readinessProbe" in c and "livenessProbe" in c, name
            # No credential in the environment: secrets are mounted as files.
            for env in c.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), f"{name}: {env['name']} from a Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_native_grpc_probes_on_their_health_port(overlay):
    docs = kustomize(f"overlays/{overlay}")
    deployments = by_kind(docs, "Deployment")
    for name in BAZAAR:
        c = pod_spec(deployments[name])["containers"][0]
        config = config_of(docs, name)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if name == "gateway":
                assert c[probe]["httpGet"]["port"] == "http"
            else:
                assert c[probe]["grpc"]["port"] == int(config["BAZAAR_HEALTH_PORT"]), f"{name} {probe}"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == int(config["BAZAAR_METRICS_PORT"])
        own_port = config.get("BAZAAR_GATEWAY_PORT" if name == "gateway" else "BAZAAR_PORT")
        assert ports["http" if name == "gateway" else "grpc"] == int(own_port)
        spread = pod_spec(deployments[name])["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        # The drain (delay + timeout) fits in the grace period.
        grace = pod_spec(deployments[name])["terminationGracePeriodSeconds"]
        assert int(config["BAZAAR_DRAIN_DELAY"].rstrip("s")) + int(config["BAZAAR_DRAIN_TIMEOUT"].rstrip("s")) < grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_upstream_targets_are_headless_services_on_the_right_port(overlay):
    docs = kustomize(f"overlays/{overlay}")
    services = by_kind(docs, "Service")
    common = by_kind(docs, "ConfigMap")["bazaar-common"]["data"]
    for name in BAZAAR[:-1]:
        target = common[f"BAZAAR_{name.upper()}_TARGET"]
        host, port = target.removeprefix("dns:///").rsplit(":", 1)
        assert host == f"{name}-headless.bazaar.svc.cluster.local"
        headless = services[f"{name}-headless"]
        assert headless["spec"]["clusterIP"] == "None"
        assert int(port) in [p["port"] for p in headless["spec"]["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_storefront_has_no_database_and_reaches_its_five_upstreams(overlay):
    check_the_storefront(kustomize(f"overlays/{overlay}"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_has_a_spiffe_mesh_certificate(overlay):
    docs = kustomize(f"overlays/{overlay}")
    certificates = {c["spec"]["secretName"]: c for c in docs if c["kind"] == "Certificate"}
    issuers = by_kind(docs, "Issuer")
    deployments = by_kind(docs, "Deployment")
    domain = by_kind(docs, "ConfigMap")["bazaar-common"]["data"]["BAZAAR_TRUST_DOMAIN"]
    for name in BAZAAR:
        volumes = {v["name"]: v for v in pod_spec(deployments[name])["volumes"]}
        secret = volumes["mesh-tls"]["secret"]["secretName"]
        cert = certificates[secret]
        assert cert["spec"]["uris"] == [f"spiffe://{domain}/{name}"]
        assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
        assert cert["spec"]["issuerRef"]["name"] in issuers
    ca_issuer = issuers["bazaar-mesh"]["spec"]["ca"]["secretName"]
    assert certificates[ca_issuer]["spec"]["isCA"] is True


def test_prod_survives_a_node_drain_and_scales():
    docs = kustomize("overlays/prod")
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for name in BAZAAR:
        # The HPA owns the count; a count in the manifest would reset it on every apply.
        assert "replicas" not in deployments[name]["spec"], name
        hpa = hpas[name]["spec"]
        assert hpa["scaleTargetRef"]["name"] == name and hpa["minReplicas"] >= 2
        kinds = [m["type"] for m in hpa["metrics"]]
        # CPU everywhere, plus the request-rate hook where calls measure the load (not accounts,
        # whose sign-ins are argon2-bound, nor notifications, fed by the event stream, nor web,
        # whose pages per pod are not measured yet).
        expected = ["Resource"] if name in ("accounts", "notifications", "web") else ["Resource", "Object"]
        assert kinds == expected, f"{name}: {kinds}"
        for m in hpa["metrics"]:
            if m["type"] == "Object":
                assert m["object"]["describedObject"]["name"] == name
                assert m["object"]["target"]["type"] == "AverageValue"  # divided by the pod count
        pdb = pdbs[name]["spec"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in pdb["selector"]["matchLabels"].items()), name
        assert pdb["minAvailable"] < hpa["minReplicas"], f"{name}: a drain must be able to evict one"
        spread = pod_spec(deployments[name])["topologySpreadConstraints"]
        assert any(s["topologyKey"] == "kubernetes.io/hostname" and s["whenUnsatisfiable"] == "DoNotSchedule"
                   for s in spread), name
    # prod keeps no data store in the cluster.
    assert not [w for w in workloads(docs) if w["metadata"]["name"] in ("postgres", "redis")]


def test_dev_is_single_replica_with_its_data_stores():
    docs = kustomize("overlays/dev")
    deployments = by_kind(docs, "Deployment")
    assert all(deployments[n]["spec"]["replicas"] == 1 for n in BAZAAR)
    assert {"postgres", "redis"} <= set(by_kind(docs, "StatefulSet"))
    assert not by_kind(docs, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_database_credentials_come_from_a_mounted_service_file(overlay):
    docs = kustomize(f"overlays/{overlay}")
    deployments = by_kind(docs, "Deployment")
    for name in ("catalog", "accounts", "orders", "notifications"):
        config = config_of(docs, name)
        assert config["BAZAAR_DATABASE_URL"] == f"service={name}"
        assert "password" not in config["BAZAAR_DATABASE_URL"]
        spec = pod_spec(deployments[name])
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert config["PGSERVICEFILE"].startswith(mounts["database"] + "/")
        assert volumes["database"]["secret"]["secretName"] == f"{name}-database"
    # Only accounts can read the token signing key.
    for name in BAZAAR:
        items = {i["key"] for i in next(v for v in pod_spec(deployments[name])["volumes"]
                                          if v["name"] == "jwt")["secret"]["items"]}
        assert ("jwt-key.pem" in items) == (name == "accounts"), name


def test_dev_secret_script_writes_every_secret_the_overlay_mounts(tmp_path):
    docs = kustomize("overlays/dev")
    mounted = set()
    for w in workloads(docs):
        for v in pod_spec(w).get("volumes", []):
            if "secret" in v:
                mounted.add(v["secret"]["secretName"])
    issued = {c["spec"]["secretName"] for c in docs if c["kind"] == "Certificate"}
    result = subprocess.run(["bash", str(K8S / "overlays" / "dev" / "make-secrets.sh"), "--print"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import yaml
    printed = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout) if d}
    assert mounted - issued <= set(printed), f"missing: {mounted - issued - set(printed)}"
    import base64
    init = base64.b64decode(printed["postgres-init"]["data"]["10-bazaar.sql"]).decode()
    for db in ("catalog", "accounts", "orders", "notifications"):
        service_file = base64.b64decode(printed[f"{db}-database"]["data"]["pg_service.conf"]).decode()
        password = next(l.split("=", 1)[1] for l in service_file.splitlines() if l.startswith("password="))
        assert f"CREATE ROLE {db} LOGIN PASSWORD '{password}';" in init


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_observability_stack_is_valid_kubernetes(version, tmp_path):
    text = kustomize_text("../observability")
    problems = kubernetes_validate(text, tmp_path, version)
    assert not problems, "\n".join(problems)
    docs = kustomize("../observability")
    maps = by_kind(docs, "ConfigMap")
    # The stack mounts the telemetry issue's files, not copies of them.
    prometheus = next(m for n, m in maps.items() if n.startswith("prometheus-config"))
    assert prometheus["data"]["alerts.yml"] == (ROOT / "deployments/observability/prometheus/alerts.yml").read_text()
    dashboards = next(m for n, m in maps.items() if n.startswith("grafana-dashboards"))
    assert set(dashboards["data"]) == {p.name for p in (ROOT / "deployments/observability/grafana/dashboards").glob("*.json")}

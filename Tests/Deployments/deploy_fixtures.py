"""Shared helpers of the deployment checks: rendering the kustomize overlays and the Helm chart,
and the tools (kubectl's kustomize, kubernetes-validate, checkov) found or refused clearly."""
import functools
import os
import pathlib
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deployments"
K8S = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm" / "bazaar"
OVERLAYS = ["dev", "prod"]
# The workloads, the gateway last (the others are its upstreams); web is the storefront.
BAZAAR = ["catalog", "accounts", "cart", "orders", "notifications", "web", "gateway"]
# The storefront's upstreams, called over the mesh (Sources/Shop/Web/WebAssembly.swift).
WEB_UPSTREAMS = ["catalog", "accounts", "cart", "orders", "notifications"]
VENV_BIN = pathlib.Path(sys.executable).parent
# The Kubernetes versions the manifests must be valid for: the oldest we support (native gRPC
# probes are GA from 1.27; matchLabelKeys needs 1.27 too) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
# Custom resources kubernetes-validate has no schema for; anything else unknown is an error.
CUSTOM_KINDS = {("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer"),
                ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def tool(name):
    """A command-line tool, from the test venv first, then PATH; a clear failure if missing."""
    for candidate in (VENV_BIN / name, ROOT / ".venv-checkov" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise AssertionError(f"{name} is not installed: `make test` installs it (scripts/python-env.sh);"
                             " kubectl comes with the machine image (https://kubernetes.io/docs/tasks/tools/)")
    return found


@functools.lru_cache(maxsize=None)
def kustomize_text(path):
    result = subprocess.run([tool("kubectl"), "kustomize", str(K8S / path)], capture_output=True, text=True)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return result.stdout


def kustomize(path):
    return [d for d in yaml.safe_load_all(kustomize_text(path)) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload):
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def check_the_storefront(docs, namespace="bazaar"):
    """The web app in rendered manifests (an overlay or the chart): `bazaar serve web`, no database
    (no connection string, no service file, no database Secret), sessions in Redis, the five
    upstreams reached through their headless Services on their ports, and only the gateway in
    front of it (its upstreams name web; no Ingress or exposed Service leads to it)."""
    maps, services = by_kind(docs, "ConfigMap"), by_kind(docs, "Service")
    config = {**maps["bazaar-common"]["data"], **maps["web-config"]["data"]}
    spec = pod_spec(by_kind(docs, "Deployment")["web"])
    container = spec["containers"][0]
    assert container["args"] == ["serve", "web"]
    assert config["BAZAAR_PORT"] == "9106"
    assert not {"BAZAAR_DATABASE_URL", "PGSERVICEFILE", "PGPASSFILE"} & set(config), "web has no database"
    assert "database" not in {v["name"] for v in spec["volumes"]}
    assert "database" not in {m["name"] for m in container["volumeMounts"]}
    assert not any(v.get("secret", {}).get("secretName", "").endswith("-database") for v in spec["volumes"])
    assert config["BAZAAR_REDIS_ADDR"]
    for up in WEB_UPSTREAMS:
        host, port = config[f"BAZAAR_{up.upper()}_TARGET"].removeprefix("dns:///").rsplit(":", 1)
        assert host == f"{up}-headless.{namespace}.svc.cluster.local", up
        own = {**maps["bazaar-common"]["data"], **maps[f"{up}-config"]["data"]}["BAZAAR_PORT"]
        assert port == own, f"web -> {up}: {port} is not {up}'s port {own}"
    gateway = {**maps["bazaar-common"]["data"], **maps["gateway-config"]["data"]}
    assert gateway["BAZAAR_UPSTREAMS"].split(",") == [n for n in BAZAAR if n != "gateway"]
    assert gateway["BAZAAR_WEB_TARGET"] == f"dns:///web-headless.{namespace}.svc.cluster.local:9106"
    assert services["web"]["spec"]["type"] == "ClusterIP"
    for ingress in by_kind(docs, "Ingress").values():
        backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
        assert backends == {"gateway"}, backends


def kubernetes_validate(text, tmp_path, version):
    """Runs kubernetes-validate --strict; returns the lines that are not a known custom kind."""
    f = tmp_path / f"manifests-{version}.yaml"
    f.write_text(text)
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(f)],
                            capture_output=True, text=True)
    problems = []
    for line in (result.stdout + result.stderr).splitlines():
        if "Couldn't find schema for kind" in line and any(
                f"kind {kind} with api version {api}" in line for api, kind in CUSTOM_KINDS):
            continue
        if line.strip():
            problems.append(line)
    if result.returncode != 0 and not problems:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    return problems


# Containers: podman with the settings that work on these machines (deployments/container/env.sh).
IMAGE_TAG = "localhost/bazaar:test"


def podman_env(extra=None):
    here = DEPLOY / "container"
    store = os.environ.get("BAZAAR_CONTAINERS", "/var/tmp/bazaar-containers")
    return {**os.environ, "BAZAAR_CONTAINERS": store, "CONTAINERS_CONF": str(here / "podman" / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": f"{store}/storage.conf", "BUILDAH_ISOLATION": "chroot", **(extra or {})}


def podman(*args, check=True, timeout=120):
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stderr}")
    return result


def podman_usable():
    """Why podman cannot build and run the image here, or None when it can."""
    if not shutil.which("podman"):
        return "podman is not installed (scripts/install-deps.sh installs it on Debian)"
    if os.geteuid() != 0:
        return "building the base image needs root (debootstrap)"
    # Storage settings are written by env.sh.
    subprocess.run(["bash", "-c", ". deployments/container/env.sh"], cwd=ROOT, check=True)
    probe = podman("info", check=False)
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.strip().splitlines()[-1:]}"
    return None

"""The Helm chart, with Helm's own library (PyPI helm-python-sdk, no helm binary): lint is clean,
the schema refuses bad values with a message naming them, every rendering is valid Kubernetes,
and with its defaults the chart deploys exactly what the kustomize prod overlay deploys."""
import copy

import pytest
import yaml

from deploy_fixtures import BAZAAR, CHART, KUBE_VERSIONS, by_kind, check_the_storefront, kubernetes_validate, kustomize

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is installed by scripts/python-env.sh")


def render(values=None, namespace="bazaar"):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values=values, name="bazaar", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def as_text(docs):
    return "".join("---\n" + yaml.safe_dump(d) for d in docs)


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_lint_is_clean(kube):
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{kube}")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert not serious, serious


VARIANTS = {
    "defaults": None,
    "no-autoscaling": {"autoscaling": {"enabled": False}, "replicas": 3},
    "cpu-only": {"autoscaling": {"requestRate": {"enabled": False}}},
    "pinned-no-mail-no-ingress": {"image": {"digest": "sha256:" + "ab" * 32}, "smtp": {"address": ""},
                                  "ingress": {"enabled": False}},
}


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_renderings_are_valid_kubernetes(variant, kube, tmp_path):
    docs = render(VARIANTS[variant])
    problems = kubernetes_validate(as_text(docs), tmp_path, kube)
    assert not problems, "\n".join(problems)


def test_values_change_what_they_should():
    docs = render(VARIANTS["pinned-no-mail-no-ingress"])
    deployments = by_kind(docs, "Deployment")
    assert deployments["catalog"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/bazaar-shop/bazaar@sha256:" + "ab" * 32
    assert not by_kind(docs, "Ingress")
    assert "mail-clients" not in by_kind(docs, "NetworkPolicy")
    assert "BAZAAR_SMTP_ADDR" not in by_kind(docs, "ConfigMap")["notifications-config"]["data"]
    docs = render(VARIANTS["no-autoscaling"])
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert all(d["spec"]["replicas"] == 3 for d in by_kind(docs, "Deployment").values())
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(BAZAAR)
    docs = render({"trustDomain": "shop.example"}, namespace="shop")
    certs = {c["metadata"]["name"]: c for c in docs if c["kind"] == "Certificate"}
    assert certs["orders-mesh"]["spec"]["uris"] == ["spiffe://shop.example/orders"]
    common = by_kind(docs, "ConfigMap")["bazaar-common"]["data"]
    assert common["BAZAAR_TRUST_DOMAIN"] == "shop.example"
    assert common["BAZAAR_CART_TARGET"] == "dns:///cart-headless.shop.svc.cluster.local:9103"
    assert certs["web-mesh"]["spec"]["uris"] == ["spiffe://shop.example/web"]
    check_the_storefront(docs, namespace="shop")


@pytest.mark.parametrize("bad, where", [
    ({"replicas": 0}, "/replicas"),
    ({"image": {"tag": 5}}, "/image/tag"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"trustDomain": "Not A Domain"}, "/trustDomain"),
    ({"dataStores": {"cidrs": ["10.0.0.0"]}}, "/dataStores/cidrs/0"),
    ({"dataStores": {"redisAddress": "redis"}}, "/dataStores/redisAddress"),
    ({"resources": {"cart": {"limits": {"cpu": "lots", "memory": "1Gi"}}}}, "/resources/cart/limits/cpu"),
    ({"telemetry": {"logLevel": "loud"}}, "/telemetry/logLevel"),
    ({"ingress": {"trustedProxies": ["ingress-nginx"]}}, "/ingress/trustedProxies/0"),
    ({"replica": 2}, "replica"),
])
def test_the_schema_refuses_bad_values_naming_them(bad, where):
    with pytest.raises(helm.HelmValuesError) as error:
        render(bad)
    assert where in str(error.value)


def normalized(docs):
    """What a cluster would run: labels and annotations that only record who rendered it go."""
    out = {}
    for d in copy.deepcopy(docs):
        if d["kind"] == "Namespace":
            continue
        meta = d["metadata"]
        meta.pop("labels", None)
        meta.pop("namespace", None)
        if d["kind"] != "Ingress":
            meta.pop("annotations", None)
        template = d.get("spec", {}).get("template", {}).get("metadata")
        if template:
            template.pop("annotations", None)
            template.get("labels", {}).pop("app.kubernetes.io/instance", None)
        out[(d["kind"], meta["name"])] = d
    return out


def test_the_chart_deploys_what_the_prod_overlay_deploys():
    chart, overlay = normalized(render()), normalized(kustomize("overlays/prod"))
    assert set(chart) == set(overlay), f"only in chart: {set(chart) - set(overlay)}; " \
                                       f"only in overlay: {set(overlay) - set(chart)}"
    different = [key for key in chart if chart[key] != overlay[key]]
    assert not different, "differ: " + ", ".join(f"{k}/{n}" for k, n in different) + "\n" + \
        yaml.safe_dump({"chart": chart[different[0]], "overlay": overlay[different[0]]})

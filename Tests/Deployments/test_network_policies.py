"""The NetworkPolicies, evaluated: for every pair of endpoints (the shop's pods, the data stores,
the ingress controller, Prometheus, the trace collector, DNS, the internet) and every port the
destination listens on, work out whether Kubernetes would let the connection through, and
compare with the flows the architecture needs. Nothing more may be open, nothing needed closed."""
import ipaddress

import pytest

from deploy_fixtures import by_kind, kustomize, pod_spec, workloads

NS = "bazaar"

# The call graph (Sources/bazaar/Serve.swift, GatewayCommand.swift) and the stores each uses.
MESH = {"gateway": ["catalog", "accounts", "cart", "orders", "notifications", "web"],
        "web": ["catalog", "accounts", "cart", "orders", "notifications"],
        "cart": ["catalog"], "orders": ["catalog", "cart"], "notifications": ["accounts"]}
POSTGRES_USERS = ["catalog", "accounts", "orders", "notifications"]
REDIS_USERS = ["cart", "orders", "notifications", "web"]
SHOP = ["catalog", "accounts", "cart", "orders", "notifications", "web", "gateway"]
MESH_PORT = {"catalog": 9101, "accounts": 9102, "cart": 9103, "orders": 9104, "notifications": 9105, "web": 9106}


class Endpoint:
    def __init__(self, name, namespace=None, labels=None, ip=None, ports=()):
        self.name, self.namespace, self.labels, self.ip = name, namespace, labels or {}, ip
        self.ports = dict(ports)  # port number -> port name (or None)

    @property
    def is_pod(self):
        return self.namespace is not None


def endpoints(docs, overlay):
    eps = []
    for w in workloads(docs):
        spec = pod_spec(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        ports = {p["containerPort"]: p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
        eps.append(Endpoint(w["metadata"]["name"], NS, labels, ports=ports))
    eps += [
        Endpoint("ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        Endpoint("prometheus", "bazaar-observability", {"app.kubernetes.io/name": "prometheus"}),
        Endpoint("otel-collector", "bazaar-observability", {"app.kubernetes.io/name": "otel-collector"},
                 ports={4317: "otlp-grpc"}),
        Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, ports={53: "dns"}),
        Endpoint("other-pod", "default", {"app": "other"}, ports={80: "http"}),
        Endpoint("internet", ip="93.184.216.34", ports={443: None, 587: None}),
    ]
    if overlay == "prod":
        eps += [Endpoint("managed-postgres", ip="10.40.33.10", ports={5432: None}),
                Endpoint("managed-redis", ip="10.40.49.20", ports={6379: None}),
                Endpoint("vpc-host", ip="10.40.1.5", ports={22: None, 5432: None})]
    return eps


def selects(selector, labels):
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        value, present = labels.get(e["key"]), e["key"] in labels
        op = e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def peer_matches(peer, ep, policy_ns):
    if "ipBlock" in peer:
        if ep.is_pod:
            return False  # pod IPs are not in the blocks used here (the test endpoints say so)
        ip = ipaddress.ip_address(ep.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(x) for x in block.get("except", []))
    if not ep.is_pod:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ep.namespace}):
            return False
    elif ep.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector"), ep.labels)


def port_matches(rule_ports, port, protocol, dest):
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None or want == port or (isinstance(want, str) and dest.ports.get(port) == want):
            return True
    return False


def allowed(policies, src, dst, port, protocol="TCP"):
    def side(ep, direction, peer_ep):
        if not ep.is_pod or ep.namespace != NS:
            return True  # only the shop's namespace has policies here
        chosen = [p for p in policies if selects(p["spec"]["podSelector"], ep.labels)
                  and direction in p["spec"].get("policyTypes", ["Ingress"])]
        if not chosen:
            return True
        key = "ingress" if direction == "Ingress" else "egress"
        peers_key = "from" if direction == "Ingress" else "to"
        for p in chosen:
            for rule in p["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if (not peers or any(peer_matches(x, peer_ep, NS) for x in peers)) \
                        and port_matches(rule.get("ports"), port, protocol, dst):
                    return True
        return False
    return side(src, "Egress", dst) and side(dst, "Ingress", src)


def open_flows(docs, overlay):
    policies = list(by_kind(docs, "NetworkPolicy").values())
    eps = endpoints(docs, overlay)
    flows = set()
    for src in eps:
        for dst in eps:
            if src is dst:
                continue
            for port in dst.ports:
                protocol = "UDP" if port == 53 else "TCP"
                if allowed(policies, src, dst, port, protocol):
                    flows.add((src.name, dst.name, port))
    return flows


def expected_flows(overlay):
    want = set()
    for src, dsts in MESH.items():
        want |= {(src, d, MESH_PORT[d]) for d in dsts}
    want.add(("ingress-controller", "gateway", 8080))
    for name in SHOP:
        want.add(("prometheus", name, 9464))
        want.add((name, "otel-collector", 4317))
    if overlay == "dev":
        want |= {(n, "postgres", 5432) for n in POSTGRES_USERS + ["seed"]}
        want |= {(n, "redis", 6379) for n in REDIS_USERS}
        want.add(("notifications", "mailpit", 1025))
        everything_in_ns = SHOP + ["postgres", "redis", "mailpit", "seed"]
    else:
        want |= {(n, "managed-postgres", 5432) for n in POSTGRES_USERS}
        want |= {(n, "managed-redis", 6379) for n in REDIS_USERS}
        want.add(("notifications", "internet", 587))
        everything_in_ns = SHOP
    want |= {(n, "kube-dns", 53) for n in everything_in_ns}
    # Outside the namespace nothing is filtered by these policies: flows among the outside
    # endpoints themselves are not the shop's business.
    return want


def shop_side(flows, docs):
    names = {w["metadata"]["name"] for w in workloads(docs)}
    return {f for f in flows if f[0] in names or f[1] in names}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_exactly_the_needed_flows_are_open(overlay):
    docs = kustomize(f"overlays/{overlay}")
    got = shop_side(open_flows(docs, overlay), docs)
    want = expected_flows(overlay)
    assert not (got - want), f"open but not needed: {sorted(got - want)}"
    assert not (want - got), f"needed but closed: {sorted(want - got)}"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_storefront_is_reached_only_through_the_gateway(overlay):
    """web takes calls from the gateway alone, and reaches its five services and Redis."""
    docs = kustomize(f"overlays/{overlay}")
    flows = shop_side(open_flows(docs, overlay), docs)
    assert {src for src, dst, _ in flows if dst == "web" and src != "prometheus"} == {"gateway"}
    redis = "redis" if overlay == "dev" else "managed-redis"
    reached = {dst for src, dst, _ in flows if src == "web"}
    assert {"catalog", "accounts", "cart", "orders", "notifications", redis} <= reached
    assert not {"postgres", "managed-postgres"} & reached, "web has no database"


def test_the_evaluator_sees_a_hole():
    """The check above can fail: a policy letting everything into catalog is caught."""
    docs = kustomize("overlays/dev") + [{
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "oops"},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "catalog"}},
                 "policyTypes": ["Ingress"], "ingress": [{}]}}]
    extra = shop_side(open_flows(docs, "dev"), docs) - expected_flows("dev")
    assert ("other-pod", "catalog", 9101) in extra

"""The container image, built and run with podman the way Kubernetes runs it: the Kubernetes
configuration (the prod overlay's ConfigMaps), a read-only root filesystem, every capability
dropped, the image's non-root user, the mesh certificate and the libpq service file mounted as
cert-manager and the Secrets mount them. The catalog service must migrate its database, answer
the plaintext health check the kubelet's gRPC probe makes, serve a real call over mutual TLS, and
drain and exit cleanly on SIGTERM.

Needs podman (scripts/install-deps.sh installs it) and root for debootstrap; where podman cannot
run containers, the test is skipped and says why."""
import json
import os
import pathlib
import shutil
import subprocess
import urllib.request
import uuid

import grpc
import pytest

from deploy_fixtures import ROOT, by_kind, kustomize, podman
from waiting import wait_for

def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_the_image_runs_as_a_non_root_user_with_only_runtime_libraries(image):
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/local/bin/bazaar"]
    # No compiler, no package manager's downloads, the binary's libraries all resolved.
    def sh(script):
        return podman("run", "--rm", "--read-only", "--cap-drop=ALL", "--entrypoint", "/bin/sh", image, "-c",
                      script).stdout
    libraries = sh("ldd /usr/local/bin/bazaar")
    assert "=>" in libraries and "not found" not in libraries, libraries
    assert sh("command -v gcc cc swift swiftc || true").strip() == ""
    assert sh("ls /var/cache/apt/archives /var/lib/apt/lists | grep -c '\\.deb$' || true").strip() == "0"


def test_the_catalog_serves_health_and_mtls_in_a_locked_down_container(image, tmp_path, pb2):
    base = os.environ.get("BAZAAR_TEST_POSTGRES")
    if not base:
        pytest.fail("BAZAAR_TEST_POSTGRES is not set: run through `make test` (scripts/run-tests.sh)")
    fields = dict(kv.split("=", 1) for kv in base.split())
    db = "smoke_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", base, "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)

    # The files the Secrets hold in a cluster, laid out as the pod mounts them.
    bazaar = str(ROOT / ".build" / "debug" / "bazaar")
    certs, mesh, dbdir, jwt = (tmp_path / d for d in ("certs", "mesh", "db", "jwt"))
    subprocess.run([bazaar, "certs", "--dir", str(certs), "catalog", "client"], check=True, capture_output=True)
    subprocess.run([bazaar, "jwt", "keygen", "--dir", str(jwt)], check=True, capture_output=True)
    mesh.mkdir()
    shutil.copy(certs / "catalog.pem", mesh / "tls.crt")
    shutil.copy(certs / "catalog-key.pem", mesh / "tls.key")
    shutil.copy(certs / "ca.pem", mesh / "ca.crt")
    dbdir.mkdir()
    (dbdir / "pg_service.conf").write_text(
        f"[catalog]\nhost=127.0.0.1\nport={fields['port']}\ndbname={db}\nuser={fields['user']}\n"
        "password=not-checked-by-the-test-server\nsslmode=disable\n")
    for d in (tmp_path, mesh, dbdir, jwt):
        d.chmod(0o755)
        for f in d.iterdir():
            if f.is_file():
                f.chmod(0o644)  # the pod's fsGroup makes them readable there; here, world-readable

    # The configuration a pod gets, from the rendered prod overlay; only the ports move (host network).
    docs = kustomize("overlays/prod")
    maps = by_kind(docs, "ConfigMap")
    env = {**maps["bazaar-common"]["data"], **maps["catalog-config"]["data"]}
    port, health, metrics = free_port(), free_port(), free_port()
    env.update({"BAZAAR_PORT": str(port), "BAZAAR_HEALTH_PORT": str(health), "BAZAAR_METRICS_PORT": str(metrics),
                "OTEL_TRACES_EXPORTER": "none"})
    name = "bazaar-smoke-" + uuid.uuid4().hex[:8]
    args = ["run", "-d", "--name", name, "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
            "--tmpfs", "/tmp:size=64m",
            "-v", f"{mesh}:/var/run/bazaar/mesh:ro", "-v", f"{dbdir}:/var/run/bazaar/db:ro",
            "-v", f"{jwt}:/var/run/bazaar/jwt:ro"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    podman(*args, image, "serve", "catalog")
    plain = grpc.insecure_channel(f"127.0.0.1:{health}")
    try:
        health_pb2 = pb2("grpc/health/v1/health.proto")
        check = plain.unary_unary("/grpc.health.v1.Health/Check",
                                  request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                  response_deserializer=health_pb2.HealthCheckResponse.FromString)
        def container_log():
            return podman("logs", name).stdout + podman("logs", name).stderr

        def serving():
            try:
                if check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass  # not listening yet
            if podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                raise AssertionError(f"the container stopped; its log:\n{container_log()}")
            return False
        wait_for("a SERVING answer from the container", serving, detail=lambda: f"container log:\n{container_log()}",
                 every=0.5)

        # A real call over mutual TLS, as a mesh peer makes it.
        catalog = pb2("shop/v1/catalog.proto")
        creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes(),
                                             private_key=(certs / "client-key.pem").read_bytes(),
                                             certificate_chain=(certs / "client.pem").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            listing = channel.unary_unary("/shop.v1.CatalogService/ListProducts",
                                          request_serializer=catalog.ListProductsRequest.SerializeToString,
                                          response_deserializer=catalog.ListProductsResponse.FromString)
            assert list(listing(catalog.ListProductsRequest(), timeout=10).products) == []
        # The mesh port refuses plaintext: only the health port is open without a certificate.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError):
                channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                    response_deserializer=health_pb2.HealthCheckResponse.FromString)(
                    health_pb2.HealthCheckRequest(), timeout=3)
        # The migrations ran in the mounted service file's database.
        tables = subprocess.run(["psql", base.replace("dbname=postgres", f"dbname={db}"), "-At", "-c",
                                 "SELECT count(*) FROM information_schema.tables WHERE table_name = 'products'"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert tables == "1"
        # SIGTERM drains and exits 0, as a pod deletion does.
        podman("stop", "--time", "40", name, timeout=60)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name).stdout + podman("logs", name).stderr
        assert code == "0", f"exit code {code}; log:\n{logs}"
        assert "not-checked-by-the-test-server" not in logs
    finally:
        podman("rm", "-f", name, check=False)
        plain.close()


# The services and the storefront (web: no database), each run as `bazaar serve <name>`.
SHOP = ["catalog", "accounts", "cart", "orders", "notifications", "web"]


def test_the_whole_shop_runs_from_the_image_with_the_kubernetes_configuration(image, tmp_path):
    """Five services, the storefront (web), the seed job and the gateway, each a container of the
    image with its pod's configuration from the prod overlay: mesh calls go to the headless
    Services' DNS names (a dnsmasq stands in for the cluster DNS), every hop is mutual TLS with
    cert-manager's file layout, databases through mounted service files. A customer registers,
    fills a cart and checks out through the gateway's REST API; the order is paid; the
    storefront's home page comes through the gateway."""
    base = os.environ.get("BAZAAR_TEST_POSTGRES")
    if not base:
        pytest.fail("BAZAAR_TEST_POSTGRES is not set: run through `make test` (scripts/run-tests.sh)")
    fields = dict(kv.split("=", 1) for kv in base.split())
    tag = "shop_" + uuid.uuid4().hex[:8]
    databases = {s: f"{tag}_{s}" for s in ("catalog", "accounts", "orders", "notifications")}
    for db in databases.values():
        subprocess.run(["psql", base, "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)

    bazaar = str(ROOT / ".build" / "debug" / "bazaar")
    certs, jwt = tmp_path / "certs", tmp_path / "jwt"
    subprocess.run([bazaar, "certs", "--dir", str(certs), *SHOP, "gateway"], check=True, capture_output=True)
    subprocess.run([bazaar, "jwt", "keygen", "--dir", str(jwt)], check=True, capture_output=True)

    def secret_dir(name, files):
        d = tmp_path / name
        d.mkdir()
        for file_name, text in files.items():
            (d / file_name).write_text(text)
            (d / file_name).chmod(0o644)
        d.chmod(0o755)
        return d

    def service_file(*names):
        return "".join(f"[{n}]\nhost=127.0.0.1\nport={fields['port']}\ndbname={databases[n]}\nuser={fields['user']}\n"
                       "sslmode=disable\n" for n in names)

    jwt.chmod(0o755)
    for f in jwt.iterdir():
        f.chmod(0o644)

    # The ports move (host networking); everything else is the overlay's.
    docs = kustomize("overlays/prod")
    maps = by_kind(docs, "ConfigMap")
    ports = {n: free_port() for n in SHOP + ["gateway"]}
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"127.0.0.1 {n}-headless.bazaar.svc.cluster.local\n" for n in SHOP))
    dns_port = free_port()
    # --filter-AAAA: no IPv6 records, answered empty as cluster DNS does (not refused)
    dns = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--filter-AAAA", f"--addn-hosts={hosts}",
                            f"--port={dns_port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--user=root",
                            "--pid-file=", "--log-facility=-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = []

    def run(name, args, env, mounts, detach=True):
        cname = f"bazaar-{name}-{uuid.uuid4().hex[:6]}"
        cmd = ["run", "--name", cname, "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
               "--tmpfs", "/tmp:size=64m"]
        if detach:
            cmd.insert(1, "-d")
        for host_dir, path in mounts.items():
            cmd += ["-v", f"{host_dir}:{path}:ro"]
        for k, v in env.items():
            cmd += ["-e", f"{k}={v}"]
        started.append(cname)
        return podman(*cmd, image, *args, timeout=300)

    def pod_env(name):
        env = {**maps["bazaar-common"]["data"], **maps[f"{name}-config"]["data"]}
        for upstream in SHOP:
            key = f"BAZAAR_{upstream.upper()}_TARGET"
            host = env[key].rsplit(":", 1)[0]
            env[key] = f"{host}:{ports[upstream]}"  # the overlay's DNS name, this test's port
        env.update({"BAZAAR_DNS_SERVER": f"127.0.0.1:{dns_port}", "BAZAAR_REDIS_ADDR": f"127.0.0.1:{redis_port}",
                    "BAZAAR_METRICS_PORT": str(free_port()), "BAZAAR_HEALTH_PORT": str(free_port()),
                    "OTEL_TRACES_EXPORTER": "none", "BAZAAR_CONSUMER_NAME": name})
        env.pop("BAZAAR_SMTP_ADDR", None)  # no mail relay here: notifications store, not send
        assert env["BAZAAR_ENV"] == "production"
        if name == "orders":
            # As a staging cluster would: the production profile refuses the test payment provider
            # otherwise (Tests/Integration/test_edge_abuse.py checks the refusal).
            env["BAZAAR_ALLOW_TEST_PAYMENTS"] = "true"
        env["BAZAAR_GATEWAY_PORT" if name == "gateway" else "BAZAAR_PORT"] = str(ports[name])
        return env

    def mounts(name):
        mesh = secret_dir(f"{name}-mesh", {"tls.crt": (certs / f"{name}.pem").read_text(),
                                           "tls.key": (certs / f"{name}-key.pem").read_text(),
                                           "ca.crt": (certs / "ca.pem").read_text()})
        m = {mesh: "/var/run/bazaar/mesh", jwt: "/var/run/bazaar/jwt"}
        if name in databases:
            m[secret_dir(f"{name}-db", {"pg_service.conf": service_file(name)})] = "/var/run/bazaar/db"
        return m

    try:
        # The seed job first, as in dev: it migrates and loads the catalog and the users.
        seed_db = secret_dir("seed-db", {"pg_service.conf": service_file("catalog", "accounts")})
        seeded = run("seed", ["seed", "--catalog-db", "service=catalog", "--accounts-db", "service=accounts",
                              "--products", "20"],
                     {"PGSERVICEFILE": "/var/run/bazaar/db/pg_service.conf"}, {seed_db: "/var/run/bazaar/db"},
                     detach=False)
        assert seeded.returncode == 0, seeded.stderr
        for name in SHOP:
            run(name, ["serve", name], pod_env(name), mounts(name))
        run("gateway", ["gateway"], pod_env("gateway"), mounts("gateway"))

        gateway = f"http://127.0.0.1:{ports['gateway']}"

        def call(method, path, body=None, token=None):
            request = urllib.request.Request(gateway + path, method=method,
                                             data=None if body is None else json.dumps(body).encode())
            request.add_header("content-type", "application/json")
            if token:
                request.add_header("authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"{}")

        def shop_is_up():
            with urllib.request.urlopen(gateway + "/readyz", timeout=10) as r:
                return r.status == 200 and call("GET", "/v1/products?page.pageSize=1").get("products")

        wait_for("the shop to come up through the gateway", shop_is_up, timeout=120, every=1,
                 ignoring=(Exception,),  # whatever a shop that is not up yet answers
                 detail=lambda: "\n".join(f"--- {c}\n" + podman("logs", c, check=False).stderr[-800:]
                                          + podman("logs", c, check=False).stdout[-1500:] for c in started))

        email = f"{uuid.uuid4().hex[:8]}@example.com"
        call("POST", "/v1/users", {"email": email, "password": "a long password"})
        token = call("POST", "/v1/sessions", {"email": email, "password": "a long password"})["accessToken"]
        product = call("GET", "/v1/products?page.pageSize=1")["products"][0]["id"]
        call("POST", "/v1/cart/items", {"productId": product, "quantity": 2}, token)
        order = call("POST", "/v1/orders", {"requestId": uuid.uuid4().hex, "shippingAddress": {
            "recipient": "Ada", "lines": ["1 Main St"], "city": "London", "postalCode": "N1 9GU", "countryCode": "GB"}},
            token)
        assert order["status"] == "ORDER_STATUS_PAID", order
        assert call("GET", "/v1/cart", token=token).get("lines", []) == []
        # The storefront: what no API route takes, the gateway hands to web over the mesh.
        with urllib.request.urlopen(gateway + "/", timeout=10) as page:
            assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    finally:
        for c in started:
            podman("rm", "-f", c, check=False)
        for p in (redis, dns):
            p.terminate()
            p.wait(timeout=10)

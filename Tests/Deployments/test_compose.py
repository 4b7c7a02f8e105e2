"""The shop as Docker users start it, `docker compose up` on deployments/compose/compose.yaml,
run here with podman-compose and compose.host.yaml (host networking: these machines have no
bridge) on our image and local stand-ins for the PostgreSQL, Redis and mail images.

The stack must come up on its own (secrets, databases, migrations, seed), take an order through
the gateway's REST API, serve the storefront's home page through the gateway, mail the customer
through the mail sink, and keep its data across `down` and `up` (volumes); `down -v` leaves
nothing behind."""
import json
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from deploy_fixtures import DEPLOY, VENV_BIN, podman, podman_env
from waiting import wait_for

COMPOSE = DEPLOY / "compose"
PROJECT = "bazaar-compose-test"
# compose.host.yaml: on the host's network, the stack's ports are the host's.
PORTS = [5432, 6379, 1025, 8080, *range(9101, 9107), *range(9200, 9207)]
GATEWAY = "http://127.0.0.1:8080"


def compose(images, *args, timeout=600):
    command = [str(VENV_BIN / "podman-compose"), "-p", PROJECT, "-f", str(COMPOSE / "compose.yaml"),
               "-f", str(COMPOSE / "compose.host.yaml"), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=podman_env(images), cwd=COMPOSE,
                            timeout=timeout)
    assert result.returncode == 0, f"podman-compose {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def containers():
    out = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "{{.Names}}").stdout
    return out.split()


def logs():
    """The last lines of each container's log; the one-shot jobs' (secrets, seed) whole."""
    def one(c):
        tail = [] if c.endswith(("_seed_1", "_secrets_1")) else ["--tail", "30"]
        out = podman("logs", *tail, c, check=False)
        return f"--- {c}\n" + out.stdout + out.stderr
    return "\n".join(one(c) for c in containers())


def call(method, path, body=None, token=None):
    request = urllib.request.Request(GATEWAY + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


# How the waits below look at the stack: a service not answering yet is "not yet"; the containers'
# logs tell why if it never does. Containers start slowly, but the timeout still only guards
# against a hang.
STACK = dict(timeout=240, ignoring=(OSError, ValueError, KeyError, IndexError), detail=lambda: logs(), every=1)


def shop_is_up():
    with urllib.request.urlopen(GATEWAY + "/readyz", timeout=2) as r:
        if r.status != 200 or not call("GET", "/v1/products?page.pageSize=1")["products"]:
            return False
    with urllib.request.urlopen(GATEWAY + "/", timeout=10) as page:
        return page.status == 200


def test_compose_runs_the_shop_takes_an_order_mails_it_and_keeps_it(compose_images):
    taken = []
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    assert not taken, f"compose.host.yaml needs these ports free on the host: {taken}"
    compose(compose_images, "down", "-v", timeout=300)  # anything a killed run left
    try:
        compose(compose_images, "up", "-d", "--no-build")
        wait_for("the shop coming up through the gateway with the seeded catalog", shop_is_up, **STACK)
        seed = f"{PROJECT}_seed_1"
        wait_for("the seed job finishing", lambda: podman(
            "inspect", "--format", "{{.State.Status}}", seed).stdout.strip() == "exited", **STACK)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", seed).stdout.strip() == "0", logs()

        # The seeded customer orders; the order is paid and mailed.
        token = call("POST", "/v1/sessions", {"email": "customer@bazaar.local",
                                              "password": "customer-pass-123"})["accessToken"]
        product = call("GET", "/v1/products?page.pageSize=1")["products"][0]["id"]
        call("POST", "/v1/cart/items", {"productId": product, "quantity": 2}, token)
        order = call("POST", "/v1/orders", {"requestId": uuid.uuid4().hex, "shippingAddress": {
            "recipient": "Ada", "lines": ["1 Main St"], "city": "London", "postalCode": "N1 9GU",
            "countryCode": "GB"}}, token)
        assert order["status"] == "ORDER_STATUS_PAID", order
        # The storefront (web) answers through the gateway, which hands it what no API route takes.
        try:
            with urllib.request.urlopen(GATEWAY + "/", timeout=10) as page:
                assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        except urllib.error.HTTPError as e:
            pytest.fail(f"the storefront answered {e.code}: {e.read().decode()[:2000]}\n{logs()}")
        mail = f"{PROJECT}_mail_1"
        wait_for("the order's mail reaching the mail sink", lambda: podman(
            "exec", mail, "sh", "-c", f"grep -l -r '{order['id']}' /mail/new", check=False).stdout.strip(), **STACK)

        # Nothing lost across down and up: the databases and Redis live in volumes.
        compose(compose_images, "down", timeout=300)
        assert containers() == []
        compose(compose_images, "up", "-d", "--no-build")
        wait_for("the shop coming back", shop_is_up, **STACK)
        token = call("POST", "/v1/sessions", {"email": "customer@bazaar.local",
                                              "password": "customer-pass-123"})["accessToken"]
        again = call("GET", f"/v1/orders/{order['id']}", token=token)
        assert again["id"] == order["id"] and again["status"] == "ORDER_STATUS_PAID", again
    finally:
        compose(compose_images, "down", "-v", timeout=300)
    assert containers() == []
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith(PROJECT.replace("-", ""))
                or v.startswith(PROJECT)], volumes

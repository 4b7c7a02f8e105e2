"""Build on Bazaar from outside this repository (docs/first-service.md, Examples/hello).

The example package depends on a tagged clone of this repository by file:// URL and version, as a
team's package would depend on a release. It generates its code the documented way (the
generate-code plugin), builds, and runs its service with mTLS beside the shop's services; grpcio,
grpcurl and `bazaar call` reach it, and the gateway that was already running (configured with the
upstream before the service existed, never rebuilt) learns its REST routes and serves them."""
import json
import os
import pathlib
import shutil
import subprocess

import grpc
import pytest

from mesh_fixtures import free_port
from rpc_fixtures import binary
from shop_clients import http
from shop_fixtures import SERVICES
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "Examples" / "hello"
GENERATED = ["Sources/HelloAPI", "Sources/CHelloAPI"]


def run(args, cwd, env, timeout=1800):
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def hello_package(tmp_path_factory):
    """A release of Bazaar (a clone of HEAD, tagged) and the example package built against it."""
    base = tmp_path_factory.mktemp("outside")
    # The dependency's identity is the last part of its URL: `bazaar`, as the example names it.
    release = base / "bazaar"
    run(["git", "clone", "-q", str(ROOT), str(release)], cwd=base, env=os.environ)
    run(["git", "tag", "0.1.0"], cwd=release, env=os.environ)
    package = base / "hello"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns(".build", "Package.resolved"))
    # Generated from nothing: the committed sources must be exactly what the plugin makes.
    committed = {p.relative_to(package): p.read_bytes() for d in GENERATED for p in (package / d).rglob("*") if p.is_file()}
    for d in GENERATED:
        shutil.rmtree(package / d)
        (package / d).mkdir()
    env = {**os.environ, "BAZAAR_URL": f"file://{release}"}
    run(["swift", "package", "--allow-writing-to-package-directory", "generate-code"], cwd=package, env=env)
    generated = {p.relative_to(package): p.read_bytes() for d in GENERATED for p in (package / d).rglob("*") if p.is_file()}
    assert generated.keys() == committed.keys(), "generated files differ from Examples/hello's"
    drifted = [str(k) for k in generated if generated[k] != committed[k]]
    assert not drifted, f"Examples/hello's generated code is out of date (run generate-code there): {drifted}"
    run(["swift", "build"], cwd=package, env=env)
    return package, env


def start_hello(package, shop, port, name, env=None):
    """The example's service on `port` with the shop's certificates; returns once it listens."""
    log = shop.dir / f"{name}.log"
    e = {**os.environ, "BAZAAR_TLS_DIR": str(shop.certs), "BAZAAR_PORT": str(port), **(env or {})}
    proc = subprocess.Popen([str(package / ".build/debug/hello")], env=e, stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def listening():
        if "listening on" in log.read_text():
            return True
        assert proc.poll() is None, log.read_text()
        return False
    wait_for(f"{name} to listen", listening, detail=log.read_text)
    return proc


def test_the_plugin_check_catches_drift(hello_package):
    package, env = hello_package
    run(["swift", "package", "--allow-writing-to-package-directory", "generate-code", "--check"], cwd=package, env=env)
    header = next((package / "Sources/CHelloAPI/include").rglob("*.pb-c.h"))
    original = header.read_bytes()
    try:
        header.write_bytes(original + b"/* edited by hand */\n")
        p = subprocess.run(["swift", "package", "--allow-writing-to-package-directory", "generate-code", "--check"],
                           cwd=package, env=env, capture_output=True, text=True)
        assert p.returncode != 0 and "out of date" in p.stdout + p.stderr
    finally:
        header.write_bytes(original)


def test_a_service_of_its_own_on_the_mesh_and_at_the_edge(hello_package, shop, pb2):
    package, _ = hello_package
    subprocess.run([binary("bazaar"), "certs", "--dir", str(shop.certs), "hello"], check=True, capture_output=True)
    port = free_port()
    # The gateway runs first, knowing only where hello will be: no route of hello's yet.
    gateway = shop.start_gateway("gateway-outside", env={"BAZAAR_UPSTREAMS": ",".join(SERVICES + ["hello"]),
                                                         "BAZAAR_HELLO_TARGET": f"127.0.0.1:{port}"})
    assert http(gateway, "GET", "/v1/greetings/Ada")[0] == 404

    proc = start_hello(package, shop, port, "hello")
    try:
        # grpcio, with the mesh's client certificate, and messages from protoc.
        from grpc_tools import protoc
        out = shop.dir / "hello_pb2"
        out.mkdir(exist_ok=True)
        assert protoc.main(["protoc", f"-I{package / 'proto'}", f"-I{ROOT / 'proto'}", "-I/usr/include", f"--python_out={out}",
                            "hello/v1/greeter.proto"]) == 0
        import importlib
        import sys
        sys.path.insert(0, str(out))
        pb = importlib.import_module("hello.v1.greeter_pb2")
        creds = grpc.ssl_channel_credentials(root_certificates=(shop.certs / "ca.pem").read_bytes(),
                                             private_key=(shop.certs / "client-key.pem").read_bytes(),
                                             certificate_chain=(shop.certs / "client.pem").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as ch:
            say = ch.unary_unary("/hello.v1.GreeterService/SayHello", request_serializer=pb.SayHelloRequest.SerializeToString,
                                 response_deserializer=pb.Greeting.FromString)
            g = say(pb.SayHelloRequest(name="Ada", mood=pb.MOOD_GRUMPY, style=pb.SayHelloRequest.Style(shout=True), tags={"k": "v"}),
                    timeout=10)
            assert g.text == "OH. IT'S YOU, ADA." and g.mood == pb.MOOD_GRUMPY and dict(g.tags) == {"k": "v"} and g.at.seconds > 0
            countdown = ch.unary_stream("/hello.v1.GreeterService/Countdown", request_serializer=pb.CountdownRequest.SerializeToString,
                                        response_deserializer=pb.Tick.FromString)
            assert [t.remaining for t in countdown(pb.CountdownRequest(**{"from": 3}), timeout=10)] == [3, 2, 1, 0]
            join = ch.stream_unary("/hello.v1.GreeterService/Join", request_serializer=pb.Word.SerializeToString,
                                   response_deserializer=pb.Sentence.FromString)
            assert join(iter([pb.Word(text="mesh"), pb.Word(text="works")]), timeout=10).text == "mesh works"

        # bazaar call and grpcurl, through reflection.
        call_env = {**os.environ, "BAZAAR_TLS_DIR": str(shop.certs)}
        target = f"127.0.0.1:{port}"

        def call(*args, stdin=None):
            p = subprocess.run([binary("bazaar"), "call", "--compact", target, *args], env=call_env, capture_output=True, text=True,
                               input=stdin, timeout=60)
            return p.returncode, p.stdout, p.stderr

        rc, outp, err = call("list")
        assert rc == 0 and "hello.v1.GreeterService" in outp.split(), err
        rc, outp, err = call("hello.v1.GreeterService/SayHello", "-d", '{"name": "Bo", "style": {"repeat": 2}}')
        assert rc == 0 and json.loads(outp)["text"] == "Hello, Bo! Hello, Bo!", err
        rc, outp, err = call("hello.v1.GreeterService/Countdown", "-d", '{"from": 1}')
        assert rc == 0 and [json.loads(line) for line in outp.splitlines()] == [{"remaining": 1}, {}], err
        rc, outp, err = call("hello.v1.GreeterService/Join", "-d", "@-", stdin='[{"text": "a"}, {"text": "b"}]')
        assert rc == 0 and json.loads(outp) == {"text": "a b", "words": 2}, err
        rc, outp, err = call("hello.v1.GreeterService/SayHello", "-d", '{"style": {"repeat": 9}}')
        assert rc == 1 and "INVALID_ARGUMENT" in err
        grpcurl = str(pathlib.Path(sys.executable).parent / "grpcurl")
        p = subprocess.run([grpcurl, "-cacert", str(shop.certs / "ca.pem"), "-cert", str(shop.certs / "client.pem"),
                            "-key", str(shop.certs / "client-key.pem"), "-d", '{"name": "Cy"}', target,
                            "hello.v1.GreeterService/GetGreeting"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and json.loads(p.stdout)["text"] == "Hello, Cy!", p.stderr

        # The gateway learned hello's API when it came up.
        wait_for("the gateway to install hello's schema",
                 lambda: any('"upstream schema installed"' in line and '"upstream":"hello"' in line
                             for line in shop.log("gateway-outside").splitlines()),
                 detail=lambda: shop.log("gateway-outside")[-2000:])
        status, _, body = http(gateway, "POST", "/v1/greetings/Di", {"mood": "MOOD_CHEERFUL", "style": {"shout": True}, "tags": {"a": "b"}})
        assert status == 201 and body["text"] == "HELLO, DI!" and body["mood"] == "MOOD_CHEERFUL" and body["tags"] == {"a": "b"}, body
        status, _, body = http(gateway, "GET", "/v1/greetings/Ed?mood=MOOD_GRUMPY")
        assert status == 200 and body["text"] == "Oh. It's you, Ed.", body
        status, _, body = http(gateway, "POST", "/v1/greetings/Fi", {"style": {"repeat": 7}})
        assert status == 400 and "repeat" in body["message"]
        req = __import__("urllib.request").request.Request(gateway + "/v1/countdown/2", headers={"accept": "application/x-ndjson"})
        with __import__("urllib.request").request.urlopen(req, timeout=30) as r:
            assert [json.loads(line) for line in r.read().decode().splitlines()] == [{"remaining": 2}, {"remaining": 1}, {}]
        status, _, doc = http(gateway, "GET", "/openapi.json")
        assert status == 200 and {"/v1/greetings/{name}", "/v1/countdown/{from}", "/v1/products"} <= set(doc["paths"])
        # The shop is still served beside it.
        assert http(gateway, "GET", "/v1/products?page.pageSize=1")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_service_without_reflection_publishes_through_a_descriptor_set(hello_package, shop):
    """BAZAAR_<NAME>_DESCRIPTORS: the fallback for services that do not serve reflection."""
    package, _ = hello_package
    subprocess.run([binary("bazaar"), "certs", "--dir", str(shop.certs), "hello"], check=True, capture_output=True)
    descriptors = shop.dir / "hello.pb"
    subprocess.run([binary("bazaar-codegen"), "-I", str(package / "proto"), "-I", str(ROOT / "proto"), "-I", "/usr/include",
                    "--descriptor_set_out", str(descriptors), "hello/v1/greeter.proto"], check=True, capture_output=True)
    port = free_port()
    proc = start_hello(package, shop, port, "hello-noreflection", {"BAZAAR_REFLECTION": "false"})
    try:
        p = subprocess.run([binary("bazaar"), "call", f"127.0.0.1:{port}", "list"], env={**os.environ, "BAZAAR_TLS_DIR": str(shop.certs)},
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "UNIMPLEMENTED" in p.stderr, "reflection is off"
        target = {"BAZAAR_UPSTREAMS": "hello", "BAZAAR_HELLO_TARGET": f"127.0.0.1:{port}"}
        gateway = shop.start_gateway("gateway-descriptors", env={**target, "BAZAAR_HELLO_DESCRIPTORS": str(descriptors)}, schemas=["hello"])
        status, _, body = http(gateway, "GET", "/v1/greetings/Zo")
        assert status == 200 and body["text"] == "Hello, Zo!", body
        # Without the file, the schema cannot be read, and says so; no route appears.
        blind = shop.start_gateway("gateway-blind", env=target, schemas=[])
        wait_for("the gateway to say it cannot read the schema",
                 lambda: "cannot read the upstream's schema" in shop.log("gateway-blind"),
                 detail=lambda: shop.log("gateway-blind")[-2000:])
        assert http(blind, "GET", "/v1/greetings/Zo")[0] == 404
        # A descriptor file that is not one is refused at startup, naming the variable.
        bad = shop.dir / "bad.pb"
        bad.write_bytes(b"\xff\xff not a descriptor set")
        p = subprocess.run([binary("bazaar"), "gateway", "--port", "0"], env={**shop.env("gateway"), **target, "BAZAAR_HELLO_DESCRIPTORS": str(bad)},
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "BAZAAR_HELLO_DESCRIPTORS" in p.stderr, p.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)

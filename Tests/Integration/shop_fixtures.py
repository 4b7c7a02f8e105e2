"""The whole shop as real processes for the integration tests: the five `bazaar serve` services
over mutual TLS, on fresh databases in the test PostgreSQL, a redis-server of their own, and an
SMTP sink (aiosmtpd from PyPI) that records every message."""
import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import uuid

import grpc
import jwt as pyjwt

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "Interop"))
from rpc_fixtures import binary  # noqa: E402
from mesh_fixtures import free_port  # noqa: E402
from waiting import wait_for  # noqa: E402

SERVICES = ["catalog", "accounts", "cart", "notifications", "orders", "web"]
PACKAGE = {"catalog": "CatalogService", "accounts": "AccountsService", "cart": "CartService",
           "orders": "OrdersService", "notifications": "NotificationsService"}
UPSTREAMS = {"cart": ["catalog"], "orders": ["catalog", "cart"], "notifications": ["accounts"], "web": ["catalog", "accounts", "cart", "orders", "notifications"]}


def mint_token(key, user_id, roles=("customer",), lifetime=900):
    """An access token as the accounts service signs them (EdDSA, PyJWT), from its private key."""
    now = int(time.time())
    return pyjwt.encode({"sub": user_id, "iss": "bazaar", "aud": "bazaar", "iat": now, "nbf": now, "exp": now + lifetime,
                         "roles": list(roles)}, key, algorithm="EdDSA")


class MailSink:
    """An SMTP server on loopback (aiosmtpd) keeping every message it accepts."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.port = free_port()
        self.handler = Handler()
        self.resume()

    def resume(self):
        """(Re)starts the server; a stopped aiosmtpd controller cannot start again, so it is new."""
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def pause(self):
        self.controller.stop()

    def to(self, address):
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def stop(self):
        self.pause()


def psql(conninfo, sql):
    out = subprocess.run(["psql", conninfo, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr}")
    return out.stdout.strip()


class Shop:
    def __init__(self, workdir, env=None):
        self.dir = pathlib.Path(workdir)
        base = os.environ.get("BAZAAR_TEST_POSTGRES")
        if not base:
            raise RuntimeError("BAZAAR_TEST_POSTGRES is not set: run through `make test` (scripts/run-tests.sh)")
        self.base_conninfo = base
        tag = "t" + uuid.uuid4().hex[:10]
        self.databases = {}
        for s in ("catalog", "accounts", "orders", "notifications"):
            name = f"{tag}_{s}"
            psql(base, f"CREATE DATABASE {name}")
            self.databases[s] = base.replace("dbname=postgres", f"dbname={name}")
        self.redis_port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.mail = MailSink()
        self.certs = self.dir / "certs"
        subprocess.run([binary("bazaar"), "certs", "--dir", str(self.certs), *SERVICES, "gateway", "client"],
                       check=True, capture_output=True)
        subprocess.run([binary("bazaar"), "jwt", "keygen", "--dir", str(self.dir / "jwt")], check=True, capture_output=True)
        self.jwt_key = (self.dir / "jwt" / "jwt-key.pem").read_text()
        self.ports = {s: free_port() for s in SERVICES}
        self.extra_env = env or {}
        self.procs = {}
        self.channels = {}
        wait_for("redis-server to answer", lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                                                  capture_output=True).returncode == 0)
        for s in SERVICES:
            self.start(s)

    def env(self, service):
        e = {**os.environ,
             "BAZAAR_TLS_DIR": str(self.certs),
             "BAZAAR_REDIS_ADDR": f"127.0.0.1:{self.redis_port}",
             "BAZAAR_JWT_PUBLIC_KEY": str(self.dir / "jwt" / "jwt-pub.pem"),
             "BAZAAR_JWT_PRIVATE_KEY": str(self.dir / "jwt" / "jwt-key.pem"),
             "BAZAAR_METRICS_PORT": "off",
             "OTEL_TRACES_EXPORTER": "none",
             "BAZAAR_ACCESS_LOG_SAMPLE": "0",
             "BAZAAR_SMTP_ADDR": f"127.0.0.1:{self.mail.port}",
             "BAZAAR_CHECKOUT_RECOVER_AFTER": "3s",
             "BAZAAR_RECOVERY_INTERVAL": "1s"}
        if service in self.databases:
            e["BAZAAR_DATABASE_URL"] = self.databases[service]
        for up in UPSTREAMS.get(service, []):
            e[f"BAZAAR_{up.upper()}_TARGET"] = f"127.0.0.1:{self.ports[up]}"
        e.update(self.extra_env.get(service, {}))
        return e

    def start(self, service, replica=None, env=None):
        """Starts a service (or, with `replica`, one more process of it on a port of its own)."""
        name = replica or service
        port = free_port() if replica else self.ports[service]
        log_path = self.dir / f"{name}.log"
        log = open(log_path, "a")
        extra = env or {}
        env = self.env(service)
        env["BAZAAR_CONSUMER_NAME"] = name
        env.update(extra)
        proc = subprocess.Popen([binary("bazaar"), "serve", service, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[name] = proc

        def listening():
            if "listening on" in log_path.read_text().split("shut down cleanly")[-1]:
                return True
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.log(name)[-2000:]}")
            return False
        wait_for(f"{name} to listen", listening, detail=lambda: self.log(name)[-2000:])
        return proc

    def start_gateway(self, name="gateway", env=None, tls=False, preexec_fn=None, schemas=SERVICES):
        """`bazaar gateway` in front of the services (plaintext HTTP/1.1 + h2c, or HTTPS);
        `preexec_fn` runs in the child before it starts (resource limits). Returns once the
        gateway has learned the schemas of the upstreams in `schemas` (by reflection)."""
        port = free_port()
        e = self.env("gateway")
        e.pop("BAZAAR_DATABASE_URL", None)
        for s in SERVICES:
            e[f"BAZAAR_{s.upper()}_TARGET"] = f"127.0.0.1:{self.ports[s]}"
        if tls:
            e["BAZAAR_GATEWAY_TLS_CERT"] = str(self.certs / "gateway.pem")
            e["BAZAAR_GATEWAY_TLS_KEY"] = str(self.certs / "gateway-key.pem")
        e.update(env or {})
        log_path = self.dir / f"{name}.log"
        proc = subprocess.Popen([binary("bazaar"), "gateway", "--port", str(port)], stdout=open(log_path, "a"),
                                stderr=subprocess.STDOUT, env=e, preexec_fn=preexec_fn)
        self.procs[name] = proc

        def ready():
            text = log_path.read_text().split("shut down cleanly")[-1]
            installed = {json.loads(line).get("upstream") for line in text.splitlines()
                         if line.startswith("{") and '"upstream schema installed"' in line}
            if "listening on" in text and set(schemas) <= installed:
                return True
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            return False
        wait_for(f"{name} to listen with the schemas of {schemas}", ready, detail=lambda: log_path.read_text()[-2000:])
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def log(self, name):
        return (self.dir / f"{name}.log").read_text()

    def stop(self, service, sig=signal.SIGTERM, timeout=30):
        proc = self.procs.pop(service)
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
        return proc.returncode

    def channel(self, service, identity="client"):
        key = (service, identity)
        if key not in self.channels:
            creds = grpc.ssl_channel_credentials(
                root_certificates=(self.certs / "ca.pem").read_bytes(),
                private_key=(self.certs / f"{identity}-key.pem").read_bytes(),
                certificate_chain=(self.certs / f"{identity}.pem").read_bytes())
            self.channels[key] = grpc.secure_channel(f"127.0.0.1:{self.ports[service]}", creds)
        return self.channels[key]

    def stub(self, service, method, response_cls, kind="unary_unary", identity="client"):
        ch = self.channel(service, identity)
        path = f"/shop.v1.{PACKAGE[service]}/{method}"
        return getattr(ch, kind)(path, request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=response_cls.FromString)

    def token(self, user_id, roles=("customer",), lifetime=900):
        """An access token signed with the accounts key (PyJWT): a user without registering."""
        return mint_token(self.jwt_key, user_id, roles, lifetime)

    def sql(self, database, query):
        return psql(self.databases[database], query)

    def close(self):
        for ch in self.channels.values():
            ch.close()
        for s in list(self.procs):
            try:
                self.stop(s)
            except Exception:
                self.procs.get(s) and self.procs[s].kill()
        self.redis.kill()
        self.redis.wait()
        self.mail.stop()
        for name in self.databases.values():
            db = name.split("dbname=")[1].split()[0]
            try:
                psql(self.base_conninfo, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except RuntimeError:
                pass


def auth(token):
    return [("authorization", f"Bearer {token}")]

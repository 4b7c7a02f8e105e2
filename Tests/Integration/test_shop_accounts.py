"""Accounts: argon2id hashes readable by argon2-cffi, tokens PyJWT verifies from the published
key set, refresh-token rotation with reuse detection, logout, password change, sign-in backoff,
admin roles, and `bazaar seed`."""
import base64
import os
import subprocess
import time
import uuid

import grpc
import jwt as pyjwt
import pytest
from argon2 import PasswordHasher as Argon2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shop_clients import Client
from rpc_fixtures import binary


def register(shop, m, password="first password"):
    anon = Client(shop, m)
    email = f"acc-{uuid.uuid4().hex[:8]}@Example.com"
    user = anon.call("accounts", "Register", m.accounts.RegisterRequest(email=email, password=password), m.accounts.User)
    return anon, email, user


def test_passwords_are_argon2id_and_tokens_verify_with_the_published_keys(shop, m):
    anon, email, user = register(shop, m)
    stored = shop.sql("accounts", f"SELECT password_hash FROM users WHERE id = '{user.id}'")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert Argon2().verify(stored, "first password")
    # Emails are unique whatever their case.
    assert anon.code("accounts", "Register", m.accounts.RegisterRequest(email=email.upper(), password="another one"),
                     m.accounts.User) == grpc.StatusCode.ALREADY_EXISTS
    session = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email.lower(), password="first password"), m.accounts.Session)
    keys = anon.call("accounts", "GetPublicKeys", m.accounts.GetPublicKeysRequest(), m.accounts.PublicKeys).keys
    assert len(keys) == 1 and keys[0].kty == "OKP" and keys[0].crv == "Ed25519" and keys[0].alg == "EdDSA"
    raw = base64.urlsafe_b64decode(keys[0].x + "=" * (-len(keys[0].x) % 4))
    claims = pyjwt.decode(session.access_token, Ed25519PublicKey.from_public_bytes(raw), algorithms=["EdDSA"], audience="bazaar",
                          issuer="bazaar")
    assert claims["sub"] == user.id and claims["roles"] == ["customer"]
    assert pyjwt.get_unverified_header(session.access_token)["kid"] == keys[0].kid
    assert claims["exp"] - claims["iat"] == 900
    assert user.id in shop.log("accounts") and "first password" not in shop.log("accounts")
    assert session.refresh_token not in shop.log("accounts") and session.access_token not in shop.log("accounts")


def test_refresh_tokens_rotate_and_reuse_ends_the_session(shop, m):
    anon, email, user = register(shop, m)
    s1 = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"), m.accounts.Session)
    s2 = anon.call("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=s1.refresh_token), m.accounts.Session)
    assert s2.refresh_token != s1.refresh_token and s2.user.id == user.id
    # The stored form is a hash, never the token.
    assert shop.sql("accounts", f"SELECT count(*) FROM refresh_tokens WHERE token_hash = '{s2.refresh_token}'") == "0"
    # Replaying the retired token revokes the whole family, including the token it was traded for.
    assert anon.code("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=s1.refresh_token),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    assert anon.code("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=s2.refresh_token),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    # Logout revokes; another session of the same user is unaffected.
    a = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"), m.accounts.Session)
    b = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"), m.accounts.Session)
    anon.call("accounts", "Logout", m.accounts.LogoutRequest(refresh_token=a.refresh_token), m.accounts.LogoutResponse)
    assert anon.code("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=a.refresh_token),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    b2 = anon.call("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=b.refresh_token), m.accounts.Session)
    # Changing the password needs the current one and ends every session.
    me = Client(shop, m, b2.access_token)
    assert me.code("accounts", "ChangePassword", m.accounts.ChangePasswordRequest(current_password="wrong one", new_password="second password"),
                   m.accounts.ChangePasswordResponse) == grpc.StatusCode.PERMISSION_DENIED
    me.call("accounts", "ChangePassword", m.accounts.ChangePasswordRequest(current_password="first password", new_password="second password"),
            m.accounts.ChangePasswordResponse)
    assert anon.code("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=b2.refresh_token),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    assert anon.code("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="second password"), m.accounts.Session)
    assert anon.code("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token="made-up"), m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED


def test_repeated_failed_logins_are_slowed_down(shop, m):
    anon, email, _ = register(shop, m)
    codes = [anon.code("accounts", "Login", m.accounts.LoginRequest(email=email, password=f"guess {n}"), m.accounts.Session) for n in range(7)]
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert codes[6] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Even the right password waits for the delay; the answer says how long.
    try:
        anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"), m.accounts.Session)
        raise AssertionError("the right password skipped the delay")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "try again in" in e.details()
        assert int(dict(e.trailing_metadata())["retry-after"]) >= 1
    # Unknown emails answer like wrong passwords.
    assert anon.code("accounts", "Login", m.accounts.LoginRequest(email="nobody@example.com", password="whatever1"),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED


def test_profile_and_admin_roles(shop, m, admin):
    anon, email, user = register(shop, m)
    s = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="first password"), m.accounts.Session)
    me = Client(shop, m, s.access_token)
    assert me.call("accounts", "UpdateMe", m.accounts.UpdateMeRequest(display_name="Grace"), m.accounts.User).display_name == "Grace"
    assert me.code("accounts", "ListUsers", m.accounts.ListUsersRequest(), m.accounts.ListUsersResponse) == grpc.StatusCode.PERMISSION_DENIED
    assert me.code("accounts", "SetUserRoles", m.accounts.SetUserRolesRequest(user_id=user.id, roles=["admin"]),
                   m.accounts.User) == grpc.StatusCode.PERMISSION_DENIED
    assert admin.code("accounts", "SetUserRoles", m.accounts.SetUserRolesRequest(user_id=user.id, roles=["root"]),
                      m.accounts.User) == grpc.StatusCode.INVALID_ARGUMENT
    promoted = admin.call("accounts", "SetUserRoles", m.accounts.SetUserRolesRequest(user_id=user.id, roles=["customer", "admin"]), m.accounts.User)
    assert list(promoted.roles) == ["admin", "customer"]
    # New tokens carry the new roles.
    s2 = anon.call("accounts", "Refresh", m.accounts.RefreshRequest(refresh_token=s.refresh_token), m.accounts.Session)
    assert pyjwt.decode(s2.access_token, options={"verify_signature": False})["roles"] == ["admin", "customer"]
    seen, token = set(), ""
    while True:
        page = admin.call("accounts", "ListUsers", m.accounts.ListUsersRequest(page=m.common.PageRequest(page_size=2, page_token=token)),
                          m.accounts.ListUsersResponse)
        seen |= {u.id for u in page.users}
        token = page.next_page_token
        if not token:
            break
    assert user.id in seen


def test_seed_loads_products_and_users_once(shop, m, tmp_path):
    args = [binary("bazaar"), "seed", "--catalog-db", shop.databases["catalog"], "--accounts-db", shop.databases["accounts"],
            "--products", "300", "--admin-email", "boss@example.com", "--customer-email", "shopper@example.com"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "seed: products 300/300 (300 new)" in out.stdout
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert "seed: products 300/300 (0 new)" in again.stdout
    assert shop.sql("catalog", "SELECT count(*) FROM products WHERE sku LIKE 'DEMO-%'") == "300"
    assert shop.sql("catalog", "SELECT count(DISTINCT categories[1]) FROM products WHERE sku LIKE 'DEMO-%'") == "10"
    anon = Client(shop, m)
    s = anon.call("accounts", "Login", m.accounts.LoginRequest(email="boss@example.com", password="admin-pass-123"), m.accounts.Session)
    assert "admin" in s.user.roles
    # A password is never overwritten: seeding again with another one leaves the admin as it is.
    changed = subprocess.run(args + ["--admin-password", "another password"], capture_output=True, text=True, timeout=120)
    assert changed.returncode == 0 and "exists already; left as it is" in changed.stdout
    assert anon.code("accounts", "Login", m.accounts.LoginRequest(email="boss@example.com", password="another password"),
                     m.accounts.Session) == grpc.StatusCode.UNAUTHENTICATED
    # Production has no default admin password, and no demo customer.
    prod = {**os.environ, "BAZAAR_ENV": "production"}
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120, env=prod)
    assert refused.returncode != 0 and "no default admin password" in refused.stderr
    pw = tmp_path / "admin-password"
    pw.write_text("a production password\n")
    first = args[:args.index("--admin-email")] + ["--admin-email", "first-admin@example.com", "--admin-password-file", str(pw),
                                                  "--customer-email", "nobody-demo@example.com"]
    bootstrapped = subprocess.run(first, capture_output=True, text=True, timeout=120, env=prod)
    assert bootstrapped.returncode == 0 and "seed: customer" not in bootstrapped.stdout, bootstrapped.stdout
    s = anon.call("accounts", "Login", m.accounts.LoginRequest(email="first-admin@example.com", password="a production password"),
                  m.accounts.Session)
    assert "admin" in s.user.roles
    bad = subprocess.run([binary("bazaar"), "seed", "--catalog-db", "host=/nonexistent dbname=x", "--accounts-db", "x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "PostgreSQL" in (bad.stderr + bad.stdout)


def test_bad_configuration_stops_a_service_naming_the_variable(shop, tmp_path):
    env = shop.env("catalog")
    env["BAZAAR_DATABASE_URL"] = ""
    out = subprocess.run([binary("bazaar"), "serve", "catalog", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "BAZAAR_DATABASE_URL" in out.stderr
    env = shop.env("cart")
    env["BAZAAR_REDIS_ADDR"] = "nohost"
    out = subprocess.run([binary("bazaar"), "serve", "cart", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "BAZAAR_REDIS_ADDR" in out.stderr


def test_plaintext_health_port_for_probes(shop, pb2):
    """BAZAAR_HEALTH_PORT: grpc.health.v1 without TLS (what Kubernetes' native gRPC probes speak),
    nothing else on that port, and the mesh port still mutual TLS only."""
    import signal
    import grpc
    from mesh_fixtures import free_port
    health_pb2 = pb2("grpc/health/v1/health.proto")
    probe = free_port()
    shop.start("catalog", replica="catalog-probed", env={"BAZAAR_HEALTH_PORT": str(probe)})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{probe}") as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=health_pb2.HealthCheckResponse.FromString)
            assert check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            assert check(health_pb2.HealthCheckRequest(service="shop.v1.CatalogService"), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary("/shop.v1.CatalogService/ListProducts", request_serializer=lambda b: b, response_deserializer=lambda b: b)(b"", timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        assert shop.stop("catalog-probed", sig=signal.SIGTERM) == 0

"""Passwords and access tokens against peers nobody here wrote: argon2-cffi (PyPI) reads our
argon2id hashes and we read its; PyJWT (PyPI) reads our EdDSA tokens and we read its, and every
classic JWT attack is refused."""
import base64
import hashlib
import hmac
import json
import pathlib
import subprocess
import time

import argon2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rpc_fixtures import binary


def bazaar(*args, stdin=None):
    p = subprocess.run([binary("bazaar"), *args], input=stdin, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


# ---------------------------------------------------------------- argon2id

def test_our_hashes_are_argon2id_that_argon2_cffi_verifies():
    rc, encoded, _ = bazaar("password", "hash", stdin="correct horse battery staple\n")
    assert rc == 0 and encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    ph = argon2.PasswordHasher()
    assert ph.verify(encoded, "correct horse battery staple")
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        ph.verify(encoded, "Correct horse battery staple")
    # Two hashes of one password differ (fresh salt each time).
    assert bazaar("password", "hash", stdin="x\n")[1] != bazaar("password", "hash", stdin="x\n")[1]


def test_we_verify_argon2_cffi_hashes_and_refuse_others():
    theirs = argon2.PasswordHasher(time_cost=3, memory_cost=32768, parallelism=2).hash("pässwörd ☕")
    assert bazaar("password", "check", theirs, stdin="pässwörd ☕\n")[0] == 0
    assert bazaar("password", "check", theirs, stdin="passwort\n")[0] == 1
    argon2i = argon2.PasswordHasher(type=argon2.Type.I).hash("x")
    assert bazaar("password", "check", argon2i, stdin="x\n")[0] == 1      # only argon2id
    assert bazaar("password", "check", "$argon2id$garbage", stdin="x\n")[0] == 1


# ---------------------------------------------------------------- JWT (EdDSA)

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt")
    assert bazaar("jwt", "keygen", "--dir", str(d))[0] == 0
    assert oct((d / "jwt-key.pem").stat().st_mode & 0o777) == "0o600"
    return d


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(keys, token, *extra):
    return bazaar("jwt", "verify", "--key", str(keys / "jwt-pub.pem"), *extra, token)


def test_pyjwt_reads_our_tokens(keys):
    rc, token, _ = bazaar("jwt", "sign", "--key", str(keys / "jwt-key.pem"), "--sub", "u-42", "--role", "admin")
    assert rc == 0
    public = serialization.load_pem_public_key((keys / "jwt-pub.pem").read_bytes())
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="bazaar", issuer="bazaar")
    assert claims["sub"] == "u-42" and claims["roles"] == ["admin"] and claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def pyjwt_key(keys):
    return serialization.load_pem_private_key((keys / "jwt-key.pem").read_bytes(), password=None)


def claims(**overrides):
    now = int(time.time())
    c = {"sub": "u-1", "iss": "bazaar", "aud": "bazaar", "iat": now, "nbf": now, "exp": now + 600}
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def test_we_read_pyjwt_tokens(keys):
    token = jwt.encode(claims(roles=["customer"]), pyjwt_key(keys), algorithm="EdDSA")
    rc, out, err = verify(keys, token)
    assert rc == 0, err
    assert json.loads(out)["roles"] == ["customer"]
    # An audience list that contains ours is fine too.
    assert verify(keys, jwt.encode(claims(aud=["other", "bazaar"]), pyjwt_key(keys), algorithm="EdDSA"))[0] == 0


def test_attacks_and_bad_tokens_are_refused(keys):
    key = pyjwt_key(keys)
    public_pem = (keys / "jwt-pub.pem").read_bytes()
    good = jwt.encode(claims(), key, algorithm="EdDSA")
    header, payload, signature = good.split(".")

    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + payload + "."
    # HMAC "signed" with the public key as the secret: the classic algorithm-confusion attack.
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    hs_sig = b64(hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    confused = f"{hs_header}.{payload}.{hs_sig}"
    tampered = header + "." + b64(json.dumps(claims(sub="admin", roles=["admin"])).encode()) + "." + signature
    other_key = Ed25519PrivateKey.generate()
    cases = {
        "alg none": (unsigned, "algorithm"),
        "HS256 with the public key": (confused, "algorithm"),
        "tampered payload": (tampered, "signature"),
        "another signer": (jwt.encode(claims(), other_key, algorithm="EdDSA"), "signature"),
        "expired": (jwt.encode(claims(exp=int(time.time()) - 120), key, algorithm="EdDSA"), "expired"),
        "not yet valid": (jwt.encode(claims(nbf=int(time.time()) + 3600), key, algorithm="EdDSA"), "not valid yet"),
        "no expiry": (jwt.encode(claims(exp=None), key, algorithm="EdDSA"), "exp"),
        "wrong audience": (jwt.encode(claims(aud="elsewhere"), key, algorithm="EdDSA"), "audience"),
        "wrong issuer": (jwt.encode(claims(iss="mallory"), key, algorithm="EdDSA"), "issuer"),
        "two parts": (header + "." + payload, "three"),
        "garbage": ("not.a.token!", "base64url"),
    }
    for name, (token, why) in cases.items():
        rc, _, err = verify(keys, token)
        assert rc == 1 and why in err, (name, err)

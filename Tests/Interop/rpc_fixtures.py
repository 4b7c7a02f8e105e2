"""Processes and certificates for the RPC tests: the Bazaar interop server and client binaries,
a mesh PKI from `bazaar certs`, and certificates that must be refused."""
import datetime
import os
import pathlib
import signal
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("BAZAAR_BIN_DIR", ROOT / ".build" / "debug"))


def binary(name):
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it with `swift build --product {name}`")
    return str(path)


def make_certs(directory):
    """CA + server/client/intruder from `bazaar certs`, a rogue CA's client, and an expired client."""
    d = pathlib.Path(directory)
    subprocess.run([binary("bazaar"), "certs", "--dir", str(d), "server", "client", "intruder"], check=True, capture_output=True)
    subprocess.run([binary("bazaar"), "certs", "--dir", str(d / "rogue"), "client"], check=True, capture_output=True)
    make_expired(d)
    return d


def make_expired(d):
    """A client certificate from the right CA whose validity ended yesterday (cryptography from PyPI)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca-key.pem").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://bazaar.local/client")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "expired.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "expired-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


class BazaarServer:
    """`interop-server` on a free port; stops with SIGTERM and reports the exit code."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([binary("interop-server"), "--port", "0", "--host", "127.0.0.1", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"interop-server did not start: {line}{self.proc.stdout.read()}")
        self.port = int(line.split("listening on ")[1].split(" ")[0].rsplit(":", 1)[1])

    @property
    def address(self):
        return f"localhost:{self.port}"

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"interop-server did not exit after SIGTERM:\n{out}")
        return self.proc.returncode, out


def tls_args(certs, name="server"):
    return ["--use_tls", "true", "--tls_cert_file", str(certs / f"{name}.pem"), "--tls_key_file", str(certs / f"{name}-key.pem"),
            "--tls_ca_file", str(certs / "ca.pem")]


def run_client(port, case, *extra, timeout=60):
    """Runs `interop-client`; returns (exit code, output)."""
    p = subprocess.run([binary("interop-client"), "--server_host", "localhost", "--server_port", str(port),
                        "--test_case", case, *extra], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr

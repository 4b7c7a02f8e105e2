"""The FileDescriptorProtos bazaar-codegen produces (served by reflection, read by the gateway)
must equal protoc's, for the shop API, Debian's grpc-proto corpus and the well-known types."""
import os
import pathlib
import subprocess

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRPC_PROTO = pathlib.Path("/usr/share/grpc-proto")
WKT = pathlib.Path("/usr/include")
# These two import protos Debian does not ship; protoc cannot compile them either.
UNAVAILABLE = {"grpc/service_config/service_config.proto", "grpc/tls/provider/meshca/experimental/config.proto"}


def rel(base):
    return sorted(str(p.relative_to(base)) for p in base.rglob("*.proto"))


CORPORA = {
    "shop": ([ROOT / "proto", WKT], rel(ROOT / "proto")),
    "grpc-proto": ([GRPC_PROTO, WKT], [f for f in rel(GRPC_PROTO) if f not in UNAVAILABLE]),
    "well-known": ([WKT], sorted("google/protobuf/" + p.name for p in (WKT / "google" / "protobuf").glob("*.proto"))),
}


def load(path):
    s = descriptor_pb2.FileDescriptorSet()
    s.ParseFromString(pathlib.Path(path).read_bytes())
    for f in s.file:
        f.ClearField("source_code_info")
    return {f.name: f for f in s.file}


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_descriptors_equal_protoc(corpus, tmp_path):
    includes, files = CORPORA[corpus]
    assert files
    codegen = os.environ.get("BAZAAR_CODEGEN", str(ROOT / ".build" / "debug" / "bazaar-codegen"))
    ours, theirs = tmp_path / "ours.pb", tmp_path / "theirs.pb"
    subprocess.run([codegen, *[f"-I{i}" for i in includes], "--descriptor_set_out", str(ours), *files], check=True)
    assert protoc.main(["protoc", *[f"-I{i}" for i in includes], "--include_imports",
                        f"--descriptor_set_out={theirs}", *files]) == 0
    a, b = load(ours), load(theirs)
    assert a.keys() == b.keys()
    for name in sorted(b):
        assert a[name] == b[name], f"{corpus}: {name} differs from protoc"

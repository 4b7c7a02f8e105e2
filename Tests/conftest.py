"""Fixtures shared by Tests/Interop and Tests/Integration: Python classes from protoc (grpcio-tools)."""
import importlib
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WKT = "/usr/include"
GRPC_PROTO = "/usr/share/grpc-proto"
FIXTURES = ROOT / "Tests" / "Fixtures" / "proto"


def protos_under(base):
    return sorted(str(p.relative_to(base)) for p in pathlib.Path(base).rglob("*.proto"))


@pytest.fixture(scope="session")
def pb2(tmp_path_factory):
    """Compiles proto/, the test fixtures and the gRPC protos to Python; returns an importer."""
    out = tmp_path_factory.mktemp("pb2")
    from grpc_tools import protoc

    def run(includes, files, grpc_stubs=False):
        args = ["protoc"] + [f"-I{i}" for i in includes] + [f"--python_out={out}"] + files
        if grpc_stubs:
            args.insert(-len(files), f"--grpc_python_out={out}")
        assert protoc.main(args) == 0, f"protoc failed for {files}"

    # OTLP's protos stay out: the tracing tests decode with PyPI's opentelemetry-proto instead; so
    # do google/rpc's, read with googleapis-common-protos (grpcio-status's), so that the error
    # details are checked against Google's own definitions rather than ours.
    run([ROOT / "proto", WKT], [p for p in protos_under(ROOT / "proto")
                                if not p.startswith(("opentelemetry/", "google/rpc/"))])
    run([FIXTURES, ROOT / "proto", WKT], protos_under(FIXTURES))
    run([GRPC_PROTO, WKT], ["grpc/testing/test.proto", "grpc/testing/messages.proto",
                            "grpc/testing/empty.proto", "grpc/health/v1/health.proto",
                            "grpc/reflection/v1/reflection.proto"], grpc_stubs=True)
    sys.path.insert(0, str(out))
    # grpcio owns the `grpc` package; let it also find the generated grpc/testing, grpc/health, ...
    import grpc
    grpc.__path__.append(str(out / "grpc"))
    # grpcio aliases grpc.health and grpc.reflection to grpcio-health-checking's and
    # grpcio-reflection's packages when those are installed; let those find ours too (reflection v1
    # is only ours; health v1 is the same file in both).
    for alias in ("grpc.health", "grpc.reflection"):
        module = sys.modules.get(alias)
        if module is not None and hasattr(module, "__path__"):
            module.__path__.append(str(out / alias.replace(".", "/")))

    def load(proto_path, suffix="_pb2"):
        return importlib.import_module(proto_path[:-len(".proto")].replace("/", ".") + suffix)

    return load



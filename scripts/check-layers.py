#!/usr/bin/env python3
"""Fails on an import that crosses the layers of Sources/ the wrong way (README.md, "Layout").

  scripts/check-layers.py [ROOT]     ROOT defaults to the repository; prints each violation as
                                     FILE:LINE: MODULE (LAYER) imports IMPORTED (LAYER): RULE

Every Swift module under Sources/ belongs to the layer its folder names. What each layer may
import is the table below; the toolchain's own modules (Foundation, Glibc, Dispatch, ...) are
allowed everywhere.
"""
import pathlib
import re
import sys

SYSTEM = {"Foundation", "FoundationEssentials", "Glibc", "Darwin", "Dispatch", "Synchronization", "Testing", "XCTest"}
# Runtime modules by what they are allowed to see: the wire and the core are the bottom.
RUNTIME_BASE = {"BazaarWire", "BazaarCore"}
# Generated modules any runtime module may use (protocols the runtime speaks); the shop's API is not one.
RUNTIME_PROTOS = {"WellKnownTypes", "BazaarOptions", "GRPCProtos", "OTLPProtos", "RPCStatusProtos"}
DATA = {"BazaarPostgres", "BazaarRedis", "BazaarSMTP"}

RULES = {
    # layer: (allowed layers or modules, the rule in words)
    "generated": ("Generated code uses only the wire, the core and other generated code"),
    "runtime": ("The runtime uses the C modules, the wire, the core, the transport and the runtime's protocol messages; "
                "never the edge, the shop or the executables"),
    "edge": ("The edge uses the runtime and generated code; never a C module (protobuf-c, sockets, TLS) directly"),
    "shop": ("The shop uses the core, generated code, the data clients, auth and telemetry; never the transport, the mesh, "
             "the edge or a C module"),
    "interop": ("Interop uses the runtime and generated code"),
    "executable": ("Executables may use everything"),
}


def layer_of(path, root):
    parts = path.relative_to(root / "Sources").parts
    group = parts[0]
    if group == "C":
        return "c", parts[1]
    if group == "Generated":
        return "generated", parts[1]
    if group == "Runtime":
        return "runtime", parts[1]
    if group == "Edge":
        return "edge", parts[1]
    if group == "Shop":
        return "shop", parts[1]
    if group == "Interop":
        return "interop", parts[1]
    return "executable", group


def modules(root):
    """Every module under Sources/, by name -> layer."""
    out = {}
    for p in (root / "Sources").iterdir():
        if not p.is_dir():
            continue
        if p.name in ("C", "Generated", "Runtime", "Edge", "Shop", "Interop"):
            for m in p.iterdir():
                if m.is_dir():
                    out[m.name] = layer_of(m / "x", root)[0]
        else:
            out[p.name] = "executable"
    return out


def allowed(layer, module, imported, imported_layer):
    if imported in SYSTEM or imported == module:
        return True
    if layer == "executable":
        return True
    if imported_layer is None:
        # Not one of ours: a package dependency (ArgumentParser) only executables and interop use.
        return layer == "interop"
    if layer == "generated":
        return imported in RUNTIME_BASE or imported == "CBazaarProtobufC" or imported_layer == "generated"
    if layer == "runtime":
        if imported_layer == "c":
            return True
        if module == "BazaarWire":
            return False
        if module == "BazaarCore":
            return imported == "BazaarWire"
        if module == "BazaarTransport":
            # google.rpc.Status is part of the gRPC wire (grpc-status-details-bin).
            return imported in RUNTIME_BASE or imported in ("RPCStatusProtos", "WellKnownTypes")
        if module == "BazaarSchema":
            return imported in RUNTIME_BASE or imported in ("WellKnownTypes", "BazaarOptions")
        return imported in RUNTIME_BASE or imported == "BazaarTransport" or imported in RUNTIME_PROTOS
    if layer == "edge":
        return imported_layer in ("runtime", "generated", "edge")
    if layer == "shop":
        if imported_layer == "shop" or imported_layer == "generated":
            return True
        return imported in RUNTIME_BASE or imported in DATA or imported in ("BazaarAuth", "BazaarTelemetry", "BazaarSchema")
    if layer == "interop":
        return imported_layer in ("runtime", "generated", "interop")
    return False


def check(root):
    root = pathlib.Path(root).resolve()
    known = modules(root)
    problems = []
    for path in sorted((root / "Sources").rglob("*.swift")):
        layer, module = layer_of(path, root)
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            m = re.match(r"^\s*(?:@[\w()]+\s+)*import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z0-9_]+)", line)
            if not m:
                continue
            imported = m.group(1)
            imported_layer = known.get(imported)
            if not allowed(layer, module, imported, imported_layer):
                rel = path.relative_to(root)
                problems.append(f"{rel}:{n}: {module} ({layer}) imports {imported} ({imported_layer or 'external'}): {RULES[layer]}")
    return problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} import(s) cross the layers the wrong way", file=sys.stderr)
        return 1
    print("check-layers: every import follows the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())

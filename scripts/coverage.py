#!/usr/bin/env python3
"""Line coverage of Bazaar's hand-written code, per module.

Merges every raw profile the run left (the Swift test bundle's and those of the binaries the
Python suites started, written under LLVM_PROFILE_FILE) into one profile, asks llvm-cov for
per-file line counts across every instrumented binary of the build, leaves out generated code
(Sources/Generated), test code and dependencies, and prints one line per module and the total.
With --floor, exits 1 when the total is below it.

    scripts/coverage.py --build .build/debug --profiles DIR [DIR ...] [--floor 80] [--json OUT]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tool(name):
    # The toolchain's llvm-cov and llvm-profdata match the compiler that wrote the profiles.
    # Debian's own llvm (from clang packages) may be older and unable to read them.
    swiftc = shutil.which("swiftc")
    if swiftc:
        candidate = pathlib.Path(swiftc).resolve().parent / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"coverage: {name} not found (it ships with the Swift toolchain)")


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def instrumented_binaries(build):
    """Every executable of the build, and the test bundle: all carry coverage mappings."""
    found = []
    for entry in sorted(build.iterdir()):
        if entry.is_file() and os.access(entry, os.X_OK) and is_elf(entry) and not entry.name.endswith(".so"):
            found.append(entry)
    return found


def module_of(path):
    """The module a hand-written source file belongs to, or None for code we do not count."""
    try:
        rel = pathlib.Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return None  # a dependency or the toolchain
    parts = rel.parts
    if not parts or parts[0] not in ("Sources", "codegen"):
        return None  # Tests/, Benchmarks/, Examples/
    if parts[0] == "codegen":
        return parts[1] if len(parts) > 2 else None
    if len(parts) < 3 or parts[1] == "Generated":
        return None
    if parts[1] in ("Runtime", "Edge", "Shop", "Interop", "C"):
        return parts[2] if len(parts) > 3 else None
    return parts[1]  # Sources/bazaar


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=".build/debug", help="the instrumented build's products folder")
    ap.add_argument("--profiles", nargs="+", default=[], help="folders holding .profraw files (searched recursively)")
    ap.add_argument("--floor", type=float, default=None, help="fail when the total line coverage is below this percentage")
    ap.add_argument("--json", help="also write the per-module figures here")
    args = ap.parse_args()

    build = pathlib.Path(args.build)
    raws = [p for d in args.profiles for p in pathlib.Path(d).rglob("*.profraw") if p.stat().st_size > 0]
    if not raws:
        sys.exit("coverage: no raw profiles found: was the build made with --enable-code-coverage?")
    merged = build / "coverage.profdata"
    # --failure-mode=warn: a profile cut short by a killed process is skipped with a warning, not fatal.
    listing = build / "coverage-profiles.txt"
    listing.write_text("".join(f"{p}\n" for p in raws))
    subprocess.run([tool("llvm-profdata"), "merge", "-sparse", "--failure-mode=warn", "-f", str(listing), "-o", str(merged)],
                   check=True)

    binaries = instrumented_binaries(build)
    bundle = build / "BazaarPackageTests.xctest"
    if bundle.exists():
        binaries.append(bundle)
    cmd = [tool("llvm-cov"), "export", "-summary-only", f"-instr-profile={merged}", str(binaries[0])]
    for b in binaries[1:]:
        cmd += ["-object", str(b)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    files = json.loads(out)["data"][0]["files"]

    modules = {}
    seen = set()
    for f in files:
        name = f["filename"]
        mod = module_of(name)
        if mod is None or name in seen:
            continue
        seen.add(name)
        lines = f["summary"]["lines"]
        m = modules.setdefault(mod, {"count": 0, "covered": 0, "files": 0})
        m["count"] += lines["count"]
        m["covered"] += lines["covered"]
        m["files"] += 1

    total_count = sum(m["count"] for m in modules.values())
    total_covered = sum(m["covered"] for m in modules.values())
    total = 100.0 * total_covered / total_count if total_count else 0.0

    print(f"line coverage of hand-written code ({len(raws)} profiles, {len(binaries)} binaries; generated code and tests left out)")
    print(f"  {'module':<26}{'lines':>8}{'covered':>9}")
    for mod in sorted(modules, key=lambda k: (-modules[k]["count"], k)):
        m = modules[mod]
        pct = 100.0 * m["covered"] / m["count"] if m["count"] else 100.0
        print(f"  {mod:<26}{m['count']:>8}{pct:>8.1f} %")
    floor = f" (floor {args.floor:g} %)" if args.floor is not None else ""
    print(f"  {'total':<26}{total_count:>8}{total:>8.1f} %{floor}")

    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"total": total, "lines": total_count, "modules": modules}, indent=2))
    if args.floor is not None and total < args.floor:
        print(f"coverage: {total:.1f} % is below the floor of {args.floor:g} %")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

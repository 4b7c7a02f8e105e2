"""Committed generated code is exactly what `make generate` (the generate-code plugin, driven by
proto/bazaar-codegen.json) makes from the .proto files."""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_make_generate_would_change_nothing():
    p = subprocess.run(["bash", str(ROOT / "scripts" / "generate.sh"), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"run `make generate`:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert "up to date" in p.stdout

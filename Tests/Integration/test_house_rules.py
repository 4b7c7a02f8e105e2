"""House rules checked in `make test`: the import rules of Sources/' layers (scripts/check-layers.py,
with planted bad imports caught) and the code style (`swift format lint` over hand-written code)."""
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-layers.py"


def check(root):
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)


def test_the_repository_follows_the_layers():
    p = check(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr


def test_planted_bad_imports_are_caught(tmp_path):
    shutil.copytree(ROOT / "Sources", tmp_path / "Sources")
    planted = {
        # A service reaching around the mesh to the transport.
        "Sources/Shop/Cart/Planted.swift": ("import BazaarTransport\n", "Cart (shop) imports BazaarTransport"),
        # The edge handling protobuf-c itself.
        "Sources/Edge/BazaarGateway/Planted.swift": ("import CBazaarProtobufC\n", "BazaarGateway (edge) imports CBazaarProtobufC"),
        # The core depending on the transport above it.
        "Sources/Runtime/BazaarCore/Planted.swift": ("@testable import BazaarTransport\n", "BazaarCore (runtime) imports BazaarTransport"),
        # The runtime depending on the shop.
        "Sources/Runtime/BazaarMesh/Planted.swift": ("import ShopAPI\n", "BazaarMesh (runtime) imports ShopAPI"),
    }
    for path, (text, _) in planted.items():
        (tmp_path / path).write_text("// planted by test_layers.py\n" + text)
    p = check(tmp_path)
    assert p.returncode == 1
    for path, (_, message) in planted.items():
        assert f"{path}:2: {message}" in p.stdout, p.stdout
    assert p.stdout.count("\n") == len(planted), p.stdout


def test_hand_written_swift_follows_the_style():
    p = subprocess.run(["bash", str(ROOT / "scripts" / "lint.sh")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_no_standard_library_mutex():
    """The product and its Swift tests lock with BazaarCore's `Lock` (pthread mutexes):
    ThreadSanitizer (every Swift suite runs under it) cannot see the standard library's `Mutex`
    hand a contended lock over, so it reported its critical sections as races and real ones
    drowned in them."""
    offenders = []
    for path in sorted([*(ROOT / "Sources").rglob("*.swift"), *(ROOT / "Tests").rglob("*.swift")]):
        if "Generated" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]
            if re.search(r"\bMutex\s*[<(]", code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "use Lock instead of Mutex:\n" + "\n".join(offenders)

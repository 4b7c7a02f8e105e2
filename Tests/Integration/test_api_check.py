"""`make api-check` against a corpus of .proto edits (Tests/Fixtures/api-check), each with its
verdict, and `buf breaking` (PyPI buf-bin) on the same edits: both tools agree on every edit buf
can judge; the edits to options only Bazaar reads (HTTP bindings, field rules) are breaking for
Bazaar and, as their `expect` files say, invisible to buf."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "Tests" / "Fixtures" / "api-check"
CODEGEN = os.environ.get("BAZAAR_CODEGEN", str(ROOT / ".build" / "debug" / "bazaar-codegen"))
# What the corpus may import from the repository.
SHARED = ["google/api/annotations.proto", "google/api/http.proto", "bazaar/options/v1/options.proto"]


def cases():
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def expectation(name):
    lines = [l.strip() for l in (CORPUS / name / "expect").read_text().splitlines() if not l.startswith("#")]
    ours = lines[0]
    theirs = next((l.split(":", 1)[1].strip() for l in lines[1:] if l.startswith("buf:")), ours)
    return ours, theirs


def api_check(name):
    """Our verdict and output: the new files against the old ones."""
    out = subprocess.run([CODEGEN, "-I", str(CORPUS / name / "new"), "-I", str(ROOT / "proto"), "-I", "/usr/include",
                          "--against", str(CORPUS / name / "old")], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return ("breaking" if out.returncode == 1 else "compatible"), out.stdout


def buf_breaking(name, tmp):
    """buf's verdict on the same edit (its default rules: the FILE category)."""
    buf = shutil.which("buf", path=str(pathlib.Path(sys.executable).parent))
    assert buf, "buf is missing: scripts/requirements-test.txt installs buf-bin into .venv"
    dirs = {}
    for side in ("old", "new"):
        d = tmp / side
        shutil.copytree(CORPUS / name / side, d)
        for f in SHARED:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "proto" / f, d / f)
        dirs[side] = d
    out = subprocess.run([buf, "breaking", str(dirs["new"]), "--against", str(dirs["old"])],
                         capture_output=True, text=True, timeout=120, cwd=tmp)
    # 0: nothing breaking; 100: breaking changes found; anything else is buf failing to run.
    assert out.returncode in (0, 100), out.stdout + out.stderr
    return ("breaking" if out.returncode == 100 else "compatible"), out.stdout


def test_the_corpus_covers_both_verdicts_and_bazaars_own_rules():
    verdicts = [expectation(c) for c in cases()]
    assert len(verdicts) >= 25
    assert sum(v == ("breaking", "breaking") for v in verdicts) >= 15
    assert sum(v == ("compatible", "compatible") for v in verdicts) >= 6
    assert sum(v[0] != v[1] for v in verdicts) >= 3


@pytest.mark.parametrize("name", cases())
def test_each_edit_gets_its_verdict_from_both_tools(name, tmp_path):
    ours_expected, buf_expected = expectation(name)
    ours, report = api_check(name)
    assert ours == ours_expected, report
    theirs, buf_report = buf_breaking(name, tmp_path)
    assert theirs == buf_expected, buf_report
    if ours == "breaking":
        # Every finding names a position, the rule and what changed.
        findings = [l for l in report.splitlines() if ": breaking: " in l]
        assert findings and all(l.startswith(("corpus.proto:", "extra.proto:")) and "[" in l for l in findings)


def test_tightened_rules_are_a_warning_only():
    verdict, report = api_check("35-rules-tightened")
    assert verdict == "compatible" and "warning: " in report and "max_len lowered from 100 to 50" in report


def test_the_repositorys_api_against_itself_is_compatible():
    out = subprocess.run([CODEGEN, "-I", str(ROOT / "proto"), "-I", "/usr/include", "--against", str(ROOT / "proto")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "no breaking change" in out.stdout, out.stdout + out.stderr


def test_bad_arguments_get_a_clear_error(tmp_path):
    out = subprocess.run([CODEGEN, "-I", str(ROOT / "proto"), "--against", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a readable directory" in out.stderr

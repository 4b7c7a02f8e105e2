"""The static checkers the issue names, over everything under deployments/ and .github/:
checkov (offline, one accepted-findings file with a reason for each), yamllint, and terraform fmt.
Each check is also shown to fail on a planted mistake, so a green run means something."""
import fnmatch
import json
import shutil
import subprocess

import pytest
import yaml

from deploy_fixtures import BAZAAR, DEPLOY, ROOT, WEB_UPSTREAMS, kustomize_text, tool

SKIPS = DEPLOY / "checkov-skips.yaml"


def render_targets(tmp_path):
    """Directories checkov scans, one per target name."""
    import helm_python as helm
    targets = {}
    for name, text in [("overlay-dev", kustomize_text("overlays/dev")), ("overlay-prod", kustomize_text("overlays/prod")),
                       ("observability", kustomize_text("../observability"))]:
        d = tmp_path / name
        d.mkdir()
        (d / f"{name}.yaml").write_text(text)
        targets[name] = ("kubernetes", d)
    chart = helm.Chart.load(str(DEPLOY / "helm" / "bazaar"))
    rendered = chart.render(name="bazaar", namespace="bazaar", is_install=True)
    d = tmp_path / "helm"
    d.mkdir()
    (d / "helm.yaml").write_text("\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml")))
    targets["helm"] = ("kubernetes", d)
    targets["dockerfile"] = ("dockerfile", DEPLOY / "container")
    targets["terraform"] = ("terraform", DEPLOY / "terraform")
    targets["github-actions"] = ("github_actions", ROOT / ".github")
    return targets


def checkov(framework, directory):
    """Failed findings of one checkov run: [(check id, resource)]."""
    result = subprocess.run([tool("checkov"), "-d", str(directory), "--framework", framework, "--skip-download",
                             "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-2000:]}"
    decoder, text, at, reports = json.JSONDecoder(), result.stdout, 0, []
    while at < len(text.rstrip()):
        while text[at].isspace():
            at += 1
        doc, at = decoder.raw_decode(text, at)
        reports += doc if isinstance(doc, list) else [doc]
    findings, scanned = set(), 0
    for report in reports:
        if "results" not in report:
            continue
        # (github_actions reports no resource count, only checks passed and failed)
        scanned += report["summary"]["resource_count"] + report["summary"]["passed"]
        for f in report["results"]["failed_checks"]:
            findings.add((f["check_id"], f["resource"]))
    return findings, scanned


def accepted(skips, target, check, resource):
    return [s for s in skips if s["check"] == check and any(fnmatch.fnmatch(target, t) for t in s["targets"])
            and any(fnmatch.fnmatch(resource, r) for r in s["resources"])]


def test_every_skip_has_a_reason():
    skips = yaml.safe_load(SKIPS.read_text())
    for s in skips:
        assert set(s) == {"check", "targets", "resources", "reason"}, s
        assert len(s["reason"].split()) >= 8, f"{s['check']}: say why"


def test_checkov_finds_nothing_beyond_the_accepted_findings(tmp_path):
    skips = yaml.safe_load(SKIPS.read_text())
    used = set()
    unexplained = []
    for target, (framework, directory) in render_targets(tmp_path).items():
        findings, scanned = checkov(framework, directory)
        assert scanned > 0, f"checkov scanned nothing in {target}"
        for check, resource in sorted(findings):
            matches = accepted(skips, target, check, resource)
            if not matches:
                unexplained.append(f"{target}: {check} on {resource}")
            used.update(id(m) for m in matches)
    assert not unexplained, "checkov findings not in deployments/checkov-skips.yaml:\n" + "\n".join(unexplained)
    stale = [s["check"] + " " + ",".join(s["targets"]) for s in skips if id(s) not in used]
    assert not stale, f"entries in checkov-skips.yaml that match no finding any more: {stale}"


def test_checkov_catches_a_privileged_container(tmp_path):
    text = kustomize_text("overlays/prod").replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1)
    (tmp_path / "bad.yaml").write_text(text)
    findings, _ = checkov("kubernetes", tmp_path)
    assert any(check == "CKV_K8S_20" for check, _ in findings), findings


def yamllint(*paths):
    return subprocess.run([tool("yamllint"), "-c", str(ROOT / ".yamllint.yaml"), "-f", "parsable", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT)


def test_yamllint_is_clean_on_deployments_and_github():
    result = yamllint("deployments", ".github")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_catches_a_broken_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: 1\na: 2\nlist:\n - x\n  - y\n")
    assert yamllint(tmp_path / "bad.yaml").returncode != 0


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed here (no Debian package, no PyPI wheel); checkov still scans the files")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(DEPLOY / "terraform")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dashboards_and_configs_the_stack_mounts_parse():
    for path in (DEPLOY / "observability" / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        assert dashboard["panels"], path
    for path in (DEPLOY / "observability" / "kubernetes").rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path


def test_the_single_machine_stack_runs_every_workload_and_the_storefront():
    """compose.yaml (test_compose.py runs it; this reads it): a container per workload on the one
    image, each with its own mesh certificate; the storefront has no database, reaches its five
    upstreams and Redis, is not published, and is among the gateway's upstreams."""
    stack = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    host = yaml.safe_load((DEPLOY / "compose" / "compose.host.yaml").read_text())
    services = stack["services"]
    image = services["catalog"]["image"]
    for name in BAZAAR:
        assert services[name]["image"] == image, name
        assert services[name]["command"] == (["gateway"] if name == "gateway" else ["serve", name])
        assert name in host["services"], f"compose.host.yaml leaves {name} on the bridge"
    certs = next(line.split() for line in services["secrets"]["command"][0].splitlines()
                 if line.strip().startswith("bazaar certs"))
    assert set(BAZAAR) <= set(certs), f"no mesh certificate for {set(BAZAAR) - set(certs)}"
    metrics = [str(services[n]["environment"]["BAZAAR_METRICS_PORT"]) for n in BAZAAR]
    assert len(set(metrics)) == len(metrics), metrics

    web = services["web"]
    env = web["environment"]
    assert env["BAZAAR_PORT"] == 9106
    assert "BAZAAR_DATABASE_URL" not in env, "web has no database"
    assert set(web["depends_on"]) == {"secrets", "redis"}, web["depends_on"]
    assert env["BAZAAR_REDIS_ADDR"] == "redis:6379"
    assert "ports" not in web, "the storefront is reached through the gateway only"
    for up in WEB_UPSTREAMS:
        assert env[f"BAZAAR_{up.upper()}_TARGET"] == f"{up}:{services[up]['environment']['BAZAAR_PORT']}", up
    assert "web:127.0.0.1" in host["x-host"]["extra_hosts"]

    gateway = services["gateway"]
    assert gateway["environment"]["BAZAAR_UPSTREAMS"].split(",") == [n for n in BAZAAR if n != "gateway"]
    assert gateway["environment"]["BAZAAR_WEB_TARGET"] == "web:9106"
    assert "web" in gateway["depends_on"]
    published = [n for n, s in services.items() if s.get("ports")]
    assert set(published) == {"gateway", "mail"}, published

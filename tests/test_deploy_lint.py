"""Static checks of the Dockerfile and k8s/ (no Docker engine or cluster here): hadolint, checkov
and yamllint report nothing, and every skip carries its reason.
"""

import json
import os
import subprocess

import pytest

from deploy_support import DOCKERFILE, K8S, KUBECTL, PROJECT_BIN, ROOT, TOOLS_BIN

CHECKOV = TOOLS_BIN / "checkov"
# The default yamllint rules, with room for the comments that say why.
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}"


def run(argv, **kwargs):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_hadolint_finds_nothing():
    # .hadolint.yaml sets failure-threshold: style, so any finding is a failure.
    result = run([str(PROJECT_BIN / "hadolint"), "--config", ".hadolint.yaml", "Dockerfile"])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_yamllint_k8s():
    result = run([str(PROJECT_BIN / "yamllint"), "-f", "parsable", "-d", YAMLLINT_CONFIG, "k8s", ".hadolint.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr


def checkov(*target: str) -> list[dict]:
    """checkov's JSON reports (one per framework); --skip-download keeps it offline."""
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} missing: run `make tools` (make test does)")
    # checkov's kustomize framework runs `kubectl kustomize` from PATH: give it the project's kubectl first.
    env = {**os.environ, "PATH": f"{KUBECTL.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = run([str(CHECKOV), *target, "--skip-download", "--output", "json"], env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.mark.parametrize("target, frameworks", [
    (["--directory", str(K8S.relative_to(ROOT))], {"kubernetes", "kustomize"}),
    (["--file", str(DOCKERFILE.relative_to(ROOT)), "--framework", "dockerfile"], {"dockerfile"}),
], ids=["k8s", "Dockerfile"])
def test_checkov_fails_nothing(target, frameworks):
    reports = checkov(*target)
    assert frameworks <= {r["check_type"] for r in reports}, [r["check_type"] for r in reports]
    for report in reports:
        summary = report["summary"]
        assert summary["failed"] == 0 and summary["parsing_errors"] == 0, (
            report["check_type"], [(c["check_id"], c["resource"], c["file_path"])
                                   for c in report["results"]["failed_checks"]])
        assert summary["passed"] > 0, report["check_type"]
        for skipped in report["results"]["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason.strip()) > 10, f"{skipped['check_id']} skipped without a reason"

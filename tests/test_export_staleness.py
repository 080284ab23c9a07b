"""The committed repository's fingerprint check, and an export that fails leaves the repository as it was."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.config import ExportConfig
from export.fingerprint import FINGERPRINT_FILE, export_fingerprint, is_stale
from export.staging import staged_repository

CHECKOUT = Path(__file__).resolve().parents[1]


def _check(root: Path, repo: Path) -> subprocess.CompletedProcess:
    """`python -m export.fingerprint` as make run/test/CI call it (no torch needed)."""
    return subprocess.run([sys.executable, "-m", "export.fingerprint", "--repository", str(repo)],
                          cwd=root, capture_output=True, text=True, timeout=120)


@pytest.fixture
def checkout_copy(tmp_path):
    """export/ and contract/ copied into a temp checkout, with a repository recorded as built by it."""
    root = tmp_path / "checkout"
    for package in ("export", "contract"):
        shutil.copytree(CHECKOUT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    repo = root / "model_repository"
    repo.mkdir()
    (repo / FINGERPRINT_FILE).write_text(export_fingerprint(ExportConfig(), root) + "\n")
    return root, repo


def test_an_unchanged_checkout_passes_and_one_changed_byte_stops_with_the_fix(checkout_copy):
    root, repo = checkout_copy
    passed = _check(root, repo)
    assert passed.returncode == 0 and "built by this checkout" in passed.stdout
    sparsify = root / "export" / "sparsify.py"
    sparsify.write_bytes(sparsify.read_bytes() + b"#")
    stopped = _check(root, repo)
    assert stopped.returncode == 1
    assert stopped.stderr.strip().splitlines() == [
        f"{repo} was built from other export/, contract/ or config than this checkout: "
        f"run `make export`, then commit {repo}/"]


def test_a_repository_without_a_fingerprint_stops_with_the_fix(checkout_copy):
    root, repo = checkout_copy
    (repo / FINGERPRINT_FILE).unlink()  # an export that never finished
    stopped = _check(root, repo)
    assert stopped.returncode == 1 and "missing or incomplete" in stopped.stderr and "make export" in stopped.stderr


def test_a_changed_default_config_or_a_missing_fingerprint_is_stale(checkout_copy):
    root, repo = checkout_copy
    assert not is_stale(repo, ExportConfig(), root)
    assert is_stale(repo, ExportConfig(seed=1), root)
    (repo / FINGERPRINT_FILE).unlink()  # an export that never finished
    assert is_stale(repo, ExportConfig(), root)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_export_that_fails_leaves_the_existing_repository_as_it_was(tmp_path):
    repo = tmp_path / "repo"
    (repo / "adder-sparse" / "1").mkdir(parents=True)
    (repo / "adder-sparse" / "1" / "model.onnx").write_bytes(b"the build being served")
    (repo / ".base-cache.pt").write_bytes(b"not a torch file")  # copied to staging, never trusted
    (repo / FINGERPRINT_FILE).write_text("old\n")
    before = _snapshot(repo)
    # the tiny config trains for seconds and is far from exact: required to be exact, it fails its target
    overrides = tmp_path / "exact.json"
    overrides.write_text('{"sparsify": {"require_exact": true}}')
    proc = subprocess.run([sys.executable, "-m", "export", "--tiny", "--quiet", "--config", str(overrides),
                           "--repository", str(repo)], cwd=CHECKOUT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.startswith("export failed its target:") and "nothing was written" in proc.stderr
    assert _snapshot(repo) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exact.json", "repo"]  # no staging folder left behind


def test_a_complete_staged_build_replaces_the_repository_whole(tmp_path):
    repo = tmp_path / "repo"
    (repo / "old-model").mkdir(parents=True)
    (repo / "cache").write_text("reusable")
    with staged_repository(repo, keep=("cache",)) as staging:
        assert (staging / "cache").read_text() == "reusable" and not (staging / "old-model").exists()
        (staging / "new-model").mkdir()
        assert not (repo / "new-model").exists()  # nothing visible before the build completes
    assert sorted(p.name for p in repo.iterdir()) == ["cache", "new-model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]

"""The committed stubs match the protos, and the service never imports torch, onnx, export or bench."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_match_protos(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = ROOT / "service" / "generated"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    existing = sorted(p.relative_to(committed) for p in committed.rglob("*.py*") if "__pycache__" not in p.parts)
    assert fresh == existing, "run `make protos`: the set of generated files changed"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not stale, f"run `make protos` and commit: {stale} differ from the protos"


def test_service_imports_no_torch_onnx_export_or_bench():
    code = ("import sys, service.server, service.cli, service.__main__\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'export', 'bench'))\n"
            "print(' '.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "", f"service imports {result.stdout.strip()}"

"""What a model repository was built from: a content hash of the export's code and config.

`make run/test/bench` re-export when the hash recorded in the repository differs from the one the
checkout would produce (`python -m export --if-stale`), so an edit under export/ or contract/ never
leaves tests running on models the code no longer makes.
"""

import hashlib
import json
from pathlib import Path

from export.config import ExportConfig

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout holding export/ and contract/
FINGERPRINT_FILE = ".export-fingerprint"  # at the repository root, written last by a complete export
EXPORT_SOURCES = ("export", "contract")
# The base model depends only on these (the sparse phase and the compile do not change it), so its
# cache is keyed on them (and on the base's config values): iterating on sparsify.py does not retrain the base for minutes.
BASE_SOURCES = ("export/evaluate.py", "export/model.py", "export/task.py",
                "export/train.py", "contract/__init__.py")


def _digest(paths: list[Path], root: Path, extra: dict) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def source_files(root: Path = PACKAGE_ROOT) -> list[Path]:
    """Every Python file of export/ and contract/ under `root`."""
    return [p for d in EXPORT_SOURCES for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts]


def export_fingerprint(cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> str:
    """sha256 of the export's source files and the config: what the whole repository depends on."""
    return _digest(source_files(root), root, cfg.to_dict())


def base_fingerprint(cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> str:
    """sha256 of what the base model depends on: its code, the model and base-training config, the seed."""
    settings = {"seed": cfg.seed, "test_fraction": cfg.test_fraction, "threads": cfg.threads,
                "model": cfg.to_dict()["model"], "base": cfg.to_dict()["base"]}
    return _digest([root / p for p in BASE_SOURCES], root, settings)


def recorded_fingerprint(repository: Path) -> str | None:
    path = Path(repository) / FINGERPRINT_FILE
    return path.read_text().strip() if path.exists() else None


def is_stale(repository: Path, cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> bool:
    """True when the repository is missing, incomplete, or built from other code or config."""
    return recorded_fingerprint(repository) != export_fingerprint(cfg, root)

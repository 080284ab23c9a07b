"""What a model repository was built from: a content hash of the export's code and config.

The model repository is committed with the code that made it. `make run/test/bench` and CI check the
recorded hash first (`python -m export.fingerprint`, no torch needed) and stop with one line when
export/, contract/ or the default config changed since: they never train, and never serve or test
models the code no longer makes.
"""

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

from export.config import ExportConfig

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout holding export/ and contract/
FINGERPRINT_FILE = ".export-fingerprint"  # at the repository root, written last by a complete export
EXPORT_SOURCES = ("export", "contract")
# The base model depends only on the modules its training imports (the sparse phase and the compile
# do not change it), so its cache is keyed on those and on the base's config values: iterating on
# sparsify.py does not retrain the base for minutes. config.py's values are hashed, not its text.
BASE_ENTRY = "export/train.py"
NOT_BASE_SOURCES = ("export/config.py", "export/fingerprint.py")


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


def local_imports(entry: str, root: Path = PACKAGE_ROOT) -> list[Path]:
    """`entry` and every file of export/ or contract/ it imports, directly or not (packages' __init__ too)."""
    seen: set[Path] = set()
    pending = [root / entry]
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending += [p for name in imported_names(path) if name.split(".")[0] in EXPORT_SOURCES
                        for p in module_files(name, root)]
    return sorted(seen)


def imported_names(path: Path) -> list[str]:
    """Absolute dotted names a file imports; `from pkg import name` yields pkg and pkg.name."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def module_files(name: str, root: Path) -> list[Path]:
    """The files importing a dotted name runs: each package's __init__.py and the module itself."""
    parts = name.split(".")
    files = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    files.append(root.joinpath(*parts).with_suffix(".py"))
    return [f for f in files if f.is_file()]


def base_fingerprint(cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> str:
    """sha256 of what the base model depends on: its code, the model and base-training config, the seed."""
    settings = {"seed": cfg.seed, "test_fraction": cfg.test_fraction, "threads": cfg.threads,
                "model": cfg.to_dict()["model"], "base": cfg.to_dict()["base"]}
    sources = [p for p in local_imports(BASE_ENTRY, root) if str(p.relative_to(root)) not in NOT_BASE_SOURCES]
    return _digest(sources, root, settings)


def recorded_fingerprint(repository: Path) -> str | None:
    path = Path(repository) / FINGERPRINT_FILE
    return path.read_text().strip() if path.exists() else None


def is_stale(repository: Path, cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> bool:
    """True when the repository is missing, incomplete, or built from other code or config."""
    return recorded_fingerprint(repository) != export_fingerprint(cfg, root)


def check(repository: Path, cfg: ExportConfig, root: Path = PACKAGE_ROOT) -> str | None:
    """None when `repository` was built by this checkout; otherwise one line saying what to do."""
    fix = f"run `make export`, then commit {repository}/"
    recorded = recorded_fingerprint(repository)
    if recorded is None:
        return f"{repository} is missing or incomplete (no {FINGERPRINT_FILE}): {fix}"
    if recorded != export_fingerprint(cfg, root):
        return f"{repository} was built from other export/, contract/ or config than this checkout: {fix}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.fingerprint",
                                     description="Exit 1 with one line unless the repository was built by this checkout.")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    args = parser.parse_args(argv)
    problem = check(args.repository, ExportConfig())
    print(problem or f"{args.repository}: built by this checkout's export/, contract/ and config",
          file=sys.stderr if problem else sys.stdout)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())

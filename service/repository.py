"""Read the model repository: find the models, check model.onnx against its manifest sha256, read the circuit."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from contract import CIRCUIT_FILE, MANIFEST_FILE, MODEL_FILE, MODELS


class RepositoryError(Exception):
    """A model's files are missing, unreadable or do not match their manifest."""


@dataclass(frozen=True)
class ModelFiles:
    name: str
    version: str
    folder: Path
    manifest: dict
    circuit: dict
    sha256: str  # of model.onnx as found on disk (verify_sha256 compares it to the manifest)
    size_bytes: int

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.manifest.get("file", MODEL_FILE)


def discover(repository: Path) -> list[tuple[str, str]]:
    """(model, version) pairs served from `repository`: the newest numeric version of each model folder.

    The contract's models come first, in contract order; any other model folder follows by name.
    """
    if not repository.is_dir():
        raise RepositoryError(f"model repository {str(repository)!r} is not a folder")
    found = {}
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = [v.name for v in folder.iterdir() if v.is_dir() and v.name.isdigit()]
        if versions:
            found[folder.name] = max(versions, key=int)
    order = [m for m in MODELS if m in found] + sorted(m for m in found if m not in MODELS)
    if not order:
        raise RepositoryError(f"no models in {str(repository)!r} (expected <model>/<version>/{MODEL_FILE})")
    return [(name, found[name]) for name in order]


def read_model(repository: Path, name: str, version: str) -> ModelFiles:
    """Read one model version's manifest and circuit, and hash its model.onnx (see verify_sha256)."""
    folder = repository / name / version
    manifest = _read_json(folder / MANIFEST_FILE)
    circuit = _read_json(folder / CIRCUIT_FILE)
    _check_manifest(folder / MANIFEST_FILE, manifest)
    onnx_path = folder / manifest.get("file", MODEL_FILE)
    try:
        data = onnx_path.read_bytes()
    except OSError as error:
        raise RepositoryError(f"cannot read {onnx_path}: {error.strerror}") from None
    return ModelFiles(name, version, folder, manifest, circuit, hashlib.sha256(data).hexdigest(), len(data))


def verify_sha256(files: ModelFiles) -> None:
    """Refuse a model.onnx that is not the file the export stage verified and recorded."""
    expected = str(files.manifest.get("sha256", ""))
    if files.sha256 != expected:
        raise RepositoryError(f"sha256 mismatch for {files.onnx_path}: manifest says {expected or '(none)'}, "
                              f"file is {files.sha256}")


def _check_manifest(path: Path, manifest: dict) -> None:
    """The fields the service relies on; the descriptive ones (inputs, parameters, ...) have defaults."""
    sha256 = manifest.get("sha256")
    if not isinstance(sha256, str) or not sha256:
        raise RepositoryError(f"{path} lacks the field 'sha256' (hex sha256 of the ONNX file)")
    file = manifest.get("file", MODEL_FILE)
    if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
        raise RepositoryError(f"{path}: 'file' must name a file in its own folder, got {file!r}")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except OSError as error:
        raise RepositoryError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RepositoryError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RepositoryError(f"{path} is not a JSON object")
    return value

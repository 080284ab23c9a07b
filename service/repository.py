"""Read the model repository: find the models, check manifest and circuit against the contract, hash model.onnx."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from contract import CIRCUIT_FILE, MANIFEST_FILE, MODEL_FILE, MODELS
from contract.circuit import Circuit, read_circuit
from contract.manifest import Manifest, read_manifest
from contract.schema import ContractError


class RepositoryError(Exception):
    """A model's files are missing, unreadable or do not match their manifest."""


@dataclass(frozen=True)
class ModelFiles:
    name: str
    version: str
    folder: Path
    manifest: Manifest
    circuit: Circuit
    sha256: str  # of model.onnx as found on disk (verify_sha256 compares it to the manifest)
    size_bytes: int

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.manifest.file


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
    """Read one model version's manifest and circuit (typed: a missing, unknown or mistyped field is a
    RepositoryError naming it), and hash its model.onnx (see verify_sha256)."""
    folder = repository / name / version
    try:
        manifest = read_manifest(folder / MANIFEST_FILE)
        circuit = read_circuit(folder / CIRCUIT_FILE)
    except ContractError as error:
        raise RepositoryError(f"{name}/{version}/{error}") from None
    _check_manifest(folder / MANIFEST_FILE, manifest)
    onnx_path = folder / manifest.file
    try:
        data = onnx_path.read_bytes()
    except OSError as error:
        raise RepositoryError(f"cannot read {onnx_path}: {error.strerror}") from None
    return ModelFiles(name, version, folder, manifest, circuit, hashlib.sha256(data).hexdigest(), len(data))


def verify_sha256(files: ModelFiles) -> None:
    """Refuse a model.onnx that is not the file the export stage verified and recorded."""
    expected = files.manifest.sha256
    if files.sha256 != expected:
        raise RepositoryError(f"sha256 mismatch for {files.onnx_path}: manifest says {expected or '(none)'}, "
                              f"file is {files.sha256}")


def _check_manifest(path: Path, manifest: Manifest) -> None:
    """What the types cannot say: a sha256 to compare with, a file in the manifest's own folder."""
    if not manifest.sha256:
        raise RepositoryError(f"{path}: 'sha256' is empty (hex sha256 of the ONNX file)")
    file = manifest.file
    if Path(file).name != file or file in ("", ".", ".."):
        raise RepositoryError(f"{path}: 'file' must name a file in its own folder, got {file!r}")

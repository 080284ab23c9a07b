"""The peers' own venvs (.venv-peers/<peer>), made on demand from bench/peers/requirements-<peer>.txt.

A stamp file holds the requirements file's sha256: a second run skips the install, an edited pin
reinstalls. pip's output goes to a log beside the venv, shown only when the install fails.
"""

import hashlib
import subprocess
import sys
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parents[1]  # the checkout: bench/peers/ -> bench/ -> root
VENVS_DIR = ROOT / ".venv-peers"
STAMP = ".installed"


class VenvError(RuntimeError):
    pass


def requirements_file(peer: str) -> Path:
    return PACKAGE_DIR / f"requirements-{peer}.txt"


def venv_dir(peer: str, venvs: Path = VENVS_DIR) -> Path:
    return venvs / peer


def python_of(peer: str, venvs: Path = VENVS_DIR) -> Path:
    return venv_dir(peer, venvs) / "bin" / "python"


def is_installed(peer: str, venvs: Path = VENVS_DIR) -> bool:
    """True when the venv exists and was installed from the current requirements file."""
    stamp = venv_dir(peer, venvs) / STAMP
    return python_of(peer, venvs).exists() and stamp.is_file() and stamp.read_text().strip() == _digest(peer)


def ensure(peer: str, venvs: Path = VENVS_DIR, log=print) -> Path:
    """The peer venv's python, installing the venv first unless its stamp is current."""
    if is_installed(peer, venvs):
        return python_of(peer, venvs)
    where = venv_dir(peer, venvs)
    log(f"installing the {peer} venv in {where} from {requirements_file(peer).name} (once; tens of seconds)")
    started = time.monotonic()
    where.mkdir(parents=True, exist_ok=True)
    pip_log = where.parent / f"{peer}-install.log"
    # The base interpreter, not our venv's: the peer venv must not see our site-packages.
    base = getattr(sys, "_base_executable", sys.executable)
    with open(pip_log, "w") as out:
        for argv in ([base, "-m", "venv", str(where)],
                     [str(python_of(peer, venvs)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                     [str(python_of(peer, venvs)), "-m", "pip", "install", "--quiet", "-r",
                      str(requirements_file(peer))]):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                tail = "\n".join(pip_log.read_text().splitlines()[-20:])
                raise VenvError(f"installing the {peer} venv failed: {' '.join(argv)}\n{tail}\n(log: {pip_log})")
    (where / STAMP).write_text(_digest(peer) + "\n")
    log(f"{peer} venv installed in {time.monotonic() - started:.0f} s")
    return python_of(peer, venvs)


def _digest(peer: str) -> str:
    return hashlib.sha256(requirements_file(peer).read_bytes()).hexdigest()

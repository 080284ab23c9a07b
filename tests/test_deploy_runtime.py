"""The runtime image's install line works (no Docker engine here, so it runs in a fresh venv):
the Dockerfile's `runtime-deps` COPY and RUN lines, then the runtime's ENTRYPOINT and ENV
against the image's model repository; its HEALTHCHECK reports SERVING, `import torch` fails,
SIGTERM exits 0, nothing in the venv or the repository was written (read-only root fs), and
the peak RSS after start-up is under half the memory limit in k8s/base.

Marked slow (a fresh venv and a pip install: ~15 s with pip's cache, longer on a clean
machine), so it is one test. It needs a real model repository: ADDER_MODEL_REPOSITORY, or
./model_repository as `make export` builds it (`make test` does so before running the tests).
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from contract import MODEL_FILE, SPARSE_MODEL, model_dir
from deploy_support import (HEALTHCHECK_SCRIPT, ROOT, dockerfile_stages, exec_form, health_services, of_kind,
                            render, server_container)
from fixtures.service_servers import stop_bound
from service.config import Config
from service.process import process_tree

REPOSITORY = Path(os.environ.get("ADDER_MODEL_REPOSITORY", ROOT / "model_repository")).resolve()
STARTUP_SECONDS = 180  # load, sha256 and the 10,000-problem self-test of both models
IMAGE_VENV = "/opt/venv"


def peak_rss_kib(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_stage_sources(stage, workdir: Path) -> None:
    """Do the stage's `COPY src... dest` lines (from the build context) into workdir."""
    for line in stage.args("COPY"):
        *sources, dest = shlex.split(line)
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"docker build would fail: COPY {source} is not in the repository"
            target = workdir / dest / origin.name if dest.endswith("/") and origin.is_file() else workdir / dest
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def install_runtime(tmp_path: Path) -> Path:
    """The runtime-deps stage, with the image's /opt/venv at tmp_path/venv; returns the venv."""
    stage = dockerfile_stages()["runtime-deps"]
    (workdir,) = stage.args("WORKDIR")
    src = tmp_path / workdir.lstrip("/")
    src.mkdir(parents=True)
    copy_stage_sources(stage, src)
    venv = tmp_path / "venv"
    # The image's `python` is a bare CPython 3.11; this interpreter's base is one too
    # (`-m venv` from inside a venv makes a venv of the base interpreter, without its packages).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The stage's ENV, except the cache switch: pip's cache changes where wheels come from, not which.
    env.update({k: v for k, v in stage.env().items() if k != "PIP_NO_CACHE_DIR"})
    for run in stage.args("RUN"):
        command = run.replace(IMAGE_VENV, str(venv))
        command = command.replace("python -m venv", f"{shlex.quote(sys.executable)} -m venv", 1)
        result = subprocess.run(["/bin/sh", "-c", command], cwd=src, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, f"RUN {run}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return venv


def image_repository(tmp_path: Path) -> Path:
    """The image's /models: the repository without the torch checkpoints the models stage drops."""
    models = tmp_path / "models"
    shutil.copytree(REPOSITORY, models, ignore=shutil.ignore_patterns("model.pt", ".base-cache.pt"))
    return models


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under roots with its size and mtime: a write anywhere changes it.
    (Tests may run as root, which ignores permission bits, so this is the read-only check.)"""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots for p in root.rglob("*")}


def healthcheck(venv: Path, env: dict, services: list[str]) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command, with the venv's python and the script from docker/."""
    return subprocess.run([str(venv / "bin" / "python"), str(HEALTHCHECK_SCRIPT), *services], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(not (model_dir(REPOSITORY, SPARSE_MODEL) / MODEL_FILE).exists(),
                    reason=f"no model repository at {REPOSITORY}: run `make export` "
                           "(make test builds it) or set ADDER_MODEL_REPOSITORY")
def test_runtime_install_line_serves_without_torch(tmp_path):
    venv = install_runtime(tmp_path)
    python = str(venv / "bin" / "python")
    runtime = dockerfile_stages()["runtime"]
    home = tmp_path / "home"  # outside the repository: nothing can be imported from the checkout
    home.mkdir()

    no_torch = subprocess.run([python, "-c", "import torch"], cwd=home, capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr, no_torch.stderr

    models = image_repository(tmp_path)
    grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
           and not k.startswith("ADDER_")}
    env.update({k: v for k, v in runtime.env().items() if k not in ("PATH", "HOME")})
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", HOME=str(home),
               ADDER_HOST="127.0.0.1",  # the image listens on 0.0.0.0; a test stays on loopback
               ADDER_GRPC_PORT=str(grpc_port), ADDER_METRICS_PORT=str(metrics_port), ADDER_HTTP_PORT=str(http_port),
               ADDER_MODEL_REPOSITORY=str(models))
    (entrypoint,) = runtime.args("ENTRYPOINT")
    argv = exec_form(entrypoint)
    assert argv[0] == "python"
    log = tmp_path / "server.log"
    before = snapshot(venv, models)  # the image's read-only root filesystem: nothing may change
    with open(log, "w") as log_file:
        server = subprocess.Popen([python, *argv[1:]], cwd=home, env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT)
    try:
        (healthcheck_line,) = runtime.args("HEALTHCHECK")
        image_services = exec_form(healthcheck_line.partition(" CMD ")[2])[2:]
        deadline = time.monotonic() + STARTUP_SECONDS
        while (check := healthcheck(venv, env, image_services)).returncode != 0:
            assert server.poll() is None, f"server exited {server.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"{check.stderr}\n{log.read_text()[-4000:]}"
            time.sleep(1)

        every_name = healthcheck(venv, env, sorted(health_services()))
        assert every_name.returncode == 0, every_name.stderr
        probe = "import service.server, sys; print(service.__file__, 'torch' in sys.modules)"
        imported = subprocess.run([python, "-c", probe], cwd=home, env=env, capture_output=True, text=True,
                                  check=True).stdout.split()
        assert Path(imported[0]).is_relative_to(venv) and imported[1] == "False"
        peak = sum(peak_rss_kib(pid) for pid in process_tree(server.pid))  # the supervisor and its workers
        limit = server_container(of_kind(render("base"), "Deployment")[0])["resources"]["limits"]["memory"]
        assert limit.endswith("Mi") and peak // 1024 < int(limit[:-2]) // 2, (
            f"peak RSS {peak // 1024} MiB after start-up leaves too little of the pod's {limit} for load")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert b"adder_inflight_requests" in response.read()

        server.send_signal(signal.SIGTERM)  # what the kubelet sends after preStop
        grace = float(env.get("ADDER_GRACE_SECONDS", Config.grace_seconds))
        assert server.wait(timeout=stop_bound(grace)) == 0, log.read_text()[-4000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    after = snapshot(venv, models)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"the server wrote outside /tmp (a read-only root filesystem refuses): {changed[:10]}"

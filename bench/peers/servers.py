"""Start the three servers on free loopback ports: ours (service.process), KServe and MLServer (peer venvs).

Each is a `Running` server: a name, a gRPC target, the settings the report prints, and a stop().
Readiness is decided by the caller (ServerReady + ModelReady over gRPC, bench/peers/run.py).
"""

import json
import os
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers import KSERVE, MLSERVER, OURS
from bench.peers.venvs import ROOT, requirements_file
from service.process import ServerProcess


@dataclass
class Running:
    name: str
    target: str  # host:port of its Open Inference Protocol gRPC service
    settings: dict
    process: object = field(repr=False)  # a PeerProcess or a started ServerProcess
    log_path: Path = None

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def exit_code(self) -> int | None:
        popen = self.process.process  # both kinds keep their Popen as .process
        return popen.poll() if popen else None

    def stop(self) -> None:
        self.process.stop()


def free_port() -> int:
    """A port nothing listens on now. Peers take numbers, not 0, so bind-then-pass is the best there is;
    a port taken in between makes that server fail its readiness wait (loudly), never measure another."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned_version(peer: str) -> str:
    """The peer's own version as its requirements file pins it."""
    for line in requirements_file(peer).read_text().splitlines():
        if line.lower().startswith(f"{peer}=="):
            return line.split("==", 1)[1].strip()
    return "?"


class PeerProcess:
    """A peer server in its own session (process group): stop() ends it and any worker it spawned."""

    def __init__(self, argv: list[str], log_path: Path, cwd: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT))  # bench.peers.* importable, nothing of ours else
        env.pop("VIRTUAL_ENV", None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL to the whole group if it has not exited within 30 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of its group (MLServer's workers)
        except ProcessLookupError:
            pass
        self.process.wait()


def start_ours(repository: Path, out: Path, max_batch_size: int, threads: int, extra_args: tuple[str, ...]) -> Running:
    server = ServerProcess(repository, out / "server-ours.log", max_batch_size, threads, extra_args=extra_args)
    server.__enter__()  # returns once the models are loaded and grpc.health says SERVING
    settings = {"max_batch_size": max_batch_size, "intra_op_threads": threads,
                "extra_args": shlex.join(extra_args) or "-"}
    return Running(OURS, server.target, settings, server, server.log_path)


def start_kserve(python: Path, models: dict[str, Path], out: Path, threads: int) -> Running:
    http_port, grpc_port = free_port(), free_port()
    argv = [str(python), "-m", "bench.peers.kserve_model", "--http_port", str(http_port), "--grpc_port",
            str(grpc_port), "--intra_op_threads", str(threads)]
    argv += [f"--onnx={name}={Path(path).resolve()}" for name, path in models.items()]  # its cwd is the log dir
    log_path = out / "server-kserve.log"
    process = PeerProcess(argv, log_path, cwd=out)
    settings = {"version": pinned_version(KSERVE), "intra_op_threads": threads, "predict": "sync (KServe's loop)",
                "grpc_threads": 4, "workers": 1, "per_request_logs": "off"}
    return Running(KSERVE, f"127.0.0.1:{grpc_port}", settings, process, log_path)


def start_mlserver(python: Path, models: dict[str, Path], out: Path, threads: int) -> Running:
    """MLServer's defaults (parallel_workers=1, no adaptive batching) but debug logs off, loopback only."""
    folder = (out / "mlserver-models").resolve()  # mlserver reads it relative to its cwd, which is the folder
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    _write_json(folder / "settings.json", {"debug": False, "host": "127.0.0.1", "http_port": http_port,
                                           "grpc_port": grpc_port, "metrics_port": metrics_port})
    for name, path in models.items():
        _write_json(folder / name / "model-settings.json", {
            "name": name, "implementation": "bench.peers.mlserver_model.OnnxAdder",
            "parameters": {"uri": str(Path(path).resolve()), "extra": {"intra_op_threads": threads}}})
    log_path = out / "server-mlserver.log"
    process = PeerProcess([str(python.parent / "mlserver"), "start", str(folder)], log_path, cwd=folder)
    settings = {"version": pinned_version(MLSERVER), "intra_op_threads": threads, "parallel_workers": 1,
                "adaptive_batching": "off", "debug": False}
    return Running(MLSERVER, f"127.0.0.1:{grpc_port}", settings, process, log_path)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")

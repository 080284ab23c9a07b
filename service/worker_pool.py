"""Start worker processes (`python -m service` as worker i), hear their events, signal and reap them."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields

from service.config import Config
from service.worker_link import INDEX_ENV, PIPE_ENV

EXITED = "exited"  # not sent by a worker: its pipe closed (it exited, however)


@dataclass(frozen=True)
class WorkerEvent:
    worker: int
    pid: int
    event: str  # service.worker_link's LOADED, RELOADED, STOPPED, FAILED, or EXITED
    fields: dict


def worker_argv(config: Config) -> list[str]:
    """`python -m service` with every setting of `config` as a flag: a worker runs exactly this config."""
    argv = [sys.executable, "-m", "service"]
    for field in fields(Config):
        argv += ["--" + field.name.replace("_", "-"), str(getattr(config, field.name))]
    return argv


class WorkerPool:
    """Worker processes by index; their events arrive, in order per worker, on `events`."""

    def __init__(self, config: Config, environ: dict[str, str]):
        self._argv = worker_argv(config)
        self._environ = environ
        self.events: queue.Queue[WorkerEvent] = queue.Queue()
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, index: int) -> int:
        """Start worker `index` (again, if it ran before); returns its pid."""
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                self._argv, env={**self._environ, INDEX_ENV: str(index), PIPE_ENV: str(write_fd)},
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds its copy: EOF here means the worker is gone
        self.processes[index] = process
        threading.Thread(target=self._listen, args=(index, process, read_fd), name=f"worker-{index}-events",
                         daemon=True).start()
        return process.pid

    def signal_all(self, signum: signal.Signals) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:  # exited just now: its EXITED event is on its way
                    pass

    def live(self) -> list[int]:
        return [index for index, process in self.processes.items() if process.poll() is None]

    def wait_all(self, timeout: float) -> list[int]:
        """Wait for every worker to exit (at most `timeout` s in all); SIGKILL the rest, return their indexes."""
        killed = []
        deadline = time.monotonic() + timeout
        for index, process in self.processes.items():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                killed.append(index)
        return killed

    def _listen(self, index: int, process: subprocess.Popen, read_fd: int) -> None:
        with os.fdopen(read_fd) as pipe:
            for line in pipe:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a worker killed mid-line
                event = record.pop("event", "")
                self.events.put(WorkerEvent(index, process.pid, event, record))
        process.wait()
        self.events.put(WorkerEvent(index, process.pid, EXITED, {"code": process.returncode}))


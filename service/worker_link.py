"""A worker process's line to its supervisor: which worker it is, and the events the supervisor waits on.

The supervisor (service/supervisor.py) starts each worker with two environment variables: its index
and the write end of a pipe. The worker writes one JSON object per line to that pipe: `loaded` (with
the models ready and failed), `reloaded` (after a SIGHUP), `stopped` (with the requests left
unfinished) and `failed` (it cannot start, with the reason).
"""

import json
import os
import threading

INDEX_ENV = "ADDER_WORKER_INDEX"
PIPE_ENV = "ADDER_SUPERVISOR_FD"

LOADED, RELOADED, STOPPED, FAILED = "loaded", "reloaded", "stopped", "failed"


def is_worker(environ=os.environ) -> bool:
    """Whether a supervisor started this process as one of its workers."""
    return PIPE_ENV in environ


class WorkerLink:
    """The worker's end; `send` may be called from any thread."""

    def __init__(self, index: int, pipe_fd: int):
        self.index = index
        self.supervisor_pid = os.getppid()
        self._pipe = os.fdopen(pipe_fd, "w", buffering=1, closefd=True)
        self._lock = threading.Lock()

    @classmethod
    def from_environ(cls, environ=os.environ) -> "WorkerLink | None":
        """The link when a supervisor started this process, else None (a stand-alone server)."""
        if PIPE_ENV not in environ:
            return None
        return cls(int(environ.get(INDEX_ENV, "0")), int(environ[PIPE_ENV]))

    def orphaned(self) -> bool:
        """The supervisor is gone (killed): this worker has nobody to pass it SIGTERM and should stop."""
        return os.getppid() != self.supervisor_pid

    def send(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            try:
                self._pipe.write(line + "\n")
            except (BrokenPipeError, ValueError):  # the supervisor is gone: nobody is waiting on us
                pass

    def close(self) -> None:
        with self._lock:
            try:
                self._pipe.close()
            except BrokenPipeError:
                pass

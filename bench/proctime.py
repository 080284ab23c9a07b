"""CPU time a server process has used so far, to nanoseconds: the sum over its threads' schedstat."""

import os
from pathlib import Path

from service.process import process_tree

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """On-CPU seconds of every live thread of `pid` and of its worker processes (user + system).

    /proc/<pid>/stat counts in clock ticks (10 ms), too coarse for a few hundred calls of ~100 us each;
    each thread's schedstat counts nanoseconds. A thread that exits between two readings takes its time
    with it, so this is for servers whose threads live on (gRPC's pool, the poller, the HTTP loop).
    """
    total = 0
    for process in process_tree(pid):
        for task in _tasks(process):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # the thread ended while we listed them
                continue
    return total / 1e9


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process exited
        return []


def cpu_seconds_coarse(pid: int) -> float | None:
    """utime + stime of `pid` and its descendants from /proc/<pid>/stat, in 10 ms ticks (exited threads
    included: for servers whose threads come and go, e.g. the peers'); None where there is no /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    total = 0.0
    for process in process_tree(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total

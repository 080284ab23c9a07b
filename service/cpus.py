"""How many CPUs this process may use: the cgroup CPU quota (a pod's CPU limit), else its CPU affinity."""

import math
import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = _CGROUP) -> int:
    """The smaller of the CPU quota (rounded up: a 1.5-CPU limit runs two workers) and the CPUs we may run on.

    os.cpu_count() is the machine's count: in a container limited to 2 CPUs on a 64-core node, one
    worker per CPU of the node would thrash. Kubernetes turns `limits.cpu` into this quota.
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(affinity, math.ceil(quota)) if quota else affinity)


def cgroup_cpu_quota(cgroup_root: Path = _CGROUP) -> float | None:
    """CPUs allowed by the cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`); None: no quota set."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota = _read(cgroup_root / folder / "cpu.cfs_quota_us")
        if quota is not None:
            return _ratio(quota, _read(cgroup_root / folder / "cpu.cfs_period_us") or "")
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None

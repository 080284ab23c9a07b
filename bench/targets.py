"""The issue's speed targets, each as a measured ratio against its goal with PASS, MISS or n/a."""

from dataclasses import asdict, dataclass

import numpy as np

from bench.clients import ADD, ADD_BATCH, CHECK
from bench.endtoend import Scenario
from bench.inprocess import BatchResult
from contract import DENSE_MODEL, SPARSE_MODEL

BATCHING, NO_BATCHING = "batching", "no-batching"


@dataclass
class Check:
    name: str
    measured: float | None  # the figure the target is about, in `unit`
    goal: float  # the target, same unit
    unit: str  # "x" (a ratio) or "sums/s"
    at_most: bool = False  # the goal is an upper bound (latency) instead of a lower bound
    detail: str = ""  # how `measured` was formed, or why it is n/a

    @property
    def status(self) -> str:
        if self.measured is None:
            return "n/a"
        met = self.measured <= self.goal if self.at_most else self.measured >= self.goal
        return "PASS" if met else "MISS"

    @property
    def of_goal(self) -> float | None:
        """How far along: >= 1 means met, e.g. 0.8 = 80% of a throughput goal, or 25% too slow."""
        if self.measured is None or self.measured == 0:
            return None
        return self.goal / self.measured if self.at_most else self.measured / self.goal

    def to_json(self) -> dict:
        return asdict(self) | {"status": self.status, "of_goal": self.of_goal}


def _ort(inprocess: list[BatchResult], batch: int, name: str, goal: float) -> Check:
    result = next((r for r in inprocess if r.batch == batch and r.pairs), None)
    if result is None or DENSE_MODEL not in result.seconds or SPARSE_MODEL not in result.seconds:
        return Check(name, None, goal, "x", detail=f"batch {batch} not measured in-process with both builds")
    return Check(name, float(np.median(result.ratios())), goal, "x",
                 detail=f"median of {result.pairs} per-pair ratios dense/sparse")


def _find(scenarios: list[Scenario], server: str, method: str, model: str, concurrency: int) -> Scenario | None:
    for s in scenarios:
        if (s.server, s.method, s.model, s.concurrency) == (server, method, model, concurrency) and s.latencies:
            return s
    return None


def evaluate(inprocess: list[BatchResult], scenarios: list[Scenario]) -> list[Check]:
    """All five targets; `server` names come from endtoend.plan ("target" when --target was given)."""
    checks = [_ort(inprocess, 1024, "ORT speed-up sparse vs dense, batch 1024", 3.0),
              _ort(inprocess, 1, "ORT speed-up sparse vs dense, batch 1", 2.0)]
    server = BATCHING if any(s.server == BATCHING for s in scenarios) else "target"

    add = _find(scenarios, server, ADD, SPARSE_MODEL, 1)
    floor = _find(scenarios, server, CHECK, "", 1)
    ort = next((r for r in inprocess if r.batch == 1 and SPARSE_MODEL in r.seconds and r.pairs), None)
    name = "Add p50 / (floor p50 + ORT p50 batch 1), sparse"
    if add and floor and ort:
        parts = [np.median(add.latencies), np.median(floor.latencies), np.median(ort.seconds[SPARSE_MODEL])]
        checks.append(Check(name, float(parts[0] / (parts[1] + parts[2])), 1.2, "x", at_most=True,
                            detail="Add %.3f ms, floor %.3f ms, ORT %.3f ms" % tuple(1e3 * p for p in parts)))
    else:
        checks.append(Check(name, None, 1.2, "x", at_most=True, detail="needs sequential Add, floor and ORT batch 1"))

    on = _find(scenarios, BATCHING, ADD, SPARSE_MODEL, 16)
    off = _find(scenarios, NO_BATCHING, ADD, SPARSE_MODEL, 16)
    name = "16 clients: throughput batching / no batching"
    if on and off:
        checks.append(Check(name, on.throughput / off.throughput, 2.5, "x",
                            detail=f"{on.throughput:,.0f} vs {off.throughput:,.0f} req/s"))
    else:
        checks.append(Check(name, None, 2.5, "x", detail="needs both servers (not with --target) at 16 clients"))

    floor16 = _find(scenarios, server, CHECK, "", 16)
    on = _find(scenarios, server, ADD, SPARSE_MODEL, 16)
    name = "16 clients: Add throughput / floor throughput"
    if on and floor16:
        checks.append(Check(name, on.throughput / floor16.throughput, 0.7, "x",
                            detail=f"{on.throughput:,.0f} vs {floor16.throughput:,.0f} req/s"))
    else:
        checks.append(Check(name, None, 0.7, "x", detail="needs Add and floor at 16 clients"))

    batch = next((s for s in scenarios if s.method == ADD_BATCH and s.model == SPARSE_MODEL and s.latencies), None)
    name = "AddBatch sums/s, sparse, one ORT thread"
    if batch:
        checks.append(Check(name, batch.throughput * batch.rows, 50_000, "sums/s",
                            detail=f"{batch.rows} rows per call, {batch.concurrency} client"))
    else:
        checks.append(Check(name, None, 50_000, "sums/s", detail="AddBatch not measured"))
    return checks

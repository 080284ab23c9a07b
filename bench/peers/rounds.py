"""What is measured, in which order: interleaved rounds over (model, scenario, server).

In every round each scenario runs on each server in turn, the servers' order rotating from round to
round, while all of them stay up (idle when not driven): load from anything else on the machine then
falls on every server alike, and the per-round ratios ours/peer cancel most of it.
"""

from dataclasses import dataclass

import numpy as np

SEQUENTIAL = "sequential"
CONCURRENT = "concurrent"


@dataclass(frozen=True)
class Scenario:
    kind: str  # SEQUENTIAL | CONCURRENT
    clients: int

    @property
    def label(self) -> str:
        return "sequential (1 client)" if self.kind == SEQUENTIAL else f"{self.clients} clients"


def scenarios(clients: int) -> list[Scenario]:
    return [Scenario(SEQUENTIAL, 1), Scenario(CONCURRENT, clients)]


@dataclass(frozen=True)
class Step:
    round: int  # 1-based
    model: str
    scenario: Scenario
    server: str


def schedule(rounds: int, models: list[str], plan: list[Scenario], servers: list[str]) -> list[list[Step]]:
    """One list of steps per round; round r starts with server r mod n (the order rotates)."""
    out = []
    for r in range(rounds):
        order = servers[r % len(servers):] + servers[:r % len(servers)]
        out.append([Step(r + 1, model, scenario, server) for model in models for scenario in plan for server in order])
    return out


@dataclass
class Measurement:
    """One step's figures: latencies in seconds, throughput in calls per second, server CPU seconds per call
    (its whole process tree, warm-up calls included in the count; None where /proc is missing)."""
    round: int
    model: str
    scenario: str  # SEQUENTIAL | CONCURRENT
    clients: int
    server: str
    calls: int
    seconds: float
    throughput: float
    p50: float
    p99: float
    cpu_per_call: float | None = None

    @classmethod
    def of(cls, step: Step, latencies: list[float], seconds: float, cpu_per_call: float | None = None) -> "Measurement":
        p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
        return cls(step.round, step.model, step.scenario.kind, step.scenario.clients, step.server, len(latencies),
                   seconds, len(latencies) / seconds if seconds > 0 else float("nan"), float(p50), float(p99),
                   cpu_per_call)

"""peers.png: concurrent throughput and sequential latency per server, every round's point over its median."""

from pathlib import Path

import numpy as np

from bench.peers import OURS, PEER_TITLES
from bench.peers.rounds import CONCURRENT, SEQUENTIAL, Measurement
from bench.plots import INSTALL_HINT, _pyplot

PANELS = ((CONCURRENT, "throughput", 1.0, "requests per second"),
          (CONCURRENT, "cpu_per_call", 1e6, "server CPU per request, us"),
          (SEQUENTIAL, "p50", 1e3, "p50 latency, ms"),
          (SEQUENTIAL, "p99", 1e3, "p99 latency, ms"))
TITLES = {"throughput": "{clients} clients, closed loop", "cpu_per_call": "{clients} clients, server CPU",
          "p50": "sequential, p50", "p99": "sequential, p99"}


def write(path: Path, measurements: list[Measurement], model: str) -> Path | None:
    """The PNG for one model, or None (with a hint) when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        print(INSTALL_HINT)
        return None
    servers = [s for s in PEER_TITLES if any(m.server == s for m in measurements)]  # ours first
    clients = next((m.clients for m in measurements if m.scenario == CONCURRENT), 0)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.6 * len(PANELS), 3.8))
    for ax, (scenario, field, scale, unit) in zip(axes, PANELS):
        for x, server in enumerate(servers):
            values = [getattr(m, field) * scale for m in measurements
                      if m.model == model and m.scenario == scenario and m.server == server
                      and getattr(m, field) is not None]
            if not values:
                continue
            ax.bar(x, np.median(values), color="tab:blue" if server == OURS else "tab:grey", alpha=0.6)
            ax.plot([x] * len(values), values, "k.", markersize=5)
        ax.set_xticks(range(len(servers)), [PEER_TITLES[s] for s in servers])
        ax.set_ylabel(unit)
        ax.set_title(TITLES[field].format(clients=clients), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{model} over gRPC ModelInfer (tritonclient), same ONNX file: bar = median, dots = rounds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

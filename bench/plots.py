"""PNG plots: latency distributions per build (in-process and end to end) and throughput vs concurrency."""

from pathlib import Path

import numpy as np

from bench.clients import ADD, CHECK
from bench.endtoend import FLOOR, Scenario
from bench.inprocess import BatchResult

INSTALL_HINT = "matplotlib is not installed: pip install 'sparse-adder[bench]' (make setup does) for the plots"
_LINE = {"batching": "-", "no-batching": "--", "target": "-"}


def _pyplot():
    """matplotlib only when plotting: the measuring itself needs none of it."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        return None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def write_all(out: Path, inprocess: list[BatchResult], scenarios: list[Scenario]) -> list[Path]:
    """The PNGs written (none, with a printed hint, when matplotlib is missing)."""
    plt = _pyplot()
    if plt is None:
        print(INSTALL_HINT)
        return []
    written = []
    if inprocess:
        written.append(_inprocess(plt, out / "inprocess_latency.png", inprocess))
    measured = [s for s in scenarios if s.latencies and s.method in (ADD, CHECK)]
    if measured:
        written.append(_e2e_latency(plt, out / "e2e_latency.png", measured))
        written.append(_throughput(plt, out / "throughput.png", measured))
    return written


def _inprocess(plt, path: Path, results: list[BatchResult]) -> Path:
    results = [r for r in results if r.pairs]
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.8), squeeze=False)
    for ax, r in zip(axes[0], results):
        names = list(r.seconds)
        ax.boxplot([np.asarray(r.seconds[n]) * 1e3 for n in names], showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), [n.replace("adder-", "") for n in names])
        title = f"batch {r.batch}"
        if len(names) == 2:
            title += f"\ndense/sparse {np.median(r.ratios()):.2f}x"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("ms per session.run")
    fig.suptitle("In-process ONNX Runtime latency per call (box: IQR, whiskers: 1.5 IQR)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _e2e_latency(plt, path: Path, scenarios: list[Scenario]) -> Path:
    builds = list(dict.fromkeys(s.model or FLOOR for s in scenarios))
    concurrency = sorted({s.concurrency for s in scenarios})
    colors = dict(zip(concurrency, plt.cm.viridis(np.linspace(0, 0.9, len(concurrency)))))
    fig, axes = plt.subplots(1, len(builds), figsize=(4.6 * len(builds), 4), sharex=True, squeeze=False)
    for ax, build in zip(axes[0], builds):
        for s in (s for s in scenarios if (s.model or FLOOR) == build):
            values = np.sort(np.asarray(s.latencies)) * 1e3
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=colors[s.concurrency],
                    linestyle=_LINE.get(s.server, ":"), label=f"{s.concurrency} clients, {s.server}")
        ax.set_xscale("log")
        ax.set_title("health Check (floor)" if build == FLOOR else f"Add, {build}", fontsize=10)
        ax.set_xlabel("latency, ms (log)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of calls at or below")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("End-to-end latency distributions per build (gRPC, loopback)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _throughput(plt, path: Path, scenarios: list[Scenario]) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[tuple[str, str], list[Scenario]] = {}
    for s in scenarios:
        series.setdefault((s.server, s.model or FLOOR), []).append(s)
    for (server, build), points in series.items():
        points.sort(key=lambda s: s.concurrency)
        ax.plot([s.concurrency for s in points], [s.throughput for s in points], marker="o",
                linestyle=_LINE.get(server, ":"), color="grey" if build == FLOOR else None,
                label=f"{'health Check (floor)' if build == FLOOR else 'Add ' + build}, {server}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests per second")
    ax.set_title("Throughput vs concurrency", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

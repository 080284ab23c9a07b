"""From the rounds' measurements to medians, ratios ours/peer, the Markdown table and the JSON file.

Ratios are taken within a round (ours and the peer measured minutes apart under the same load) and
their median over rounds is reported: a paired figure, steadier than a ratio of two medians.
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.peers import OURS, PEER_TITLES
from bench.peers.rounds import CONCURRENT, SEQUENTIAL, Measurement


def _spread(values: list[float | None]) -> dict | None:
    """Median, min, max and count; None when a value is missing (server CPU off Linux)."""
    if any(v is None for v in values):
        return None
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values)),
            "n": len(values)}


def summarize(measurements: list[Measurement]) -> list[dict]:
    """Per (model, scenario, server): medians over rounds of throughput, p50 and p99."""
    groups: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.model, m.scenario, m.clients, m.server), []).append(m)
    return [{"model": model, "scenario": scenario, "clients": clients, "server": server, "rounds": len(ms),
             "calls": sum(m.calls for m in ms), "throughput": _spread([m.throughput for m in ms]),
             "p50": _spread([m.p50 for m in ms]), "p99": _spread([m.p99 for m in ms]),
             "cpu_per_call": _spread([m.cpu_per_call for m in ms])}
            for (model, scenario, clients, server), ms in groups.items()]


def ratios(measurements: list[Measurement]) -> list[dict]:
    """Per (model, scenario, peer): ours/peer of throughput (> 1: ours serves more), of latency and of
    server CPU per call (< 1: ours answers sooner, spends less), per round, then their spread over rounds."""
    ours = {(m.round, m.model, m.scenario): m for m in measurements if m.server == OURS}
    pairs: dict[tuple, list[tuple[Measurement, Measurement]]] = {}
    for m in measurements:
        mine = ours.get((m.round, m.model, m.scenario))
        if m.server != OURS and mine is not None:
            pairs.setdefault((m.model, m.scenario, m.clients, m.server), []).append((mine, m))
    return [{"model": model, "scenario": scenario, "clients": clients, "peer": peer,
             "throughput_ours_over_peer": _spread([a.throughput / b.throughput for a, b in both]),
             "p50_ours_over_peer": _spread([a.p50 / b.p50 for a, b in both]),
             "p99_ours_over_peer": _spread([a.p99 / b.p99 for a, b in both]),
             "cpu_ours_over_peer": _spread([_over(a.cpu_per_call, b.cpu_per_call) for a, b in both])}
            for (model, scenario, clients, peer), both in pairs.items()]


def _over(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def headline(ratio_rows: list[dict], model: str) -> dict[str, float]:
    """The figures issue #19 asks for: concurrent throughput and sequential p50, ours/peer."""
    out = {}
    for row in (r for r in ratio_rows if r["model"] == model):
        title = PEER_TITLES[row["peer"]]
        if row["scenario"] == CONCURRENT:
            out[f"{row['clients']}-client throughput, ours/{title}"] = row["throughput_ours_over_peer"]["median"]
        elif row["scenario"] == SEQUENTIAL:
            out[f"sequential p50 latency, ours/{title}"] = row["p50_ours_over_peer"]["median"]
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _range(spread: dict | None, fmt: str, scale: float = 1.0) -> str:
    if spread is None:
        return "-"
    low, mid, high = (spread[k] * scale for k in ("min", "median", "max"))
    return f"{mid:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def markdown(summary: list[dict], ratio_rows: list[dict], info: dict, servers: dict[str, dict], rounds: int,
             seconds: float) -> str:
    """The tables a user reads: per server, then ours/peer; the machine and settings on top."""
    load = " at start, ".join(", ".join(f"{x:.2f}" for x in info.get(f"load_average_at_{when}") or [])
                              for when in ("start", "end") if info.get(f"load_average_at_{when}"))
    lines = [f"CPU: {info['cpu']} ({info['usable_cpus']} CPUs usable, load average {load} at "
             f"{'end' if info.get('load_average_at_end') else 'start'})",
             f"{rounds} interleaved round(s), up to {seconds:g} s per measurement; medians over rounds "
             f"(min-max in brackets); one ModelInfer = one a+b, every answer checked", ""]
    lines += [f"- {PEER_TITLES[name]}: " + ", ".join(f"{k}={v}" for k, v in settings.items())
              for name, settings in servers.items()]
    lines += ["", "| model | scenario | server | req/s | p50 ms | p99 ms | server CPU us/req | rounds | calls |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in summary:
        lines.append(f"| {row['model']} | {_scenario(row)} | {PEER_TITLES[row['server']]} | "
                     f"{_range(row['throughput'], ',.0f')} | {_ms(row['p50']['median'])} | "
                     f"{_ms(row['p99']['median'])} | {_range(row['cpu_per_call'], ',.0f', 1e6)} | {row['rounds']} | "
                     f"{row['calls']:,} |")
    lines += ["", "| model | scenario | ours / peer | throughput ratio | p50 ratio | p99 ratio | server CPU/req ratio |",
              "|---|---|---|---:|---:|---:|---:|"]
    for row in ratio_rows:
        lines.append(f"| {row['model']} | {_scenario(row)} | ours / {PEER_TITLES[row['peer']]} | "
                     f"{_range(row['throughput_ours_over_peer'], '.2f')} | {_range(row['p50_ours_over_peer'], '.2f')} | "
                     f"{_range(row['p99_ours_over_peer'], '.2f')} | {_range(row['cpu_ours_over_peer'], '.2f')} |")
    lines += ["", "Throughput ratio > 1: ours serves more requests per second; latency and CPU ratios < 1: ours "
                  "answers sooner, spends less CPU per request. Server CPU: its whole process tree, from /proc."]
    for model in dict.fromkeys(row["model"] for row in ratio_rows):
        lines += ["", f"{model}: " + "; ".join(f"{k} {v:.2f}x" for k, v in headline(ratio_rows, model).items())]
    return "\n".join(lines)


def _scenario(row: dict) -> str:
    return "sequential" if row["scenario"] == SEQUENTIAL else f"{row['clients']} clients"


def write_json(path: Path, measurements: list[Measurement], summary: list[dict], ratio_rows: list[dict],
               heads: dict, info: dict, servers: dict, settings: dict) -> None:
    data = {"machine": info, "settings": settings, "servers": servers, "headline": heads, "summary": summary,
            "ratios": ratio_rows, "measurements": [asdict(m) for m in measurements],
            "units": "seconds (p50, p99), calls per second (throughput); ratios are ours/peer"}
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")

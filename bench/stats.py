"""Summaries of timing samples: median and IQR, tail percentiles, and throughput windows."""

import numpy as np


def summary(seconds) -> dict:
    """Order statistics of a sample of durations in seconds (empty sample: n=0 and nothing else)."""
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    q1, median, q3, p95, p99 = np.percentile(values, [25, 50, 75, 95, 99])
    return {"n": int(values.size), "median": float(median), "q1": float(q1), "q3": float(q3),
            "iqr": float(q3 - q1), "p50": float(median), "p95": float(p95), "p99": float(p99),
            "mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def scaled(stats: dict, divisor: float) -> dict:
    """The same summary for durations divided by `divisor` (per call -> per problem)."""
    return {k: (v if k == "n" else v / divisor) for k, v in stats.items()}


def ms(value: float | None) -> str:
    """Milliseconds with three significant-ish digits; '-' when missing."""
    if value is None:
        return "-"
    value *= 1e3
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def us(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e6:.2f}" if value < 1e-5 else f"{value * 1e6:.1f}"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"

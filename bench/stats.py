"""Median and percentiles as the benchmarks report them (``{"median", "p90", "samples"}``)."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float:
    """The value below which a ``q`` share of ``values`` lies (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    """Median and p90 (milliseconds, two decimals) and how many samples."""
    return {"median": round(statistics.median(values), 2), "p90": round(percentile(values, 0.9), 2),
            "samples": len(values)}  # fmt: skip

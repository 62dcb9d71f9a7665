"""Latency summaries through the runtime's own statistics (edge_sca.latency), so both report the same way."""

from __future__ import annotations

from edge_sca.latency import LatencyStats


def summarise(samples_ms: list[float]) -> dict:
    """n, min, mean, p50, p90, p99, max (ms) and fps = 1000 / mean (what a loop of invokes sustains)."""
    if not samples_ms:
        raise ValueError("no latency samples to summarise")
    stats = LatencyStats(warmup=0)  # the caller has already discarded its warm-up runs
    for x in samples_ms:
        stats.add({"total_ms": x})
    s = stats.summary()
    return {"n": s["measured"], "min_ms": float(min(samples_ms)), "mean_ms": s["mean_ms"], "p50_ms": s["p50_ms"],
            "p90_ms": s["p90_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"], "fps": s["fps"]}

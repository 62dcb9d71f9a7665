"""Latency statistics after warm-up: the first frames pay for allocation and cold caches, so they are left out."""

from __future__ import annotations

import numpy as np

#: Latency statistics skip this many first frames (interpreter and cache warm-up).
LATENCY_WARMUP = 3
#: Stages of a frame's timings; input_checks_ms (the learned checks: frame statistics and scores) is part of
#: quality_ms (the whole gate).
STAGES = ("capture_ms", "preprocess_ms", "quality_ms", "input_checks_ms", "invoke_ms", "total_ms")


class LatencyStats:
    """Collects per-frame timings (ms) and summarises them as p50 / p90 / p99 / max and frames per second."""

    def __init__(self, warmup: int = LATENCY_WARMUP):
        self.warmup = warmup
        self.seen = 0
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}

    def add(self, timings: dict) -> None:
        self.seen += 1
        if self.seen <= self.warmup:
            return
        for s in STAGES:
            if s in timings:
                self.samples[s].append(float(timings[s]))

    def summary(self) -> dict:
        """Totals and per-stage percentiles; fps = 1000 / mean total (what the pipeline sustains per core set)."""
        total = np.asarray(self.samples["total_ms"])
        out: dict = {"frames": self.seen, "warmup": min(self.warmup, self.seen), "measured": int(total.size)}
        if total.size == 0:
            return out
        out.update(_pcts(total))
        out["fps"] = float(1000.0 / total.mean())
        out["stages"] = {s: _pcts(np.asarray(v)) for s, v in self.samples.items() if v and s != "total_ms"}
        return out


def _pcts(x: np.ndarray) -> dict:
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(x.max()),
            "mean_ms": float(x.mean())}


def format_latency(s: dict) -> str:
    if not s.get("measured"):
        return f"latency: {s.get('frames', 0)} frames, none after the {s.get('warmup', 0)}-frame warm-up"
    return (f"latency after {s['warmup']} warm-up frames ({s['measured']} measured): p50 {s['p50_ms']:.1f} ms, "
            f"p90 {s['p90_ms']:.1f}, p99 {s['p99_ms']:.1f}, max {s['max_ms']:.1f}; {s['fps']:.1f} frames/s")

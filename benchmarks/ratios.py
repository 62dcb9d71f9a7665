"""Ratios measured in one run: int8 over float32, CancerNet-SCa against ResNet-50, achieved MACs/s against peak.

Ratios of medians taken minutes apart on the same machine survive the noise of a shared CPU far better than the
absolute numbers, so these are what to quote.
"""

from __future__ import annotations

from benchmarks.machine import VectorUnit, peak_macs_per_s

BASELINE = "resnet50"


def _p50(model: dict, threads: str) -> float | None:
    lat = model.get("latency", {}).get(threads)
    return lat["p50_ms"] if lat else None


def _speedups(slow: dict, fast: dict) -> dict[str, float]:
    """Per thread count that both were timed at: slow median / fast median."""
    out = {}
    for t in fast["latency"]:
        s, f = _p50(slow, t), _p50(fast, t)
        if s and f:
            out[t] = s / f
    return out


def _index(models: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["architecture"], m["variant"]): m for m in models if "latency" in m}


def int8_speedup(models: list[dict]) -> dict[str, dict[str, float]]:
    """Per architecture and thread count: float32 median / int8 median (above 1 = int8 is faster)."""
    idx, out = _index(models), {}
    for (arch, variant), m in idx.items():
        f = idx.get((arch, "float32"))
        if variant != "int8" or f is None:
            continue
        out[arch] = _speedups(f, m)
    return out


def versus_baseline(models: list[dict]) -> dict[str, dict]:
    """Per model other than ResNet-50: how many times faster, smaller and cheaper in MACs than ResNet-50 of the
    same variant (`b_int8` against `resnet50_int8`)."""
    idx, out = _index(models), {}
    for (arch, variant), m in idx.items():
        base = idx.get((BASELINE, variant))
        if arch == BASELINE or base is None:
            continue
        out[f"{arch}_{variant}"] = {
            "against": f"{BASELINE}_{variant}",
            "speedup": _speedups(base, m),
            "size_ratio": base["size_bytes"] / m["size_bytes"],
            "macs_ratio": base["macs"] / m["macs"] if base.get("macs") and m.get("macs") else None,
        }
    return out


def utilisation(model: dict, unit: VectorUnit, ghz: float | None, cores: int) -> dict[str, dict]:
    """Per thread count: achieved MACs/s at the median (MACs / p50) against threads x clock x MACs per cycle."""
    out = {}
    for t, lat in model.get("latency", {}).items():
        achieved = model["macs"] / (lat["p50_ms"] / 1000.0) if model.get("macs") else None
        peak = peak_macs_per_s(unit, min(int(t), cores), ghz, model["input_dtype"])
        out[t] = {"achieved_gmacs": achieved / 1e9 if achieved else None, "peak_gmacs": peak / 1e9 if peak else None,
                  "fraction_of_peak": achieved / peak if achieved and peak else None}
    return out


def peak_formula(machine: dict) -> str:
    """The peak estimate spelled out for the report."""
    unit = machine["vector_unit"]
    ghz = machine["clock_ghz"]
    clock = f"{ghz:.2f} GHz ({machine['clock_source']})" if ghz else "unknown clock (pass --clock-ghz)"
    return (f"peak MACs/s = threads x clock x MACs/cycle/core; clock {clock}; vector unit {unit['name']}: "
            f"{unit['int8_macs_per_cycle']} int8 and {unit['float32_macs_per_cycle']} float32 MACs/cycle/core "
            f"({unit['assumption']}). An upper bound: no stalls, every cycle the best instruction on every pipe. "
            "A turbo clock above the stated one (usual in VMs, whose cpuinfo shows the base clock) can put the "
            "achieved fraction above 1.")

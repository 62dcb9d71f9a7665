"""One model, measured in a process of its own: load time, peak resident memory and single-frame latency.

Run as `python -m benchmarks.model_bench MODEL --threads 1,2 ...`; prints one JSON object on stdout. A fresh
process per model keeps the memory peaks of different models apart. The memory baseline is taken after numpy,
edge_sca and LiteRT are imported but before any interpreter exists, so the delta is what the model costs.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.stats import summarise
from edge_sca.errors import EdgeScaError
from edge_sca.interpreter import TFLiteModel, interpreter_class
from edge_sca.manifest import Manifest, decode_pixels, load_manifest, manifest_path


def _status_kb() -> dict[str, int]:
    """VmRSS / VmHWM of this process in kB (Linux); empty elsewhere."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _maxrss_kb() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # macOS reports bytes, Linux kB


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, `echo 5 > /proc/self/clear_refs`); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_snapshot() -> dict:
    s = _status_kb()
    return {"rss_kb": s.get("VmRSS"), "hwm_kb": s.get("VmHWM"), "maxrss_kb": _maxrss_kb()}


def bench_input(manifest: Manifest, size: int) -> tuple[np.ndarray, str]:
    """The pixels to time on: the manifest's first reference vector (a real ISIC image), else seeded noise."""
    for ref in manifest.reference_vectors:
        pixels = decode_pixels(ref["pixels"])
        if pixels.shape == (size, size, 3):
            return pixels, f"manifest reference vector {ref.get('id', '?')}"
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8), "seeded random pixels"


def time_invokes(model: TFLiteModel, tensor: np.ndarray, warmup: int, runs: int, max_s: float,
                 min_runs: int) -> list[float]:
    """Milliseconds per invoke after `warmup` invokes: `runs` of them, or fewer (not below min_runs) after max_s."""
    for _ in range(warmup):
        model.invoke_raw(tensor)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < runs:
        t0 = time.perf_counter_ns()
        model.invoke_raw(tensor)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if len(samples) >= min_runs and time.perf_counter() - start > max_s:
            break
    return samples


def measure(path: Path, threads: list[int], warmup: int, runs: int, max_s: float, min_runs: int) -> dict:
    """Everything about one model; the memory peak is taken with the first thread count in `threads`."""
    interpreter_class()  # import LiteRT before the baseline
    manifest = load_manifest(manifest_path(path))
    gc.collect()
    reset = _reset_peak()
    base = memory_snapshot()
    t0 = time.perf_counter()
    model = TFLiteModel(path, threads=threads[0], manifest=manifest)
    load_ms = (time.perf_counter() - t0) * 1000.0
    pixels, input_source = bench_input(manifest, model.size)
    tensor = model.quantise_input(pixels)
    t0 = time.perf_counter()
    probs = model.dequantise_output(model.invoke_raw(tensor))[0]
    first_ms = (time.perf_counter() - t0) * 1000.0
    latency = {str(threads[0]): time_invokes(model, tensor, warmup, runs, max_s, min_runs)}
    peak = memory_snapshot()
    del model
    for n in threads[1:]:
        gc.collect()
        model = TFLiteModel(path, threads=n, manifest=manifest)
        latency[str(n)] = time_invokes(model, tensor, warmup, runs, max_s, min_runs)
        del model
    return {
        "file": path.name, "size_bytes": path.stat().st_size, "input_dtype": str(tensor.dtype),
        "input_source": input_source, "load_ms": load_ms, "first_invoke_ms": first_ms,
        "reference_probs": [float(p) for p in probs],
        "memory": _memory_block(base, peak, reset, threads[0]),
        "latency": {n: {"samples_ms": [round(x, 4) for x in s], **summarise(s)} for n, s in latency.items()},
    }


def _memory_block(base: dict, peak: dict, reset: bool, threads: int) -> dict:
    """Peak resident memory of the model over the interpreter-free baseline (MiB), two ways."""
    mib = 1024.0
    out = {"baseline_rss_mib": (base["rss_kb"] or 0) / mib, "process_peak_mib": peak["maxrss_kb"] / mib,
           "maxrss_delta_mib": (peak["maxrss_kb"] - base["maxrss_kb"]) / mib, "threads": threads,
           "hwm_reset": reset}
    if reset and base["rss_kb"] is not None and peak["hwm_kb"] is not None:
        out["hwm_delta_mib"] = (peak["hwm_kb"] - base["rss_kb"]) / mib
    out["model_peak_mib"] = out.get("hwm_delta_mib", out["maxrss_delta_mib"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_bench", description=(
        "Measure one .tflite model (load time, peak memory, latency per thread count); prints JSON. "
        "benchmarks/device_bench.py runs this once per model in a fresh process."))
    p.add_argument("model", type=Path)
    p.add_argument("--threads", default="1", help="comma-separated LiteRT thread counts; memory uses the first")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--max-seconds", type=float, default=30.0, help="stop a setting early after this long")
    p.add_argument("--min-runs", type=int, default=10)
    args = p.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
        result = measure(args.model, threads, args.warmup, args.runs, args.max_seconds, args.min_runs)
    except EdgeScaError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

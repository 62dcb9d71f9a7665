"""The on-device benchmark (`make bench`): every model in models/, the end-to-end runtime path, int8 drift.

Runs on the scanner (numpy, OpenCV, LiteRT; no TensorFlow) and on the workstation. Each model is measured in a
fresh process (load time, file size, peak resident memory, single-frame latency after warm-up at 1, 2 and all
cores); ratios are taken within the run (int8 over float32, CancerNet-SCa over ResNet-50, achieved MACs/s over the
CPU's estimated peak). Writes bench.json, bench.md and latency.png to reports/bench/<hostname>/ and prints the
Markdown (or the JSON with --json). Research tool, not a diagnosis.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # `python benchmarks/device_bench.py` (make bench; the release folder on the scanner) puts benchmarks/ itself on
    # the import path, where `benchmarks` and `edge_sca` cannot be found: run again as `python -m benchmarks` with
    # the folder above importable. An installed package (`pip install .`) needs none of this: `cancernet-bench`.
    _root = str(Path(__file__).resolve().parent.parent)
    _env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_root, os.environ.get("PYTHONPATH")) if p))
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], _env)

from benchmarks import ratios
from benchmarks.discover import REPO_ROOT, find_models, identify, run_child
from benchmarks.machine import VectorUnit, machine_info
from benchmarks.report import markdown, plot
from edge_sca.cli_common import add_common, add_model_filter, run_cli
from edge_sca.devpaths import MODELS_DIR
from edge_sca.errors import EdgeScaError, ModelError
from edge_sca.isic import resolve_isic_dir

log = logging.getLogger("bench")

FULL = {"runs": 200, "warmup": 20, "max_seconds": 20.0, "min_runs": 20, "e2e_frames": 100, "limit": None}
QUICK = {"runs": 30, "warmup": 3, "max_seconds": 1.0, "min_runs": 5, "e2e_frames": 10, "limit": 20}


#: What `--e2e-threads` calls the scanner's shipped setting: `[model] threads = 0`, the runtime's choice (XNNPACK
#: then runs one thread). The input checks' budget is a share of the invoke at this setting.
SCANNER_DEFAULT = "default"


def _thread_settings(spec: str, cores: int, flag: str, example: str, default_ok: bool) -> list[int | None]:
    """Distinct settings of a comma list in the order given: positive numbers (capped at the usable cores), 'all',
    and, where `default_ok`, SCANNER_DEFAULT as None."""
    out: list[int | None] = []
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            continue
        if default_ok and part == SCANNER_DEFAULT:
            value: int | None = None
        elif part == "all":
            value = cores
        elif part.isdigit() and int(part) > 0:
            value = min(int(part), cores)
        else:
            allowed = f"{SCANNER_DEFAULT!r}, positive numbers" if default_ok else "positive numbers"
            raise EdgeScaError(f"{flag} {spec!r}: use {allowed} and 'all', e.g. {example}")
        if value not in out:
            out.append(value)
    if not out:
        raise EdgeScaError(f"{flag} is empty; use e.g. {example}")
    return out


def thread_counts(spec: str, cores: int) -> list[int]:
    """'1,2,all' -> distinct counts within the usable cores, largest first (memory is measured with the first)."""
    counts = _thread_settings(spec, cores, "--threads", "1,2,all", default_ok=False)
    return sorted((c for c in counts if c is not None), reverse=True)


def e2e_thread_settings(spec: str, cores: int) -> list[int | None]:
    """'default,all' -> the end-to-end runs' interpreter threads in the order given, None for the scanner's default
    (the runtime's choice), without repeats."""
    return _thread_settings(spec, cores, "--e2e-threads", "default,all", default_ok=True)


def parse_macs(items: list[str] | None) -> dict[str, int]:
    """--macs b=216397056 (repeatable): MACs per frame by architecture, for models whose files do not say."""
    table: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            table[name.strip()] = int(float(value))
        except ValueError as exc:
            raise EdgeScaError(f"--macs {item!r}: expected NAME=COUNT, e.g. b=216397056") from exc
    return table


def measure_models(paths: list[Path], args: argparse.Namespace, cfg: dict, threads: list[int],
                   machine: dict) -> list[dict]:
    """Identify, then measure each model in its own process; a failure is recorded and the rest go on."""
    unit = VectorUnit(**machine["vector_unit"])
    models = []
    for path in paths:
        info = identify(path, parse_macs(args.macs))
        if "error" not in info:
            info.update(run_child(path, threads, cfg["warmup"], cfg["runs"], cfg["max_seconds"], cfg["min_runs"]))
        if "error" not in info:
            info["utilisation"] = ratios.utilisation(info, unit, machine["clock_ghz"], machine["cores"])
        else:
            log.error("%s: %s", path.name, info["error"])
        models.append(info)
    return models


def run_e2e_all(models: list[dict], args: argparse.Namespace, cfg: dict, cores: int, notes: list[str]) -> list[dict]:
    """The runtime path for every int8 model that measured cleanly, at each of the --e2e-threads settings."""
    if args.no_e2e:
        return []
    try:
        from benchmarks.e2e import default_camera, run_e2e
    except ImportError as exc:  # the runtime is missing from an old checkout
        notes.append(f"end-to-end skipped: edge_sca runtime not importable ({exc})")
        return []
    spec = args.camera or default_camera(args.isic_dir)
    if spec.startswith("synthetic"):
        notes.append("end-to-end camera: synthetic; its capture time is drawing the scene in numpy, not a sensor's: "
                     "read 'around model' (give --isic-dir or --camera picamera2 for real frames)")
    out = []
    for m in models:
        if "error" in m or m["input_dtype"] not in ("int8", "uint8"):
            continue
        for threads in e2e_thread_settings(args.e2e_threads, cores):
            try:
                row = run_e2e(m, spec, cfg["e2e_frames"], threads, args.split)
            except EdgeScaError as exc:
                row = {"model": m["name"], "error": str(exc)}
                log.error("end-to-end %s: %s", m["name"], exc)
            out.append(row | {"threads": threads or SCANNER_DEFAULT})
    return out


def run_accuracy(models: list[dict], args: argparse.Namespace, cfg: dict, cores: int) -> dict | None:
    if not args.isic_dir:
        return None
    from benchmarks.accuracy import accuracy_report

    limit = args.limit if args.limit is not None else cfg["limit"]
    return accuracy_report(models, args.isic_dir, args.split, limit, cores)


def _clean(x):
    """NaN / inf -> None so the JSON is strict."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def write_outputs(result: dict, out_dir: Path, no_plot: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    note = "plot skipped (--no-plot)" if no_plot else plot(result, out_dir / "latency.png")
    if note:
        result["notes"].append(note)
    result["outputs"] = {k: str(out_dir / f) for k, f in (("json", "bench.json"), ("markdown", "bench.md"))}
    if not note:
        result["outputs"]["plot"] = str(out_dir / "latency.png")
    (out_dir / "bench.md").write_text(markdown(result))
    (out_dir / "bench.json").write_text(json.dumps(_clean(result), indent=1) + "\n")


def cmd_bench(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    cfg.update({k: v for k, v in (("runs", args.runs), ("warmup", args.warmup),
                                  ("max_seconds", args.max_seconds), ("e2e_frames", args.e2e_frames)) if v is not None})
    paths = find_models(Path(args.models_dir), args.model, args.match)
    if args.isic_dir:  # fail before the long measurements, not after
        args.isic_dir = resolve_isic_dir(args.isic_dir)
    machine = machine_info(clock_override=args.clock_ghz)
    threads = thread_counts(args.threads, machine["cores"])
    e2e_thread_settings(args.e2e_threads, machine["cores"])  # a bad value fails now, not after the measurements
    notes = _load_notes(machine)
    models = measure_models(paths, args, cfg, threads, machine)
    figures = {"int8_speedup": ratios.int8_speedup(models), "versus_baseline": ratios.versus_baseline(models),
               "peak_formula": ratios.peak_formula(machine)}
    result = {"benchmark_format": 1, "machine": machine, "settings": {**cfg, "threads": threads, "quick": args.quick,
              "models_dir": str(args.models_dir)}, "models": models, "ratios": figures, "notes": notes}
    result["settings_line"] = (f"{'--quick, ' if args.quick else ''}{cfg['warmup']} warm-up + up to {cfg['runs']} "
                               f"runs (at most {cfg['max_seconds']:g} s) per model and thread count; threads "
                               f"{', '.join(map(str, threads))}; latency = one invoke on a preprocessed frame")
    result["e2e"] = run_e2e_all(models, args, cfg, machine["cores"], notes)
    result["accuracy"] = run_accuracy(models, args, cfg, machine["cores"])
    result["elapsed_s"] = time.perf_counter() - t_start
    out_dir = Path(args.out_dir) if args.out_dir else REPO_ROOT / "reports" / "bench" / machine["hostname"]
    write_outputs(result, out_dir, args.no_plot)
    print(json.dumps(_clean(result), indent=1) if args.json else markdown(result))
    failed = [m["name"] for m in models if "error" in m]
    if failed:
        raise ModelError(f"{len(failed)} of {len(models)} models could not be measured ({', '.join(failed)}); "
                         f"see {out_dir / 'bench.md'}")
    return 0


def _load_notes(machine: dict) -> list[str]:
    notes = []
    if machine.get("emulated"):
        notes.append(f"EMULATED ({machine['emulated']}): these timings measure an emulator on another CPU, not "
                     "the device; they are NOT device figures. Run the benchmark on the scanner itself")
    load = (machine.get("load_average") or [0.0])[0]
    if load > 0.5 * machine["cores"]:
        notes.append(f"the machine was busy (1-minute load {load:.1f} on {machine['cores']} cores): absolute times are "
                     "pessimistic and noisy; the ratios, measured in the same run, hold better")
    return notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                epilog="Research tool, not a diagnosis.")
    p.add_argument("--models-dir", default=str(MODELS_DIR), help="folder of .tflite models with manifests")
    add_model_filter(p)
    p.add_argument("--out-dir", help="where bench.json / bench.md / latency.png go (default reports/bench/<host>)")
    p.add_argument("--quick", action="store_true", help="a short run (seconds per model) for a first look or CI")
    p.add_argument("--runs", type=int, help="timed invokes per model and thread count (default 200; quick 30)")
    p.add_argument("--warmup", type=int, help="untimed invokes first (default 20; quick 3)")
    p.add_argument("--max-seconds", type=float, help="stop a model/thread setting after this long (default 20)")
    p.add_argument("--threads", default="1,2,all", help="LiteRT thread counts to time (default 1,2,all)")
    p.add_argument("--isic-dir", type=Path, help="labelled ISIC folder: adds accuracy and int8 drift, and "
                   "replays its images end-to-end")
    p.add_argument("--split", default="test", help="ISIC split for accuracy and replay (default test)")
    p.add_argument("--limit", type=int, help="use at most N images for accuracy (default all; quick 20)")
    p.add_argument("--camera", help="camera for the end-to-end run (default replay:ISIC_DIR, else synthetic)")
    p.add_argument("--e2e-frames", type=int, help="end-to-end frames per int8 model after warm-up (default 100)")
    p.add_argument("--e2e-threads", default="default,all",
                   help="interpreter threads of the end-to-end runs: 'default' (the scanner's shipped setting, the "
                        "runtime's choice; the input checks' budget is judged there), numbers, 'all' "
                        "(default: default,all)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end run")
    p.add_argument("--macs", action="append", metavar="NAME=N",
                   help="MACs per frame for an architecture whose manifest has no 'macs' (default: the training record "
                        "beside the model, models/<stem>.json)")
    p.add_argument("--clock-ghz", type=float, help="core clock for the peak estimate, when cpuinfo's is wrong")
    p.add_argument("--no-plot", action="store_true", help="do not draw latency.png")
    add_common(p)
    p.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

"""int8 latency of several builds of the same model, timed in one run: is a better int8 model a slower one?

Usage: `python -m benchmarks.int8_latency BASELINE_DIR OTHER_DIR... [--model b --model c]`. For each model, the
`cancernet_sca_<m>_int8.tflite` of every folder is loaded in this one process and timed in interleaved rounds
(A, B, C, A, B, C, ...), so a shared machine's slow moments fall on all of them alike. Prints medians and
percentiles per file and each file's median over the baseline's, checks the speed budget of quantize/budgets.py
(the first folder is the baseline: post-training int8), and checks that every file is still fully integer with
only ops XNNPACK takes. Writes int8_latency.json and int8_latency.md to --out-dir (default reports/quantize/).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/int8_latency.py`: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402

from benchmarks.discover import REPO_ROOT  # noqa: E402
from benchmarks.stats import summarise  # noqa: E402
from edge_sca.cli_common import add_common, add_option, emit, run_cli  # noqa: E402
from edge_sca.contract import model_stem  # noqa: E402
from edge_sca.errors import ModelError  # noqa: E402
from edge_sca.interpreter import TFLiteModel  # noqa: E402
from edge_sca.manifest import decode_pixels  # noqa: E402

log = logging.getLogger("int8_latency")


def integer_only_problems(path: Path) -> list[str]:
    """Why a model file is not fully integer with XNNPACK-only ops (empty when it is); read from the file's own
    op list, before any delegate replaces the ops it takes."""
    from quantize.convert import check_integer_xnnpack  # workstation-only comparison: the one list of ops

    try:
        check_integer_xnnpack(path.read_bytes())
    except ModelError as exc:
        return [str(exc)]
    return []


def _input(model: TFLiteModel) -> np.ndarray:
    refs = model.manifest.reference_vectors if model.manifest else []
    pixels = decode_pixels(refs[0]["pixels"]) if refs else np.random.default_rng(0).integers(
        0, 256, (model.size, model.size, 3), dtype=np.uint8)
    return model.quantise_input(pixels)


def time_interleaved(paths: list[Path], rounds: int, runs: int, warmup: int, threads: int) -> dict[str, list[float]]:
    """Milliseconds per invoke of each file: `rounds` rounds of `runs` invokes each, files taken in turn."""
    models = [TFLiteModel(p, threads=threads) for p in paths]
    tensors = [_input(m) for m in models]
    samples: dict[str, list[float]] = {str(p): [] for p in paths}
    for m, t in zip(models, tensors, strict=False):
        for _ in range(warmup):
            m.invoke_raw(t)
    for r in range(rounds):
        for p, m, t in zip(paths, models, tensors, strict=False):
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                m.invoke_raw(t)
                samples[str(p)].append((time.perf_counter_ns() - t0) / 1e6)
        log.info("round %d/%d done", r + 1, rounds)
    return samples


def bench_model(name: str, dirs: list[Path], rounds: int, runs: int, warmup: int, threads: int) -> dict:
    from quantize.budgets import check_latency

    paths = [d / f"{model_stem(name)}_int8.tflite" for d in dirs]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelError(f"no int8 model at {', '.join(missing)}; build them with `make quantize` and "
                         "`python -m quantize compare`")
    samples = time_interleaved(paths, rounds, runs, warmup, threads)
    base = float(np.median(samples[str(paths[0])]))
    files = []
    for p in paths:
        s = samples[str(p)]
        ratio = float(np.median(s)) / base
        budget = check_latency(ratio)
        files.append({"file": _shown(p), "bytes": p.stat().st_size, **summarise(s),
                      "p10_ms": float(np.percentile(s, 10)),
                      "median_over_baseline": ratio, "speed_budget_ok": budget.ok, "speed_budget": budget.message,
                      "integer_only_problems": integer_only_problems(p)})
    return {"model": name, "baseline": _shown(paths[0]), "files": files}


def _shown(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def markdown(result: dict) -> str:
    lines = [f"Written by `{result['command']}` on {result['machine']} ({result['threads']} thread(s), "
             f"{result['rounds']} interleaved rounds of {result['runs']} invokes per file).", "",
             "| model | file | bytes | p50 ms | p10-p90 ms | p99 ms | median / baseline | speed budget | "
             "integer + XNNPACK |",
             "|---|---|---:|---:|---|---:|---:|---|---|"]
    for m in result["models"]:
        for f in m["files"]:
            lines.append(f"| {m['model'].upper()} | {f['file']} | {f['bytes']:,} | {f['p50_ms']:.2f} | "
                         f"{f['p10_ms']:.2f}-{f['p90_ms']:.2f} | {f['p99_ms']:.2f} | {f['median_over_baseline']:.3f} | "
                         f"{'met' if f['speed_budget_ok'] else 'BROKEN'} | "
                         f"{'yes' if not f['integer_only_problems'] else '; '.join(f['integer_only_problems'])} |")
    return "\n".join(lines) + "\n"


def cmd(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.dirs]
    result = {"command": "python -m benchmarks.int8_latency " + " ".join(args.dirs) + "".join(
        f" --model {m}" for m in args.model or []), "machine": platform.node(), "threads": args.threads,
        "rounds": args.rounds, "runs": args.runs,
        "models": [bench_model(m, dirs, args.rounds, args.runs, args.warmup, args.threads)
                   for m in args.model or ["b", "c"]]}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "int8_latency.md").write_text("# int8 latency, one run\n\n" + markdown(result))
    emit(result, args.json, markdown)
    bad = [f for m in result["models"] for f in m["files"] if not f["speed_budget_ok"] or f["integer_only_problems"]]
    for f in bad:
        print(f"budget broken: {f['file']}: {f['speed_budget']}; {'; '.join(f['integer_only_problems'])}",
              file=sys.stderr)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8_latency", description=__doc__.split("\n\n")[1])
    p.add_argument("dirs", nargs="+", help="folders with cancernet_sca_<m>_int8.tflite; the first is the baseline "
                   "(e.g. build/quantize/methods/ptq models build/quantize/methods/ptq_calib2000)")
    p.add_argument("--model", action="append", choices=("b", "c"), help="model (repeatable; default b, c)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=20, help="invokes per file per round")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads (1 keeps a shared machine's noise down)")
    add_option(p, "--out-dir", old=("--out",), default=str(REPO_ROOT / "reports" / "quantize"),
               help="where the report goes (default reports/quantize)")
    add_common(p)
    p.set_defaults(func=cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

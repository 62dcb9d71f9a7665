"""Arm vs x86: the shipped models on the same preprocessed ISIC images, LiteRT under emulated aarch64 vs here.

The pixels are preprocessed once on the host (edge_sca.preprocess), so the comparison isolates the runtime's
kernels (XNNPACK's Arm NEON / dot-product kernels against its x86 AVX ones). Each model's outputs must stay
within the self-test's bound (SELFTEST_MAX_DELTA); decision flips are counted at the manifest threshold,
with the runtime's rule (malignant when p >= threshold).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from edge_sca.contract import MALIGNANT, SELFTEST_MAX_DELTA
from edge_sca.drift import compare_outputs
from edge_sca.interpreter import TFLiteModel
from edge_sca.isic import Record, load_isic_folder
from edge_sca.preprocess import load_preprocessed
from pi_target.emulator import guest_env, set_cpu, why_unavailable
from pi_target.errors import EmulatorUnavailable, PiTargetError
from pi_target.targets import Cpu

log = logging.getLogger(__name__)

GUEST_SCRIPT = Path(__file__).with_name("guest_infer.py")


def test_images(isic_dir: Path, n: int, split: str = "test") -> list[Record]:
    """The first N images of SPLIT by ISIC id: the same images on every run and every machine."""
    records = sorted(load_isic_folder(isic_dir).subset(split), key=lambda r: r.isic_id)
    if len(records) < n:
        raise PiTargetError(f"{isic_dir} has {len(records)} {split} images, {n} asked for; lower --images")
    return records[:n]


def host_probs(models: list[Path], pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {m.name: TFLiteModel(m, threads=1).predict(pixels) for m in models}


def guest_probs(root: Path, python: str, release: str, models: list[str], pixels: np.ndarray, cpu: Cpu, workers: int,
                work: str | None = None, timeout_s: float = 3600.0) -> tuple[dict[str, np.ndarray], dict]:
    """p of every model under emulation, the images split over WORKERS concurrent guest processes (in a work
    folder of this process's own under the root's /tmp)."""
    work = work or f"/tmp/pi-check/parity-{os.getpid()}"
    reason = why_unavailable(root)
    if reason:
        raise EmulatorUnavailable(reason)
    host_work = root / work.lstrip("/")
    shutil.rmtree(host_work, ignore_errors=True)
    host_work.mkdir(parents=True)
    shutil.copy(GUEST_SCRIPT, host_work / GUEST_SCRIPT.name)
    set_cpu(root, cpu)
    shards = [s for s in np.array_split(np.arange(len(pixels)), workers) if len(s)]
    procs = []
    for i, idx in enumerate(shards):
        np.save(host_work / f"pixels_{i}.npy", pixels[idx])
        argv = ["chroot", str(root), python, f"{work}/{GUEST_SCRIPT.name}",
                f"{work}/pixels_{i}.npy", f"{work}/out_{i}.json", *models]
        procs.append(subprocess.Popen(argv, env=guest_env(cpu, {"PYTHONPATH": release}), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for i, p in enumerate(procs):
        text, _ = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise PiTargetError(f"emulated inference ({cpu.qemu}, shard {i}) failed (exit {p.returncode}):\n"
                                + "\n".join(text.strip().splitlines()[-10:]))
        outs.append(json.loads((host_work / f"out_{i}.json").read_text()))
    probs = {Path(m).name: np.concatenate([np.asarray(o["models"][m]["probs"]) for o in outs]) for m in models}
    info = {"numpy": outs[0]["numpy"], "numpy_file": outs[0]["numpy_file"],
            "seconds_per_image": {Path(m).name: float(np.mean([o["models"][m]["seconds_per_image"] for o in outs]))
                                  for m in models}}
    shutil.rmtree(host_work, ignore_errors=True)
    return probs, info


def compare(p_x86: np.ndarray, p_arm: np.ndarray, threshold: float, bound: float = SELFTEST_MAX_DELTA) -> dict:
    """max / mean |delta p(malignant)| and decision flips at THRESHOLD (edge_sca.drift.compare_outputs, x86 as the
    reference), plus how many outputs are bit-identical and whether the worst stays within BOUND."""
    a, b = p_x86[:, MALIGNANT], p_arm[:, MALIGNANT]
    s = compare_outputs(a, b, threshold)
    flipped = (a >= threshold) != (b >= threshold)
    return {"n": s.n, "max_abs_delta_p": s.max_abs_delta_p, "mean_abs_delta_p": s.mean_abs_delta_p,
            "identical": int(np.sum(a == b)), "flips": s.benign_to_malignant + s.malignant_to_benign,
            "malignant_to_benign": s.malignant_to_benign, "flipped_indices": np.flatnonzero(flipped).tolist(),
            "threshold": float(threshold), "bound": bound, "passed": bool(s.max_abs_delta_p <= bound)}


def run_parity(root: Path, python: str, release: str, models_dir: Path, isic_dir: Path, n: int, cpus: list[Cpu],
               workers: int = 2, float_images: int | None = None) -> dict:
    """The parity report: every model in MODELS_DIR (the ones flashed into RELEASE) on N test images per CPU.
    FLOAT_IMAGES, when given, runs float32 models on only the first that many (they are slow under emulation)."""
    t0 = time.monotonic()
    records = test_images(isic_dir, n)
    log.info("parity: preprocessing %d ISIC test images on the host", n)
    pixels = np.stack([load_preprocessed(r.path) for r in records])
    models = sorted(models_dir.glob("*.tflite"))
    if not models:
        raise PiTargetError(f"no .tflite models in {models_dir}; build them with `make quantize`")
    x86 = host_probs(models, pixels)
    result: dict = {"images": {"split": "test", "n": n, "ids_first_last": [records[0].isic_id, records[-1].isic_id],
                               "malignant": sum(1 for r in records if r.label == MALIGNANT)},
                    "bound": SELFTEST_MAX_DELTA, "cpus": {}, "models": {}}
    for m in models:
        tf = TFLiteModel(m, threads=1)
        result["models"][m.name] = {"sha256": tf.sha256, "dtype": tf.dtype, "threshold": tf.threshold}
    for cpu in cpus:
        by_dtype = {"int8": [m for m in models if result["models"][m.name]["dtype"] != "float32"],
                    "float32": [m for m in models if result["models"][m.name]["dtype"] == "float32"]}
        cpu_out: dict = {"qemu_cpu": cpu.qemu, "board": cpu.board, "models": {}}
        for kind, group in by_dtype.items():
            k = n if kind == "int8" or float_images is None else min(n, float_images)
            if not group or k == 0:
                continue
            log.info("parity on %s: %d %s models x %d images under emulation", cpu.qemu, len(group), kind, k)
            arm, info = guest_probs(root, python, release, [f"{release}/models/{m.name}" for m in group],
                                    pixels[:k], cpu, workers)
            cpu_out["numpy"] = info["numpy"]
            for m in group:
                cpu_out["models"][m.name] = {**compare(x86[m.name][:k], arm[m.name], result["models"][m.name][
                    "threshold"]), "emulated_seconds_per_image": info["seconds_per_image"][m.name]}
        result["cpus"][cpu.key] = cpu_out
    result["passed"] = all(r["passed"] for c in result["cpus"].values() for r in c["models"].values())
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def parity_table(parity: dict) -> str:
    """The Markdown table docs/pi-target.md carries (regenerated by `python -m pi_target docs`)."""
    header = ("| model | emulated CPU | images | max \\|delta p\\| | mean \\|delta p\\| | identical | decision flips | "
              "within bound |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for cpu in parity["cpus"].values():
        for name, r in cpu["models"].items():
            lines.append(f"| {name.removesuffix('.tflite')} | {cpu['qemu_cpu']} ({cpu['board']}) | {r['n']} | "
                         f"{_p(r['max_abs_delta_p'])} | {_p(r['mean_abs_delta_p'])} | {r['identical']} | "
                         f"{r['flips']} | {'yes' if r['passed'] else 'NO'} (<= {r['bound']}) |")
    return "\n".join(lines)


def _p(x: float) -> str:
    """A probability difference: 5 decimals, or 2 significant digits when it is smaller than that shows."""
    return f"{x:.5f}" if x == 0 or x >= 1e-4 else f"{x:.1e}"

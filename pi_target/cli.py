"""`python -m pi_target <command>`: the emulated Raspberry Pi OS target and the device environment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_sca.cli_common import ISIC_DIR_HELP, add_command, emit, run_cli
from pi_target.targets import CPUS, REPORT_DIR, TARGETS

REPO = Path(__file__).resolve().parent.parent
DOCS = (REPO / "docs" / "pi-target.md", REPO / "README.md")


def _d(result: object) -> dict[str, Any]:
    """emit() hands back what it was given: our results are dicts."""
    assert isinstance(result, dict)
    return result


def _targets(args: argparse.Namespace) -> list:
    return [TARGETS[t] for t in (args.target or list(TARGETS))]


def cmd_lock(args: argparse.Namespace) -> int:
    from pi_target.devenv import compile_lock

    out = {t.name: str(compile_lock(t).path) for t in _targets(args)}
    emit(out, args.json, lambda r: "\n".join(f"{k}: wrote {v}" for k, v in _d(r).items()))
    return 0


def cmd_wheelhouse(args: argparse.Namespace) -> int:
    from firmware_bridge.wheelhouse import lock_path, read_lock
    from pi_target.devenv import fetch_wheelhouse

    out = {}
    for t in _targets(args):
        if lock_path(t.tag).is_file():
            wheels = fetch_wheelhouse(read_lock(lock_path(t.tag)), t)
            out[t.tag] = {"wheels": len(wheels), "megabytes": round(sum(p.stat().st_size for p in wheels.values())
                                                                    / 1e6, 1)}
    emit(out, args.json, lambda r: "\n".join(f"wheelhouse {k}: {v['wheels']} wheels, {v['megabytes']} MB, hashes "
                                             "match the lock" for k, v in _d(r).items()))
    return 0


def cmd_root(args: argparse.Namespace) -> int:
    from pi_target.rootfs import build_root

    out = {t.name: build_root(t, args.force) for t in _targets(args)}
    emit(out, args.json, lambda r: "\n".join(
        f"{k}: {TARGETS[k].root} ({len(v['packages'])} packages, {'cached' if v['cached'] else 'built'})"
        for k, v in _d(r).items()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from pi_target.check import CheckOptions, run_check

    opts = CheckOptions(target=args.target, cpus=args.cpu or ["pi4"], parity_images=args.images,
                        float_images=args.float_images, replay_images=args.replay, workers=args.workers,
                        bench=not args.no_bench, isic_dir=args.isic_dir, rebuild_root=args.rebuild_root)
    if args.out_dir:
        opts.out_dir = Path(args.out_dir)
    report = run_check(opts)
    from pi_target.check import markdown

    emit(report, args.json, lambda r: markdown(_d(r)))
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from pi_target.check import CheckOptions, markdown, run_parity_only

    opts = CheckOptions(target=args.target, cpus=args.cpu or ["pi4"], parity_images=args.images,
                        float_images=args.float_images, workers=args.workers, isic_dir=args.isic_dir)
    report = run_parity_only(opts, Path(args.report or REPORT_DIR / args.target / "pi-check.json"))
    emit(report, args.json, lambda r: markdown(_d(r)))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from pi_target.docs import update_docs

    out = {str(d): update_docs(Path(args.report), d) for d in DOCS}
    emit(out, args.json, lambda r: "\n".join(f"{k}: parity table {'updated' if v else 'already current'}"
                                              for k, v in _d(r).items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pi_target", description=(
        "The scanner in a box: an emulated Raspberry Pi OS (aarch64 Debian under qemu-user) and the device "
        "environment proven on it. Research tool, not a diagnosis."))
    sub = p.add_subparsers(title="commands")

    def target_opt(s: argparse.ArgumentParser) -> None:
        s.add_argument("--target", action="append", choices=list(TARGETS), help="Pi OS release (default: all)")

    s = add_command(sub, "lock", cmd_lock,
                    help="compile requirements/device.in into per-target hashed locks (needs PyPI)")
    target_opt(s)

    s = add_command(sub, "wheelhouse", cmd_wheelhouse,
                    help="download the locked aarch64 wheels into data/wheelhouse/ (cached)")
    target_opt(s)

    s = add_command(sub, "root", cmd_root, help="build (or reuse) the emulated root(s) under data/pi-target/")
    target_opt(s)
    s.add_argument("--force", action="store_true", help="rebuild even when the cached root is current")

    s = add_command(sub, "check", cmd_check,
                    help="the whole check: root, flash, install, self-test, replay, bench, parity",
                    description=__import__("pi_target.check").check.__doc__)
    s.add_argument("--target", default="bookworm", choices=list(TARGETS))
    s.add_argument("--cpu", action="append", choices=list(CPUS),
                   help="emulated Pi (pi4 = cortex-a72, pi5 = cortex-a76; repeatable; default pi4)")
    s.add_argument("--images", type=int, default=200, help="ISIC test images for Arm-vs-x86 parity (default 200)")
    s.add_argument("--float-images", type=int, help="float32 models on only the first N of them (slow emulated)")
    s.add_argument("--replay", type=int, default=100, help="ISIC test images replayed through edge_sca run")
    s.add_argument("--workers", type=int, default=2, help="concurrent emulated processes for parity (default 2)")
    s.add_argument("--no-bench", action="store_true", help="skip device_bench.py --quick")
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--out-dir", help=f"report folder (default {REPORT_DIR}/<target>)")
    s.add_argument("--rebuild-root", action="store_true", help="rebuild the root even when the cache is current")

    s = add_command(sub, "parity", cmd_parity,
                    help="Arm-vs-x86 parity alone on the root a pi-check installed, merged into its "
                    "report (more CPUs or images without redoing the rest)")
    s.add_argument("--target", default="bookworm", choices=list(TARGETS))
    s.add_argument("--cpu", action="append", choices=list(CPUS), help="emulated Pi (repeatable; default pi4)")
    s.add_argument("--images", type=int, default=200, help="ISIC test images (must match the report's)")
    s.add_argument("--float-images", type=int, help="float32 models on only the first N of them")
    s.add_argument("--workers", type=int, default=2, help="concurrent emulated processes (default 2)")
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--report", help=f"the pi-check.json to merge into (default {REPORT_DIR}/<target>/)")

    s = add_command(sub, "docs", cmd_docs,
                    help="regenerate the Arm-vs-x86 table of docs/pi-target.md and README.md from a "
                    "pi-check report")
    s.add_argument("--report", default=str(REPORT_DIR / "bookworm" / "pi-check.json"))
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)

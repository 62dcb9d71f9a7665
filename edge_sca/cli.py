"""`python -m edge_sca <command>`: the scanner's commands (run, selftest, classify). Research tool, not a diagnosis."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edge_sca import config
from edge_sca.audit import AuditError
from edge_sca.cli_common import add_common, emit, positive_float, positive_int, run_cli
from edge_sca.errors import EdgeScaError, ImageError

log = logging.getLogger("edge_sca")

DEFAULT_MODEL = config.MODELS_DIR / f"{config.model_stem('b')}_int8.tflite"


def _open_bridge(port: str):
    """The one plug-in import: firmware_bridge sits above edge_sca, so it is imported here, only for --bridge."""
    try:
        from firmware_bridge.link import open_controller
    except ImportError as exc:
        raise EdgeScaError(f"--bridge needs the firmware_bridge package ({exc}); install the full bundle or run "
                           "without --bridge") from exc
    return open_controller(port)


def _decision_line(d) -> str:
    label = "" if d.label is None else f" (label {config.CLASS_NAMES[d.label]})"
    if d.p_malignant is None:
        return f"{d.source_id}: RETAKE, {d.reason}"
    return (f"{d.source_id}: {d.decision.upper()} p(malignant)={d.p_malignant:.3f} (threshold {d.threshold:.3f})"
            f"{label}, {d.timings['total_ms']:.1f} ms")


def _format_report(r: dict) -> str:
    from edge_sca.drift import format_drift
    from edge_sca.input_drift import format_input_drift
    from edge_sca.latency import format_latency

    lines = [f"{r['frames']} frames ({', '.join(f'{n} {k}' for k, n in sorted(r['decisions'].items())) or 'none'}) "
             f"stopped by {r.get('stopped_by', '?')}; model {Path(r['model']).name} sha256 {r['model_sha256'][:12]}... "
             f"on {r['backend']}"]
    if r.get("retake_reasons"):
        lines.append("retakes: " + ", ".join(f"{n} {k}" for k, n in sorted(r["retake_reasons"].items())))
    skipped = r.get("camera", {}).get("skipped")
    if skipped:
        lines.append("source skipped: " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())))
    lines.append(format_latency(r["latency"]))
    if "metrics" in r:
        m = r["metrics"]
        lines.append(f"on {m['n']} labelled frames at threshold {m['threshold']:.3f}: accuracy {m['accuracy']:.3f}, "
                     f"sensitivity {m['sensitivity']:.3f}, PPV {m['ppv']:.3f}, specificity {m['specificity']:.3f}"
                     + (f"; {r['unlabelled']} judged frames had no label (not in these figures)"
                        if r.get("unlabelled") else ""))
    if "drift" in r:
        lines.append(format_drift(r["drift"]))
    if "input_drift" in r:
        lines.append(format_input_drift(r["input_drift"]))
    if r.get("error"):
        lines.append(f"RUN STOPPED: {r['error']}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from edge_sca.cameras import open_camera
    from edge_sca.runtime import Runtime, run_loop
    from edge_sca.sdnotify import Notifier

    stop = threading.Event()
    _install_stop_handlers(stop)
    notifier = Notifier()
    runtime = Runtime(args.model, threads=args.threads, shadow_float=args.shadow_float,
                      shadow_every=args.shadow_every, audit_log=args.audit_log)
    controller = None
    try:
        runtime.ensure_ready()  # sha256 checked on load; self-test before opening the camera
        cam_kw = {"split": args.split, "dataset": args.dataset} if args.camera.startswith("replay:") else {}
        if args.dataset and not cam_kw:
            raise EdgeScaError("--dataset filters a replay:DIR camera; drop it or replay an ISIC folder")
        if not args.json:
            print(config.DISCLAIMER, flush=True)
        controller = _open_bridge(args.bridge) if args.bridge else None
        with open_camera(args.camera, **cam_kw) as camera:
            board = f", board {args.bridge}" if args.bridge else ""
            notifier.ready(f"self-test passed; camera {camera.name}{board}")  # what flash's health gate waits for
            show = None if args.json else (lambda d: print(_decision_line(d), flush=True))
            report = run_loop(runtime, camera, args.frames, controller, stop, show, heartbeat=notifier.watchdog,
                              board_timeout_s=args.board_timeout)
    finally:
        notifier.stopping()
        runtime.close()
        if controller is not None:
            controller.close()
    emit(report, args.json, _format_report)
    if report.get("error"):  # the audit log failed: no decision may be shown until the disk is fixed
        print(f"error: {report['error']}", file=sys.stderr)
        return AuditError.exit_status
    return 0


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (systemd stop) and SIGINT finish the current frame, then report and exit 0."""
    def handler(signum, _frame):
        log.info("%s received: stopping after the current frame", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cmd_selftest(args: argparse.Namespace) -> int:
    from edge_sca.interpreter import TFLiteModel
    from edge_sca.selftest import format_selftest, run_selftest

    result = run_selftest(TFLiteModel(args.model, threads=args.threads), args.max_delta)
    emit(result.to_dict(), args.json, lambda _: f"{format_selftest(result)}\n{config.DISCLAIMER}")
    return 0 if result.passed else 1


def cmd_classify(args: argparse.Namespace) -> int:
    from edge_sca.cameras import Frame
    from edge_sca.preprocess import read_image
    from edge_sca.runtime import Runtime

    runtime = Runtime(args.model, threads=args.threads)
    runtime.ensure_ready()
    rows, lines = [], []
    for image in args.images:
        try:
            d = runtime.process(Frame(read_image(image), image))
        except ImageError as exc:
            rows.append({"image": image, "error": str(exc)})
            lines.append(f"{image}: ERROR {exc}")
            continue
        rows.append({"image": image, **{k: v for k, v in d.to_dict().items() if k != "quality"}})
        lines.append(_decision_line(d))
    emit(rows, args.json, lambda _: "\n".join(lines + [config.DISCLAIMER]))
    return 2 if any("error" in r for r in rows) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_sca", description=(
        "The CancerNet-SCa scanner runtime: camera -> quality gate -> int8 inference -> decision, with latency, "
        "drift and an audit log. " + config.DISCLAIMER))
    sub = p.add_subparsers(title="commands")

    s = sub.add_parser("run", help="capture and classify frames from a camera", description=(
        "Check the model against its manifest, run the self-test, then capture and decide. Without --frames it "
        "runs until SIGTERM / Ctrl-C (systemd-friendly) or the end of a finite source, then prints the report. "
        "Under systemd (Type=notify) it sends READY once the self-test passed and the camera and board are open, "
        "and pings the watchdog from the frame loop. Exit status: 2 for a model or configuration error (systemd "
        "does not restart), 3 when the camera or board went away (systemd restarts)."))
    _add_model(s)
    s.add_argument("--camera", default="picamera2",
                   help="picamera2, opencv:N (USB camera), opencv:PATH (video/image), replay:DIR, synthetic")
    s.add_argument("--frames", type=positive_int, help="stop after N frames (default: run until stopped)")
    s.add_argument("--split", default="all", choices=("train", "val", "test", "calibration", "all"),
                   help="with replay of an ISIC folder: which split")
    s.add_argument("--dataset", help="with replay of an ISIC folder: only rows of this `dataset` column value "
                   "(one image source, e.g. 'ISIC 2017 challenge')")
    s.add_argument("--shadow-float", help="float .tflite to run beside the model for drift (every Nth frame)")
    s.add_argument("--shadow-every", type=positive_int, default=config.SHADOW_EVERY, help="N for --shadow-float")
    s.add_argument("--audit-log", help="append one JSON line per decision here (fsynced, rotated by size)")
    s.add_argument("--bridge", metavar="PORT", help="serial port of the dermoscope board (e.g. /dev/ttyACM0): "
                   "wait for its trigger, set the illumination, show the result")
    s.add_argument("--board-timeout", type=positive_float, default=config.BOARD_TIMEOUT_S, metavar="SECONDS",
                   help="a board that went away is reopened with backoff; after this long without it, exit with "
                   f"status 3 so that systemd restarts the service (default {config.BOARD_TIMEOUT_S:g})")
    add_common(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("selftest", help="run the manifest's reference vectors (exit 0 pass, 1 fail, 2 error)")
    _add_model(s)
    s.add_argument("--max-delta", type=positive_float, default=config.SELFTEST_MAX_DELTA,
                   help="largest allowed |delta p| against the workstation's outputs")
    add_common(s)
    s.set_defaults(func=cmd_selftest)

    s = sub.add_parser("classify", help="classify image files (exit 2 if any cannot be read)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model(s)
    add_common(s)
    s.set_defaults(func=cmd_classify)
    return p


def _add_model(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default=str(DEFAULT_MODEL),
                   help=f"int8 .tflite with its manifest beside it (default {DEFAULT_MODEL})")
    s.add_argument("--threads", type=positive_int, help="interpreter threads (default: the runtime's choice)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)

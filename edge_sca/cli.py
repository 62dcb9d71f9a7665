"""`python -m edge_sca <command>`: the scanner's commands (run, selftest, classify, settings). Research tool, not a
diagnosis.

Every command reads the scanner's settings file (edge_sca.settings: --config, $CANCERNET_SCA_CONFIG or
/etc/cancernet-sca/scanner.toml); an option given on the command line overrides the file's key."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edge_sca.audit import AuditError
from edge_sca.cli_common import add_command, add_model_option, emit, positive_float, positive_int, run_cli
from edge_sca.contract import CLASS_NAMES, DISCLAIMER, SELFTEST_MAX_DELTA, model_stem
from edge_sca.errors import EdgeScaError, ImageError
from edge_sca.settings import DEFAULT_PATH, ENV_VAR, ScannerSettings, format_settings, load_settings, render_example

log = logging.getLogger("edge_sca")

#: Options that override a settings key: argparse dest -> (section, key). Not given (None): the file's value.
#: (--model NAME overrides [model] path too, through named_model.)
OVERRIDES = {"model_file": ("model", "path"), "threads": ("model", "threads"),
             "shadow_float": ("model", "shadow_float"), "shadow_every": ("model", "shadow_every"),
             "camera": ("camera", "source"), "audit_log": ("audit", "log"), "bridge": ("board", "port"),
             "board_timeout": ("board", "timeout_s")}


def resolve_settings(args: argparse.Namespace) -> ScannerSettings:
    """The settings file's values (SettingsError, exit 2, for a bad file), then the options given on top."""
    settings = load_settings(getattr(args, "config", None))
    given = {key: getattr(args, dest) for dest, key in OVERRIDES.items() if getattr(args, dest, None) is not None}
    if getattr(args, "model", None):  # a name: that model's int8 file, standing in for the settings' path
        given[("model", "path")] = str(named_model(args.model, getattr(args, "models_dir", None), settings))
    return settings.with_values(given, "command line", "the command line") if given else settings


def named_model(name: str, models_dir: str | None, settings: ScannerSettings) -> Path:
    """--model NAME: its int8 .tflite in --models-dir, else beside the settings' model (a scanner's release), else
    in the checkout's models folder."""
    if models_dir:
        folder = Path(models_dir)
    elif settings.model.path:
        folder = Path(settings.model.path).parent
    else:
        from edge_sca.devpaths import MODELS_DIR

        folder = MODELS_DIR
    return folder / f"{model_stem(name)}_int8.tflite"


def model_path(settings: ScannerSettings) -> str:
    """The model to run: the settings' (or --model's / --model-file's) path; without one, the checkout's default
    (development)."""
    if settings.model.path:
        return settings.model.path
    from edge_sca.devpaths import default_model

    return str(default_model())


def _open_bridge(port: str):
    """The one plug-in import: firmware_bridge sits above edge_sca, so it is imported here, only for --bridge."""
    try:
        from firmware_bridge.link import open_controller
    except ImportError as exc:
        raise EdgeScaError(f"--bridge needs the firmware_bridge package ({exc}); install the full bundle or run "
                           "without --bridge") from exc
    return open_controller(port)


def _decision_line(d) -> str:
    label = "" if d.label is None else f" (label {CLASS_NAMES[d.label]})"
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

    s = resolve_settings(args)
    stop = threading.Event()
    _install_stop_handlers(stop)
    notifier = Notifier()
    runtime = Runtime(model_path(s), threads=s.model.threads or None, shadow_float=s.model.shadow_float or None,
                      shadow_every=s.model.shadow_every, audit_log=s.audit.log or None, audit_limits=s.audit,
                      quality=s.quality)
    controller = None
    try:
        runtime.ensure_ready()  # sha256 checked on load; self-test before opening the camera
        cam_kw: dict = {"retries": s.camera.retries, "backoff_s": s.camera.backoff_s,
                        "frozen_frames": s.camera.frozen_frames}
        if s.camera.source.startswith("replay:"):
            cam_kw |= {"split": args.split, "dataset": args.dataset, "shuffle": args.shuffle}
        elif args.dataset or args.shuffle is not None:
            raise EdgeScaError("--dataset and --shuffle apply to a replay:DIR camera; drop them or replay a folder")
        if not args.json:
            print(DISCLAIMER, flush=True)
        controller = _open_bridge(s.board.port) if s.board.port else None
        with open_camera(s.camera.source, **cam_kw) as camera:
            board = f", board {s.board.port}" if s.board.port else ""
            notifier.ready(f"self-test passed; camera {camera.name}{board}")  # what flash's health gate waits for
            show = None if args.json else (lambda d: print(_decision_line(d), flush=True))
            report = run_loop(runtime, camera, args.frames, controller, stop, show, heartbeat=notifier.watchdog,
                              board=s.board, illumination=s.illumination)
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

    s = resolve_settings(args)
    result = run_selftest(TFLiteModel(model_path(s), threads=s.model.threads or None), args.max_delta)
    emit(result.to_dict(), args.json, lambda _: f"{format_selftest(result)}\n{DISCLAIMER}")
    return 0 if result.passed else 1


def cmd_classify(args: argparse.Namespace) -> int:
    from edge_sca.cameras import Frame
    from edge_sca.preprocess import read_image
    from edge_sca.runtime import Runtime

    s = resolve_settings(args)
    runtime = Runtime(model_path(s), threads=s.model.threads or None, quality=s.quality)
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
    emit(rows, args.json, lambda _: "\n".join(lines + [DISCLAIMER]))
    return 2 if any("error" in r for r in rows) else 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.example:
        print(render_example(), end="")
        return 0
    s = resolve_settings(args)
    emit(s.to_dict(), args.json, lambda _: format_settings(s))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_sca", description=(
        "The CancerNet-SCa scanner runtime: camera -> quality gate -> int8 inference -> decision, with latency, "
        "drift and an audit log. Settings come from the scanner's settings file (--config, $" + ENV_VAR + ", else "
        f"{DEFAULT_PATH}); options given override it. " + DISCLAIMER))
    sub = p.add_subparsers(title="commands")

    s = add_command(sub, "run", cmd_run, help="capture and classify frames from a camera", description=(
        "Check the model against its manifest, run the self-test, then capture and decide. Without --frames it "
        "runs until SIGTERM / Ctrl-C (systemd-friendly) or the end of a finite source, then prints the report. "
        "Under systemd (Type=notify) it sends READY once the self-test passed and the camera and board are open, "
        "and pings the watchdog from the frame loop. Exit status: 2 for a model or configuration error (systemd "
        "does not restart), 3 when the camera or board went away (systemd restarts). Options left out take the "
        "settings file's value (`python -m edge_sca settings` shows them)."))
    _add_model(s)
    s.add_argument("--camera", help="picamera2, opencv:N (USB camera), opencv:PATH (video/image), replay:DIR, "
                   "synthetic (default: [camera] source, picamera2)")
    s.add_argument("--frames", type=positive_int, help="stop after N frames (default: run until stopped)")
    s.add_argument("--split", default="all", choices=("train", "val", "test", "calibration", "all"),
                   help="with replay of an ISIC folder: which split")
    s.add_argument("--dataset", help="with replay of an ISIC folder: only rows of this `dataset` column value "
                   "(one image source, e.g. 'ISIC 2017 challenge')")
    s.add_argument("--shuffle", type=int, metavar="SEED", help="with replay: play the images in a random order "
                   "drawn with this seed (a folder is often sorted by source; a clinic sees its sources mixed)")
    s.add_argument("--shadow-float", help="float .tflite to run beside the model for drift (every Nth frame; "
                   "default: [model] shadow_float, none)")
    s.add_argument("--shadow-every", type=positive_int, help="N for --shadow-float (default: [model] shadow_every, 10)")
    s.add_argument("--audit-log", help="append one JSON line per decision here (fsynced, rotated by size; default: "
                   "[audit] log, none; '' for none)")
    s.add_argument("--bridge", metavar="PORT", help="serial port of the dermoscope board (e.g. /dev/ttyACM0): "
                   "wait for its trigger, set the illumination, show the result (default: [board] port, none; "
                   "'' for none)")
    s.add_argument("--board-timeout", type=positive_float, metavar="SECONDS",
                   help="a board that went away is reopened with backoff; after this long without it, exit with "
                   "status 3 so that systemd restarts the service (default: [board] timeout_s, 60)")

    s = add_command(sub, "selftest", cmd_selftest,
                    help="run the manifest's reference vectors (exit 0 pass, 1 fail, 2 error)")
    _add_model(s)
    s.add_argument("--max-delta", type=positive_float, default=SELFTEST_MAX_DELTA,
                   help="largest allowed |delta p| against the workstation's outputs")

    s = add_command(sub, "classify", cmd_classify, help="classify image files (exit 2 if any cannot be read)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model(s)

    s = add_command(sub, "settings", cmd_settings, help="check the settings file and show what the runtime would use",
                    description="Read and check the settings file (exit 2, naming the key, if it has a "
                    "mistake), then print every setting and where it came from (file, command line or "
                    "default). --example prints the documented file a scanner gets.")
    _add_config(s)
    s.add_argument("--example", action="store_true", help="print the documented settings file (every key, its "
                   "default and what it does) instead")
    return p


def _add_config(s: argparse.ArgumentParser) -> None:
    s.add_argument("--config", metavar="FILE", help=f"settings file (default: ${ENV_VAR}, else {DEFAULT_PATH} "
                   "if it exists, else every default)")


def _add_model(s: argparse.ArgumentParser) -> None:
    _add_config(s)
    add_model_option(s, "the model by name: its int8 .tflite in --models-dir (default: [model] path, else "
                     "models/cancernet_sca_b_int8.tflite in this checkout)",
                     file_help="an int8 .tflite file with its manifest beside it ([model] path)")
    s.add_argument("--models-dir", help="where --model looks (default: the folder of [model] path, else models/ in "
                   "this checkout)")
    s.add_argument("--threads", type=positive_int, help="interpreter threads (default: [model] threads, else the "
                   "runtime's choice)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)

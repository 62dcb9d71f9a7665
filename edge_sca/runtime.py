"""The per-frame pipeline: frame -> preprocess -> quality gate -> int8 inference -> decision -> audit log.

Before the first frame the model's sha256 is checked against its manifest (TFLiteModel refuses a mismatch) and
the manifest's reference vectors are run (the self-test); a failed self-test stops the runtime. A frame that
fails the quality gate (edge_sca.quality, with the calibrated input checks of models/input_checks.json) gets
"retake", a reason code and no class. Judged frames feed the input drift monitor (edge_sca.input_drift). A decision
is returned only after its audit line is on disk; when the audit log cannot be written, `run_loop` stops and
reports why. `run_loop` drives a camera (and optionally the scanner's controller) until a frame count, the end of a
finite source, or a stop request. A board that goes away mid-run is reopened with backoff (edge_sca.controller);
what was in flight when it went is dropped, never shown late.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.audit import AuditError, AuditLog
from edge_sca.cameras import Camera, EndOfStream, Frame
from edge_sca.contract import CLASS_NAMES, DEFAULT_THRESHOLD, MALIGNANT, SELFTEST_MAX_DELTA
from edge_sca.controller import BoardOutages, ScannerController, reopen_with_backoff
from edge_sca.drift import DriftMonitor
from edge_sca.errors import ControllerLost, ModelError
from edge_sca.input_checks import InputChecks, load_input_checks
from edge_sca.input_drift import InputDriftMonitor
from edge_sca.interpreter import TFLiteModel
from edge_sca.latency import LatencyStats
from edge_sca.metrics import binary_metrics
from edge_sca.preprocess import preprocess
from edge_sca.quality import DEFAULT_LIMITS, check_quality
from edge_sca.selftest import SelftestResult, run_selftest
from edge_sca.settings import AuditSettings, BoardSettings, IlluminationSettings, ModelSettings, QualitySettings

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """The outcome for one frame. `p_malignant` is None exactly when `decision` is 'retake'.

    `frame_sha256` hashes the 224x224 RGB bytes the model saw, so a kept image can be matched to its record.
    """

    p_malignant: float | None
    decision: str  # 'malignant' | 'benign' | 'retake'
    reason: str | None
    timings: dict
    model_sha256: str
    frame_sha256: str
    label: int | None = None
    source_id: str = ""
    probs: list[float] | None = None
    threshold: float = DEFAULT_THRESHOLD
    quality: dict = field(default_factory=dict)
    shadow_p_malignant: float | None = None
    reason_code: str | None = None  # an edge_sca.quality.Retake value when decision is 'retake'
    input_drift: dict | None = None  # the drift monitor's status after this frame

    def to_dict(self) -> dict:
        return asdict(self)


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


class Runtime:
    """A verified model plus the quality gate, latency stats, optional shadow float model and audit log."""

    def __init__(self, model_path: str | Path, threads: int | None = None, shadow_float: str | Path | None = None,
                 shadow_every: int = ModelSettings.shadow_every, audit_log: str | Path | AuditLog | None = None,
                 selftest_bound: float = SELFTEST_MAX_DELTA,
                 input_checks: str | Path | InputChecks | None = None, quality: QualitySettings = DEFAULT_LIMITS,
                 audit_limits: AuditSettings | None = None):
        self.model = TFLiteModel(model_path, threads=threads)  # refuses a model whose sha256 != manifest
        self.threshold = self.model.threshold
        self.checks = (input_checks if isinstance(input_checks, InputChecks)
                       else load_input_checks(input_checks, model_path))
        self.input_drift = InputDriftMonitor(self.checks, self.model.sha256)
        self.quality = quality
        self.selftest_bound = selftest_bound
        self.selftest_result: SelftestResult | None = None
        self.shadow = TFLiteModel(shadow_float, threads=threads, require_manifest=False) if shadow_float else None
        self.drift = DriftMonitor(self.shadow, self.threshold, shadow_every) if self.shadow else None
        rotation = audit_limits or AuditSettings()
        self.audit = (audit_log if isinstance(audit_log, AuditLog) or audit_log is None
                      else AuditLog(audit_log, rotation.max_bytes, rotation.backups))
        self.latency = LatencyStats()
        self.counts: Counter = Counter()
        self.retake_reasons: Counter = Counter()
        self.unlabelled = 0
        self._labels: list[int] = []
        self._scores: list[float] = []

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def selftest(self) -> SelftestResult:
        """Run the manifest's reference vectors; the result gates `process`."""
        self.selftest_result = run_selftest(self.model, self.selftest_bound)
        log.info("self-test %s: max |delta p| %.5f (bound %g)", "passed" if self.selftest_result.passed else "FAILED",
                 self.selftest_result.max_delta, self.selftest_bound)
        return self.selftest_result

    def ensure_ready(self) -> None:
        """Self-test once; ModelError if it fails (the device does not compute what was validated)."""
        r = self.selftest_result or self.selftest()
        if not r.passed:
            raise ModelError(f"{self.model.path}: self-test failed, max |delta p| {r.max_delta:.4f} > {r.bound} on "
                             f"{r.backend}; this device does not reproduce the workstation's outputs, refusing to "
                             "classify. Re-flash the bundle or check the LiteRT version")

    def process(self, frame: Frame) -> Decision:
        """One frame to one Decision, returned only once its audit line is written and fsynced (AuditError if not)."""
        self.ensure_ready()
        t0 = time.perf_counter()
        pixels = preprocess(frame.rgb, self.model.size)
        t1 = time.perf_counter()
        quality = check_quality(frame.rgb, pixels, self.checks, self.quality)
        t2 = time.perf_counter()
        frame_sha = hashlib.sha256(pixels.tobytes()).hexdigest()
        probs, p, t3 = None, None, t2
        if quality.ok:
            probs = [float(x) for x in self.model.predict(pixels)[0]]
            p = probs[MALIGNANT]
            t3 = time.perf_counter()
            verdict = CLASS_NAMES[MALIGNANT] if p >= self.threshold else CLASS_NAMES[0]
        else:
            verdict = "retake"
        t4 = time.perf_counter()
        timings = {"capture_ms": frame.capture_ms, "preprocess_ms": _ms(t0, t1), "quality_ms": _ms(t1, t2),
                   "total_ms": frame.capture_ms + _ms(t0, t4)}
        if quality.ok:
            timings["invoke_ms"] = _ms(t2, t3)  # a frame sent back for a retake has no invoke to time
        if quality.input_checks_ms is not None:
            timings["input_checks_ms"] = quality.input_checks_ms  # part of quality_ms
        d = Decision(p, verdict, quality.reason, timings, self.sha256, frame_sha, frame.label, frame.source_id,
                     probs, self.threshold, quality.measures,
                     reason_code=quality.code.value if quality.code is not None else None)
        if quality.ok and quality.screen is not None:
            d.input_drift = self.input_drift.update(quality.screen, quality.measures["sharpness"], p)
        if p is not None and self.drift is not None and self.drift.due():
            t5 = time.perf_counter()
            d.shadow_p_malignant = self.drift.shadow_p(pixels, p)
            timings["shadow_ms"] = _ms(t5, time.perf_counter())
        self._record(d, frame)
        return d

    def _record(self, d: Decision, frame: Frame) -> None:
        """Audit first (AuditError leaves the counts untouched: an unrecorded decision does not exist), then count."""
        if self.audit is not None:
            self.audit.write({"time": frame.timestamp or time.time(), "model_sha256": d.model_sha256,
                              "frame_sha256": d.frame_sha256, "source_id": d.source_id, "probs": d.probs,
                              "p_malignant": d.p_malignant, "threshold": d.threshold, "decision": d.decision,
                              "reason": d.reason, "reason_code": d.reason_code, "label": d.label,
                              "timings": d.timings, "shadow_p_malignant": d.shadow_p_malignant,
                              "input_drift": d.input_drift})
        self.counts[d.decision] += 1
        if d.p_malignant is None:
            self.retake_reasons[d.reason_code or "unknown"] += 1
        else:
            self.latency.add(d.timings)
            if d.label is not None:
                self._labels.append(int(d.label))
                self._scores.append(d.p_malignant)
            else:
                self.unlabelled += 1

    def report(self) -> dict:
        """Counts, latency after warm-up, metrics when frames carried labels, drift when shadowing."""
        out = {"model": str(self.model.path), "model_sha256": self.sha256, "backend": self.model.backend,
               "threshold": self.threshold, "frames": sum(self.counts.values()), "decisions": dict(self.counts),
               "retake_reasons": dict(self.retake_reasons), "latency": self.latency.summary(),
               "input_drift": self.input_drift.summary()}
        if self.selftest_result is not None:
            out["selftest"] = {k: v for k, v in self.selftest_result.to_dict().items() if k != "vectors"}
        if self._labels:
            out["metrics"] = binary_metrics(np.asarray(self._labels), np.asarray(self._scores), self.threshold)
            out["unlabelled"] = self.unlabelled  # judged frames without a label: not in the metrics
        if self.drift is not None:
            out["drift"] = self.drift.summary()
        if self.audit is not None:
            out["audit_log"] = str(self.audit.path)
        return out

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()


def run_loop(runtime: Runtime, camera: Camera, frames: int | None = None,
             controller: ScannerController | None = None, stop: threading.Event | None = None,
             on_decision: Callable[[Decision], None] | None = None, heartbeat: Callable[[], None] | None = None,
             board: BoardSettings | None = None, illumination: IlluminationSettings | None = None) -> dict:
    """Capture and decide until `frames` decisions, the end of a finite source, or `stop` is set.

    With a controller each frame waits for the trigger, lights the LED ring for the capture only, and the
    decision goes to the scanner's display; `board` and `illumination` are the scanner's settings for it (its port
    aside). `heartbeat` is called on every turn of the loop (the systemd watchdog). If the board goes away, the
    press in flight is dropped and the board reopened with backoff (BoardGone after board.timeout_s). Returns
    runtime.report() plus why the loop stopped; when the audit log fails the loop stops at once ('audit log
    failed') and the report carries the error.
    """
    runtime.ensure_ready()
    board, illumination = board or BoardSettings(), illumination or IlluminationSettings()
    stop = stop or threading.Event()
    beat = heartbeat or (lambda: None)
    outages = BoardOutages()
    done, reason, error = 0, "frames", None
    while frames is None or done < frames:
        beat()
        if stop.is_set():
            reason = "stop requested"
            break
        try:
            frame = _capture(camera, controller, board.trigger_poll_s, illumination)
            if frame is None:
                continue
            decision = runtime.process(frame)
            done += 1
            if on_decision is not None:
                on_decision(decision)
            if controller is not None:
                controller.show_result(decision)
        except EndOfStream as exc:
            log.info("%s", exc)
            reason = "end of source"
            break
        except ControllerLost as exc:
            assert controller is not None
            if not reopen_with_backoff(controller, exc, outages, stop, beat, board.timeout_s, board.backoff_s,
                                       board.backoff_max_s):
                reason = "stop requested"
                break
        except AuditError as exc:
            log.error("%s", exc)
            reason, error = "audit log failed", str(exc)
            break
    report = runtime.report()
    report["stopped_by"] = reason
    if error is not None:
        report["error"] = error
    report["camera"] = {"name": camera.name, "frames_read": camera.frames_read, "skipped": dict(camera.skipped)}
    if controller is not None:
        report["board"] = outages.to_dict()
    return report


def _capture(camera: Camera, controller: ScannerController | None, poll_s: float,
             light: IlluminationSettings) -> Frame | None:
    """A frame, or None when the controller's trigger wait timed out (so the loop can check for a stop)."""
    if controller is None:
        return camera.read()
    if not controller.wait_trigger(poll_s):
        return None
    controller.set_illumination(light.mode, light.intensity)
    try:
        return camera.read()
    finally:
        controller.set_illumination("off", 0.0)

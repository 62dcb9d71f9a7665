"""The runtime end to end on real (random-weight) .tflite models: checks before the first frame, decisions,
the quality gate, audit log, drift, the controller loop, the CLI and its failure paths."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sca.audit import read_audit
from edge_sca.cameras import Frame, open_camera, synthetic_scene
from edge_sca.cli import main
from edge_sca.contract import CLASS_NAMES, DISCLAIMER, SELFTEST_MAX_DELTA
from edge_sca.devpaths import MODELS_DIR, REPO_ROOT
from edge_sca.errors import ControllerLost, ExitStatus, ModelError
from edge_sca.latency import LATENCY_WARMUP
from edge_sca.manifest import manifest_path
from edge_sca.preprocess import preprocess
from edge_sca.runtime import Runtime, run_loop
from edge_sca.settings import BoardSettings, IlluminationSettings


def _copy_model(src: Path, dst_dir: Path, edit=None, manifest: bool = True) -> Path:
    """The model (and its manifest, edited by `edit(data)`) copied into dst_dir."""
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    if manifest:
        data = json.loads(manifest_path(src).read_text())
        if edit:
            edit(data)
        manifest_path(dst).write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="module")
def runtime(random_models):
    rt = Runtime(random_models["int8"], threads=1)
    rt.ensure_ready()
    return rt


def _frame(index: int = 0, label: int | None = None) -> Frame:
    return Frame(synthetic_scene(index), f"synthetic:{index}", label, 1.5, time.time())


def test_decision_fields(runtime, random_models):
    d = runtime.process(_frame(label=1))
    assert d.decision in CLASS_NAMES and 0.0 <= d.p_malignant <= 1.0 and d.reason is None
    assert d.decision == ("malignant" if d.p_malignant >= runtime.threshold else "benign")
    assert d.probs[1] == d.p_malignant and sum(d.probs) == pytest.approx(1.0, abs=0.02)
    assert d.model_sha256 == hashlib.sha256(random_models["int8"].read_bytes()).hexdigest()
    assert d.frame_sha256 == hashlib.sha256(preprocess(synthetic_scene(0)).tobytes()).hexdigest()
    assert d.label == 1 and d.timings["capture_ms"] == 1.5
    assert {"capture_ms", "preprocess_ms", "invoke_ms", "total_ms"} <= set(d.timings)
    assert d.timings["total_ms"] >= d.timings["capture_ms"] + d.timings["invoke_ms"] > 0
    # the learned checks are timed inside the gate: the benchmark sets them against the invoke
    assert 0 < d.timings["input_checks_ms"] < d.timings["quality_ms"]


@pytest.mark.parametrize("threshold, expected", [(0.001, "malignant"), (0.999, "benign")])
def test_decision_uses_manifest_threshold(random_models, tmp_path, threshold, expected):
    model = _copy_model(random_models["int8"], tmp_path, lambda d: d.update(threshold=threshold))
    rt = Runtime(model, threads=1)
    d = rt.process(_frame())
    assert rt.threshold == threshold and 0.001 <= d.p_malignant < 0.999 and d.decision == expected


@pytest.mark.parametrize("field, value, message", [
    ("threshold", 1.5, "threshold 1.5 is not a number in \\(0, 1\\)"),
    ("threshold", 0.0, "threshold 0.0 is not a number in"),
    ("threshold", "0.3", "threshold '0.3' is not a number"),
    ("threshold", True, "threshold True is not a number"),
    ("format", 7, "format 7 is newer than this runtime"),
    ("format", "1", "format '1' is not a known format"),
    ("sha256", "abc", "sha256 'abc' is not 64"),
])
def test_manifest_values_are_checked_on_the_device(random_models, tmp_path, capsys, field, value, message):
    """A threshold of 1.5 used to make every frame BENIGN, and a text threshold was a traceback."""
    model = _copy_model(random_models["int8"], tmp_path, lambda d: d.update({field: value}))
    with pytest.raises(ModelError, match=message):
        Runtime(model)
    assert main(["run", "--model-file", str(model), "--camera", "synthetic", "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_frame_gets_retake_and_no_class(random_models, tmp_path):
    rt = Runtime(random_models["int8"], threads=1, audit_log=tmp_path / "audit.jsonl")
    dark = Frame((synthetic_scene(0) * 0.1).astype(np.uint8), "dark")
    d = rt.process(dark)
    assert d.decision == "retake" and d.p_malignant is None and d.probs is None
    assert d.reason.startswith("too dark") and d.reason_code == "too_dark" and "invoke_ms" not in d.timings
    rec = read_audit(tmp_path / "audit.jsonl").records[-1]
    assert rec["decision"] == "retake" and rec["p_malignant"] is None and rec["model_sha256"] == rt.sha256
    assert rec["reason_code"] == "too_dark" and rec["input_drift"] is None
    assert rt.report()["retake_reasons"] == {"too_dark": 1}


def test_tampered_model_is_refused(random_models, tmp_path, capsys):
    model = _copy_model(random_models["int8"], tmp_path)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest.*refusing"):
        Runtime(model)
    assert main(["selftest", "--model-file", str(model)]) == 2
    assert "refusing to run" in capsys.readouterr().err


def test_missing_manifest_is_refused(random_models, tmp_path, capsys):
    model = _copy_model(random_models["int8"], tmp_path, manifest=False)
    assert main(["run", "--model-file", str(model), "--camera", "synthetic", "--frames", "1"]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_unreadable_model_is_refused(random_models, tmp_path):
    garbage = tmp_path / "broken.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 64)
    sha = hashlib.sha256(garbage.read_bytes()).hexdigest()
    _copy_model(random_models["int8"], tmp_path, lambda d: d.update(sha256=sha))
    shutil.move(manifest_path(tmp_path / random_models["int8"].name), manifest_path(garbage))
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        Runtime(garbage)


def test_selftest_fails_when_expected_probs_edited(random_models, tmp_path, capsys):
    def edit(data):
        data["reference_vectors"][0]["expected_probs"] = [0.2, 0.8] if data["reference_vectors"][0][
            "expected_probs"][1] < 0.5 else [0.8, 0.2]

    model = _copy_model(random_models["int8"], tmp_path, edit)
    rt = Runtime(model, threads=1)
    result = rt.selftest()
    assert not result.passed and result.max_delta > SELFTEST_MAX_DELTA
    with pytest.raises(ModelError, match="self-test failed"):
        rt.process(_frame())
    assert main(["selftest", "--model-file", str(model), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False
    assert main(["run", "--model-file", str(model), "--camera", "synthetic", "--frames", "1"]) == 2


def test_selftest_passes_on_the_shipped_vectors(random_models, capsys):
    assert main(["selftest", "--model-file", str(random_models["int8"])]) == 0
    out = capsys.readouterr().out
    assert "self-test PASS" in out and out.count(DISCLAIMER) == 1


def test_selftest_without_reference_vectors_is_an_error(random_models, tmp_path):
    model = _copy_model(random_models["int8"], tmp_path, lambda d: d.update(reference_vectors=[]))
    with pytest.raises(ModelError, match="no reference vectors"):
        Runtime(model).ensure_ready()


def test_run_replay_reports_metrics_drift_latency_and_audits(random_models, tiny_isic, tmp_path, capsys):
    audit = tmp_path / "audit.jsonl"
    rc = main(["run", "--model-file", str(random_models["int8"]), "--camera", f"replay:{tiny_isic}", "--json",
               "--audit-log", str(audit), "--shadow-float", str(random_models["float32"]), "--shadow-every", "2",
               "--threads", "1"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stopped_by"] == "end of source" and report["frames"] == 18
    classified = report["frames"] - report["decisions"].get("retake", 0)
    assert report["metrics"]["n"] == classified and "sensitivity" in report["metrics"] and "ppv" in report["metrics"]
    assert report["latency"]["measured"] == classified - LATENCY_WARMUP
    assert report["drift"]["n"] == (classified + 1) // 2 and report["drift"]["max_abs_delta"] < 0.2
    records = read_audit(audit).records
    assert len(records) == 18 and {r["decision"] for r in records} <= {"benign", "malignant", "retake"}
    assert sum(r["shadow_p_malignant"] is not None for r in records) == report["drift"]["n"]
    judged = [r for r in records if r["decision"] != "retake"]
    assert [r["input_drift"]["n"] for r in judged] == list(range(1, classified + 1))
    assert report["input_drift"]["n"] == classified and report["input_drift"]["warning"] is None  # < 50 frames
    assert set(report["input_drift"]["stats"]) >= {"training_distance", "L_mean", "a_mean", "b_mean", "sharpness"}


def test_run_human_output_has_one_disclaimer(random_models, capsys):
    assert main(["run", "--model-file", str(random_models["int8"]), "--camera", "synthetic", "--frames", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count(DISCLAIMER) == 1 and "synthetic:3" in out and "frames/s" in out


class FakeController:
    """Stands in for firmware_bridge's serial link: scripted trigger presses (True, False, or "lost": the board
    goes away), recorded commands; `reopen` fails `still_gone` times before the board is back."""

    def __init__(self, presses: list, then: bool = True, still_gone: int = 0):
        self.presses, self.then, self.calls, self.shown, self.closed = list(presses), then, [], [], False
        self.still_gone, self.lost = still_gone, False

    def _check(self) -> None:
        if self.lost:
            raise ControllerLost("the board went away")

    def wait_trigger(self, timeout_s: float) -> bool:
        self._check()
        self.calls.append(("wait", timeout_s))
        pressed = self.presses.pop(0) if self.presses else self.then
        if pressed == "lost":
            self.lost = True
            self._check()
        if not pressed:
            time.sleep(0.001)  # a real wait would block up to timeout_s
        return pressed

    def reopen(self) -> None:
        self.calls.append(("reopen",))
        if self.still_gone:
            self.still_gone -= 1
            raise ControllerLost("cannot open serial port")
        self.lost = False

    def set_illumination(self, mode: str, intensity: float) -> None:
        self._check()
        self.calls.append(("light", mode, intensity))

    def show_result(self, decision) -> None:
        if self.presses and self.presses[0] == "lost before the result":
            self.presses.pop(0)
            self.lost = True
        self._check()
        self.calls.append(("show", decision.decision))
        self.shown.append(decision)

    def close(self) -> None:
        self.closed = True


def test_controller_loop_waits_lights_captures_shows(runtime):
    from edge_sca.controller import ScannerController

    ctl = FakeController([False, True, False, False, True])
    assert isinstance(ctl, ScannerController)
    with open_camera("synthetic") as cam:
        report = run_loop(runtime, cam, frames=2, controller=ctl)
    assert cam.frames_read == 2 and len(ctl.shown) == 2 and report["stopped_by"] == "frames"
    kinds = [c[0] for c in ctl.calls]
    assert kinds == ["wait", "wait", "light", "light", "show", "wait", "wait", "wait", "light", "light", "show"]
    assert ctl.calls[2] == ("light", IlluminationSettings.mode, IlluminationSettings.intensity)
    assert ctl.calls[3] == ("light", "off", 0.0)


def test_a_board_lost_before_the_result_is_reopened_and_nothing_stale_is_shown(runtime):
    """The board goes away before a result reaches it: that result is not shown later; the board is reopened
    with backoff (two failed tries), the watchdog keeps being fed, and the next press is served."""
    beats, decided = [], []
    ctl = FakeController([True, "lost before the result", False, True], still_gone=2)
    with open_camera("synthetic") as cam:
        report = run_loop(runtime, cam, frames=2, controller=ctl, on_decision=decided.append,
                          heartbeat=lambda: beats.append(1), board=BoardSettings(timeout_s=10))
    assert [c[0] for c in ctl.calls].count("reopen") == 3
    assert len(decided) == 2 and ctl.shown == decided[1:]  # the first was decided (and audited), never shown
    assert report["board"]["lost"] == 1 and report["board"]["reopened"] == 1 and report["board"]["offline_s"] > 0
    assert len(beats) >= 5


def test_a_board_that_does_not_return_ends_the_run_with_status_3(runtime, random_models, monkeypatch, capsys):
    from edge_sca.controller import BoardGone

    ctl = FakeController(["lost"], still_gone=10**6)
    with open_camera("synthetic") as cam, pytest.raises(BoardGone, match="gone for .* systemd restarts"):
        run_loop(runtime, cam, controller=ctl, board=BoardSettings(timeout_s=0.3))
    pkg, link = types.ModuleType("firmware_bridge"), types.ModuleType("firmware_bridge.link")
    link.open_controller = lambda port: FakeController(["lost"], still_gone=10**6)
    pkg.link = link
    monkeypatch.setitem(sys.modules, "firmware_bridge", pkg)
    monkeypatch.setitem(sys.modules, "firmware_bridge.link", link)
    rc = main(["run", "--model-file", str(random_models["int8"]), "--camera", "synthetic", "--bridge", "/dev/ttyX",
               "--board-timeout", "0.3"])
    assert rc == ExitStatus.HARDWARE == 3 and "error: the board has been gone" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--board-timeout", "0", "--model-file", str(random_models["int8"])])
    assert exc.value.code == 2 and "is out of range: must be a number above 0" in capsys.readouterr().err


def test_controller_loop_stops_on_request_without_trigger(runtime):
    stop = threading.Event()
    ctl = FakeController([], then=False)
    threading.Timer(0.05, stop.set).start()
    with open_camera("synthetic") as cam:
        report = run_loop(runtime, cam, controller=ctl, stop=stop)
    assert report["stopped_by"] == "stop requested" and cam.frames_read == 0


def test_bridge_flag_imports_the_plugin_lazily(random_models, monkeypatch, capsys):
    ctl = FakeController([True] * 3)
    opened = []
    pkg, link = types.ModuleType("firmware_bridge"), types.ModuleType("firmware_bridge.link")
    link.open_controller = lambda port: opened.append(port) or ctl
    pkg.link = link
    monkeypatch.setitem(sys.modules, "firmware_bridge", pkg)
    monkeypatch.setitem(sys.modules, "firmware_bridge.link", link)
    rc = main(["run", "--model-file", str(random_models["int8"]), "--camera", "synthetic", "--frames", "3",
               "--bridge", "/dev/ttyFAKE", "--json"])
    assert rc == 0 and opened == ["/dev/ttyFAKE"] and len(ctl.shown) == 3 and ctl.closed
    assert json.loads(capsys.readouterr().out)["frames"] == 3


def test_edge_sca_never_imports_upper_layers():
    code = ("import sys, edge_sca.cli, edge_sca.runtime, edge_sca.cameras; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'quantize', 'firmware_bridge', "
            "'picamera2')]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_classify_images_and_a_corrupt_one(random_models, tiny_isic, tmp_path, capsys):
    good = sorted(tiny_isic.glob("*.jpg"))[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:300])
    assert main(["classify", str(good), "--model-file", str(random_models["int8"])]) == 0
    out = capsys.readouterr().out
    assert good.name in out and out.count(DISCLAIMER) == 1
    assert main(["classify", str(good), str(bad), "--model-file", str(random_models["int8"]), "--json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["decision"] in ("benign", "malignant", "retake") and "not a decodable image" in rows[1]["error"]


def test_long_running_mode_stops_cleanly_on_sigterm(random_models, tmp_path):
    audit = tmp_path / "audit.jsonl"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "edge_sca", "run", "--model-file", str(random_models["int8"]),
                             "--camera", "synthetic", "--audit-log", str(audit), "--threads", "1"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (audit.exists() and audit.stat().st_size > 0):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no decision within 90 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by stop requested" in out and out.count(DISCLAIMER) == 1
    got = read_audit(audit)
    assert got.torn == 0 and len(got.records) >= 1


def test_default_model_path():
    from edge_sca.cli import model_path
    from edge_sca.settings import ScannerSettings

    assert model_path(ScannerSettings()) == str(MODELS_DIR / "cancernet_sca_b_int8.tflite")


def test_written_frames_flow_through_opencv_to_same_decision(runtime, tmp_path):
    """The same scene through a file camera and in memory gives the same frame hash and probability."""
    scene = synthetic_scene(3)
    cv2.imwrite(str(tmp_path / "s.png"), scene[:, :, ::-1])
    with open_camera(f"opencv:{tmp_path / 's.png'}") as cam:
        via_file = runtime.process(cam.read())
    direct = runtime.process(Frame(scene, "direct"))
    assert via_file.frame_sha256 == direct.frame_sha256 and via_file.p_malignant == direct.p_malignant


def test_full_disk_stops_the_run_with_the_report_and_a_readable_log(random_models, tmp_path, monkeypatch, capsys):
    audit = tmp_path / "audit.jsonl"
    real, calls = os.write, []

    def failing_write(fd, data):
        calls.append(fd)
        if len(calls) >= 3:  # the third frame's line: only part of it fits, then the disk is full
            if len(calls) == 3:
                return real(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    rc = main(["run", "--model-file", str(random_models["int8"]), "--camera", "synthetic", "--frames", "5",
               "--audit-log", str(audit), "--threads", "1"])
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert rc == 2 and "audit write failed" in err and "No space left on device" in err
    assert "synthetic:0" in out and "synthetic:1" in out and "synthetic:2" not in out  # not shown without its line
    assert "2 frames" in out and "stopped by audit log failed" in out and "RUN STOPPED" in out  # the report
    got = read_audit(audit)
    assert [r["source_id"] for r in got.records] == ["synthetic:0", "synthetic:1"] and got.torn == 0


@pytest.mark.parametrize("args, message", [
    (["--shadow-every", "0"], "--shadow-every: 0 is out of range"),
    (["--threads", "0"], "--threads: 0 is out of range"),
    (["--frames", "-3"], "--frames: -3 is out of range"),
    (["--threads", "two"], "--threads: 'two' is not a whole number"),
    (["--split", "tset"], "--split: invalid choice"),
])
def test_out_of_range_numbers_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--camera", "synthetic", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_selftest_max_delta_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["selftest", "--max-delta", "0"])
    assert "--max-delta: 0 is out of range" in capsys.readouterr().err


def test_replay_counts_unlabelled_rows_and_filters_by_dataset(random_models, tiny_isic, tmp_path, capsys):
    import csv

    folder = tmp_path / "isic"
    folder.mkdir()
    with open(tiny_isic / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        (folder / f"{r['isic_id']}.jpg").symlink_to((tiny_isic / f"{r['isic_id']}.jpg").resolve())
    rows[0]["benign_malignant"] = rows[1]["benign_malignant"] = ""
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["run", "--model-file", str(random_models["int8"]), "--camera", f"replay:{folder}", "--json",
                 "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    judged = report["frames"] - report["decisions"].get("retake", 0)
    assert report["unlabelled"] >= 1 and report["metrics"]["n"] == judged - report["unlabelled"]
    dataset = rows[2]["dataset"]
    assert main(["run", "--model-file", str(random_models["int8"]), "--camera", f"replay:{folder}", "--json",
                 "--threads", "1", "--dataset", dataset]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == sum(r["dataset"] == dataset for r in rows)
    assert main(["run", "--model-file", str(random_models["int8"]), "--camera", f"replay:{folder}",
                 "--dataset", "nowhere"]) == 2
    assert "no rows with dataset 'nowhere'" in capsys.readouterr().err

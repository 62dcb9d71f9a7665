"""The scanner's settings file: defaults, which file is read, file < command line, every refusal (exit 2, naming the
file and key), the documented example the bundle ships, and a scanner's run that never needs the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields

import pytest

from edge_sca import settings as S
from edge_sca.cli import build_parser, main, resolve_settings
from edge_sca.contract import INPUT_CHECKS_FILE
from edge_sca.devpaths import MODELS_DIR, REPO_ROOT
from edge_sca.errors import ExitStatus
from edge_sca.manifest_schema import manifest_path
from firmware_bridge.bundle import DEPLOY_DIR


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch, tmp_path):
    """Neither the caller's $CANCERNET_SCA_CONFIG nor a real /etc/cancernet-sca/scanner.toml leaks into a test."""
    monkeypatch.delenv(S.ENV_VAR, raising=False)
    monkeypatch.setattr(S, "DEFAULT_PATH", tmp_path / "absent" / "scanner.toml")


def write(tmp_path, text: str, name: str = "scanner.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def args_of(*argv: str):
    return build_parser().parse_args(list(argv))


def test_no_file_gives_the_documented_defaults():
    s = S.load_settings()
    assert s == S.ScannerSettings() and s.file is None and s.origin == {}
    assert (s.board.port, s.board.timeout_s, s.model.shadow_every, s.audit.log) == ("", 60.0, 10, "")
    assert (s.quality.min_brightness, s.quality.max_saturated_fraction, s.camera.source) == (50.0, 0.30, "picamera2")
    for cls in S.SECTIONS.values():  # every key is documented
        assert all(f.metadata["doc"] for f in fields(cls))


def test_which_file_env_then_default_path(tmp_path, monkeypatch):
    default = write(tmp_path, "[board]\ntimeout_s = 5\n", "default.toml")
    monkeypatch.setattr(S, "DEFAULT_PATH", default)
    assert S.load_settings().board.timeout_s == 5.0  # the default path, when it exists
    env = write(tmp_path, "[board]\ntimeout_s = 7\n", "env.toml")
    monkeypatch.setenv(S.ENV_VAR, str(env))
    assert S.load_settings().board.timeout_s == 7.0  # $CANCERNET_SCA_CONFIG before it
    given = write(tmp_path, "[board]\ntimeout_s = 9.5\n", "given.toml")
    assert S.load_settings(given).board.timeout_s == 9.5  # --config before both
    monkeypatch.setenv(S.ENV_VAR, str(tmp_path / "nowhere.toml"))
    with pytest.raises(S.SettingsError, match=r"nowhere.toml: settings file not found \(named by \$CANCERNET_SCA"):
        S.load_settings()


def test_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, '[model]\npath = "/m/b.tflite"\nthreads = 2\n[board]\nport = "/dev/ttyACM0"\n'
                 'timeout_s = 30\n[audit]\nlog = "/var/a.jsonl"\n[quality]\nmin_brightness = 40\n')
    s = resolve_settings(args_of("run", "--config", str(path)))
    assert (s.model.path, s.model.threads, s.board.port, s.board.timeout_s) == ("/m/b.tflite", 2, "/dev/ttyACM0", 30)
    assert s.quality.min_brightness == 40.0 and s.origin["board.port"] == "file"
    s = resolve_settings(args_of("run", "--config", str(path), "--model-file", "/x.tflite", "--threads", "1",
                                 "--bridge", "", "--board-timeout", "3", "--camera", "synthetic", "--audit-log", ""))
    assert (s.model.path, s.model.threads, s.board.port, s.board.timeout_s) == ("/x.tflite", 1, "", 3.0)
    assert (s.camera.source, s.audit.log, s.quality.min_brightness) == ("synthetic", "", 40.0)
    assert s.origin["model.path"] == "command line" and s.origin["quality.min_brightness"] == "file"


@pytest.mark.parametrize("text, message", [
    ("[board\n", r"not valid TOML: .*line 1"),
    ("port = 1\n", r"port = 1 is outside a section; put the keys under \[section\] headers"),
    ("[boards]\nport = 1\n", r"unknown section \[boards\]; the sections are model, camera, board"),
    ("[board]\ntimeout = 5\n", r"unknown key 'timeout' in \[board\]; its keys are port, timeout_s"),
    ("[board]\ntimeout_s = \"60\"\n", r"\[board\] timeout_s = \"60\" must be a number\. Fix it or remove the line "
                                      r"for the default 60\.0"),
    ("[model]\nthreads = 1.5\n", r"\[model\] threads = 1\.5 must be a whole number"),
    ("[quality]\nsaturation_level = true\n", r"saturation_level = true must be a whole number"),
    ("[model]\npath = 3\n", r"\[model\] path = 3 must be a string in quotes"),
    ("[board]\ntimeout_s = 0\n", r"timeout_s = 0 is out of range: it must be above 0"),
    ("[quality]\nmax_saturated_fraction = 1.5\n", r"max_saturated_fraction = 1\.5 is out of range: it must be at "
                                                  r"least 0 and at most 1"),
    ("[illumination]\nmode = \"uv\"\n", r"mode = \"uv\" is not one of polarised, non-polarised"),
    ("[board]\nbackoff_s = 8\n", r"backoff_max_s = 4 is below backoff_s = 8"),
    ("[camera]\nsource = \"usb\"\n", r"\[camera\] source = \"usb\" is not a camera: use picamera2, opencv:N"),
    ("[quality]\nmin_brightness = nan\n", r"min_brightness = nan must be a number"),
])
def test_a_bad_file_is_refused_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(S.SettingsError, match=message) as exc:
        S.load_settings(path)
    assert str(exc.value).startswith(f"{path}: ") and "docs/deploy.md" in str(exc.value)


def test_a_bad_file_exits_2_with_one_line_before_anything_runs(tmp_path, capsys):
    path = write(tmp_path, "[board]\ntimeout_s = -1\n")
    for argv in (["run", "--camera", "synthetic"], ["selftest"], ["classify", "x.jpg"], ["settings"]):
        assert main([*argv, "--config", str(path)]) == ExitStatus.ERROR == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "timeout_s = -1 is out of range" in err and str(path) in err, err
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "settings file not found (named by --config)" in capsys.readouterr().err
    unreadable = tmp_path / "dir.toml"
    unreadable.mkdir()
    assert main(["settings", "--config", str(unreadable)]) == 2
    assert "cannot read the settings file" in capsys.readouterr().err


def test_settings_command_shows_values_and_their_origin(tmp_path, capsys):
    path = write(tmp_path, '[board]\nport = "/dev/ttyUSB0"\n')
    assert main(["settings", "--config", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == str(path) and out["board"]["port"] == "/dev/ttyUSB0" and out["board"]["timeout_s"] == 60
    assert out["origin"] == {"board.port": "file"}
    assert main(["settings", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert 'board.port = "/dev/ttyUSB0"  (file)' in text and "camera.retries = 3  (default)" in text


def test_the_bundled_settings_file_is_the_documented_example(capsys):
    """firmware_bridge/deploy/scanner.toml is what `python -m edge_sca settings --example` prints: every key with
    its documentation and default, the scanner's model, board and audit log set."""
    assert main(["settings", "--example"]) == 0
    example = capsys.readouterr().out
    assert (DEPLOY_DIR / "scanner.toml").read_text() == example, \
        "regenerate it: python -m edge_sca settings --example > firmware_bridge/deploy/scanner.toml"
    s = S.parse_settings(example, "example")
    assert {k: getattr(getattr(s, sec), key) for (sec, key), _ in S.SCANNER_VALUES.items()
            for k in [f"{sec}.{key}"]} == {f"{sec}.{key}": v for (sec, key), v in S.SCANNER_VALUES.items()}
    uncommented = S.parse_settings(re.sub(r"(?m)^#(\w+ = )", r"\1", example), "every key")  # each default parses
    assert uncommented.quality == S.QualitySettings() and uncommented.camera == S.CameraSettings()
    for name, cls in S.SECTIONS.items():
        for f in fields(cls):
            assert f"{f.name} = " in example, f"{name}.{f.name} missing from the example"


def test_settings_reach_the_runtime(random_models, tmp_path, capsys):
    """A file's model, camera, audit log and quality limits are what `run` uses; a tightened limit retakes."""
    audit = tmp_path / "audit.jsonl"
    path = write(tmp_path, f'[model]\npath = "{random_models["int8"]}"\nthreads = 1\n[camera]\nsource = '
                 f'"synthetic"\n[audit]\nlog = "{audit}"\n[quality]\nmin_brightness = 255\n')
    assert main(["run", "--config", str(path), "--frames", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["camera"]["name"].startswith("synthetic") and report["audit_log"] == str(audit)
    assert report["decisions"] == {"retake": 2} and report["retake_reasons"] == {"too_dark": 2}
    assert len(audit.read_text().splitlines()) == 2


def test_a_scanner_run_needs_nothing_from_the_repository_layout(random_models, tmp_path):
    """With a settings file naming the model, `run` never imports edge_sca.devpaths (the repository's paths): a
    release's models folder holds the model, its manifest and the input checks, as the bundle lays them out."""
    release = tmp_path / "release" / "models"
    release.mkdir(parents=True)
    model = random_models["int8"]
    for src in (model, manifest_path(model), MODELS_DIR / INPUT_CHECKS_FILE):
        shutil.copy(src, release / src.name)
    path = write(tmp_path, f'[model]\npath = "{release / model.name}"\nthreads = 1\n[camera]\nsource = '
                 '"synthetic"\n')
    code = ("import sys; from edge_sca.cli import main; rc = main(['run', '--config', sys.argv[1], '--frames', '1', "
            "'--json']); sys.exit(rc or ('edge_sca.devpaths' in sys.modules and 'devpaths imported'))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop(S.ENV_VAR, None)
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

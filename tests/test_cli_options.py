"""One option name, one meaning, in every CLI (docs/contributing.md): --model is a model name, a file goes to
--model-file, folders end in -dir; old spellings still work, hidden from --help, with a warning naming the new."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from benchmarks.device_bench import build_parser as bench_parser
from benchmarks.discover import find_models
from edge_sca.cli import build_parser as edge_parser
from edge_sca.cli_common import add_command, add_option, model_file, run_cli
from firmware_bridge.cli import build_parser as bridge_parser
from quantize.cli import build_parser as quantize_parser


def _help(parser: argparse.ArgumentParser, *command: str) -> str:
    for name in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser.format_help()


@pytest.mark.parametrize("parser, command, new, old", [
    (quantize_parser, ("drift",), "--out-dir", "--out"),
    (quantize_parser, ("pack",), "--out-dir", "--out"),
    (quantize_parser, ("sources",), "--out-dir", "--out"),
    (quantize_parser, ("train",), "--models-dir", "--out-dir"),
    (bridge_parser, ("bundle",), "--models-dir", "--models"),
    (bridge_parser, ("flash",), "--dist-dir", "--dist"),
])
def test_old_spellings_are_hidden_from_help(parser, command, new, old):
    text = _help(parser(), *command)
    assert new in text
    assert f"{old} " not in text.replace(f"{new} ", "") and f"{old}," not in text


def test_an_old_spelling_does_what_the_new_one_does_and_warns(caplog):
    seen = {}
    p = argparse.ArgumentParser(prog="t")
    sub = p.add_subparsers()
    s = add_command(sub, "go", lambda a: seen.update(vars(a)) or 0)
    add_option(s, "--out-dir", old=("--out",), required=True)
    with caplog.at_level(logging.WARNING):
        assert run_cli(p, ["go", "--out", "x"]) == 0
    assert seen["out_dir"] == "x"
    assert "--out is the old name of --out-dir" in caplog.text
    caplog.clear()
    assert run_cli(p, ["go", "--out-dir", "y"]) == 0
    assert seen["out_dir"] == "y" and "old name" not in caplog.text
    with pytest.raises(SystemExit) as exc:  # required: one of the two spellings
        p.parse_args(["go"])
    assert exc.value.code == 2


def test_pack_and_drift_accept_the_old_out():
    q = quantize_parser()
    assert q.parse_args(["pack", "--isic-dir", "a", "--out", "b"]).out_dir == "b"
    assert q.parse_args(["drift", "--model", "b", "--out", "r"]).out_dir == "r"
    assert q.parse_args(["train", "--model", "c", "--out-dir", "m"]).models_dir == "m"


def test_model_is_a_name_and_a_file_goes_to_model_file(tmp_path, monkeypatch):
    from edge_sca import settings as S
    from edge_sca.cli import model_path, resolve_settings

    monkeypatch.delenv(S.ENV_VAR, raising=False)
    monkeypatch.setattr(S, "DEFAULT_PATH", tmp_path / "absent" / "scanner.toml")  # no ambient settings file
    e = edge_parser()

    def run_model(*argv: str) -> str:
        return model_path(resolve_settings(e.parse_args(list(argv))))

    assert run_model("selftest", "--model", "c", "--models-dir", str(tmp_path)) == str(
        tmp_path / "cancernet_sca_c_int8.tflite")
    assert run_model("selftest", "--model-file", "x/m.tflite") == "x/m.tflite"
    assert run_model("run").endswith("models/cancernet_sca_b_int8.tflite")
    # on a scanner, --model c picks C beside the model its settings file names
    release = tmp_path / "scanner.toml"
    release.write_text('[model]\npath = "/opt/cancernet-sca/current/models/cancernet_sca_b_int8.tflite"\n')
    assert run_model("run", "--config", str(release), "--model", "c") == (
        "/opt/cancernet-sca/current/models/cancernet_sca_c_int8.tflite")
    # the old meaning of --model (a file) still works, and is noted for a warning
    old = e.parse_args(["classify", "img.jpg", "--model", "models/cancernet_sca_b_int8.tflite"])
    assert old.model_file == "models/cancernet_sca_b_int8.tflite" and old.model is None
    assert "--model-file" in old._old_spellings_used[0]
    q = quantize_parser()
    ev = q.parse_args(["evaluate", "--model", "resnet50", "--models-dir", "m"])
    assert model_file(ev, "keras") == Path("m/resnet50.keras")
    assert model_file(q.parse_args(["evaluate", "--model-file", "x.pb"])) == Path("x.pb")
    src = q.parse_args(["sources", "--model", "m/a.keras", "--model", "m/b.tflite"])
    assert src.model_file == ["m/a.keras", "m/b.tflite"]


@pytest.mark.parametrize("argv", [
    ["selftest", "--model", "d"],                                  # no such model
    ["selftest", "--model", "c", "--model-file", "x.tflite"],     # both ways at once
])
def test_bad_model_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        edge_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_evaluate_needs_a_model():
    with pytest.raises(SystemExit):
        quantize_parser().parse_args(["evaluate", "--isic-dir", "x"])


def test_bench_model_is_an_architecture_and_match_a_file_name_filter(tmp_path):
    for stem in ("cancernet_sca_b_int8", "cancernet_sca_b_float32", "cancernet_sca_c_int8", "resnet50_int8"):
        (tmp_path / f"{stem}.tflite").write_bytes(b"x")
    names = lambda paths: [p.stem for p in paths]  # noqa: E731 - a one-line helper
    # `c` is a model, not a letter of "cancernet": only C's file
    assert names(find_models(tmp_path, ["c"])) == ["cancernet_sca_c_int8"]
    assert names(find_models(tmp_path, ["b"], ["int8"])) == ["cancernet_sca_b_int8"]
    assert names(find_models(tmp_path, None, ["int8"])) == ["cancernet_sca_b_int8", "cancernet_sca_c_int8",
                                                            "resnet50_int8"]
    b = bench_parser()
    assert b.parse_args(["--model", "c"]).model == ["c"]
    old = b.parse_args(["--model", "int8"])  # the old file-name filter goes to --match
    assert old.match == ["int8"] and old.model is None and old._old_spellings_used

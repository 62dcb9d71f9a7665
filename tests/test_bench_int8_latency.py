"""benchmarks/int8_latency.py: two int8 builds timed in one run, the speed budget, the integer-only check, and
the failure path (a missing build)."""

from __future__ import annotations

import json
import shutil
import sys

from edge_sca.devpaths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a script folder, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import int8_latency  # noqa: E402


def _folder(random_models, dst):
    """A copy of the random-weight int8 model and its manifest: a build folder as `quantize compare` makes."""
    dst.mkdir()
    for src in random_models["int8"].parent.glob("cancernet_sca_b_int8*"):
        shutil.copy2(src, dst / src.name)
    return dst


def test_two_builds_in_one_run_with_ratios_and_checks(random_models, tmp_path, capsys):
    base, other = _folder(random_models, tmp_path / "ptq"), _folder(random_models, tmp_path / "qat")
    rc = int8_latency.main([str(base), str(other), "--model", "b", "--rounds", "2", "--runs", "3", "--warmup", "1",
                            "--out-dir", str(tmp_path / "out"), "--json", "-q"])
    result = json.loads(capsys.readouterr().out)
    (model,) = result["models"]
    files = model["files"]
    assert [f["file"] for f in files] == [str(base / "cancernet_sca_b_int8.tflite"),
                                          str(other / "cancernet_sca_b_int8.tflite")]
    assert files[0]["median_over_baseline"] == 1.0 and all(f["n"] == 6 for f in files)
    assert all(f["p10_ms"] <= f["p50_ms"] <= f["p90_ms"] for f in files)
    assert all(f["integer_only_problems"] == [] for f in files)
    assert rc == (0 if files[1]["speed_budget_ok"] else 1)
    md = (tmp_path / "out" / "int8_latency.md").read_text()
    assert "median / baseline" in md and "python -m benchmarks.int8_latency" in md


def test_a_float_model_is_not_integer_only(random_models):
    problems = int8_latency.integer_only_problems(random_models["float32"])
    assert problems and "float32 tensors" in problems[0]


def test_missing_build_is_named(random_models, tmp_path, capsys):
    base = _folder(random_models, tmp_path / "ptq")
    rc = int8_latency.main([str(base), str(tmp_path / "nothing"), "--model", "b", "--out-dir", str(tmp_path / "o")])
    assert rc == 2 and "nothing/cancernet_sca_b_int8.tflite" in capsys.readouterr().err

"""CancerNet-SCa-B and -C meet the paper's budgets and convert to fully-integer int8 that XNNPACK takes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from quantize.architectures import PAPER_BUDGETS, build_model, count_macs


@pytest.mark.parametrize("name", ["b", "c"])
def test_budgets_within_five_percent_of_the_paper(name):
    model = build_model(name)
    params, macs = model.count_params(), count_macs(model)
    paper_params, paper_macs = PAPER_BUDGETS[name]
    assert abs(params / paper_params - 1) <= 0.05, params
    assert abs(macs / paper_macs - 1) <= 0.05, macs
    assert model.layers[0].name == "input_1" and model.layers[-1].name == "probs"


def test_mac_counter_on_resnet50():
    """The counter reproduces the known ResNet-50 figure (3.86 GMACs = the paper's 7.72 GFLOPs)."""
    model = build_model("resnet50")
    assert abs(count_macs(model) / 3.86e9 - 1) < 0.01
    assert abs(model.count_params() / 23.52e6 - 1) < 0.01


def test_models_cli_json():
    out = subprocess.run([sys.executable, "-m", "quantize", "models", "--model", "b", "--json", "-q"],
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert rows[0]["model"] == "b" and rows[0]["params"] == 793090 and abs(rows[0]["gflops"] - 0.433) < 0.01


@pytest.mark.parametrize("name", ["b", "c"])
def test_converts_to_full_integer_int8(name):
    from quantize.convert import XNNPACK_INT8_OPS, check_int8_input, convert, tensor_types_and_ops

    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    calib[0, 0, 0] = 0
    calib[0, 0, 1] = 255
    data = convert(build_model(name), "int8", calib_pixels=calib)
    dtypes, ops = tensor_types_and_ops(data)
    assert "float32" not in dtypes, dtypes
    assert ops <= XNNPACK_INT8_OPS, ops - XNNPACK_INT8_OPS
    check_int8_input(data)

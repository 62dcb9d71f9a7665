"""benchmarks/device_bench.py: a real --quick run on small random-weight models, the CPU peak model from real
cpuinfo texts, ratio directions, and the failure paths (no models, a tampered model, bad arguments)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.device_bench import e2e_thread_settings, parse_macs, thread_counts
from benchmarks.discover import identify
from benchmarks.machine import clock_ghz, cpu_model, peak_macs_per_s, vector_unit
from benchmarks.ratios import int8_speedup, versus_baseline
from benchmarks.report import e2e_table, plot
from edge_sca.contract import MODEL_NAMES, model_stem, parse_model_file
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import EdgeScaError

SCRIPT = REPO_ROOT / "benchmarks" / "device_bench.py"
#: CancerNet-SCa-B's multiply-accumulates per frame, as `quantize train` records them (models/cancernet_sca_b.json).
B_MACS = json.loads((REPO_ROOT / "models" / "cancernet_sca_b.json").read_text())["macs"]

X86_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45 128-Core Processor
cpu MHz\t\t: 2596.122
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512dq avx512bw avx512vl \
avx_vnni avx512_bf16 avx512vbmi avx512_vnni avx512_bitalg
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


# --- the CPU peak model -----------------------------------------------------------------------------------------


def test_peak_x86_avx512_vnni():
    unit = vector_unit(X86_VNNI)
    assert unit.name == "x86 AVX-512 VNNI"
    assert (unit.int8_macs_per_cycle, unit.float32_macs_per_cycle) == (128, 32)
    assert cpu_model(X86_VNNI) == "AMD EPYC 9B45 128-Core Processor"
    ghz, source = clock_ghz(X86_VNNI, sysfs=Path("/nonexistent"))
    assert ghz == pytest.approx(2.596122) and "cpu MHz" in source
    assert peak_macs_per_s(unit, 2, 2.5, "int8") == pytest.approx(2 * 2.5e9 * 128)
    assert peak_macs_per_s(unit, 2, 2.5, "float32") == pytest.approx(2 * 2.5e9 * 32)


def test_peak_pi4_cortex_a72_has_no_int8_dot_product(tmp_path):
    (tmp_path / "cpuinfo_max_freq").write_text("1800000\n")
    unit = vector_unit(PI4)
    assert "no int8 dot product" in unit.name and unit.int8_macs_per_cycle == 16
    assert cpu_model(PI4) == "Raspberry Pi 4 Model B Rev 1.4 / Cortex-A72"
    ghz, source = clock_ghz(PI4, sysfs=tmp_path)  # a Pi's cpuinfo has no MHz line: cpufreq gives it
    assert ghz == pytest.approx(1.8) and source.startswith("cpufreq")
    assert peak_macs_per_s(unit, 4, ghz, "int8") == pytest.approx(4 * 1.8e9 * 16)


def test_peak_pi5_cortex_a76_uses_sdot():
    unit = vector_unit(PI5)
    assert "SDOT" in unit.name and unit.int8_macs_per_cycle == 32 and unit.float32_macs_per_cycle == 8
    assert cpu_model(PI5) == "Raspberry Pi 5 Model B Rev 1.0 / Cortex-A76"
    assert clock_ghz(PI5, sysfs=Path("/nonexistent")) == (None, "unknown")
    # the dot product doubles int8 per cycle over the Pi 4's NEON, float32 is the same
    pi4 = vector_unit(PI4)
    assert unit.int8_macs_per_cycle == 2 * pi4.int8_macs_per_cycle
    assert unit.float32_macs_per_cycle == pi4.float32_macs_per_cycle


def test_peak_unknown_without_clock_or_flags():
    unit = vector_unit("processor : 0\n", machine="riscv64")
    assert unit.name == "unknown"
    assert peak_macs_per_s(unit, 4, 2.0, "int8") is None
    assert peak_macs_per_s(vector_unit(PI5), 4, None, "int8") is None


# --- small pieces -----------------------------------------------------------------------------------------------


def test_thread_counts_and_macs_table():
    assert thread_counts("1,2,all", 4) == [4, 2, 1]
    assert thread_counts("1,2,all", 2) == [2, 1]
    assert thread_counts("8", 4) == [4]
    with pytest.raises(EdgeScaError, match="--threads"):
        thread_counts("1,two", 4)
    assert parse_macs(["b=1e6", "c=2"]) == {"b": 1_000_000, "c": 2} and parse_macs(None) == {}
    with pytest.raises(EdgeScaError, match="NAME=COUNT"):
        parse_macs(["b"])


def test_end_to_end_thread_settings():
    """The scanner's shipped setting (None: the runtime's choice) first by default; repeats and bad values handled."""
    assert e2e_thread_settings("default,all", 4) == [None, 4]
    assert e2e_thread_settings("all,2,default,4", 4) == [4, 2, None]
    assert e2e_thread_settings("8", 2) == [2]
    for bad in ("0", "two", " , "):
        with pytest.raises(EdgeScaError, match="--e2e-threads"):
            e2e_thread_settings(bad, 4)


def test_model_file_names_round_trip():
    for name in MODEL_NAMES:
        for variant in ("float32", "int8", "int8_per_tensor"):
            assert parse_model_file(f"{model_stem(name)}_{variant}") == (name, variant)
    assert parse_model_file("cancernet_sca_b") is None and parse_model_file("mobilenet_int8") is None


def test_model_names_and_macs_come_from_the_files(write_fake_model, tmp_path):
    write_fake_model(tmp_path, "cancernet_sca_b_int8", b"x")
    path = tmp_path / "cancernet_sca_b_int8.tflite"
    info = identify(path, {})
    assert (info["architecture"], info["variant"], info["macs"], info["macs_source"]) == ("b", "int8", None, None)
    (tmp_path / "cancernet_sca_b.json").write_text(json.dumps({"macs": B_MACS}))
    assert (identify(path, {})["macs"], identify(path, {})["macs_source"]) == (B_MACS, "training record "
                                                                                         "cancernet_sca_b.json")
    assert identify(path, {"b": 7})["macs"] == 7  # --macs wins over the record
    (tmp_path / "cancernet_sca_b.json").write_text("{")
    assert identify(path, {})["macs"] is None  # a broken record costs the MACs, not the benchmark


def _fake(arch, variant, p50, size=1000, macs=100):
    return {"architecture": arch, "variant": variant, "size_bytes": size, "macs": macs,
            "latency": {"1": {"p50_ms": p50}}}


def test_ratio_directions():
    models = [_fake("b", "float32", 4.0), _fake("b", "int8", 1.0, size=250),
              _fake("resnet50", "int8", 10.0, size=25000, macs=2000)]
    assert int8_speedup(models) == {"b": {"1": pytest.approx(4.0)}}  # float / int8: > 1 means int8 faster
    vb = versus_baseline(models)
    assert set(vb) == {"b_int8"}  # no resnet50_float32 to compare b_float32 with
    assert vb["b_int8"]["speedup"]["1"] == pytest.approx(10.0)
    assert vb["b_int8"]["size_ratio"] == pytest.approx(100.0) and vb["b_int8"]["macs_ratio"] == pytest.approx(20.0)


def _e2e_row(checks_ms: float | None, invoke_ms: float) -> dict:
    stages = {"invoke_ms": {"p50_ms": invoke_ms, "mean_ms": invoke_ms}}
    if checks_ms is not None:
        stages["input_checks_ms"] = {"p50_ms": checks_ms, "mean_ms": checks_ms}
    row = {"model": "cancernet_sca_b_int8", "camera": "synthetic", "threads": 1, "decisions": {"benign": 5},
           "latency": {"measured": 5, "p50_ms": 5.0, "p99_ms": 6.0, "fps": 200.0, "stages": stages}}
    if checks_ms is not None:
        row["input_checks_share_of_invoke"] = checks_ms / invoke_ms
    return row


@pytest.mark.parametrize(("checks_ms", "shown"), [(0.2, "0.20 (8.0% of invoke p50) |"),
                                                    (0.5, "0.50 (20.0% of invoke p50) **over budget** |"),
                                                    (None, "| - | benign 5 |")])
def test_end_to_end_row_shows_the_input_checks_share_and_flags_it_over_budget(checks_ms, shown):
    """The scanner's own benchmark is where the checks' budget (a tenth of the invoke) is read on the Pi."""
    header, _, row = e2e_table([_e2e_row(checks_ms, 2.5)])
    assert "input checks p50 ms" in header and shown in row
    assert row.count("|") == header.count("|")


def test_plot_is_optional_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    note = plot({"models": [], "machine": {}}, tmp_path / "latency.png")
    assert note and "matplotlib" in note and not (tmp_path / "latency.png").exists()


def test_benchmark_modules_import_without_tensorflow_or_matplotlib():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('tensorflow', 'keras', 'quantize', 'matplotlib'):\n"
            "            raise ImportError(name + ' is not allowed')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import benchmarks.device_bench, benchmarks.model_bench, benchmarks.accuracy, benchmarks.e2e\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- the script, end to end -------------------------------------------------------------------------------------


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The script as `make bench` and the scanner run it: by path, from anywhere, with no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(SCRIPT).anchor)


def _models_dir(random_models: dict, dst: Path, tamper: bool = False) -> Path:
    """The random-weight models with their manifests and a training record that counts B's MACs."""
    dst.mkdir()
    for variant in ("float32", "int8"):
        src = random_models[variant]
        for p in (src, src.with_name(src.stem + ".manifest.json")):
            shutil.copy(p, dst / p.name)
    (dst / "cancernet_sca_b.json").write_text(json.dumps({"model": "b", "macs": B_MACS}))
    if tamper:
        f = dst / random_models["float32"].name
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
    return dst


def _ordered(s: dict) -> bool:
    return 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]


@pytest.mark.slow
def test_quick_run_on_random_models(random_models, tiny_isic, tmp_path):
    models_dir = _models_dir(random_models, tmp_path / "models")
    out_dir = tmp_path / "out"
    r = _bench("--quick", "--models-dir", str(models_dir), "--out-dir", str(out_dir), "--threads", "1,all",
               "--isic-dir", str(tiny_isic), "--limit", "6", "--e2e-frames", "3", "--json", "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res == json.loads((out_dir / "bench.json").read_text())
    m = res["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["python"] and m["litert"] and m["numpy"] and m["os"]
    assert {x["name"] for x in res["models"]} == {"cancernet_sca_b_float32", "cancernet_sca_b_int8"}
    for model in res["models"]:
        assert "error" not in model
        assert model["size_bytes"] > 100_000 and model["load_ms"] > 0 and model["first_invoke_ms"] > 0
        assert model["memory"]["model_peak_mib"] > 0 and model["macs"] == B_MACS
        assert model["macs_source"] == "training record cancernet_sca_b.json"
        assert set(model["latency"]) == {str(t) for t in res["settings"]["threads"]}
        for t, s in model["latency"].items():
            assert _ordered(s) and s["fps"] > 0 and s["n"] >= 5 and len(s["samples_ms"]) == s["n"]
            assert model["utilisation"][t]["achieved_gmacs"] > 0
    assert [x["input_dtype"] for x in res["models"]] == ["float32", "int8"]
    assert all(v > 0 for v in res["ratios"]["int8_speedup"]["b"].values())
    assert res["ratios"]["versus_baseline"] == {}  # no ResNet-50 in this folder
    # by default at the scanner's shipped thread setting (the runtime's choice) and on all cores
    assert [e["threads"] for e in res["e2e"]] == ["default", m["cores"]]
    e2e = res["e2e"][0]
    assert e2e["model"] == "cancernet_sca_b_int8" and e2e["camera"].startswith("replay:")
    assert sum(e2e["decisions"].values()) == e2e["frames"] >= 3
    assert e2e["latency"]["measured"] >= 1, e2e  # the replayed images are camera-like and pass the quality gate
    assert e2e["latency"]["p50_ms"] >= e2e["latency"]["stages"]["invoke_ms"]["p50_ms"] > 0
    assert e2e["around_model_ms_mean"] > 0 and 0 < e2e["overhead_fraction"] < 1
    # the learned checks are timed inside the gate, and their share of the invoke is what the budget judges
    stages = e2e["latency"]["stages"]
    assert 0 < stages["input_checks_ms"]["p50_ms"] < stages["quality_ms"]["p50_ms"]
    assert e2e["input_checks_share_of_invoke"] == pytest.approx(
        stages["input_checks_ms"]["p50_ms"] / stages["invoke_ms"]["p50_ms"])
    acc = res["accuracy"]
    assert acc["n"] == 6 and acc["benign"] == acc["malignant"] == 3
    drift = acc["models"]["b"]
    assert 0 <= drift["agreement"] <= 1 and 0 <= drift["mean_abs_delta_p"] <= drift["max_abs_delta_p"] <= 1
    assert drift["float32"]["n"] == drift["int8"]["n"] == 6
    md = (out_dir / "bench.md").read_text()
    assert "| cancernet_sca_b_int8 |" in md and "peak MACs/s = threads x clock" in md
    assert "of invoke p50" in md and "Input checks = the learned checks" in md
    assert (out_dir / "latency.png").stat().st_size > 5_000


def test_empty_models_dir_is_a_clear_error(tmp_path):
    r = _bench("--models-dir", str(tmp_path), "--out-dir", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 2
    assert "no .tflite models" in r.stderr and "make quantize" in r.stderr and "Traceback" not in r.stderr
    r = _bench("--models-dir", str(tmp_path / "missing"), timeout=60)
    assert r.returncode == 2 and "no such models folder" in r.stderr


@pytest.mark.slow
def test_tampered_model_is_reported_and_the_rest_measured(random_models, tmp_path):
    models_dir = _models_dir(random_models, tmp_path / "models", tamper=True)
    out_dir = tmp_path / "out"
    r = _bench("--quick", "--models-dir", str(models_dir), "--out-dir", str(out_dir), "--threads", "1",
               "--no-e2e", "--no-plot", "-q")
    assert r.returncode == 2 and "1 of 2 models could not be measured" in r.stderr
    res = json.loads((out_dir / "bench.json").read_text())
    by_name = {m["name"]: m for m in res["models"]}
    assert "does not match its manifest" in by_name["cancernet_sca_b_float32"]["error"]
    assert _ordered(by_name["cancernet_sca_b_int8"]["latency"]["1"])
    assert "| cancernet_sca_b_float32 | error:" in r.stdout and "| cancernet_sca_b_int8 | 1 |" in r.stdout

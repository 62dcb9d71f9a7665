"""What `pip install .` gives: every console script names a real CLI, and every package the code imports is in it."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

import pytest

from edge_sca.devpaths import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def test_console_scripts_are_the_four_clis():
    assert set(SCRIPTS) == {"edge-sca", "cancernet-quantize", "cancernet-bridge", "cancernet-bench"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_resolves_to_a_cli_that_prints_help(name, capsys):
    module, _, func = SCRIPTS[name].partition(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_every_top_level_package_is_packaged():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert {"edge_sca", "quantize", "firmware_bridge", "benchmarks", "pi_target"} <= packages
    assert [p for p in sorted(packages) if f"{p}*" not in include] == [], "add them to [tool.setuptools.packages.find]"


def test_python_m_benchmarks_runs():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "usage: python -m benchmarks" in out.stdout, out.stderr

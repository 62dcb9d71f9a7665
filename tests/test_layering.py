"""edge_sca is the bottom layer: it must import on a Pi, where there is no TensorFlow."""

import subprocess
import sys

from edge_sca.devpaths import REPO_ROOT

SCRIPT = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'quantize', 'pi_target'):
            raise ImportError(f'{name} is not allowed in edge_sca')
sys.meta_path.insert(0, Block())
import edge_sca
names = [m.name for m in pkgutil.walk_packages(edge_sca.__path__, 'edge_sca.') if not m.name.endswith('__main__')]
for n in names:
    importlib.import_module(n)
print(len(names))
"""


def test_every_edge_sca_module_imports_without_tensorflow():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 8  # the runtime's modules were really walked


def test_the_blocker_really_blocks():
    """The check above would pass vacuously if the blocker did nothing: prove it refuses tensorflow."""
    out = subprocess.run([sys.executable, "-c", SCRIPT.split("import edge_sca")[0] + "import tensorflow"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "not allowed" in out.stderr


def test_no_module_imports_the_old_config():
    """Constants are imported from the module that holds them (contract, policy, settings, devpaths); the
    compatibility module edge_sca.config is for code outside this repository only."""
    import re

    pattern = re.compile(r"^\s*(from edge_sca\.config import|from edge_sca import config\b|import edge_sca\.config)",
                         re.M)
    folders = ("edge_sca", "quantize", "firmware_bridge", "benchmarks", "pi_target", "tests", "scripts")
    users = [str(p.relative_to(REPO_ROOT)) for d in folders for p in sorted((REPO_ROOT / d).rglob("*.py"))
             if p.name != "config.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert users == [], f"import from edge_sca.contract / policy / settings / devpaths instead: {users}"

"""The build key covers the code a build runs: a new module the pipeline imports must be listed on one side."""

import ast
from pathlib import Path

from quantize.build_cache import BUILD_SOURCES, OUTSIDE_BUILD_KEY, build_key, code_version

QUANTIZE = Path(__file__).resolve().parents[1] / "quantize"


def _quantize_imports(module: str) -> set[str]:
    """The quantize/ modules `module` imports (at the top or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse((QUANTIZE / module).read_text())):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        out |= {f"{n.split('.')[1]}.py" for n in names if n.startswith("quantize.")}
    return out


def test_every_module_the_pipeline_reaches_is_in_or_out_of_the_key_with_a_reason():
    inside, outside = dict(BUILD_SOURCES), dict(OUTSIDE_BUILD_KEY)
    assert not set(inside) & set(outside)
    assert all(why.strip() for why in [*inside.values(), *outside.values()])
    reached, todo = set(), ["pipeline.py"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += sorted(_quantize_imports(module))
    assert reached - set(inside) - set(outside) == set(), "add these to BUILD_SOURCES or OUTSIDE_BUILD_KEY"
    assert set(inside) <= reached and all((QUANTIZE / name).is_file() for name in inside)


def test_build_key_follows_the_int8_options_only_for_int8():
    a = build_key("k", "c", {"io": "int8"}, "int8")
    assert a != build_key("k", "c", {"io": "uint8"}, "int8") and a != build_key("k", "c2", {"io": "int8"}, "int8")
    f = build_key("k", "c", {"io": "int8"}, "float32")
    assert f == build_key("k", "c2", {"io": "uint8"}, "float32") != build_key("k2", "c", {"io": "int8"}, "float32")
    assert len(code_version()) == 16

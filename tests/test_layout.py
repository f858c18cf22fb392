"""The package's layering: no module imports a higher layer, and no GAN system imports another."""

import ast
from pathlib import Path

import pytest

from pygan.systems import SYSTEMS

ROOT = Path(__file__).resolve().parents[1] / "pygan"
# lowest first; a module may import its own layer and those below
LAYERS = [("_compat", "_ext", "_io", "systems"), ("ops",), ("nn",), ("fuse", "losses"), ("data",), ("metrics",),
          ("training",), SYSTEMS, ("cli",)]


def _layer(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"pygan.{part} is in no layer of tests/test_layout.py: add it")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            if node.module == "pygan":  # from pygan import ops, nn
                yield from (f"pygan.{a.name}" for a in node.names)


MODULES = sorted(p for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_higher_layer(path):
    own = path.relative_to(ROOT).parts[0].removesuffix(".py")
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "pygan" or len(parts) < 2 or parts[1] in ("_C",):
            continue
        other = parts[1]
        assert _layer(other) <= _layer(own), f"pygan.{own} ({path.name}) imports {name}, a higher layer"
        if own in SYSTEMS and other in SYSTEMS:
            assert other == own, f"system pygan.{own} imports another system: {name}"


def test_every_top_level_part_has_a_layer():
    for p in ROOT.iterdir():
        if p.name.startswith("__") or p.suffix not in (".py", "") or p.name.startswith("_C"):
            continue
        if p.is_dir() and not (p / "__init__.py").exists():
            continue
        _layer(p.name.removesuffix(".py"))

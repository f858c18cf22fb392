"""The package's layering: no module imports a higher layer, and no GAN system imports another."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pygan"
SYSTEMS = ("dcgan", "sr", "cyclegan", "segmentation", "text2image")
# lowest first; a module may import its own layer and those below
LAYERS = [("_compat", "_ext", "_io"), ("ops",), ("nn",), ("fuse", "losses"), ("data",), ("metrics",), ("training",),
          SYSTEMS, ("cli",)]


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


# ---------------------------------------------------------------- import cycles
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PACKAGE = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The pygan module that importing `name` runs: itself, or the nearest enclosing module (a name in it)."""
    while name and name not in PACKAGE:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(source: str, package: str) -> set[str]:
    """The pygan modules `source` (of module `package`'s package) imports, at module level or deferred inside a
    function: a deferred import only hides a cycle until the function first runs."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] == "pygan")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package the module is in
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "pygan":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if full in PACKAGE else _resolve(base))
    return {m for m in out if m is not None}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in PACKAGE.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported_modules(path.read_text(), package) - {name}
    return graph


def test_the_import_scan_sees_the_package():
    graph = _graph()
    assert len(graph) >= 60 and sum(map(len, graph.values())) >= 150
    assert {"pygan.data.folder", "pygan.data.errors"} <= graph["pygan.data.images"]
    assert "pygan._ext" in graph["pygan.ops.batch_norm_act"]  # `from pygan import _ext`: the submodule
    assert "pygan.data" in graph["pygan.cli"]  # deferred (inside main) and a name of the package
    deferred = "def f():\n    from pygan.data.images import load\n"
    assert imported_modules(deferred, "pygan.data") == {"pygan.data.images"}
    assert imported_modules("from . import folder\nfrom .images import load\n", "pygan.data") == {
        "pygan.data.folder", "pygan.data.images"}
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = import_cycles(_graph())
    assert not cycles, "pygan modules import each other (move the shared piece down): " + "; ".join(
        " <-> ".join(c) for c in cycles)

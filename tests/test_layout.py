"""The package's layering: no module imports a higher layer, no import cycles, no GAN system imports another or
holds a part another system needs (no name or code defined in two systems: a second user moves the part to a
shared layer), and pygan modules are imported at module level."""

import ast
from pathlib import Path

import pytest

from pygan.systems import SYSTEMS

ROOT = Path(__file__).resolve().parents[1] / "pygan"
# lowest first; a module may import its own layer and those below
LAYERS = [("_compat", "_ext", "_io", "systems"), ("ops",), ("nn",), ("fuse", "losses", "parts"), ("data",),
          ("metrics",), ("training",), SYSTEMS, ("cli",)]


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


# Function-level `from pygan ...` imports hide the arrows this file checks and save nothing (`pygan` imports every
# system's trainer to build its parser). The ones that must stay (an optional dependency, say), each with its
# reason as (file, module): none today.
FUNCTION_LEVEL_IMPORTS: set[tuple[str, str]] = set()


def _function_level_pygan_imports(path: Path):
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["pygan.<relative>" if node.level else node.module or ""]
            else:
                continue
            for name in names:
                if name == "pygan" or name.startswith("pygan."):
                    yield name, node


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pygan_imports_are_at_module_level(path):
    rel = path.relative_to(ROOT).as_posix()
    for name, node in _function_level_pygan_imports(path):
        assert (rel, name) in FUNCTION_LEVEL_IMPORTS, (
            f"pygan/{rel}:{node.lineno}: function-level `{ast.unparse(node)}`: import it at module level (one that "
            "breaks a genuine import cycle goes in FUNCTION_LEVEL_IMPORTS, tests/test_layout.py, with the reason)")


def test_the_function_level_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import pygan\n\ndef f():\n    from pygan.data import DataError\n    import torch\n\n"
                 "class C:\n    def g(self):\n        import pygan.ops\n")
    assert [name for name, _ in _function_level_pygan_imports(f)] == ["pygan.data", "pygan.ops"]


# Names every system defines for itself: the system protocol (its checkpoint format, commands, evaluation) and
# per-system facts. Any other name defined in two systems is a part that belongs in a shared layer.
OWN_NAMES = {
    "CHECKPOINT": "the system's checkpoint format", "read_checkpoint": "CHECKPOINT.read, the public name",
    "register": "the system's commands", "_eval": "its eval command", "_translate": "its translate command",
    "evaluate": "its held-out evaluation", "format_metrics": "its metrics as text",
    "SIZES": "the image sizes its networks support", "check_size": "the check of SIZES", "recalibrate_bn": "BatchNorm statistics from its own generator's inputs",
    "load_generator": "its trained generator from a checkpoint file", "_report": "its train command's last line",
    "__all__": "its public names",
}


def _definitions(system: str):
    """(name, normalised code, file) of every top-level function, class and assignment of a system package."""
    for path in sorted((ROOT / system).glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names, body = [node.name], node.body
            elif isinstance(node, ast.Assign):
                names, body = [t.id for t in node.targets if isinstance(t, ast.Name)], [node.value]
            else:
                continue
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            code = "\n".join(ast.dump(b) for b in body)
            for name in names:
                yield name, code, path.relative_to(ROOT).as_posix()


def _shared_parts(systems) -> list[str]:
    by_name, by_code = {}, {}
    for system in systems:
        for name, code, where in _definitions(system):
            by_name.setdefault(name, {}).setdefault(system, where)
            if len(code) > 200:  # a few statements: one-liners may coincide
                by_code.setdefault(code, {}).setdefault(system, f"{where}:{name}")
    found = [f"{name} is defined in {', '.join(sorted(w.values()))}" for name, w in by_name.items()
             if len(w) > 1 and name not in OWN_NAMES]
    found += [f"the same code in {', '.join(sorted(w.values()))}" for w in by_code.values() if len(w) > 1]
    return found


def test_no_system_holds_a_part_another_system_needs():
    assert _shared_parts(SYSTEMS) == [], ("move the part to pygan.parts / pygan.nn / pygan.data / pygan.metrics "
                                          "(or, for a name each system defines for itself, add it to OWN_NAMES)")


def test_the_shared_part_check_sees_copies(tmp_path, monkeypatch):
    body = "    x = [i * 2 for i in range(n)]\n    y = sum(x) + len(x) * 3\n    return {'total': y, 'items': x, 'n': n}\n"
    for system, name in (("one", "pool"), ("two", "history")):
        (tmp_path / system).mkdir()
        (tmp_path / system / "parts.py").write_text(f"def {name}(n):\n    \"\"\"Doc.\"\"\"\n{body}\n"
                                                    f"class ImagePool:\n    pass\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = _shared_parts(("one", "two"))
    assert any("ImagePool is defined in one/parts.py, two/parts.py" in f for f in found)
    assert any(f.startswith("the same code in one/parts.py:pool, two/parts.py:history") for f in found)


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

"""pygan/_compat.py holds every private PyTorch API pygan uses: no other module of pygan names one.

A private API here: a module or attribute of torch whose name starts with one underscore, reached by an import
(`from torch._x import y`, `from torch.nn.modules.batchnorm import _BatchNorm`), by an attribute chain from a
name bound to torch (`torch.cpu._is_amx_tile_supported`, `nn.modules.batchnorm._NormBase`), by getattr / hasattr
with a literal name, or by calling a stock module's private methods on any object (`conv._conv_forward(...)`).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pygan"
COMPAT = ROOT / "_compat.py"
# Private methods of stock modules that pygan's modules (subclasses or owners of stock ones) could call.
PRIVATE_METHODS = {"_conv_forward", "_output_padding"}
# Underscored but public: torch._check is documented API (the checks torch.compile understands).
PUBLIC = {"torch._check"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _chain(node):
    """['torch', 'cpu', '_is_x'] for the attribute chain torch.cpu._is_x; None when its root is not a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every private torch API `source` uses."""
    tree = ast.parse(source)
    torch_names, found = {}, []  # local name -> the torch path it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "torch":
                    if any(map(_private, a.name.split("."))):
                        found.append((node.lineno, f"import {a.name}"))
                    torch_names[a.asname or "torch"] = a.name if a.asname else "torch"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            for a in node.names:
                path = f"{node.module}.{a.name}"
                if any(map(_private, path.split("."))):
                    found.append((node.lineno, f"from {node.module} import {a.name}"))
                torch_names[a.asname or a.name] = path
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in PRIVATE_METHODS:
                found.append((node.lineno, f".{node.attr}"))
            chain = _chain(node)
            if chain and chain[0] in torch_names and _private(node.attr):
                path = ".".join([torch_names[chain[0]], *chain[1:]])
                if path not in PUBLIC:
                    found.append((node.lineno, path))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value)):
            target = _chain(node.args[0]) if isinstance(node.args[0], (ast.Attribute, ast.Name)) else None
            if (target and target[0] in torch_names) or node.args[1].value in PRIVATE_METHODS:
                found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
    return sorted(set(found))


MODULES = sorted(p for p in ROOT.rglob("*.py") if p != COMPAT)


def test_the_scan_finds_private_uses():
    snippet = """
import torch
import torch.nn.functional as F
from torch import nn
from torch._prims_common import suggest_memory_format
from torch.nn.modules.batchnorm import _BatchNorm
torch._check(True)
torch.cpu._is_amx_tile_supported()
getattr(torch.cpu, "_is_avx512_bf16_supported", None)
nn.modules.batchnorm._NormBase
F._canonical_mask
conv._conv_forward(x, w, b)
self.conv._output_padding(x, None)
model._modules, ops._C, torch.ops.pygan.bias_act, nn.Module.__init__
"""
    assert [what for _, what in private_uses(snippet)] == [
        "from torch._prims_common import suggest_memory_format", "from torch.nn.modules.batchnorm import _BatchNorm",
        "torch.cpu._is_amx_tile_supported", "getattr(..., '_is_avx512_bf16_supported')",
        "torch.nn.modules.batchnorm._NormBase", "torch.nn.functional._canonical_mask", "._conv_forward",
        "._output_padding"]
    # what _compat.py holds is what the scan looks for
    held = {what for _, what in private_uses(COMPAT.read_text())}
    assert {"torch._C._AutoDispatchBelowAutograd", "from torch.nn.modules.batchnorm import _NormBase",
            "from torch.nn.modules.instancenorm import _InstanceNorm", "._conv_forward", "._output_padding",
            "getattr(..., '_is_amx_tile_supported')"} <= held
    assert len(MODULES) >= 50


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_private_torch_apis_only_in_compat(path):
    uses = private_uses(path.read_text())
    assert not uses, (f"{path.relative_to(ROOT)} uses private torch APIs outside pygan/_compat.py (move them "
                      "there): " + "; ".join(f"line {line}: {what}" for line, what in uses))

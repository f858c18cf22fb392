"""Loads the compiled kernels (pygan._C) once, and decides what happens when they are missing.

Policy: an op whose kernel is missing (extension not built, built for another torch, or built without CUDA
while the tensors are on a GPU) runs its pure-PyTorch reference from pygan.ops.reference, with a one-time
warning. With PYGAN_STRICT=1 in the environment that is an error instead (CI sets it).
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path

import torch

from pygan._compat import has_kernel_for

_HERE = Path(__file__).resolve().parent
_REBUILD = "rebuild it against this torch: pip install --no-build-isolation --force-reinstall --no-deps -e ."


def strict() -> bool:
    return os.environ.get("PYGAN_STRICT", "0") not in ("", "0")


def _read_build_record() -> dict | None:
    path = _HERE / "_C_build.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load(record: dict | None = None):
    """(module, None) or (None, why it is unusable); `record` defaults to the one written by the build."""
    record = _read_build_record() if record is None else record
    if record is not None and record.get("torch") != torch.__version__:
        return None, (
            f"pygan's kernels were built for torch {record.get('torch')} but torch {torch.__version__} is running; "
            + _REBUILD
        )
    try:
        return importlib.import_module("pygan._C"), None
    except ModuleNotFoundError:
        return None, (f"pygan's kernels (pygan._C) are not built in {_HERE}; install with: "
                      "pip install --no-build-isolation -e .  (from the checkout)")
    except (ImportError, OSError) as e:  # e.g. undefined symbol: built for another torch or CUDA
        built = f"torch {record['torch']}" if record else "an unknown torch"
        return None, (
            f"pygan's kernels (pygan._C) failed to load ({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); "
            f"they were built for {built}, torch {torch.__version__} is running; " + _REBUILD
        )


_C, LOAD_ERROR = _load()
if LOAD_ERROR is not None and strict():
    raise ImportError(LOAD_ERROR + " (PYGAN_STRICT=1 makes this an error)")


def build_info() -> dict:
    """What was built (CPU, CUDA, arch list) and for which torch, whether it loaded here, and which build of the
    CPU kernels (cpu_isa: baseline, avx2, avx512) runs on this CPU."""
    record = _read_build_record() or {}
    info = {
        "loaded": _C is not None,
        "torch_running": torch.__version__,
        "torch_built": record.get("torch"),
        "cpu": _C is not None,
        "cpu_isa": None,
        "cuda": None,
        "cuda_arch_list": None,
        "error": LOAD_ERROR,
    }
    if _C is not None:
        built = _C.build_info()
        info.update(torch_built=built["torch"], cpu_isa=built.get("cpu_isa"), cuda=built["cuda"],
                    cuda_arch_list=built["cuda_arch_list"])
    return info


_kernel_cache: dict[tuple[str, str], bool] = {}
_warned: set[str] = set()


@torch.compiler.assume_constant_result  # fixed for the process: torch.compile treats it as a constant
def has_kernel(op: str, device_type: str) -> bool:
    """Whether torch.ops.pygan.<op> has a compiled kernel for tensors on `device_type` ('cpu', 'cuda')."""
    key = (op, device_type)
    if key not in _kernel_cache:
        ok = _C is not None and hasattr(torch.ops.pygan, op)  # a stale build may predate the op
        if ok:
            dispatch_key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
            ok = dispatch_key is not None and has_kernel_for(f"pygan::{op}", dispatch_key)
        _kernel_cache[key] = ok
    return _kernel_cache[key]


def fallback(op: str, device_type: str) -> None:
    """Called when `op` runs its reference: warns once, or raises under PYGAN_STRICT=1."""
    why = LOAD_ERROR or f"pygan was built without {device_type.upper()} kernels (see pygan.build_info())"
    msg = f"pygan.ops.{op}: no compiled kernel for {device_type} tensors, using the PyTorch reference (slower). {why}"
    if strict():
        raise RuntimeError(msg + " [PYGAN_STRICT=1]")
    if op not in _warned:
        _warned.add(op)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

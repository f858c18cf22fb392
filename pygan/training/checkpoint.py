"""Reading pygan checkpoints (they are written atomically by pygan._io.atomic_torch_save)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch


class CheckpointError(ValueError):
    """A file that is not a readable pygan checkpoint of the expected kind."""


def _load(path: str, mmap: bool = False):
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as e:
        if mmap:  # not a zip-format file (mmap needs one): read it plainly, for the plain error
            return _load(path)
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}") from None


def read_checkpoint(path: str, fmt: str, what: str) -> dict:
    """The checkpoint dict at `path`, whose 'format' must be `fmt`; CheckpointError (one line) otherwise."""
    ckpt = _load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise CheckpointError(f"{path} is not a pygan {what} checkpoint")
    return ckpt


def read_checkpoint_format(path: str, known: Iterable[str]) -> str:
    """The 'format' (the kind) of the checkpoint at `path`, one of `known`, read without reading its tensors (they
    are memory-mapped); CheckpointError (one line, naming the known kinds) otherwise."""
    known = list(known)
    try:
        ckpt = _load(path, mmap=True)
    except CheckpointError as e:
        if not os.path.isfile(path):
            raise
        raise CheckpointError(f"{e} (pygan checkpoints are of the kinds {', '.join(known)})") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt not in known:
        found = f"its format is {fmt!r}" if isinstance(fmt, str) else "it has no 'format'"
        raise CheckpointError(f"{path} is not a pygan checkpoint of a known kind ({found}; known: "
                              f"{', '.join(known)})")
    return fmt

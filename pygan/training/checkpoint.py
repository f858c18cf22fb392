"""Reading pygan checkpoints (they are written atomically by pygan._io.atomic_torch_save)."""

from __future__ import annotations

import os

import torch


class CheckpointError(ValueError):
    """A file that is not a readable pygan checkpoint of the expected kind."""


def read_checkpoint(path: str, fmt: str, what: str) -> dict:
    """The checkpoint dict at `path`, whose 'format' must be `fmt`; CheckpointError (one line) otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise CheckpointError(f"{path} is not a pygan {what} checkpoint")
    return ckpt

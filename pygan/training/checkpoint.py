"""Checkpoint formats: what a system's checkpoint is called, how it is read (pygan._io.atomic_torch_save writes
it) and where its evaluation generator sits. One object per system, used by its trainer and its evaluation alike;
`read_checkpoint_format` tells which system a file belongs to."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class CheckpointFormat:
    name: str   # the 'format' field written into the checkpoint and required of it
    kind: str   # in messages: "not a pygan <kind> checkpoint"

    def read(self, path: str) -> dict:
        """The checkpoint at `path`; CheckpointError (one line) for a missing, unreadable or foreign file."""
        ckpt = _load(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != self.name:
            raise CheckpointError(f"{path} is not a pygan {self.kind} checkpoint")
        return ckpt

    @staticmethod
    def generator_state(ckpt: dict) -> dict:
        """The state_dict of the generator to evaluate and sample from: 'G_eval' where the system keeps one of its
        own (e.g. with recalibrated BatchNorm statistics), else the EMA's where the run kept one, else G's."""
        for key in ("G_eval", "G_sample", "G_ema"):  # G_sample: DCGAN checkpoints before G_eval was shared
            if ckpt.get(key) is not None:
                return ckpt[key]
        return ckpt["G"]


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

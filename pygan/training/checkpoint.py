"""Checkpoint formats: what a system's checkpoint is called, how it is read (pygan._io.atomic_torch_save writes
it) and where its evaluation generator sits. One object per system, used by its trainer and its evaluation alike."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


class CheckpointError(ValueError):
    """A file that is not a readable pygan checkpoint of the expected kind."""


def load_checkpoint_file(path: str, kind: str = "") -> dict:
    """Any pygan checkpoint's dict; CheckpointError (one line) for a missing, unreadable or foreign file (said to
    be not a pygan `kind` checkpoint)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(f"{path} is not a pygan {kind + ' ' if kind else ''}checkpoint")
    return ckpt


@dataclass(frozen=True)
class CheckpointFormat:
    name: str   # the 'format' field written into the checkpoint and required of it
    kind: str   # in messages: "not a pygan <kind> checkpoint"

    def read(self, path: str) -> dict:
        """The checkpoint at `path`; CheckpointError (one line) unless it is one of this format."""
        ckpt = load_checkpoint_file(path, self.kind)
        if ckpt["format"] != self.name:
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

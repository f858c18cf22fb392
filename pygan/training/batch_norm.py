"""BatchNorm statistics that belong to a generator's current weights."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pygan._compat import NormBase


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, forward_batch: Callable[[int], object], batches: int) -> nn.Module:
    """Recomputes every BatchNorm running statistic of `model` as the exact average over `batches` calls of
    `forward_batch(i)` (which runs the model on its i-th batch), then returns the model in eval mode.

    Statistics gathered during training lag the weights and, for an EMA generator, belong to other weights
    altogether: eval-mode samples from them come out washed out. Deterministic when `forward_batch` is."""
    bns = [m for m in model.modules() if isinstance(m, NormBase)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    try:
        for i in range(batches):
            forward_batch(i)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    return model.eval()

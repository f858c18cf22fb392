"""Upscaling whole images with a trained generator, tile by tile so that large images fit in memory.

Each LR tile is run with `overlap` extra LR pixels of context on every side (fewer at the image border) and only
its own part of the output is kept. With the overlap at least the generator's receptive-field radius (the
default, `receptive_radius`) every kept output pixel sees exactly the context it would see untiled, so the result
equals the untiled one up to floating-point rounding. The generator should be in eval mode (BatchNorm with running
statistics is then per-pixel, which tiling cannot change).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pygan.sr.models import SRResNet


def receptive_radius(G: SRResNet) -> int:
    """LR pixels on each side that influence one output pixel: 9x9 head (4), two 3x3 convolutions per residual
    block, the post-residual 3x3 (1), one 3x3 per x2 stage at 1, 2, ... times the LR resolution, the 9x9 tail."""
    stages = int(math.log2(G.scale))
    r = 4 + 2 * G.config["blocks"] + 1 + sum(1 / 2 ** i for i in range(stages)) + 4 / G.scale
    return math.ceil(r)


@torch.no_grad()
def upscale(G: SRResNet, lr: Tensor, tile: int = 128, overlap: int | None = None) -> Tensor:
    """(3, h, w) or (N, 3, h, w) LR in [0, 1] -> SR clamped to [0, 1], computed on LR tiles of `tile` x `tile`
    (0: the whole image at once) with `overlap` LR pixels of context (default: the receptive-field radius)."""
    if not isinstance(tile, int) or tile < 0:
        raise ValueError(f"tile must be an integer >= 0, got {tile!r}")
    overlap = receptive_radius(G) if overlap is None else overlap
    if not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be an integer >= 0, got {overlap!r}")
    x = lr[None] if lr.dim() == 3 else lr
    p = next(G.parameters())
    x = x.to(p.device, p.dtype)
    n, c, h, w = x.shape
    s = G.scale
    if tile == 0 or (h <= tile and w <= tile):
        out = G(x)
    else:
        out = x.new_empty(n, c, h * s, w * s)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
                yb, xb = min(h, y1 + overlap), min(w, x1 + overlap)
                sr = G(x[:, :, ya:yb, xa:xb])
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = sr[:, :, (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
    out = out.float().clamp(0, 1)
    return out[0] if lr.dim() == 3 else out

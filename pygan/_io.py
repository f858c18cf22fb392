"""Atomic file writes (temp file in the same folder, fsync, os.replace) and image grids."""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temp path next to `path`; on success it replaces `path`, on any error it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path: str) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (H', W') or (H', W', 3) grid with `nrow` images per row."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_grid(images: Tensor, path: str, nrow: int | None = None, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(image_grid(images, nrow))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path, ".png") as tmp:
        im.save(tmp, format="PNG")

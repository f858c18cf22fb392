"""Atomic file writes (temp file in the same folder, fsync, os.replace) and image grids."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor


def _umask_from_proc() -> int | None:
    """The process's umask as Linux (4.7+) reports it in /proc/self/status; None where that is not available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_round_trip() -> int:
    # os.umask can only be read by setting it: for an instant the process's umask is another one, and a file another
    # thread creates in that instant would get it. So this round trip is done at most once, while pygan is imported
    # (before a program typically starts its threads), and only where /proc cannot tell the live value.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_from_proc()
if _UMASK_AT_IMPORT is None:
    _UMASK_AT_IMPORT = _umask_round_trip()


def file_mode() -> int:
    """The mode a plainly created file gets now (0o666 less the umask): read live from /proc, which is thread-safe
    and follows later os.umask calls; elsewhere the umask read when pygan was imported."""
    mask = _umask_from_proc()
    return 0o666 & ~(_UMASK_AT_IMPORT if mask is None else mask)


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temp path next to `path`; on success it replaces `path`, on any error it is removed.

    The temp file is created private (0600); the file that replaces `path` gets the mode a plainly created file
    would (0666 less the umask), so a run's results stay readable by whoever the umask lets read them."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), file_mode())  # after the writer ran: it may have replaced the temp file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cache_root() -> str:
    """pygan's cache folder (cached classifiers, encoders, folder scans): $PYGAN_CACHE, else
    $XDG_CACHE_HOME/pygan or ~/.cache/pygan; not created here."""
    return os.environ.get("PYGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pygan")


def atomic_torch_save(obj, path: str) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


def write_json(path: str, obj) -> None:
    """`obj` as indented JSON at `path`, written atomically."""
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1)


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


def save_grid(images: Tensor, path: str, nrow: int | None = None, scale: int = 1, pad: int = 2) -> None:
    from PIL import Image

    im = Image.fromarray(image_grid(images, nrow, pad))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path, ".png") as tmp:
        im.save(tmp, format="PNG")

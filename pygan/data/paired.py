"""Paired images: two folders whose files correspond by relative path (LR/HR pairs, pix2pix's input/target, label
maps), matched once, loaded in memory and served as (a, b) minibatches of the same draw."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from pygan.data.batches import InMemory
from pygan.data.folder import IMAGE_EXTENSIONS
from pygan.data.errors import DataError
from pygan.data.images import ImageData, decode_image, to_float


def image_files(root: str) -> list[str]:
    """Every image file under `root` (recursively, sorted); DataError when the folder is missing or has none."""
    if not os.path.isdir(root):
        raise DataError(f"data folder not found: {root}")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


def pair_files(dir_a: str, dir_b: str) -> list[tuple[str, str]]:
    """(file in dir_a, file in dir_b) for every image of dir_b, matched by relative path without the extension
    (a.jpg pairs with a.png); DataError naming the first unmatched files."""
    def key(root, f):
        return os.path.splitext(os.path.relpath(f, root))[0]

    by_key = {key(dir_a, f): f for f in image_files(dir_a)}
    files_b = image_files(dir_b)
    missing = [os.path.relpath(f, dir_b) for f in files_b if key(dir_b, f) not in by_key]
    if missing:
        raise DataError(f"{dir_a}: no image matching {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                        f"of {dir_b}")
    return [(by_key[key(dir_b, f)], f) for f in files_b]


class PairedImages(ImageData):
    """ImageData (the `a` images, in `images`) whose `labels` are the paired `b` images, uint8 (N, C_b, S, S)."""


def load_paired(dir_a: str, dir_b: str, size: int, channels_a: int = 3, channels_b: int = 3) -> PairedImages:
    """The pairs of pair_files, each image resized (shorter side) and centre-cropped to size x size, as uint8."""
    pairs = pair_files(dir_a, dir_b)
    a, b = [], []
    for fa, fb in pairs:
        for path, c, out in ((fa, channels_a, a), (fb, channels_b, b)):
            try:
                out.append(decode_image(path, size, c)[0])
            except Exception as e:
                raise DataError(f"unreadable image {path}: {type(e).__name__}: {e}") from None
    return PairedImages(torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b)), [])


class PairedInMemory(InMemory):
    """InMemory over PairedImages: next() / take() give (a, b), both float in [-1, 1], of the same indices."""

    def take(self, idx) -> tuple[Tensor, Tensor]:
        x, y = super().take(idx)
        return x, to_float(y)

"""Unpaired data for CycleGAN: two folders of images, or the embedded pair of digit domains whose true translation
is known.

The embedded domains: A = the bundled digits, white strokes on black (3 channels); B = `restyle(A)`, a fixed image
transform — strokes thickened (3x3 dilation) and recoloured (dark blue on cream). A and B are made from disjoint
halves of the digits' training split, so training never sees a pair; the held-out split gives test images whose
true translation is known in both directions (restyle(x) for x in A, the source digit for restyle(x) in B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan.data import DataError, ImageData, digits_split, load

# B's colours in [-1, 1] (RGB): cream background, dark blue strokes
BACKGROUND = (0.9, 0.8, 0.5)
STROKE = (-0.8, -0.7, -0.1)


def restyle(x: Tensor) -> Tensor:
    """The fixed A -> B transform of the embedded domains: (N, C, H, W) digits in [-1, 1] (white on black; C = 1
    or 3, equal channels) to thick dark-blue digits on cream, (N, 3, H, W) in [-1, 1]."""
    ink = (x.mean(1, keepdim=True) + 1) / 2                       # 0 background .. 1 stroke
    ink = F.max_pool2d(ink, 3, stride=1, padding=1)                # thicker strokes
    bg = torch.tensor(BACKGROUND, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    fg = torch.tensor(STROKE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return bg + (fg - bg) * ink


def _rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


@dataclass
class Domains:
    """Training images of the two domains (unpaired) and, for the embedded domains, held-out test pairs."""

    a: ImageData
    b: ImageData
    test_a: Tensor | None = None      # held-out A images ...
    test_a_true: Tensor | None = None  # ... and their true translation to B
    test_b: Tensor | None = None      # held-out B images ...
    test_b_true: Tensor | None = None  # ... and their true translation to A
    test_labels: Tensor | None = None  # the digit of each held-out pair

    @property
    def channels(self) -> int:
        return self.a.images.shape[1]


def embedded_digits(size: int = 32) -> Domains:
    train, held = digits_split(size)
    g = torch.Generator().manual_seed(0)  # which half of the training digits goes to which domain: fixed
    perm = torch.randperm(len(train), generator=g)
    ia, ib = perm[: len(perm) // 2], perm[len(perm) // 2:]
    a = ImageData(_rgb(train.images[ia]), train.labels[ia], train.classes)
    b = ImageData(restyle(train.images[ib]), train.labels[ib], train.classes)
    # held-out: the first half tests A -> B, the second B -> A (different digits each way)
    h = len(held)
    xa, xb = _rgb(held.images[: h // 2]), held.images[h // 2:]
    return Domains(a, b, test_a=xa, test_a_true=restyle(xa), test_b=restyle(xb), test_b_true=_rgb(xb),
                   test_labels=torch.cat([held.labels[: h // 2], held.labels[h // 2:]]))


def load_domains(data_a: str, data_b: str, size: int) -> Domains:
    """'digits' for both (the embedded domains), or two folders of images (any sizes; resized and centre-cropped
    to size x size, 3 channels)."""
    if (data_a == "digits") != (data_b == "digits"):
        raise DataError("data_a and data_b must both be 'digits' (the embedded domains) or both be image folders")
    if data_a == "digits":
        return embedded_digits(size)
    domains = []
    for name, source in (("data_a", data_a), ("data_b", data_b)):
        try:
            d = load(source, size, 3)
        except DataError as e:
            raise DataError(f"{name}: {e}") from None
        if len(d) < 2:
            raise DataError(f"{name} needs at least 2 images, got {len(d)}")
        domains.append(ImageData(_rgb(d.images), d.labels, d.classes))
    return Domains(*domains)

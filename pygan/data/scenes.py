"""Labelled scenes: images with a class per pixel — the embedded digit scenes and the container of such data
(SegData), with the VOC colour map that draws label maps. Semantic segmentation learns the scenes' label maps;
pix2pix learns the scenes from their label maps, scored by a segmenter trained on the real scenes.

The embedded scenes (`digit_scenes`): a few of the bundled digits (16x16) placed on a size x size canvas without
overlapping, with clutter — fragments of other digits (6x6 crops, labelled background) — and Gaussian noise. Labels:
0 = background, 1 + d = digit d, on the digits' ink (intensity > INK). A fragment looks like a piece of a digit, and
one stroke of a digit looks like a stroke of many others: a classifier with a small receptive field gives mixed
labels inside one digit, which whole-object reasoning avoids; and a label map leaves the clutter and the noise
open, so that a scene is one of many drawings of its label map. Training scenes use the digits' training split,
test scenes the held-out split (`pygan.data.digits_split`): no source image is in both. The scenes are fixed (their
own seed), the same for every run and machine; `instances` numbers each placed digit, for the shape-consistency
score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pygan.data.errors import DataError
from pygan.data.images import digits_split

DIGIT = 16         # digit size on the canvas (pixels)
INK = 0.35         # a digit pixel is labelled when its intensity (0..1) is above this
FRAGMENT = 6       # clutter: square crops of other digits, this many pixels wide
NOISE = 0.15       # standard deviation of the Gaussian noise (intensity 0..1)
SCENES_SEED = 1    # the scenes are fixed
IGNORE_INDEX = 255


@dataclass
class SegData:
    images: Tensor                 # (N, C, S, S) float32 in [-1, 1]
    labels: Tensor                 # (N, S, S) int64: a class, or ignore_index
    classes: list[str]
    ignore_index: int = IGNORE_INDEX
    instances: Tensor | None = None  # (N, S, S) int64: 0 none, k > 0 the k-th object of its scene (embedded only)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class Split:
    train: SegData
    test: SegData


def _scenes(digits: np.ndarray, labels: np.ndarray, n: int, size: int, rng: np.random.Generator,
            per_scene: tuple[int, int] = (2, 4), fragments: int = 3) -> SegData:
    """n scenes from `digits` ((M, DIGIT, DIGIT) ink in 0..1) and their `labels`."""
    x = np.zeros((n, size, size), np.float32)
    y = np.zeros((n, size, size), np.int64)
    inst = np.zeros((n, size, size), np.int64)
    span = size - DIGIT + 1
    for i in range(n):
        placed: list[tuple[int, int]] = []
        for _ in range(rng.integers(per_scene[0], per_scene[1] + 1)):
            for _try in range(30):  # a position whose box overlaps no placed digit's
                r, c = rng.integers(0, span, 2)
                if all(abs(r - pr) >= DIGIT or abs(c - pc) >= DIGIT for pr, pc in placed):
                    break
            else:
                continue
            placed.append((r, c))
            j = rng.integers(len(digits))
            ink = digits[j]
            x[i, r:r + DIGIT, c:c + DIGIT] = np.maximum(x[i, r:r + DIGIT, c:c + DIGIT], ink)
            mask = ink > INK
            y[i, r:r + DIGIT, c:c + DIGIT][mask] = labels[j] + 1
            inst[i, r:r + DIGIT, c:c + DIGIT][mask] = len(placed)
        for _ in range(fragments):  # pieces of other digits, on the background only
            j = rng.integers(len(digits))
            a, b = rng.integers(0, DIGIT - FRAGMENT + 1, 2)
            piece = digits[j, a:a + FRAGMENT, b:b + FRAGMENT] * rng.uniform(0.6, 1.0)
            r, c = rng.integers(0, size - FRAGMENT + 1, 2)
            free = y[i, r:r + FRAGMENT, c:c + FRAGMENT] == 0
            win = x[i, r:r + FRAGMENT, c:c + FRAGMENT]
            win[free] = np.maximum(win[free], piece[free])
    x = np.clip(x + rng.normal(0, NOISE, x.shape).astype(np.float32), 0, 1)
    classes = ["background"] + [str(d) for d in range(10)]
    return SegData(torch.from_numpy(x * 2 - 1)[:, None].contiguous(), torch.from_numpy(y), classes,
                   IGNORE_INDEX, torch.from_numpy(inst))


def digit_scenes(size: int = 48, n_train: int = 3000, n_test: int = 500) -> Split:
    """The embedded scenes: training scenes from the digits' training split, test scenes from the held-out split."""
    if size < DIGIT:
        raise DataError(f"size must be >= {DIGIT} for the embedded scenes, got {size}")
    train, held = digits_split(DIGIT)
    rng = np.random.default_rng(SCENES_SEED)
    ink = lambda d: ((d.images[:, 0] + 1) / 2).numpy()  # noqa: E731
    return Split(_scenes(ink(train), train.labels.numpy(), n_train, size, rng),
                 _scenes(ink(held), held.labels.numpy(), n_test, size, rng))


def palette(n: int = 256) -> np.ndarray:
    """The VOC colour map (n, 3) uint8: class bits spread over the high bits of R, G and B."""
    out = np.zeros((n, 3), np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out[k] = (r, g, b)
    return out


def colorize(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(N, H, W) class indices to (N, 3, H, W) colours in [-1, 1] (the VOC colour map; ignored pixels white)."""
    pal = torch.from_numpy(palette()).float() / 127.5 - 1
    lab = labels.clamp(0, 255).cpu()
    out = pal[lab].permute(0, 3, 1, 2)
    return torch.where((labels.cpu() == ignore_index)[:, None], torch.ones(()), out)

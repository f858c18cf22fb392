"""Captioned images: the embedded captioned digits (captions from each image's class and the attributes measured
on it, some (class, attribute) combinations held out of training entirely), or a folder of images each with a
.txt file of captions next to it.

The digits: pygan.data's train/held-out split of scikit-learn's bundled digits. Thickness and slant are measured on
every image and binned per class at the training images' tertiles (pygan.text2image.attributes); each image gets
CAPTIONS_PER_IMAGE captions drawn with a fixed seed (pygan.text2image.captions). Training images of a held-out
combination (HELD_OUT: a thick three, a thin five, a seven leaning right) are removed from the training set - from
the GAN's and from the text encoder's - so that the captions naming them test composition never seen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pygan.data import DataError, IMAGE_EXTENSIONS, digits_split, open_image
from pygan.text2image import attributes as attrs
from pygan.text2image.captions import NAMES, meaning_captions

CAPTIONS_PER_IMAGE = 5
CAPTION_SEED = 0
# (class, attribute index, level): a thick three, a thin five, a seven leaning right
HELD_OUT = ((3, 0, 2), (5, 0, 0), (7, 1, 2))


@dataclass
class CaptionedImages:
    images: Tensor                   # (N, C, S, S) float32 in [-1, 1]
    captions: list[str]              # all captions, grouped by image
    owner: Tensor                    # (M,) int64: the image each caption describes
    meanings: Tensor | None = None   # (M, 3) int64: class, thickness level, slant level (-1: not mentioned)
    labels: Tensor | None = None     # (N,) classes
    levels: Tensor | None = None     # (N, 2) attribute levels measured on the images
    first: Tensor = field(init=False)  # (N,) index of each image's first caption
    count: Tensor = field(init=False)  # (N,) its number of captions

    def __post_init__(self):
        n = self.images.shape[0]
        if len(self.captions) != len(self.owner):
            raise ValueError(f"{len(self.captions)} captions but {len(self.owner)} owners")
        if n == 0:
            raise DataError("no captioned images")
        if len(self.owner) and (torch.diff(self.owner) < 0).any():
            raise ValueError("captions must be grouped by image (owner non-decreasing)")
        self.count = torch.bincount(self.owner, minlength=n)
        if (self.count == 0).any():
            raise DataError(f"image {int((self.count == 0).nonzero()[0])} has no caption")
        self.first = torch.cumsum(self.count, 0) - self.count

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class CaptionedData:
    train: CaptionedImages
    test: CaptionedImages | None = None        # held-out images of the seen combinations (digits)
    zero_shot: CaptionedImages | None = None   # every image of a held-out combination (digits), for reference
    thresholds: np.ndarray | None = None       # (10, 2, 2) attribute cut points (digits)
    held_out: tuple = ()

    @property
    def digits(self) -> bool:
        return self.thresholds is not None


def in_held_out(labels: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(N,) bool: the image's class and one of its attribute levels form a held-out combination."""
    out = np.zeros(len(labels), dtype=bool)
    for cls, a, lv in HELD_OUT:
        out |= (labels == cls) & (levels[:, a] == lv)
    return out


def meaning_is_held_out(meaning) -> bool:
    cls, t, s = (int(v) for v in meaning)
    return any(cls == c and (t, s)[a] == lv for c, a, lv in HELD_OUT)


def _captioned(images: Tensor, labels: np.ndarray, levels: np.ndarray, rng: np.random.Generator) -> CaptionedImages:
    caps, meanings, owner = [], [], []
    for i, (c, lv) in enumerate(zip(labels, levels)):
        cs, ms = meaning_captions(rng, int(c), (int(lv[0]), int(lv[1])), CAPTIONS_PER_IMAGE)
        caps += cs
        meanings += ms
        owner += [i] * len(cs)
    return CaptionedImages(images.contiguous(), caps, torch.tensor(owner), torch.tensor(meanings),
                           torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(levels))


def captioned_digits(size: int = 16) -> CaptionedData:
    """The embedded captioned digits at size x size (see the module docstring)."""
    train, held = digits_split(size)
    y_tr, y_ho = train.labels.numpy(), held.labels.numpy()
    v_tr = attrs.measure(train.images)
    thresholds = attrs.fit_thresholds(v_tr, y_tr)
    l_tr, l_ho = attrs.levels(v_tr, y_tr, thresholds), attrs.image_levels(held.images, y_ho, thresholds)
    rng = np.random.default_rng(CAPTION_SEED)
    h_tr, h_ho = in_held_out(y_tr, l_tr), in_held_out(y_ho, l_ho)
    tr = _captioned(train.images[torch.from_numpy(~h_tr)], y_tr[~h_tr], l_tr[~h_tr], rng)
    te = _captioned(held.images[torch.from_numpy(~h_ho)], y_ho[~h_ho], l_ho[~h_ho], rng)
    zs_images = torch.cat([train.images[torch.from_numpy(h_tr)], held.images[torch.from_numpy(h_ho)]])
    zs = _captioned(zs_images, np.concatenate([y_tr[h_tr], y_ho[h_ho]]),
                    np.concatenate([l_tr[h_tr], l_ho[h_ho]]), rng)
    return CaptionedData(tr, te, zs, thresholds, HELD_OUT)


def caption_folder(root: str, size: int, channels: int = 3) -> CaptionedData:
    """Every image under `root` with a same-named .txt file of captions (one per line; blank lines skipped)."""
    if not os.path.isdir(root):
        raise DataError(f"data: caption folder not found: {root}")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise DataError(f"data: no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    caps, owner, images = [], [], []
    for i, path in enumerate(files):
        txt = os.path.splitext(path)[0] + ".txt"
        if not os.path.isfile(txt):
            raise DataError(f"data: {path} has no caption file (expected {txt}, one caption per line)")
        with open(txt, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if not lines:
            raise DataError(f"data: caption file {txt} is empty (expected one caption per line)")
        caps += lines
        owner += [i] * len(lines)
        images.append(open_image(path, size, channels))
    x = torch.from_numpy(np.stack(images) / 127.5 - 1).float()
    return CaptionedData(CaptionedImages(x, caps, torch.tensor(owner)))


def load_captioned(source: str, size: int, channels: int = 3) -> CaptionedData:
    if source == "digits":
        return captioned_digits(size)
    if not os.path.exists(source):
        raise DataError(f"data: not found: {source} (expected 'digits' or a folder of images with .txt captions)")
    return caption_folder(source, size, channels)


def describe(meaning) -> str:
    """A readable name of a meaning (class, thickness, slant), e.g. 'thick three'."""
    cls, t, s = (int(v) for v in meaning)
    words = ([attrs.LEVELS["thickness"][t]] if t >= 0 else []) + [NAMES[cls]]
    if s >= 0:
        words.append({0: "leaning left", 1: "upright", 2: "leaning right"}[s])
    return " ".join(words)

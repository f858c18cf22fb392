"""Data for semantic segmentation: the embedded digit scenes, or a folder of images with a folder of label maps.

Embedded scenes (`digit_scenes`): a few of the bundled digits (16x16) placed on a size x size canvas without
overlapping, with clutter — fragments of other digits (6x6 crops, labelled background) — and Gaussian noise. Labels:
0 = background, 1 + d = digit d, on the digits' ink (intensity > INK). A fragment looks like a piece of a digit, and
one stroke of a digit looks like a stroke of many others: a classifier with a small receptive field gives mixed
labels inside one digit, which whole-object reasoning avoids. Training scenes use the digits' training split,
test scenes the held-out split (`pygan.data.digits_split`): no source image is in both. The scenes are fixed (their
own seed), the same for every run and machine; `instances` numbers each placed digit, for the shape-consistency
score.

Folders: images (png, jpg, ...) and label maps named like the images with .png, each an index PNG (mode L / I:
the value is the class) or a palette PNG (mode P, VOC-style: the palette index is the class); a class-names file
(one name per line, class 0 first); pixels equal to `ignore_index` are ignored (VOC: 255, the object borders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pygan.data import IMAGE_EXTENSIONS, DataError, digits_split

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


# ---------------------------------------------------------------- folders
def read_class_names(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(f"class-names file not found: {path}")
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) < 2:
        raise DataError(f"class-names file {path}: expected at least 2 class names (one a line), got {len(names)}")
    return names


def read_label_map(path: str) -> np.ndarray:
    """An index PNG (mode L / I / I;16: the values) or a palette PNG (mode P: the palette indices) as (H, W) int64."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"label map not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"label map {path}: expected an index PNG (mode L) or a palette PNG (mode P), "
                                f"got mode {im.mode}")
            return np.asarray(im).astype(np.int64)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read label map {path}: {e}") from None


def _square(im, size: int, resample):
    """Shorter side to `size`, then centre-crop (as pygan.data.open_image)."""
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), resample)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_pair(image_path: str, label_path: str, size: int, num_classes: int, ignore_index: int):
    """(image (3, size, size) float in [-1, 1], labels (size, size) int64), checked: same sizes, values in the
    classes or the ignore index. Labels are resized with nearest neighbours (no invented classes)."""
    from PIL import Image, UnidentifiedImageError

    labels = read_label_map(label_path)
    try:
        with Image.open(image_path) as im:
            im = im.convert("RGB")
            if im.size != (labels.shape[1], labels.shape[0]):
                raise DataError(f"image {image_path} is {im.size[0]}x{im.size[1]} but its label map {label_path} "
                                f"is {labels.shape[1]}x{labels.shape[0]}")
            x = np.asarray(_square(im, size, Image.Resampling.BICUBIC), np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {image_path}: {e}") from None
    bad = (labels >= num_classes) & (labels != ignore_index) | (labels < 0)
    if bad.any():
        raise DataError(f"label map {label_path} has value {int(labels[bad][0])} outside the classes "
                        f"0..{num_classes - 1} (ignore index {ignore_index})")
    lab = np.asarray(_square(Image.fromarray(labels.astype(np.int32), "I"), size, Image.Resampling.NEAREST))
    return torch.from_numpy(x.transpose(2, 0, 1) / 127.5 - 1), torch.from_numpy(lab.astype(np.int64))


def label_folder(images: str, labels: str, classes: str, size: int, ignore_index: int = IGNORE_INDEX) -> SegData:
    """Every image under `images` with its label map `labels/<same relative path, .png>`."""
    for name, path in (("images", images), ("labels", labels)):
        if not os.path.isdir(path):
            raise DataError(f"{name} folder not found: {path}")
    names = read_class_names(classes)
    if 0 <= ignore_index < len(names):
        raise DataError(f"ignore_index {ignore_index} is one of the {len(names)} classes; use a value outside "
                        f"0..{len(names) - 1} (VOC: 255)")
    files = sorted(os.path.relpath(os.path.join(d, f), images) for d, _, fs in os.walk(images) for f in fs
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {images}")
    xs, ys = [], []
    for f in files:
        x, y = load_pair(os.path.join(images, f), os.path.join(labels, os.path.splitext(f)[0] + ".png"), size,
                         len(names), ignore_index)
        xs.append(x)
        ys.append(y)
    return SegData(torch.stack(xs).float().contiguous(), torch.stack(ys), names, ignore_index)


def hold_out(data: SegData, fraction: float, seed: int = 0) -> Split:
    """A fixed split by image: `fraction` of the images (at least one) for evaluation."""
    n = len(data)
    if n < 2:
        raise DataError(f"need at least 2 labelled images (one to train, one to evaluate), got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = min(n - 1, max(1, round(n * fraction)))
    pick = lambda idx: SegData(data.images[idx], data.labels[idx], data.classes, data.ignore_index)  # noqa: E731
    return Split(pick(perm[k:]), pick(perm[:k]))


def load_split(data: str, labels: str, classes: str, size: int, ignore_index: int, val_fraction: float) -> Split:
    """'scenes' (the embedded scenes) or a folder of images with `labels` and `classes`."""
    if data == "scenes":
        return digit_scenes(size)
    if not labels or not classes:
        raise DataError("an image folder needs --labels (a folder of label maps) and --classes (a class-names file)")
    return hold_out(label_folder(data, labels, classes, size, ignore_index), val_fraction)


# ---------------------------------------------------------------- colours
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

"""Data for semantic segmentation: the embedded digit scenes (pygan.data.scenes), or a folder of images with a
folder of label maps.

Folders: images (png, jpg, ...) and label maps named like the images with .png, each an index PNG (mode L / I:
the value is the class) or a palette PNG (mode P, VOC-style: the palette index is the class); a class-names file
(one name per line, class 0 first); pixels equal to `ignore_index` are ignored (VOC: 255, the object borders).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from pygan.data import IMAGE_EXTENSIONS, DataError
from pygan.data.scenes import IGNORE_INDEX, SegData, Split, digit_scenes


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

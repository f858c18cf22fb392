"""Training data, all local: the embedded scikit-learn digits, an image folder, MNIST idx files, .npz arrays,
or any torch Dataset, each loaded into two in-memory tensors (images in [-1, 1] - or uint8 pixels, normalised
per batch - and labels or None), and the image decoding the streamed path shares (decode_image). Trainers take
their batches through pygan.data.batches, which streams large folders instead of loading them.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pygan.data.errors import DataError
from pygan.data.folder import IMAGE_EXTENSIONS, scan_folder  # noqa: F401 (re-exported: .IMAGE_EXTENSIONS)
DIGITS_HOLDOUT = 0.2    # fraction of each class held out of training, for evaluation
DIGITS_SPLIT_SEED = 0   # the hold-out split is fixed: the same for every run and every machine


@dataclass
class ImageData:
    images: Tensor            # (N, C, S, S) float32 in [-1, 1], or uint8 pixels (see to_float)
    labels: Tensor | None     # (N,) int64, or None
    classes: list[str]        # class names (empty when unlabelled)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]


def resize(x: Tensor, size: int) -> Tensor:
    """Images (N, C, H, W) in [-1, 1] to size x size (bilinear, antialiased); unchanged when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)


def digits_split(size: int = 32) -> tuple[ImageData, ImageData]:
    """(train, held_out) of scikit-learn's bundled 8x8 digits, in [-1, 1], resized to size x size.

    The split is stratified per class with a fixed seed (DIGITS_SPLIT_SEED): 20% of each class is held out.
    """
    from sklearn.datasets import load_digits  # ships with scikit-learn: nothing is downloaded

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0 * 2 - 1)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    held = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        held[rng.permutation(idx)[: round(len(idx) * DIGITS_HOLDOUT)]] = True
    x = resize(x, size)
    classes = [str(c) for c in range(10)]
    tr, ho = torch.from_numpy(~held), torch.from_numpy(held)
    return ImageData(x[tr].contiguous(), y[tr], classes), ImageData(x[ho].contiguous(), y[ho], classes)


def decode_image(path: str, size: int, channels: int, crop: tuple[float, float] | None = None, flip: bool = False,
                 margin: float = 1.0) -> tuple[np.ndarray, str]:
    """An image file as ((channels, size, size) uint8, its mode before conversion): the shorter side resized to
    round(size * margin) (bicubic), then cropped to size x size - centred, or at the relative offset `crop`
    (fractions in [0, 1) of the free room along x and y) - and mirrored left-right when `flip`.
    OSError / PIL.UnidentifiedImageError / ValueError propagate (the callers decide what bad data means)."""
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        a = fit_image(im, size, channels, crop, flip, margin)
    return a, mode


def fit_image(im, size: int, channels: int, crop: tuple[float, float] | None = None, flip: bool = False,
              margin: float = 1.0) -> np.ndarray:
    """decode_image's work on an open PIL image (e.g. one half of a file): (channels, size, size) uint8."""
    from PIL import Image

    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    target = max(size, round(size * margin))
    s = target / min(w, h)  # resize the shorter side to `target`, then crop
    im = im.resize((max(target, round(w * s)), max(target, round(h * s))), Image.Resampling.BICUBIC)
    w, h = im.size
    if crop is None:
        left, top = (w - size) // 2, (h - size) // 2
    else:
        left, top = int(crop[0] * (w - size + 1)), int(crop[1] * (h - size + 1))
    im = im.crop((left, top, left + size, top + size))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a = np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


UNREADABLE = (OSError, ValueError, SyntaxError)  # what PIL raises on truncated, corrupt or non-image files


def open_image(path: str, size: int, channels: int) -> np.ndarray:
    """An image file as a (channels, size, size) float32 array in [0, 255]: the shorter side resized to `size`
    (bicubic), then centre-cropped; DataError when it cannot be read."""
    return _read_or_fail(path, size, channels).astype(np.float32)


def read_image(path: str, channels: int, size: int | None = None) -> Tensor:
    """An image file as a (1, channels, H, W) float32 batch in [-1, 1] at its own size, or (`size` given) resized
    (shorter side) and centre-cropped to size x size; DataError when it cannot be read."""
    if size is not None:
        a = open_image(path, size, channels)
    else:
        from PIL import Image

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32)
        except UNREADABLE as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(a / 127.5 - 1).float()[None]


def image_folder(root: str, size: int, channels: int = 3, uint8: bool = False) -> ImageData:
    """Every image under `root` (scanned by pygan.data.folder.scan_folder, cached); images in a sub-folder get that
    sub-folder's relative path as class. Images directly in `root` (no sub-folders with images) give unlabelled
    data. `uint8`: keep the pixels as uint8 (normalise them per batch with to_float) instead of float in [-1, 1]."""
    index = scan_folder(root)
    x = torch.from_numpy(np.stack([_read_or_fail(index.path(i), size, channels) for i in range(len(index))]))
    y = torch.tensor(index.labels) if index.labels is not None else None
    return ImageData(x if uint8 else to_float(x), y, index.classes)


def _read_or_fail(path: str, size: int, channels: int) -> np.ndarray:
    try:
        return decode_image(path, size, channels)[0]
    except UNREADABLE as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def to_float(x: Tensor) -> Tensor:
    """uint8 pixels -> float32 in [-1, 1] (x / 127.5 - 1); float tensors are returned as they are."""
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x


def read_idx(path: str) -> np.ndarray:
    """An MNIST-format idx file (optionally .gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DataError(f"{path}: not an unsigned-byte idx file (bad magic number)")
            ndim = head[3]
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {data.size}")
    return data.reshape(shape)


def _from_arrays(images: np.ndarray, labels: np.ndarray | None, size: int, what: str, uint8: bool = False) -> ImageData:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise DataError(f"{what}: expected images of shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3, got {x.shape}")
    keep = uint8 and images.dtype == np.uint8 and x.shape[-1] == size and x.shape[-2] == size
    x = torch.from_numpy(x.astype(np.uint8 if keep else np.float32))
    # uint8 pixels of the right size stay uint8 (4x less memory), normalised per batch; the rest to [-1, 1]
    if not keep and np.issubdtype(images.dtype, np.integer):
        x = x / 127.5 - 1
    elif not keep and x.min() >= 0 and x.max() <= 1:
        x = x * 2 - 1
    y = None
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"{what}: {x.shape[0]} images but {labels.shape[0]} labels")
        y = torch.from_numpy(labels)
        if y.min() < 0:
            raise DataError(f"{what}: labels must be non-negative")
    classes = [str(c) for c in range(int(y.max()) + 1)] if y is not None else []
    return ImageData(resize(x, size).contiguous(), y, classes)


def load_file(path: str, size: int, uint8: bool = False) -> ImageData:
    """An .npz (arrays `x`/`images`, optional `y`/`labels`) or an MNIST idx images file (labels from the
    matching `*labels-idx1-ubyte*` file next to it, when present)."""
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path}")
    if path.endswith(".npz"):
        try:
            z = np.load(path)
        except Exception as e:  # a corrupt archive raises many different types
            raise DataError(f"cannot read {path}: {e}") from None
        xk = next((k for k in ("x", "images", "x_train", "arr_0") if k in z.files), None)
        if xk is None:
            raise DataError(f"{path}: no image array named x, images, x_train or arr_0 (found {z.files})")
        yk = next((k for k in ("y", "labels", "y_train") if k in z.files), None)
        return _from_arrays(z[xk], z[yk] if yk else None, size, path, uint8)
    if "idx" in os.path.basename(path):
        x = read_idx(path)
        lab = path.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
        y = read_idx(lab) if lab != path and os.path.isfile(lab) else None
        return _from_arrays(x, y, size, path, uint8)
    raise DataError(f"unknown data file type: {path} (expected .npz or an MNIST idx file)")


def from_dataset(dataset, size: int) -> ImageData:
    """Any torch Dataset whose items are an image tensor (C, H, W) in [-1, 1] or (image, label)."""
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, (tuple, list)):
            xs.append(torch.as_tensor(item[0]))
            ys.append(int(item[1]))
        else:
            xs.append(torch.as_tensor(item))
    if not xs:
        raise DataError("the dataset is empty")
    x = torch.stack(xs).float()
    if x.dim() == 3:
        x = x[:, None]
    y = torch.tensor(ys) if len(ys) == len(xs) else None
    classes = [str(c) for c in range(int(y.max()) + 1)] if y is not None else []
    return ImageData(resize(x, size).contiguous(), y, classes)


def load(source, size: int, channels: int | None = None, uint8: bool = False) -> ImageData:
    """'digits', a folder, a file (.npz / idx), a torch Dataset or an ImageData. `uint8`: folders and uint8 arrays
    of the right size keep their pixels as uint8 (see to_float); everything else is float in [-1, 1]."""
    if isinstance(source, ImageData):
        return ImageData(resize(source.images, size), source.labels, source.classes)
    if isinstance(source, str):
        if source == "digits":
            return digits_split(size)[0]
        if os.path.isdir(source):
            return image_folder(source, size, channels or 3, uint8)
        if os.path.exists(source):
            return load_file(source, size, uint8)
        raise DataError(f"data not found: {source} (expected 'digits', a folder of images, an .npz or an idx file)")
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return from_dataset(source, size)
    raise DataError(f"unsupported data source: {type(source).__name__}")

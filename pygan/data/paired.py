"""Paired images: A/B pairs for paired image-to-image translation (pix2pix's input/target, LR/HR, label maps), in
two layouts - two folders whose files correspond by relative path, or pix2pix's one folder whose files hold A (the
left half) and B (the right half) side by side - loaded in memory or streamed, and served as (a, b) minibatches of
the same draw with the same jitter.

    source = paired_source(data_a, data_b, 256, 3, 3, options, gen=trainer.gen, batch_size=..., load_size=286)
    a, b = source.next()   # this rank's slice of the next global batch: both float in [-1, 1] on the device

Jitter (pix2pix's): both images of a pair have their shorter side resized to `load_size` and are centre-cropped to
a load_size square, then cropped to size x size at one random offset and, when flipping, mirrored left-right
together. The centred square comes first in both modes, so that `auto` switching between memory and stream with the
data's size changes the draws only, not what is drawn from. Fixed evaluation batches (take) are resized to `size`,
centred and not flipped. In memory the jitter of the whole global batch comes from the trainer's generator (as the
indices do); streamed, from the stream position (pygan.data.stream): either way the same for every process count.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pygan.data.batches import BAD_DATA, DATA_MODES, BatchSource, InMemory, SourceOptions, Streaming
from pygan.data.folder import IMAGE_EXTENSIONS
from pygan.data.errors import DataError
from pygan.data.images import UNREADABLE, ImageData, fit_image, resize, to_float
from pygan.data.stream import GlobalBatches, _reason

SIDE_BY_SIDE_PROBE = 4  # files of a side-by-side folder whose sizes are checked before anything is decoded
SIDE_BY_SIDE_RULE = "A and B side by side need an even width, wider than the height"
STOP_HINT = "(--bad-data skip: skip such files and count them)"


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
    return _match(dir_a, image_files(dir_a), dir_b, image_files(dir_b))


def _match(dir_a: str, files_a: list[str], dir_b: str, files_b: list[str]) -> list[tuple[str, str]]:
    def key(root, f):
        return os.path.splitext(os.path.relpath(f, root))[0]

    by_key = {key(dir_a, f): f for f in files_a}
    missing = [os.path.relpath(f, dir_b) for f in files_b if key(dir_b, f) not in by_key]
    if missing:
        raise DataError(f"{dir_a}: no image matching {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                        f"of {dir_b}")
    return [(by_key[key(dir_b, f)], f) for f in files_b]


class BadPairFile(ValueError):
    """A file of a pair that cannot be read, or is not two images side by side: its path and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # pickled with its two arguments (the default passes the message alone)
        return BadPairFile, (self.path, self.reason)


@dataclass
class PairIndex:
    """The pairs of a data set: files_a[i] with files_b[i], or (files_b None) the halves of files_a[i]."""

    files_a: list[str]
    files_b: list[str] | None
    root: str  # data_a, for messages

    def __len__(self) -> int:
        return len(self.files_a)

    @property
    def side_by_side(self) -> bool:
        return self.files_b is None

    def describe(self, i: int) -> str:
        return self.files_a[i] if self.files_b is None else f"{self.files_a[i]} and {self.files_b[i]}"

    def read(self, i: int, size: int, channels_a: int, channels_b: int, load_size: int | None = None,
             crop: tuple[float, float] | None = None, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Pair i as uint8 (C, size, size) arrays: each image's shorter side resized to load_size (None: size) and
        centre-cropped to a square, then cropped to size x size at the fractional offset `crop` (None: centred) and
        mirrored when `flip` - the same crop and flip for both. BadPairFile names the file that failed."""
        load = load_size or size
        if self.files_b is None:
            def fit(im):
                left, right = _halves(im, self.files_a[i])
                return fit_image(left, load, channels_a), fit_image(right, load, channels_b)

            a, b = _with_image(self.files_a[i], fit)
        else:
            a = _with_image(self.files_a[i], lambda im: fit_image(im, load, channels_a))
            b = _with_image(self.files_b[i], lambda im: fit_image(im, load, channels_b))
        return _crop(a, size, crop, flip), _crop(b, size, crop, flip)


def _with_image(path: str, fn):
    """fn(the open image at path); its decoding errors as BadPairFile."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return fn(im)
    except BadPairFile:
        raise
    except UNREADABLE as e:
        raise BadPairFile(path, _reason(e)) from None


def _halves(im, path: str):
    w, h = im.size
    if w % 2 or w <= h:
        raise BadPairFile(path, f"{w}x{h}: not two images side by side ({SIDE_BY_SIDE_RULE})")
    return im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))


def _crop(a: np.ndarray, size: int, crop: tuple[float, float] | None, flip: bool) -> np.ndarray:
    room = a.shape[-1] - size
    if crop is None:
        left = top = room // 2
    else:  # decode_image's offsets, so a stream position means the same crop for any source
        left, top = int(crop[0] * (room + 1)), int(crop[1] * (room + 1))
    a = a[:, top:top + size, left:left + size]
    return np.ascontiguousarray(a[:, :, ::-1] if flip else a)


def pair_index(data_a: str, data_b: str | None) -> PairIndex:
    """The pairs of two folders matched by relative path (pair_files), or (data_b None) of data_a's side-by-side
    files. DataError, one line naming the argument: a folder missing or without images, names of data_b without a
    match in data_a, or a data_a whose first readable files are not side by side."""
    def files(name, root):
        try:
            return image_files(root)
        except DataError as e:
            raise DataError(f"{name}: {e}") from None

    files_a = files("data_a", data_a)
    if data_b is None:
        _check_side_by_side(data_a, files_a)
        return PairIndex(files_a, None, data_a)
    files_b = files("data_b", data_b)
    try:
        pairs = _match(data_a, files_a, data_b, files_b)
    except DataError as e:
        raise DataError(f"data_a: {e}") from None
    return PairIndex([a for a, _ in pairs], [b for _, b in pairs], data_a)


def _check_side_by_side(root: str, files: list[str]) -> None:
    """A DataError when none of the first readable files has the shape of a pair: a folder of single images (or
    another layout) given without data_b. Header reads only; single bad files are left to the bad-data policy."""
    from PIL import Image

    seen = None
    for path in files[:SIDE_BY_SIDE_PROBE]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except UNREADABLE:
            continue
        if w % 2 == 0 and w > h:
            return
        seen = seen or (path, w, h)
    if seen:
        path, w, h = seen
        raise DataError(f"data_a: {root} is not a folder of side-by-side A|B pairs ({path} is {w}x{h}; "
                        f"{SIDE_BY_SIDE_RULE}); give data_b for two folders matched by name")


@dataclass
class PairedImages(ImageData):
    """ImageData whose `images` are the A images and `labels` the paired B images (N, C_b, S, S), uint8 or float in
    [-1, 1] (C_b may differ from A's); `skipped`: (path, reason) of each unreadable file left out with its pair."""

    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_pairs(index: PairIndex, load_size: int, channels_a: int = 3, channels_b: int = 3,
               bad_data: str = "stop") -> PairedImages:
    """Every pair of `index` as uint8 (read at load_size, centred). An unreadable file: DataError naming it
    ('stop'), or its pair left out and listed in `skipped` ('skip'); DataError when no pair is readable."""
    a, b, skipped = [], [], []
    for i in range(len(index)):
        try:
            x, y = index.read(i, load_size, channels_a, channels_b)
        except BadPairFile as e:
            if bad_data == "stop":
                raise DataError(f"unreadable image {e.path}: {e.reason} {STOP_HINT}") from None
            skipped.append((e.path, e.reason))
            continue
        a.append(x)
        b.append(y)
    if not a:
        path, reason = skipped[0]
        raise DataError(f"data_a: no readable pair in {index.root} (first: {path}: {reason})")
    return PairedImages(torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b)), [], skipped)


def load_paired(dir_a: str, dir_b: str | None, size: int, channels_a: int = 3, channels_b: int = 3, *,
                load_size: int | None = None, bad_data: str = "stop") -> PairedImages:
    """The pairs of dir_a and dir_b (pair_files), or of dir_a's side-by-side files (dir_b None), as uint8 at
    load_size x load_size (None: size): each image's shorter side resized to it, then centre-cropped. Unreadable
    files follow `bad_data` (see load_pairs)."""
    load = _load_size(size, load_size)
    return load_pairs(pair_index(dir_a, dir_b), load, channels_a, channels_b, bad_data)


def _load_size(size: int, load_size: int | None) -> int:
    if load_size is not None and load_size < size:
        raise ValueError(f"load_size ({load_size}) must be at least size ({size})")
    return load_size or size


def _skipped_note(skipped) -> str:
    if not skipped:
        return ""
    path, reason = skipped[0]
    return f"skipped {len(skipped)} unreadable files (first: {path}: {reason})"


class PairedInMemory(InMemory):
    """InMemory over PairedImages: next() / take() give (a, b), both float in [-1, 1], of the same indices.

    `size` (None: the stored size): next() crops size x size at a random offset and, with `flip`, mirrors half the
    pairs - after drawing the indices as InMemory does, the offsets and flips of the whole global batch are drawn
    from the same generator (so every process count sees the same pairs), and A and B get the same ones. take()
    resizes the stored squares to `size`, with no flip."""

    def __init__(self, data: PairedImages, channels: int | None, gen: torch.Generator, batch_size: int,
                 my_slice: slice, device, size: int | None = None, flip: bool = False):
        super().__init__(data, channels, gen, batch_size, my_slice, device)
        self.stored = data.images.shape[-1]
        if size and size > self.stored:
            raise ValueError(f"the crop size ({size}) exceeds the stored images ({self.stored})")
        self.size, self.flip = size or self.stored, flip
        self.channels_b = data.labels.shape[1]
        self.skipped = list(getattr(data, "skipped", []))

    def next(self) -> tuple[Tensor, Tensor]:
        if self.size == self.stored and not self.flip:
            return super().next()  # no jitter: the draw of InMemory alone
        t0 = time.perf_counter()
        n, dev = self.batch_size, self.device
        idx = torch.randint(0, self.num_images, (n,), generator=self.gen, device=dev)[self.my_slice]
        r = torch.rand((n, 3), generator=self.gen, device=dev)[self.my_slice]
        room = self.stored - self.size
        left, top = ((r[:, j] * (room + 1)).long().clamp_(max=room) for j in (0, 1))
        steps = torch.arange(self.size, device=dev)
        rows, cols = top[:, None] + steps, left[:, None] + steps
        if self.flip:
            cols = torch.where((r[:, 2] < 0.5)[:, None], cols.flip(1), cols)
        at = (idx[:, None, None], slice(None), rows[:, :, None], cols[:, None, :])  # one gather: (n, S, S, C)
        a = self.adapt(to_float(self.images[at].permute(0, 3, 1, 2).contiguous()))
        b = to_float(self.labels[at].permute(0, 3, 1, 2).contiguous())
        self.wait += time.perf_counter() - t0
        return a, b

    def take(self, idx) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(idx, device=self.device)
        a, b = (to_float(x[idx]) for x in (self.images, self.labels))
        if self.size != self.stored:
            a, b = resize(a, self.size), resize(b, self.size)
        return self.adapt(a), b

    def summary(self) -> str:
        return _skipped_note(self.skipped)


class PairedBatches(GlobalBatches):
    """GlobalBatches of pairs: item k's `images` is (a, b), this rank's slice of global batch k as uint8 (N, C, S, S)
    each, read by PairIndex.read at load_size with the crop fractions and flip of the stream position (crops only
    when load_size > size). An unreadable file is reported by its own path and replaced as GlobalBatches does."""

    def __init__(self, pairs: PairIndex, size: int, load_size: int, channels_a: int, channels_b: int,
                 batch_size: int, seed: int, rank: int = 0, world_size: int = 1, flip: bool = False):
        super().__init__(pairs, size, channels_a, batch_size, seed, rank, world_size,
                         "random" if load_size > size else "center", flip)
        self.load_size, self.channels_b = load_size, channels_b
        self.folder = True  # files: only decoding errors are bad data; anything else is a bug and propagates

    def read(self, i: int, pos: int | None = None):
        """((a, b), -1, ''): pair i jittered for stream position pos (None: resized to size, centred, no flip)."""
        if pos is None:
            a, b = self.source.read(i, self.size, self.channels, self.channels_b)
        else:
            crop, flip = self.augmentation(pos)
            a, b = self.source.read(i, self.size, self.channels, self.channels_b, self.load_size, crop, flip)
        return (torch.from_numpy(a), torch.from_numpy(b)), -1, ""

    def bad_entry(self, i: int, e: Exception) -> tuple:
        return (e.path, e.reason) if isinstance(e, BadPairFile) else (i, _reason(e))

    def describe(self, key) -> str:
        return key if isinstance(key, str) else self.source.describe(key)

    def stack(self, images: list):
        return tuple(torch.stack(side) for side in zip(*images))


class PairedStreaming(Streaming):
    """Streaming over PairedBatches: next() / take() give (a, b), both float in [-1, 1] on the device; `bad` and
    summary() name the unreadable files themselves."""

    def __init__(self, dataset: PairedBatches, options: SourceOptions, device):
        super().__init__(dataset, None, options, device, [])
        self.channels_b = dataset.channels_b

    def next(self) -> tuple[Tensor, Tensor]:
        t0 = time.perf_counter()
        a, b = (to_float(x.to(self.device, non_blocking=True)) for x in self._receive()["images"])
        self.wait += time.perf_counter() - t0
        return a, b

    def take(self, idx) -> tuple[Tensor, Tensor]:
        """Decoded here (fixed evaluation batches); an unreadable pair is replaced by the next readable one."""
        pairs = [self._readable(int(i))[0] for i in idx]
        a, b = (to_float(torch.stack(side)).to(self.device) for side in zip(*pairs))
        return a, b


def paired_source(data_a: str, data_b: str | None, size: int, channels_a: int, channels_b: int,
                  options: SourceOptions, *, gen: torch.Generator, batch_size: int, rank: int = 0,
                  world_size: int = 1, seed: int = 0, device="cpu", load_size: int | None = None,
                  log=None) -> BatchSource:
    """The batch source of a paired data set: data_a and data_b (two folders matched by relative path) or data_a
    alone (data_b None: files of A and B side by side), jittered per the module docstring (load_size None: size, no
    crop; options.flip: mirror half the pairs), in memory or streamed by options.mode ('auto': streamed when the
    uint8 pixels of both sides at load_size exceed options.memory_limit_mb). Unreadable files follow
    options.bad_data. The source's next() / take(idx) give (a, b) floats in [-1, 1]; `channels` is A's,
    `channels_b` B's; summary() reports skipped files. DataError (one line) for unusable data; `log(msg)`: where a
    streamed source says so."""
    load = _load_size(size, load_size)
    if options.mode not in DATA_MODES:
        raise ValueError(f"data mode must be one of {DATA_MODES}, not {options.mode!r}")
    if options.bad_data not in BAD_DATA:
        raise ValueError(f"bad_data must be one of {BAD_DATA}, not {options.bad_data!r}")
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world_size})")
    index = pair_index(data_a, data_b)
    if len(index) < 2:
        raise DataError(f"data_a: at least 2 pairs are needed, {data_a} has {len(index)}")
    nbytes = len(index) * (channels_a + channels_b) * load * load
    if options.mode == "stream" or (options.mode == "auto" and nbytes > options.memory_limit_mb * 2**20):
        dataset = PairedBatches(index, size, load, channels_a, channels_b, batch_size, seed, rank, world_size,
                                options.flip)
        source = PairedStreaming(dataset, options, device)
        if log:
            log(f"streaming {len(index)} pairs ({nbytes / 2**20:.0f} MB as uint8) with {source.workers} loader "
                f"workers")
        return source
    data = load_pairs(index, load, channels_a, channels_b, options.bad_data)
    if len(data) < 2:
        raise DataError(f"data_a: at least 2 readable pairs are needed, {data_a} has {len(data)} "
                        f"({_skipped_note(data.skipped)})")
    per = batch_size // world_size
    return PairedInMemory(data, channels_a, gen, batch_size, slice(rank * per, (rank + 1) * per), device, size,
                          options.flip)

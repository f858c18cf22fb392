"""Streamed training data: a map-style Dataset whose item k is this rank's slice of global batch k, decoded in
DataLoader worker processes.

Which images global batch k holds, and how each is augmented, is a pure function of (seed, k): the stream runs
through one permutation of the data per epoch (numpy's generator seeded with (seed, epoch)), and the image at
stream position p gets its random crop offset and flip from a generator seeded with (seed, p). Nothing depends on
the worker that decodes it, on the number of workers or on the number of processes, so the loader's whole state is
the number of the next batch: a resumed run sees the same batches as an uninterrupted one, with any worker count,
and rank r of W decodes only positions [k*B + r*B/W, k*B + (r+1)*B/W) - its own shard of every global batch.

(torchvision's random transforms draw from the worker's global torch RNG, whose state depends on the worker
layout; the same operations - shorter side resize, centre/random crop, horizontal flip - are applied here with
explicit parameters, in pygan.data.images.decode_image.)

Bad data: a file that cannot be decoded (truncated, not an image, unreadable) is caught in the worker and reported
back with its path and reason; with policy 'skip' it is replaced by another image drawn from a generator seeded
with (seed, p, attempt), so the batch stays full and the replacement is the same on every run.
"""

from __future__ import annotations

import numpy as np
import torch

from pygan.data.folder import FolderIndex
from pygan.data.images import UNREADABLE, decode_image, resize

MAX_REPLACEMENTS = 50   # consecutive unreadable draws for one slot before giving up: the data is mostly bad
RANDOM_CROP_MARGIN = 1.125  # --crop random: the shorter side is resized to size * this, then a size crop is taken
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class GlobalBatches(torch.utils.data.Dataset):
    """Item k: dict(images=(B/W, C, S, S) uint8 for folders / float for user datasets, labels=(B/W,) int64 or None,
    bad=[(index, reason)], converted=[(index, mode)]) - this rank's slice of global batch k (see the module
    docstring). `source`: a FolderIndex, or a torch Dataset whose items are an image tensor (C, H, W) in [-1, 1] or
    (image, label)."""

    def __init__(self, source, size: int, channels: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, crop: str = "center", flip: bool = False):
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world_size})")
        self.source, self.size, self.channels = source, size, channels
        self.batch_size, self.per_rank = batch_size, batch_size // world_size
        self.seed, self.rank, self.crop, self.flip = seed, rank, crop, flip
        self.n = len(source)
        self.folder = isinstance(source, FolderIndex)
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:  # not used by the sampler (infinite); the number of images
        return self.n

    # ---------------------------------------------------------------- the stream: a pure function of the seed
    def index(self, pos: int) -> int:
        """The data index at stream position pos: epoch pos // n visits every image once, in its own order."""
        epoch, off = divmod(pos, self.n)
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, 0, epoch]).permutation(self.n)
            self._perms = {epoch: perm}  # one epoch at a time: a worker's batches move forward
        return int(perm[off])

    def replacement(self, pos: int, attempt: int) -> int:
        return int(np.random.default_rng([self.seed, 2, pos, attempt]).integers(self.n))

    def augmentation(self, pos: int) -> tuple[tuple[float, float] | None, bool]:
        if self.crop == "center" and not self.flip:
            return None, False
        r = np.random.default_rng([self.seed, 1, pos]).random(3)
        return ((float(r[0]), float(r[1])) if self.crop == "random" else None), bool(self.flip and r[2] < 0.5)

    # ---------------------------------------------------------------- decoding
    def read(self, i: int, pos: int | None = None):
        """(image, label or -1, mode): image i, augmented for stream position pos (None: centred, no flip)."""
        crop, flip = self.augmentation(pos) if pos is not None else (None, False)
        if self.folder:
            a, mode = decode_image(self.source.path(i), self.size, self.channels, crop, flip,
                                   RANDOM_CROP_MARGIN if crop is not None else 1.0)
            label = self.source.labels[i] if self.source.labels is not None else -1
            return torch.from_numpy(a), label, mode
        item = self.source[i]
        x, label = (item[0], int(item[1])) if isinstance(item, (tuple, list)) else (item, -1)
        x = torch.as_tensor(x).float()
        if x.dim() == 2:
            x = x[None]
        x = resize(x[None], self.size)[0]
        if flip:
            x = x.flip(-1)
        return x, label, ""

    def describe(self, i: int) -> str:
        return self.source.path(i) if self.folder else f"item {i} of the dataset"

    def bad_entry(self, i: int, e: Exception) -> tuple:
        """(key, reason) of a failed read of image i, as reported: describe(key) names what was unreadable."""
        return i, _reason(e)

    def stack(self, images: list):
        """The batch of read()'s images (a subclass whose read() gives several tensors stacks each)."""
        return torch.stack(images)

    def __getitem__(self, k: int) -> dict:
        images, labels, bad, converted = [], [], [], []
        first = k * self.batch_size + self.rank * self.per_rank
        for pos in range(first, first + self.per_rank):
            i = self.index(pos)
            for attempt in range(1, MAX_REPLACEMENTS + 2):
                try:
                    x, y, mode = self.read(i, pos)
                    break
                except UNREADABLE as e:
                    bad.append(self.bad_entry(i, e))
                except Exception as e:  # a user Dataset may raise anything: reported the same way
                    if self.folder:
                        raise
                    bad.append(self.bad_entry(i, e))
                i = self.replacement(pos, attempt)
            else:
                return dict(images=None, labels=None, bad=bad, converted=converted, exhausted=True)
            if mode and self.channels == 3 and mode in GRAY_MODES:
                converted.append((i, mode))
            images.append(x)
            labels.append(y)
        lab = torch.tensor(labels) if labels and labels[0] >= 0 else None
        return dict(images=self.stack(images), labels=lab, bad=bad, converted=converted, exhausted=False)


class CropBatches(GlobalBatches):
    """GlobalBatches of random square crops: `crop` pixels at offsets that are multiples of `align`, then one of the
    8 symmetries of the square (quarter turns, then a mirror) when `augment` - super-resolution's HR crops, from
    image files of any size (RGB uint8). Position and symmetry come from the stream position, as above. An image
    smaller than the crop counts as unreadable (reported with its size)."""

    def __init__(self, source: FolderIndex, crop: int, align: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, augment: bool = True):
        super().__init__(source, crop, 3, batch_size, seed, rank, world_size)
        self.align, self.augment = align, augment

    def read(self, i: int, pos: int | None = None):
        from PIL import Image

        c, s = self.size, self.align
        with Image.open(self.source.path(i)) as im:
            mode = im.mode
            w, h = im.size
            if min(w, h) < c:
                raise ValueError(f"{w}x{h}, smaller than the {c}x{c} crop")
            ph, pw = (h - c) // s + 1, (w - c) // s + 1
            if pos is None:  # a fixed view: the centre, as it is
                y, x, k = ph // 2, pw // 2, 0
            else:
                r = np.random.default_rng([self.seed, 1, pos])
                u = r.random(2)
                y, x, k = int(u[0] * ph), int(u[1] * pw), int(r.integers(8)) if self.augment else 0
            a = np.array(im.convert("RGB").crop((x * s, y * s, x * s + c, y * s + c)), dtype=np.uint8)
        t = torch.rot90(torch.from_numpy(a).permute(2, 0, 1), k & 3, dims=(-2, -1))
        return (t.flip(-1) if k & 4 else t).contiguous(), -1, mode


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class BatchNumbers(torch.utils.data.Sampler):
    """0, 1, 2, ... forever: the numbers of the global batches to load. Its state (the next number) is what
    StatefulDataLoader checkpoints; it is its own iterator, so a restored state continues where it stopped."""

    def __init__(self, start: int = 0):
        self.next = start

    def __iter__(self):
        return self

    def __next__(self) -> int:
        k = self.next
        self.next += 1
        return k

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = int(state["next"])

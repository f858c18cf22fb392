"""Batch sources: where a trainer's real minibatches come from, in memory or streamed, behind one interface.

    source = batch_source(data, size, channels, options, gen=trainer.gen, batch_size=..., rank=..., world_size=...)
    x, y = source.next()        # this rank's slice of the next global batch: float in [-1, 1] on the device
    state = source.state_dict() # into the checkpoint; source.load_state_dict(state) on resume

InMemory: the whole data as one tensor (uint8 pixels where the source is uint8, normalised per batch); each batch
is a random draw of indices from the trainer's generator, exactly as the trainers always drew them.
Streaming: a torchdata StatefulDataLoader over GlobalBatches (pygan.data.stream), decoding in worker processes.
`auto` streams when the data's uint8 pixels would take more than options.memory_limit_mb.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pygan.data.folder import FolderIndex, scan_folder
from pygan.data.errors import DataError
from pygan.data.images import ImageData, load, to_float
from pygan.data.stream import BatchNumbers, GlobalBatches

DATA_MODES = ("auto", "memory", "stream")
BAD_DATA = ("skip", "stop")
CROPS = ("center", "random")


@dataclass
class SourceOptions:
    mode: str = "auto"              # auto | memory | stream
    memory_limit_mb: float = 64.0   # auto: in memory up to this many MB of uint8 pixels
    workers: int = -1               # DataLoader worker processes (-1: default_workers())
    prefetch: int = 4               # batches each worker loads ahead
    crop: str = "center"            # streamed folders: center | random
    flip: bool = False              # streamed data: random horizontal flips
    bad_data: str = "skip"          # streamed data: skip (count, report at the end) | stop


def default_workers(world_size: int = 1) -> int:
    """Half of this process's share of the CPUs (the other half trains), at least 1, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(8, cpus // max(1, world_size) // 2))


class BatchSource:
    """The interface (see the module docstring). `channels` is what next() returns; a source whose data has other
    channels converts per batch (grey -> RGB by repetition, RGB -> grey by the channel mean)."""

    kind = ""
    channels: int
    classes: list[str]
    num_images: int

    def __init__(self, data_channels: int, channels: int | None, device):
        self.data_channels, self.channels = data_channels, channels or data_channels
        self.device = torch.device(device)
        self.wait = 0.0   # seconds next() waited for data since the last pop_wait()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def adapt(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.channels:
            return x
        return x.mean(1, keepdim=True) if self.channels == 1 else x.expand(-1, 3, -1, -1).contiguous()

    def next(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def take(self, idx) -> tuple[Tensor, Tensor | None]:
        """Images idx (centred, not augmented) as float in [-1, 1] on the device, with their labels or None."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_images

    def pop_wait(self) -> float:
        w, self.wait = self.wait, 0.0
        return w

    def state_dict(self) -> dict:
        return {"kind": self.kind}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> str:
        """What the user should hear about the data at the end of a run ('' when nothing)."""
        return ""

    def close(self) -> None:
        pass


class InMemory(BatchSource):
    """Every image in one tensor on the device; each batch: global-batch indices drawn with torch.randint from
    `gen`, this rank's `my_slice` of them kept - the draw the trainers always made, so runs are unchanged."""

    kind = "memory"

    def __init__(self, data: ImageData, channels: int | None, gen: torch.Generator, batch_size: int,
                 my_slice: slice, device):
        super().__init__(data.images.shape[1], channels, device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device) if data.labels is not None else None
        self.classes, self.num_images = data.classes, len(data)
        self.gen, self.batch_size, self.my_slice = gen, batch_size, my_slice

    def next(self) -> tuple[Tensor, Tensor | None]:
        t0 = time.perf_counter()
        idx = torch.randint(0, self.num_images, (self.batch_size,), generator=self.gen,
                            device=self.device)[self.my_slice]
        out = self.take(idx)
        self.wait += time.perf_counter() - t0
        return out

    def take(self, idx) -> tuple[Tensor, Tensor | None]:
        idx = torch.as_tensor(idx, device=self.device)
        return self.adapt(to_float(self.images[idx])), (self.labels[idx] if self.labels is not None else None)


class Streaming(BatchSource):
    """A StatefulDataLoader over GlobalBatches (see pygan.data.stream): workers decode whole per-rank batches
    ahead of the training step; its state (the next batch number, via BatchNumbers) goes into the checkpoint."""

    kind = "stream"

    def __init__(self, dataset: GlobalBatches, channels: int | None, options: SourceOptions, device,
                 classes: list[str], unit: bool = False):
        """`unit`: batches in [0, 1] (x / 255) instead of [-1, 1]."""
        super().__init__(dataset.channels, channels, device)
        self.dataset, self.unit = dataset, unit
        self.classes, self.num_images, self.options = classes, dataset.n, options
        self.workers = options.workers if options.workers >= 0 else default_workers(dataset.batch_size //
                                                                                   dataset.per_rank)
        self._it = None
        self.batches = 0                    # global batches consumed
        self.bad: dict[int, str] = {}       # index -> reason, every distinct unreadable file met
        self.converted: dict[int, str] = {}  # index -> original mode, grey images converted to RGB
        self._new_loader()

    def _normalise(self, x: Tensor) -> Tensor:
        return x.float() / 255 if self.unit else to_float(x)

    def _new_loader(self) -> None:
        """A loader whose first batch is number self.batches (workers start on the first next())."""
        from torchdata.stateful_dataloader import StatefulDataLoader

        self.sampler = BatchNumbers(self.batches)
        extra = dict(prefetch_factor=self.options.prefetch, persistent_workers=True, worker_init_fn=_worker_init,
                     multiprocessing_context=_worker_context()) if self.workers else {}
        with warnings.catch_warnings():  # torchdata 0.11 calls an API torch 2.14 deprecates, on every loader
            warnings.filterwarnings("ignore", message=".*set_vital.*")
            self.loader = StatefulDataLoader(self.dataset, batch_size=None, sampler=self.sampler,
                                             num_workers=self.workers, pin_memory=self.device.type == "cuda",
                                             collate_fn=_keep, **extra)

    def next(self) -> tuple[Tensor, Tensor | None]:
        t0 = time.perf_counter()
        b = self._receive()
        x = self.adapt(self._normalise(b["images"].to(self.device, non_blocking=True)))
        y = b["labels"].to(self.device, non_blocking=True) if b["labels"] is not None else None
        self.wait += time.perf_counter() - t0
        return x, y

    def _receive(self) -> dict:
        """The loader's next item, its unreadable files recorded (DataError under --bad-data stop)."""
        if self._it is None:
            self._it = iter(self.loader)
        b = next(self._it)
        self.batches += 1
        for i, reason in b["bad"]:
            if i not in self.bad:
                self.bad[i] = reason
                if self.options.bad_data == "stop":
                    raise DataError(f"unreadable image {self.dataset.describe(i)}: {reason} "
                                    "(--bad-data skip: skip such files and count them)")
        for i, mode in b["converted"]:
            self.converted.setdefault(i, mode)
        if b["exhausted"]:
            last, reason = b["bad"][-1]
            raise DataError(f"{len(b['bad'])} unreadable images in a row (last: {self.dataset.describe(last)}: "
                            f"{reason}): is this folder images?")
        return b

    def take(self, idx) -> tuple[Tensor, Tensor | None]:
        """Decoded here, in this process (a few images: fixed evaluation batches); unreadable ones are replaced by
        the next readable image."""
        xs, ys = [], []
        for i in idx:
            x, y, _ = self._readable(int(i))
            xs.append(x)
            ys.append(y)
        x = self.adapt(self._normalise(torch.stack(xs)).to(self.device))
        return x, (torch.tensor(ys, device=self.device) if ys[0] >= 0 else None)

    def _readable(self, i: int) -> tuple:
        """dataset.read(i), or of the first readable image after i."""
        for j in range(self.num_images):
            try:
                return self.dataset.read((i + j) % self.num_images)
            except Exception:
                continue
        raise DataError("no readable image in the data")

    def state_dict(self) -> dict:
        return {"kind": self.kind, "batches": self.batches, "workers": self.workers,
                "loader": self.loader.state_dict(), "bad": dict(self.bad), "converted": dict(self.converted)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:  # a run switched from memory to stream: the stream starts afresh
            return
        self.batches = state["batches"]
        self.bad, self.converted = dict(state["bad"]), dict(state["converted"])
        self._new_loader()
        if state["workers"] == self.workers:
            self.loader.load_state_dict(state["loader"])
        # else: StatefulDataLoader restores only into the same worker count; the new loader starts at batch
        # number self.batches, which is the same position (see pygan.data.stream)

    def summary(self) -> str:
        lines = []
        if self.bad:
            i, reason = next(iter(self.bad.items()))
            lines.append(f"skipped {len(self.bad)} unreadable files (first: {self.dataset.describe(i)}: {reason})")
        if self.converted:
            i, mode = next(iter(self.converted.items()))
            lines.append(f"converted {len(self.converted)} greyscale images to RGB (first: "
                         f"{self.dataset.describe(i)}, mode {mode})")
        return "\n".join(lines)

    def close(self) -> None:
        """Stops the workers; a later next() starts a new loader at the next unconsumed batch."""
        it, self._it = self._it, None
        if it is not None:
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
            self._new_loader()


def _keep(batch):
    return batch


def _worker_context():
    """'fork' on Linux, also in a process that was itself spawned (whose default is then 'spawn'): forked workers
    start in milliseconds and share the file index's pages; spawned ones re-import torch and pygan first."""
    return "fork" if sys.platform == "linux" else None


def _worker_init(_):
    torch.set_num_threads(1)  # a worker decodes with PIL; torch threads there would only compete with training


def _stream_estimate(data, size: int, channels: int | None) -> tuple[int, int]:
    """(uint8 bytes the pixels would take in memory, the data's channels) of a folder index or a Dataset."""
    if isinstance(data, FolderIndex):
        c = channels or 3
        return len(data) * c * size * size, c
    item = data[0]
    x = torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item)
    c = 1 if x.dim() == 2 else x.shape[0]
    return len(data) * c * size * size, c


def batch_source(data, size: int, channels: int | None, options: SourceOptions, *, gen: torch.Generator,
                 batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0, device="cpu",
                 log=None) -> BatchSource:
    """The batch source of `data` ('digits', a folder, an .npz / idx file, a torch Dataset or an ImageData): in
    memory or streamed per options.mode ('auto': streamed when a folder's or a Dataset's uint8 pixels exceed
    options.memory_limit_mb; files and the digits are always in memory). `log(msg)`: where the choice is said."""
    per = batch_size // world_size
    my_slice = slice(rank * per, (rank + 1) * per)
    streamable = isinstance(data, str) and os.path.isdir(data) or (
        not isinstance(data, (str, ImageData)) and hasattr(data, "__getitem__") and hasattr(data, "__len__"))
    if options.mode == "stream" and not streamable:
        raise DataError(f"--data-mode stream needs a folder of images or a torch Dataset, not {data!r}")
    if streamable and options.mode != "memory":
        src = scan_folder(data) if isinstance(data, str) else data
        if len(src) == 0:
            raise DataError("the dataset is empty")
        nbytes, data_channels = _stream_estimate(src, size, channels)
        if options.mode == "stream" or nbytes > options.memory_limit_mb * 2**20:
            classes = src.classes if isinstance(src, FolderIndex) else []
            dataset = GlobalBatches(src, size, data_channels, batch_size, seed, rank, world_size, options.crop,
                                    options.flip)
            s = Streaming(dataset, channels, options, device, classes)
            if log:
                log(f"streaming {len(src)} images ({nbytes / 2**20:.0f} MB as uint8) with {s.workers} loader "
                    f"workers")
            return s
    return InMemory(load(data, size, channels, uint8=True), channels, gen, batch_size, my_slice, device)


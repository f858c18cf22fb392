"""What every pygan trainer shares: the device, one checkpointed torch.Generator for all training randomness,
autocast, the optimizer steps (a finite loss checked first), learning rates, the EMA of G's weights, the step count,
the JSONL log, atomic checkpoints with an exact resume, samples, the loss-curve plot, metrics.json and the loop.

Each system's trainer (pygan.dcgan, pygan.sr, ...) subclasses TrainerBase and sets three class attributes:
`checkpoint` (its pygan.training.CheckpointFormat), `config_class` and `curve_panels` (what curves.png draws). Its
`__init__` calls `_setup(config)`, makes its batch sources (`setup_data`) and hands its models to `setup_pair`
(devices, memory format, EMA, optimizers, loss scalers, DDP: the G/D pair written once). It provides `train_step`
(one iteration's losses: `step_d(loss)` / `step_g(loss)`, D `frozen` for G's step; the base sets train mode
before it, updates the EMA and counts the step after it) and, as it needs them: `save_samples(path)`, `finish()`
(final metrics, `write_metrics`), `models_state_dict` / `load_models_state_dict` (what its checkpoint holds
besides the pair), `make_optimizer` (other than Adam), `after_step`.

Under torch.distributed (torchrun, or a process group the caller initialized) every rank runs the loop; the log
file, samples, checkpoints and final evaluation come from rank 0 only (`is_main`), and the others wait for the
checkpoint to be written before going on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import sys
import time

import numpy as np
import torch
from torch import Tensor, nn

from torch.nn.parallel import DistributedDataParallel as DDP

from pygan._io import atomic_path, atomic_torch_save, write_json
from pygan.data.batches import BatchSource, SourceOptions, batch_source
from pygan.nn import convert_sync_batch_norm_act
from pygan.training import distributed
from pygan.training.checkpoint import CheckpointError, CheckpointFormat
from pygan.training.curves import plot_curves
from pygan.training.precision import resolve_precision
from pygan.training.progress import Progress


# 2: channels_last None is "not given" (version 1 wrote False for it)
CONFIG_VERSION = 2


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return dev


def grad_norm(params) -> float:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers copied. Over the first steps the decay is
    capped at (1 + step) / (10 + step), a near-plain average, so early weights are not dominated by the init."""
    decay = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


class TrainerBase:
    """The shared machinery; see the module docstring. `config` is a pygan.training.TrainConfig."""

    checkpoint: CheckpointFormat   # the system's checkpoint format, shared with its evaluation
    config_class: type = object    # its config (a TrainConfig)
    # curves.png: one panel per (y label, {log record key: legend label}); "{loss}" etc. name config fields
    curve_panels: tuple[tuple[str, dict[str, str]], ...] = ()

    def _setup(self, config):
        """Validates the config and sets up the device, process group, seeds and loop state; returns the config."""
        self.config = config = config.validate()
        d = distributed.setup(config.device, pick_device)
        self.rank, self.world_size = (d.rank, d.world_size) if d else (0, 1)
        self.is_main = self.rank == 0
        self.device = d.device if d else pick_device(config.device)
        if config.batch_size % self.world_size:
            raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of the number of processes "
                             f"({self.world_size}): it is the global batch, split evenly over the ranks")
        per_rank = config.batch_size // self.world_size
        self.my_slice = slice(self.rank * per_rank, (self.rank + 1) * per_rank)  # this rank's share of a batch
        # the precision actually used (config.amp may be 'auto', resolved for this machine, not stored resolved:
        # a checkpoint resumed elsewhere resolves it again)
        self.amp, self.channels_last, self.precision_note = resolve_precision(config.amp, config.channels_last,
                                                                              self.device)
        self.logged_precision = None
        torch.manual_seed(config.seed)
        self.gen = torch.Generator(self.device).manual_seed(config.seed)
        self.step = 0
        self.history: list[dict] = []
        self.sources: dict[str, BatchSource] = {}  # setup_data's
        return config

    def source_options(self) -> SourceOptions:
        cfg = self.config
        return SourceOptions(cfg.data_mode, cfg.memory_limit_mb, cfg.workers, crop=cfg.crop, flip=cfg.flip,
                             bad_data=cfg.bad_data)

    def setup_data(self, data, size: int, channels: int | None, name: str = "data",
                   seed_offset: int = 0) -> BatchSource:
        """The batch source of `data` (pygan.data.batches) by the config's data options (a DataConfig), yielding
        this rank's slice of each global batch, kept in `self.sources[name]` (a system with two datasets, e.g.
        CycleGAN's domains, makes two, with different seed offsets); their states are part of the checkpoint."""
        cfg = self.config
        say = (lambda msg: print(f"{name}: {msg}", file=sys.stderr)) if self.is_main and cfg.progress else None
        source = batch_source(data, size, channels, self.source_options(), gen=self.gen, batch_size=cfg.batch_size,
                              rank=self.rank, world_size=self.world_size, seed=cfg.seed + seed_offset,
                              device=self.device, log=say)
        return self.add_source(name, source)

    def add_source(self, name: str, source: BatchSource) -> BatchSource:
        """A batch source made by the system itself (e.g. with label maps as the labels), kept like setup_data's."""
        self.sources[name] = source
        return source

    def setup_pair(self, G: nn.Module, D: nn.Module, lr_g: float, lr_d: float) -> None:
        """The G/D pair: both on the device (channels_last when configured), `G_ema` (a frozen copy of G, when
        ema_decay > 0), an optimizer each (`make_optimizer`), a loss scaler each, and the DDP wrapping of
        `distribute_models`."""
        cfg = self.config
        self.G, self.D = G.to(self.device), D.to(self.device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        self.opt_g = self.make_optimizer("g", self.G.parameters(), lr_g)
        self.opt_d = self.make_optimizer("d", self.D.parameters(), lr_d)
        self.scaler_g, self.scaler_d = self.grad_scaler(), self.grad_scaler()
        self.distribute_models()

    def make_optimizer(self, which: str, params, lr: float) -> torch.optim.Optimizer:
        """The optimizer of G (`which` 'g') or D ('d'): Adam with the config's betas unless a system says otherwise."""
        return torch.optim.Adam(params, lr, betas=(self.config.beta1, self.config.beta2))

    def set_lr(self, lr_g: float, lr_d: float | None = None) -> None:
        """Every param group of G's optimizer at lr_g (and of D's at lr_d unless None), for the coming step."""
        for opt, lr in ((self.opt_g, lr_g), (self.opt_d, lr_d)):
            if lr is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

    def update_ema(self) -> None:
        """After G's optimizer step (and before self.step moves on)."""
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, self.config.ema_decay, self.step)

    @property
    def evaluation_generator(self) -> nn.Module:
        """G's EMA when there is one, else G."""
        return self.G_ema if self.G_ema is not None else self.G

    def pair_state_dict(self) -> dict:
        ev = self.evaluation_state()
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            **({"G_eval": ev} if ev is not None else {}),
            "G_config": self.G.config, "D_config": self.D.config,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
        }

    def load_pair_state_dict(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None and ckpt["G_ema"] is not None:
            self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.scaler_g.load_state_dict(ckpt["scaler_g"])
        self.scaler_d.load_state_dict(ckpt["scaler_d"])

    def distribute_models(self) -> None:
        """After self.G / self.D exist: the plain (optionally compiled) modules `g_plain` / `d_plain` - G making
        fakes for D without gradient, D scoring fakes for G while frozen, so that no gradient reaches the other
        network's DDP hooks - and `g_fwd` / `d_fwd` for the networks being trained: DistributedDataParallel with
        synchronized BatchNorm on several ranks (each rank trains on its `my_slice` of a global batch), the plain
        modules otherwise."""
        compile_ = torch.compile if self.config.compile else (lambda m: m)
        self.g_plain, self.d_plain = compile_(self.G), compile_(self.D)
        if self.world_size == 1:
            self.g_fwd, self.d_fwd = self.g_plain, self.d_plain
            return
        convert_sync_batch_norm_act(self.G)
        convert_sync_batch_norm_act(self.D)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.g_fwd, self.d_fwd = compile_(DDP(self.G, device_ids=ids)), compile_(DDP(self.D, device_ids=ids))

    # ---------------------------------------------------------------- helpers for train_step
    def autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # loss scaling only matters for fp16 on a GPU
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16" and self.device.type == "cuda")

    def prep(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def check_finite(self, name: str, value: Tensor) -> None:
        """Raises TrainingDiverged before any parameter or checkpoint is touched by a non-finite loss."""
        if not torch.isfinite(value).all():
            ckpt = self.checkpoint_path
            last = (f"the last good checkpoint is {ckpt} "
                    f"(step {torch.load(ckpt, map_location='cpu', weights_only=False)['step']})"
                    if os.path.isfile(ckpt) else "no checkpoint was written yet")
            raise TrainingDiverged(f"non-finite {name} loss ({float(value.detach())}) at step {self.step + 1}; training "
                                   f"stopped, {last}. Try a lower learning rate, --amp none or a gradient penalty.")

    def optimizer_step(self, loss: Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params) -> float:
        """Backward, unscale, step; returns the gradient norm of `params` (before the step)."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        norm = grad_norm(params)
        scaler.step(opt)
        scaler.update()
        return norm

    def step_g(self, loss: Tensor, name: str = "generator") -> float:
        """G's optimizer step on `loss` (checked finite first); returns G's gradient norm."""
        self.check_finite(name, loss)
        return self.optimizer_step(loss, self.opt_g, self.scaler_g, self.G.parameters())

    def step_d(self, loss: Tensor, name: str = "discriminator") -> float:
        """D's optimizer step on `loss` (checked finite first); returns D's gradient norm."""
        self.check_finite(name, loss)
        return self.optimizer_step(loss, self.opt_d, self.scaler_d, self.D.parameters())

    def iteration(self) -> dict:
        """One training iteration: train mode, `train_step`, the EMA update, the step count, `after_step`;
        returns the step's log record."""
        self.G.train()
        self.D.train()
        rec = self.train_step()
        self.update_ema()
        self.step += 1
        rec = {"step": self.step, **rec}
        self.after_step(rec)
        return rec

    # ---------------------------------------------------------------- to be provided by subclasses
    def train_step(self) -> dict:
        """One iteration's optimizer steps; returns its log record (losses, gradient norms, ...)."""
        raise NotImplementedError

    def after_step(self, rec: dict) -> None:
        """After the step count moved on (self.step is the finished step's number)."""

    def save_samples(self, path: str) -> None:
        """Every sample_every steps and after the last (rank 0): the sample grid of this step, a PNG at `path`."""

    def evaluation_state(self) -> dict | None:
        """The generator state evaluation and sampling use, when it is not G_ema's (or G's without EMA) as it is:
        e.g. with recalibrated BatchNorm statistics. Written into the checkpoint as 'G_eval'."""
        return None

    def models_state_dict(self) -> dict:
        """What the checkpoint holds besides the pair (pair_state_dict) and the loop's state."""
        return {}

    def load_models_state_dict(self, ckpt: dict) -> None:
        pass

    def finish(self) -> dict:
        """After the last step: final metrics (also returned by train)."""
        return {}

    def progress_postfix(self, record: dict) -> dict:
        return {}

    @property
    def total_steps(self) -> int:
        return self.config.steps

    # ---------------------------------------------------------------- outputs
    def on_sample(self) -> None:
        """samples/step_XXXXXX.png (save_samples) and curves.png."""
        self.save_samples(os.path.join(self.config.out, "samples", f"step_{self.step:06d}.png"))
        plot_curves(os.path.join(self.config.out, "curves.png"), self.history, self.panels())

    def panels(self) -> list[tuple[str, dict[str, str]]]:
        fields = dataclasses.asdict(self.config)
        return [(label.format(**fields), keys) for label, keys in self.curve_panels]

    def write_metrics(self, metrics: dict) -> dict:
        """metrics.json in the run folder (atomically); returns the metrics."""
        write_json(os.path.join(self.config.out, "metrics.json"), metrics)
        return metrics

    # ---------------------------------------------------------------- log and checkpoints
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.config.out, "checkpoint.pt")

    def log(self, record: dict, history: bool = True) -> None:
        if history:
            self.history.append(record)
        if not self.is_main:
            return
        os.makedirs(self.config.out, exist_ok=True)
        with open(os.path.join(self.config.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def log_precision(self) -> None:
        """The precision the run trains in, as a line of the log (not of `history`, which holds what training
        produced): at the start, and again after a resume only if this machine resolved '--amp auto' differently."""
        if self.logged_precision != (self.amp, self.channels_last):
            self.log({"step": self.step, "precision": self.amp, "channels_last": self.channels_last,
                      "precision_note": self.precision_note}, history=False)
            self.logged_precision = (self.amp, self.channels_last)

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
               "gen": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        data = {"data": {k: s.state_dict() for k, s in self.sources.items()}} if self.sources else {}
        return {"format": self.checkpoint.name, "step": self.step, "config": dataclasses.asdict(self.config),
                "config_version": CONFIG_VERSION,
                "rng": rng, **data, **self.pair_state_dict(), **self.models_state_dict()}

    def save_checkpoint(self, path: str | None = None) -> str:
        """Rank 0 writes (atomically); every rank returns once the file is complete."""
        path = path or self.checkpoint_path
        if self.is_main:
            atomic_torch_save(self.state_dict(), path)
        distributed.barrier()
        return path

    def load_state_dict(self, ckpt: dict) -> None:
        self.load_pair_state_dict(ckpt)
        self.load_models_state_dict(ckpt)
        self.step = ckpt["step"]
        for k, source in self.sources.items():
            if k in ckpt.get("data", {}):
                source.load_state_dict(ckpt["data"][k])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        # the log keeps only what the restored state produced: lines after the checkpoint's step are dropped
        log = os.path.join(self.config.out, "log.jsonl")
        if os.path.isfile(log) and self.is_main:
            with open(log) as f:
                keep = [r for r in map(json.loads, f) if r.get("step", 0) <= self.step]
            with atomic_path(log, ".jsonl") as tmp, open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)
            self.history = [r for r in keep if "precision" not in r]
            self.logged_precision = next(((r["precision"], r["channels_last"]) for r in reversed(keep)
                                          if "precision" in r), None)

    @classmethod
    def read_checkpoint(cls, path: str) -> dict:
        return cls.checkpoint.read(path)

    @classmethod
    def resume(cls, path: str, dataset=None, **overrides):
        """A trainer restored from a checkpoint; `overrides` may change e.g. `steps` (train longer) or `out`."""
        ckpt = cls.read_checkpoint(path)
        unknown = sorted(set(ckpt["config"]) - {f.name for f in dataclasses.fields(cls.config_class)})
        if unknown:
            raise CheckpointError(f"{path} was written by another version of pygan (its options "
                                  f"{', '.join(unknown)} are not this version's): it cannot be resumed")
        saved = dict(ckpt["config"])
        if ckpt.get("config_version", 1) < 2 and saved.get("amp") == "auto" and saved.get("channels_last") is False:
            saved["channels_last"] = None  # version 1 stored False for "not given", which --amp auto overrode
        trainer = cls(cls.config_class(**{**saved, **overrides}), dataset)
        trainer.load_state_dict(ckpt)
        return trainer

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict:
        """Runs to total_steps (config.steps unless a subclass says otherwise); returns `finish()`'s metrics."""
        cfg = self.config
        if self.is_main:
            os.makedirs(cfg.out, exist_ok=True)
        total = self.total_steps
        if self.is_main:
            self.log_precision()
            if cfg.progress:
                print(f"precision: {self.precision_note}", file=sys.stderr, flush=True)
        bar = Progress(total, self.step, enabled=cfg.progress and self.is_main)
        try:
            while self.step < total:
                t0 = time.perf_counter()
                rec = self.iteration()
                rec["sec_per_step"] = time.perf_counter() - t0
                if self.sources:  # of sec_per_step: the time spent waiting for real images
                    rec["data_wait_s"] = sum(s.pop_wait() for s in self.sources.values())
                bar.update(1)
                last = self.step == total
                if self.step % cfg.log_every == 0 or last:
                    self.log(rec)
                    bar.set_postfix(self.progress_postfix(rec))
                if (self.step % cfg.sample_every == 0 or last) and self.is_main:
                    self.on_sample()
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_checkpoint()
        finally:
            bar.close()
            for source in self.sources.values():
                source.close()
        named = len(self.sources) > 1
        note = "\n".join(f"{k}: {line}" if named else line for k, s in self.sources.items()
                         for line in s.summary().splitlines())
        if note and self.is_main:
            print(note, file=sys.stderr)
            self.log({"step": self.step, "data": note})
        metrics = self.finish() if self.is_main else {}
        distributed.barrier()
        return metrics

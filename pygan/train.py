"""The DCGAN trainer: k discriminator steps on fresh real and noise minibatches, then one generator step.

Everything random goes through one torch.Generator (`self.gen`: minibatch indices, latents, fake labels,
instance noise, gradient-penalty mixing) whose state is checkpointed with the global RNG states, so `resume`
continues exactly: on CPU a resumed run produces the same losses as an uninterrupted one.
Checkpoints are written atomically; a non-finite loss stops training with `TrainingDiverged` before any
parameter or checkpoint is touched.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pygan import losses
from pygan._io import atomic_path, atomic_torch_save, save_grid
from pygan.data import ImageData, load
from pygan.models import DCGANDiscriminator, DCGANGenerator, check_size

CHECKPOINT_FORMAT = "pygan-dcgan-checkpoint-v1"


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


class CheckpointError(ValueError):
    """A file that is not a readable pygan checkpoint."""


@dataclass
class TrainConfig:
    data: str = "digits"              # 'digits', a folder of images, an .npz or MNIST idx file
    out: str = "runs/dcgan"           # output folder: checkpoint.pt, log.jsonl, samples/, curves.png, metrics.json
    size: int = 32                    # image size: 16, 32, 64 or 128
    channels: int = 0                 # 1 or 3; 0: from the data (digits: 1, folders: 3)
    conditional: bool = False         # class-conditional G and D (needs labelled data)
    latent_dim: int = 64
    g_width: int = 16                 # channels of G's last hidden layer (doubled towards the 4x4 input)
    d_width: int = 16                 # channels of D's first layer (doubled at each downsampling)
    steps: int = 1500                 # generator steps
    batch_size: int = 64
    d_steps: int = 1                  # discriminator steps per generator step (k)
    loss: str = "non_saturating"      # one of pygan.losses.LOSS_KINDS
    lr_g: float = 2e-4
    lr_d: float = 5e-5
    beta1: float = 0.5
    beta2: float = 0.999
    label_smoothing: float = 0.0      # one-sided: D's real target is 1 - label_smoothing
    instance_noise: float = 0.0       # std of Gaussian noise on D's inputs at step 0 ...
    instance_noise_steps: int = 0     # ... decaying linearly to 0 over this many steps (0: over the whole run)
    gp_weight: float = 0.0            # WGAN-GP penalty weight
    r1_weight: float = 0.0            # R1 penalty weight
    ema_decay: float = 0.995          # EMA of G's weights (0: off); samples and evaluation use the EMA
    amp: str = "none"                 # autocast: none, bf16 or fp16
    channels_last: bool = False
    compile: bool = False             # torch.compile G and D
    fused: bool = True                # pygan's fused BN+activation (False: stock torch.nn layers)
    seed: int = 0
    device: str = "auto"              # auto, cpu, cuda, cuda:1, ...
    log_every: int = 10
    sample_every: int = 250
    checkpoint_every: int = 250
    grid_size: int = 64               # images in the fixed-noise sample grids
    collapse_ratio: float = 0.2       # warn when the fixed batch's mean pairwise distance falls below this x real's
    eval_samples: int = 1000          # generated digits scored at the end (digits only; 0: skip)
    progress: bool = True

    def validate(self) -> "TrainConfig":
        check_size(self.size)
        if self.loss not in losses.LOSS_KINDS:
            raise ValueError(f"loss must be one of {', '.join(losses.LOSS_KINDS)}, got {self.loss!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        if self.channels not in (0, 1, 3):
            raise ValueError(f"channels must be 1 or 3 (0: from the data), got {self.channels}")
        for name in ("steps", "batch_size", "d_steps", "latent_dim", "g_width", "d_width", "log_every",
                     "sample_every", "checkpoint_every", "grid_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("instance_noise", "gp_weight", "r1_weight", "instance_noise_steps", "eval_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        return self


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return dev


def _grad_norm(params) -> float:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def mean_pairwise_distance(x: Tensor) -> float:
    f = x.detach().float().flatten(1).cpu()
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1))) if n > 1 else 0.0


class Trainer:
    def __init__(self, config: TrainConfig, dataset=None):
        """`dataset` (optional): any torch Dataset or ImageData to train on instead of `config.data`."""
        cfg = self.config = config.validate()
        self.device = _device(cfg.device)
        self.data: ImageData = load(dataset if dataset is not None else cfg.data, cfg.size,
                                    cfg.channels or None)
        if cfg.channels and self.data.images.shape[1] != cfg.channels:
            self.data.images = (self.data.images.mean(1, keepdim=True) if cfg.channels == 1
                                else self.data.images.expand(-1, 3, -1, -1).contiguous())
        self.channels = self.data.images.shape[1]
        if cfg.conditional and self.data.labels is None:
            raise ValueError("--conditional needs labelled data (digits, class sub-folders, or labels in the file)")
        self.num_classes = self.data.num_classes if cfg.conditional else 0
        if len(self.data) < 2:
            raise ValueError(f"need at least 2 training images, got {len(self.data)}")

        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.G = DCGANGenerator(cfg.size, self.channels, cfg.latent_dim, cfg.g_width, self.num_classes,
                                fused=cfg.fused).to(self.device)
        self.D = DCGANDiscriminator(cfg.size, self.channels, cfg.d_width, self.num_classes,
                                    fused=cfg.fused).to(self.device)
        if cfg.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        fp16 = cfg.amp == "fp16" and self.device.type == "cuda"  # loss scaling only matters for fp16 on a GPU
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.g_fwd = torch.compile(self.G) if cfg.compile else self.G
        self.d_fwd = torch.compile(self.D) if cfg.compile else self.D

        self.images = self.data.images.to(self.device)
        self.labels = self.data.labels.to(self.device) if self.data.labels is not None else None
        self.fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=self.gen, device=self.device)
        self.fixed_labels = (torch.arange(cfg.grid_size, device=self.device) % self.num_classes
                             if self.num_classes else None)
        idx = torch.randperm(len(self.data), generator=self.gen, device=self.device)[: cfg.grid_size]
        self.real_diversity = mean_pairwise_distance(self.images[idx])
        self.step = 0
        self.history: list[dict] = []

    # ---------------------------------------------------------------- one iteration
    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.amp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _prep(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _noise_std(self) -> float:
        cfg = self.config
        span = cfg.instance_noise_steps or cfg.steps
        return cfg.instance_noise * max(0.0, 1.0 - self.step / span)

    def _d_input(self, x: Tensor, std: float) -> Tensor:
        if std > 0:
            x = x + std * torch.randn(x.shape, generator=self.gen, device=x.device, dtype=x.dtype)
        return self._prep(x)

    def _latent(self, n: int) -> Tensor:
        return torch.randn(n, self.config.latent_dim, generator=self.gen, device=self.device)

    def _fake_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(0, self.num_classes, (n,), generator=self.gen, device=self.device)

    def _check_finite(self, name: str, value: Tensor) -> None:
        if not torch.isfinite(value).all():
            ckpt = self.checkpoint_path
            last = (f"the last good checkpoint is {ckpt} (step {torch.load(ckpt, map_location='cpu', weights_only=False)['step']})"
                    if os.path.isfile(ckpt) else "no checkpoint was written yet")
            raise TrainingDiverged(f"non-finite {name} loss ({float(value.detach())}) at step {self.step + 1}; training "
                                   f"stopped, {last}. Try a lower learning rate, --amp none or a gradient penalty.")

    def train_step(self) -> dict:
        cfg, n = self.config, self.config.batch_size
        t0 = time.perf_counter()
        std = self._noise_std()
        self.G.train()
        self.D.train()
        for _ in range(cfg.d_steps):
            idx = torch.randint(0, len(self.images), (n,), generator=self.gen, device=self.device)
            real = self.images[idx]
            y = self.labels[idx] if self.num_classes else None
            z = self._latent(n)
            with self._autocast():
                with torch.no_grad():
                    fake = self.g_fwd(z, y) if y is not None else self.g_fwd(z)
                real_in, fake_in = self._d_input(real, std), self._d_input(fake.float(), std)
                args = (y,) if y is not None else ()
                out = losses.discriminator_loss(self.d_fwd(real_in, *args).float(), self.d_fwd(fake_in, *args).float(),
                                                kind=cfg.loss, label_smoothing=cfg.label_smoothing)
            loss_d = out.loss
            if cfg.gp_weight > 0:
                alpha = torch.rand(n, generator=self.gen, device=self.device)
                loss_d = loss_d + losses.gradient_penalty(self.D, real_in, fake_in, cfg.gp_weight, labels=y, alpha=alpha)
            if cfg.r1_weight > 0:
                loss_d = loss_d + losses.r1_penalty(self.D, real_in, cfg.r1_weight, labels=y)
            self._check_finite("discriminator", loss_d)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            self.scaler_d.unscale_(self.opt_d)
            gnorm_d = _grad_norm(self.D.parameters())
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()

        z, yf = self._latent(n), self._fake_labels(n)
        with self._autocast():
            fake = self.g_fwd(z, yf) if yf is not None else self.g_fwd(z)
            args = (yf,) if yf is not None else ()
            gout = losses.generator_loss(self.d_fwd(self._d_input(fake.float(), std), *args).float(), kind=cfg.loss)
        self._check_finite("generator", gout.loss)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(gout.loss).backward()
        self.scaler_g.unscale_(self.opt_g)
        gnorm_g = _grad_norm(self.G.parameters())
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self._update_ema()
        self.step += 1
        return {"step": self.step, "loss_d": float(loss_d.detach()), "loss_g": float(gout.loss.detach()),
                "d_real": float(out.real_score), "d_fake": float(out.fake_score),
                "grad_norm_d": gnorm_d, "grad_norm_g": gnorm_g, "instance_noise": std,
                "sec_per_step": time.perf_counter() - t0}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        # warm-up: a plain average over the first steps, so early samples are not dominated by the random init
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(b)

    # ---------------------------------------------------------------- outputs
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.config.out, "checkpoint.pt")

    @property
    def sampler(self) -> DCGANGenerator:
        """The generator for samples and evaluation, in eval mode: a copy of the EMA (or of G when EMA is off)
        whose BatchNorm running statistics are recomputed for its own weights (cached per step)."""
        if getattr(self, "_sampler_step", None) != self.step:
            src = self.G_ema if self.G_ema is not None else self.G
            self._sampler = recalibrate_bn(copy.deepcopy(src), self.num_classes, seed=self.config.seed)
            self._sampler_step = self.step
        return self._sampler

    @torch.no_grad()
    def sample(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        g = self.sampler
        return torch.cat([g(z[i:i + 500], None if labels is None else labels[i:i + 500]) for i in range(0, len(z), 500)])

    def save_samples(self) -> float:
        """Writes samples/step_XXXXXX.png from the fixed noise; returns its diversity relative to real data."""
        x = self.sample(self.fixed_z, self.fixed_labels)
        nrow = self.num_classes if self.num_classes and self.config.grid_size % self.num_classes == 0 else None
        save_grid(x, os.path.join(self.config.out, "samples", f"step_{self.step:06d}.png"), nrow)
        return mean_pairwise_distance(x) / max(self.real_diversity, 1e-12)

    def save_plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h = [r for r in self.history if "loss_d" in r]
        if not h:
            return
        s = [r["step"] for r in h]
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        a1.plot(s, [r["loss_d"] for r in h], label="D loss")
        a1.plot(s, [r["loss_g"] for r in h], label="G loss")
        a1.set_ylabel(f"loss ({self.config.loss})")
        a1.legend()
        a2.plot(s, [r["d_real"] for r in h], label="D(x)")
        a2.plot(s, [r["d_fake"] for r in h], label="D(G(z))")
        a2.set_xlabel("generator step")
        a2.set_ylabel("score")
        a2.legend()
        fig.tight_layout()
        with atomic_path(os.path.join(self.config.out, "curves.png"), ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)

    def _log(self, record: dict) -> None:
        self.history.append(record)
        os.makedirs(self.config.out, exist_ok=True)
        with open(os.path.join(self.config.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
               "gen": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT, "step": self.step, "config": dataclasses.asdict(self.config),
            "channels": self.channels, "num_classes": self.num_classes, "classes": self.data.classes,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "G_sample": self.sampler.state_dict(),
            "G_config": self.G.config, "D_config": self.D.config,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "fixed_z": self.fixed_z.cpu(), "fixed_labels": None if self.fixed_labels is None else self.fixed_labels.cpu(),
            "real_diversity": self.real_diversity, "rng": rng,
        }

    def save_checkpoint(self, path: str | None = None) -> str:
        path = path or self.checkpoint_path
        atomic_torch_save(self.state_dict(), path)
        return path

    def load_state_dict(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None and ckpt["G_ema"] is not None:
            self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.scaler_g.load_state_dict(ckpt["scaler_g"])
        self.scaler_d.load_state_dict(ckpt["scaler_d"])
        self.fixed_z = ckpt["fixed_z"].to(self.device)
        self.fixed_labels = None if ckpt["fixed_labels"] is None else ckpt["fixed_labels"].to(self.device)
        self.real_diversity = ckpt["real_diversity"]
        self.step = ckpt["step"]
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        # the log keeps only what the restored state produced: lines after the checkpoint's step are dropped
        log = os.path.join(self.config.out, "log.jsonl")
        if os.path.isfile(log):
            with open(log) as f:
                keep = [r for r in map(json.loads, f) if r.get("step", 0) <= self.step]
            with atomic_path(log, ".jsonl") as tmp, open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)
            self.history = keep

    @classmethod
    def resume(cls, path: str, dataset=None, **overrides) -> "Trainer":
        """A trainer restored from a checkpoint; `overrides` may change e.g. `steps` (train longer) or `out`."""
        ckpt = read_checkpoint(path)
        cfg = TrainConfig(**{**ckpt["config"], **overrides})
        trainer = cls(cfg, dataset)
        trainer.load_state_dict(ckpt)
        return trainer

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict:
        """Runs to config.steps; returns the final metrics (digits) or an empty dict."""
        from tqdm.auto import tqdm

        cfg = self.config
        os.makedirs(cfg.out, exist_ok=True)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, unit="step", dynamic_ncols=True)
        try:
            while self.step < cfg.steps:
                rec = self.train_step()
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log(rec)
                    bar.set_postfix(D=f"{rec['loss_d']:.3f}", G=f"{rec['loss_g']:.3f}",
                                    Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}")
                if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                    div = self.save_samples()
                    if div < cfg.collapse_ratio and self.step >= cfg.steps // 4:  # early samples are alike
                        msg = (f"possible mode collapse at step {self.step}: the fixed-noise samples' mean pairwise "
                               f"distance is {div:.2f}x that of real images")
                        warnings.warn(msg, RuntimeWarning, stacklevel=2)
                        self._log({"step": self.step, "warning": msg})
                    self.save_plot()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
        return self.evaluate() if cfg.eval_samples and cfg.data == "digits" and self.channels == 1 else {}

    def evaluate(self, n: int | None = None) -> dict:
        """Digits metrics of n samples (balanced labels when conditional), written to metrics.json."""
        from pygan.metrics import evaluate_digits

        n = n or self.config.eval_samples
        g = torch.Generator(self.device).manual_seed(12345)  # fixed evaluation noise, independent of training
        z = torch.randn(n, self.config.latent_dim, generator=g, device=self.device)
        y = torch.arange(n, device=self.device) % self.num_classes if self.num_classes else None
        metrics = {"step": self.step, **evaluate_digits(self.sample(z, y).cpu(), y)}
        with atomic_path(os.path.join(self.config.out, "metrics.json"), ".json") as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=1)
        return metrics


@torch.no_grad()
def recalibrate_bn(G: DCGANGenerator, num_classes: int, batches: int = 8, batch_size: int = 256,
                   seed: int = 0) -> DCGANGenerator:
    """Recomputes G's BatchNorm running statistics as exact averages over fresh latent batches, then eval mode.

    Running statistics gathered during training lag the weights and, for an EMA generator, belong to other
    weights altogether; eval-mode samples from them come out washed out. Deterministic (own seeded generator).
    """
    p = next(G.parameters())
    g = torch.Generator(p.device).manual_seed(seed)
    bns = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    for _ in range(batches):
        z = torch.randn(batch_size, G.latent_dim, generator=g, device=p.device)
        y = torch.randint(0, num_classes, (batch_size,), generator=g, device=p.device) if num_classes else None
        G(z, y)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return G.eval()


def read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pygan DCGAN checkpoint")
    return ckpt


def load_generator(path: str, ema: bool = True, device: str = "cpu") -> tuple[DCGANGenerator, dict]:
    """(generator in eval mode, checkpoint) from a checkpoint file: the sampling generator (EMA weights when
    trained with EMA, BatchNorm statistics recalibrated), or with ema=False the trained G itself."""
    ckpt = read_checkpoint(path)
    G = DCGANGenerator(**ckpt["G_config"])
    if ema:
        G.load_state_dict(ckpt["G_sample"])
    else:
        G.load_state_dict(ckpt["G"])
        recalibrate_bn(G, ckpt["num_classes"], seed=ckpt["config"]["seed"])
    return G.to(device).eval(), ckpt

"""The DCGAN trainer: k discriminator steps on fresh real and noise minibatches, then one generator step.

Everything random goes through one torch.Generator (`self.gen`: minibatch indices, latents, fake labels,
instance noise, gradient-penalty mixing) whose state is checkpointed with the global RNG states, so `resume`
continues exactly: on CPU a resumed run produces the same losses as an uninterrupted one.
Checkpoints are written atomically; a non-finite loss stops training with `TrainingDiverged` before any
parameter or checkpoint is touched.

Under torch.distributed (`torchrun --nproc_per_node=N -m pygan.cli train dcgan ...`), G and D are wrapped in
DistributedDataParallel and `batch_size` is the global batch: every rank draws the same global minibatch (indices,
latents, labels, noise) from the shared generator and keeps its own slice of it. A run therefore does not
depend on the number of processes, and a checkpoint resumes with any number of them. BatchNorm statistics are
synchronized over the ranks (pygan's fused sync op) in G and D, gradient penalties (R1, WGAN-GP: double backward)
included.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pygan import losses
from pygan._io import atomic_path, save_grid
from pygan.data import ImageData, load
from pygan.models import DCGANDiscriminator, DCGANGenerator, check_size
from pygan.ops.recompute import recompute_relu_outputs
from pygan.training import CheckpointError, TrainerBase, TrainingDiverged, ema_update, plot_curves
from pygan.training import read_checkpoint as _read_checkpoint

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "CheckpointError", "recalibrate_bn", "read_checkpoint",
           "load_generator", "mean_pairwise_distance"]

CHECKPOINT_FORMAT = "pygan-dcgan-checkpoint-v1"


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
    steps: int = 3000                 # generator steps
    batch_size: int = 64
    d_steps: int = 1                  # discriminator steps per generator step (k)
    loss: str = "non_saturating"      # one of pygan.losses.LOSS_KINDS
    lr_g: float = 2e-4
    lr_d: float = 2e-4                # with R1 (below); without it 5e-5 (the seeds' value for 64x64) was best
    beta1: float = 0.5
    beta2: float = 0.999
    label_smoothing: float = 0.0      # one-sided: D's real target is 1 - label_smoothing
    instance_noise: float = 0.0       # std of Gaussian noise on D's inputs at step 0 ...
    instance_noise_steps: int = 0     # ... decaying linearly to 0 over this many steps (0: over the whole run)
    gp_weight: float = 0.0            # WGAN-GP penalty weight
    r1_weight: float = 1.0            # R1 penalty weight (0: off)
    r1_every: int = 8                 # lazy R1 (StyleGAN2): on every this many D steps, weighted x r1_every
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
        for name in ("steps", "batch_size", "d_steps", "r1_every", "latent_dim", "g_width", "d_width", "log_every",
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


def mean_pairwise_distance(x: Tensor) -> float:
    f = x.detach().float().flatten(1).cpu()
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1))) if n > 1 else 0.0


class Trainer(TrainerBase):
    """The DCGAN trainer (see the module docstring); `train()` runs it, `Trainer.resume(path)` continues a run."""

    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "DCGAN"
    config_class = TrainConfig

    def __init__(self, config: TrainConfig, dataset=None):
        """`dataset` (optional): any torch Dataset or ImageData to train on instead of `config.data`."""
        cfg = config.validate()
        self._setup(cfg)
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
        self.scaler_g, self.scaler_d = self.grad_scaler(), self.grad_scaler()
        self.distribute_models(cfg.batch_size)

        self.images = self.data.images.to(self.device)
        self.labels = self.data.labels.to(self.device) if self.data.labels is not None else None
        self.fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=self.gen, device=self.device)
        self.fixed_labels = (torch.arange(cfg.grid_size, device=self.device) % self.num_classes
                             if self.num_classes else None)
        idx = torch.randperm(len(self.data), generator=self.gen, device=self.device)[: cfg.grid_size]
        self.real_diversity = mean_pairwise_distance(self.images[idx])

    # ---------------------------------------------------------------- one iteration
    def _noise_std(self) -> float:
        cfg = self.config
        span = cfg.instance_noise_steps or cfg.steps
        return cfg.instance_noise * max(0.0, 1.0 - self.step / span)

    def _d_input(self, x: Tensor, std: float) -> Tensor:
        if std > 0:  # noise for the global batch, this rank's slice
            shape = (self.config.batch_size, *x.shape[1:])
            x = x + std * torch.randn(shape, generator=self.gen, device=x.device, dtype=x.dtype)[self.my_slice]
        return self.prep(x)

    def _latent(self, n: int) -> Tensor:
        """This rank's slice of n (the global batch) latents."""
        return torch.randn(n, self.config.latent_dim, generator=self.gen, device=self.device)[self.my_slice]

    def _fake_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(0, self.num_classes, (n,), generator=self.gen, device=self.device)[self.my_slice]

    def train_step(self) -> dict:
        cfg, n = self.config, self.config.batch_size  # n: the global batch; this rank keeps self.my_slice of it
        mine = self.my_slice
        std = self._noise_std()
        self.G.train()
        self.D.train()
        for i in range(cfg.d_steps):
            idx = torch.randint(0, len(self.images), (n,), generator=self.gen, device=self.device)[mine]
            real = self.images[idx]
            y = self.labels[idx] if self.num_classes else None
            z = self._latent(n)
            with self.autocast():
                with torch.no_grad():
                    fake = self.g_plain(z, y) if y is not None else self.g_plain(z)
                real_in, fake_in = self._d_input(real, std), self._d_input(fake.float(), std)
                args = (y,) if y is not None else ()
                out = losses.discriminator_loss(self.d_fwd(real_in, *args).float(), self.d_fwd(fake_in, *args).float(),
                                                kind=cfg.loss, label_smoothing=cfg.label_smoothing)
            loss_d = out.loss
            if cfg.gp_weight > 0:
                alpha = torch.rand(n, generator=self.gen, device=self.device)[mine]
                loss_d = loss_d + losses.gradient_penalty(self.D, real_in, fake_in, cfg.gp_weight, labels=y, alpha=alpha)
            if cfg.r1_weight > 0 and (self.step * cfg.d_steps + i) % cfg.r1_every == 0:
                # lazy regularisation: the penalty's extra forward + double backward cost about as much as the
                # rest of the D step; every r1_every-th step with the weight scaled up keeps its average pull
                loss_d = loss_d + losses.r1_penalty(self.D, real_in, cfg.r1_weight * cfg.r1_every, labels=y)
            self.check_finite("discriminator", loss_d)
            gnorm_d = self.optimizer_step(loss_d, self.opt_d, self.scaler_d, self.D.parameters())

        z, yf = self._latent(n), self._fake_labels(n)
        self.D.requires_grad_(False)  # G's step needs D's input gradient only
        try:
            # G's fused BN + ReLU layers keep one tensor each, not two: their outputs are recomputed in backward
            # by the forward's own kernel (bitwise the same values, so the run does not change)
            with self.autocast(), recompute_relu_outputs():
                fake = self.g_fwd(z, yf) if yf is not None else self.g_fwd(z)
                args = (yf,) if yf is not None else ()
                gout = losses.generator_loss(self.d_plain(self._d_input(fake.float(), std), *args).float(),
                                             kind=cfg.loss)
            self.check_finite("generator", gout.loss)
            gnorm_g = self.optimizer_step(gout.loss, self.opt_g, self.scaler_g, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, cfg.ema_decay, self.step)
        self.step += 1
        return {"step": self.step, "loss_d": float(loss_d.detach()), "loss_g": float(gout.loss.detach()),
                "d_real": float(out.real_score), "d_fake": float(out.fake_score),
                "grad_norm_d": gnorm_d, "grad_norm_g": gnorm_g, "instance_noise": std}

    def progress_postfix(self, rec: dict) -> dict:
        return dict(D=f"{rec['loss_d']:.3f}", G=f"{rec['loss_g']:.3f}", Dx=f"{rec['d_real']:.2f}",
                    DGz=f"{rec['d_fake']:.2f}")

    # ---------------------------------------------------------------- outputs
    @property
    def sampler(self) -> DCGANGenerator:
        """The generator for samples and evaluation, in eval mode: a copy of the EMA (or of G when EMA is off)
        whose BatchNorm running statistics are recomputed for its own weights (cached per step)."""
        if getattr(self, "_sampler_step", None) != self.step:
            from pygan.nn import convert_sync_batch_norm_act

            src = self.G_ema if self.G_ema is not None else self.G
            # rank 0 alone recalibrates: its copy must not wait for the other ranks' statistics
            copy_ = convert_sync_batch_norm_act(copy.deepcopy(src), sync=False)
            self._sampler = recalibrate_bn(copy_, self.num_classes, seed=self.config.seed)
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
        plot_curves(os.path.join(self.config.out, "curves.png"), self.history,
                    [(f"loss ({self.config.loss})", {"loss_d": "D loss", "loss_g": "G loss"}),
                     ("score", {"d_real": "D(x)", "d_fake": "D(G(z))"})])

    def on_sample(self) -> None:
        cfg = self.config
        div = self.save_samples()
        if div < cfg.collapse_ratio and self.step >= cfg.steps // 4:  # early samples are alike
            msg = (f"possible mode collapse at step {self.step}: the fixed-noise samples' mean pairwise "
                   f"distance is {div:.2f}x that of real images")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self.log({"step": self.step, "warning": msg})
        self.save_plot()

    # ---------------------------------------------------------------- checkpoints
    def models_state_dict(self) -> dict:
        return {
            "channels": self.channels, "num_classes": self.num_classes, "classes": self.data.classes,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "G_sample": self.sampler.state_dict(),
            "G_config": self.G.config, "D_config": self.D.config,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "fixed_z": self.fixed_z.cpu(), "fixed_labels": None if self.fixed_labels is None else self.fixed_labels.cpu(),
            "real_diversity": self.real_diversity,
        }

    def load_models_state_dict(self, ckpt: dict) -> None:
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

    # ---------------------------------------------------------------- evaluation
    def finish(self) -> dict:
        cfg = self.config
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
    return _read_checkpoint(path, CHECKPOINT_FORMAT, "DCGAN")


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

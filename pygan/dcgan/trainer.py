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
import os
import shutil
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pygan import losses
from pygan._io import atomic_path, save_grid
from pygan.dcgan.evaluate import (CHECKPOINT, critic_estimate, recalibrate_bn, sample_in_chunks,
                                  wasserstein_batch, write_digits_metrics)
from pygan.dcgan.models import NORMS, SIZES, DCGANDiscriminator, DCGANGenerator
from pygan.dcgan.recipes import RECIPES, apply_recipe, clip_weights_
from pygan.ops.recompute import recompute_relu_outputs
from pygan.nn import convert_sync_batch_norm_act
from pygan.training import DataConfig, TrainerBase, default, frozen, option
from pygan.training.augment import augment, parse_policy
from pygan.training.schedule import linear_decay


@apply_recipe
@dataclass
class DCGANConfig(DataConfig):
    recipe: str = option("default", "a paper's defaults for the options not given explicitly: 'default' (this "
                                    "DCGAN), 'wgan' (weight clipping) or 'wgan-gp' (gradient penalty); see "
                                    "docs/dcgan.md", choices=tuple(RECIPES))
    data: str = option("digits", "training data: 'digits' (scikit-learn's bundled digits, train split), a folder of "
                                 "images (png/jpg; sub-folders are classes; large ones are streamed, see "
                                 "--data-mode), an .npz file (arrays x/images [, y/labels]) or an MNIST idx images "
                                 "file")
    out: str = default("runs/dcgan")
    size: int = option(32, "image size", choices=SIZES)
    channels: int = option(0, "image channels, 1 or 3 (0: from the data; digits are 1, image folders 3)",
                           choices=(0, 1, 3))
    conditional: bool = option(False, "class-conditional DCGAN (labels from the data)")
    latent_dim: int = option(64, "latent vector size", ge=1)
    g_width: int = option(32, "generator width: channels of its last hidden layer, doubled towards the 4x4 input",
                          ge=1)
    d_width: int = option(16, "discriminator width: channels of its first layer, doubled at each downsampling",
                          ge=1)
    d_norm: str = option("batch", "discriminator (critic) normalisation", choices=NORMS)
    steps: int = default(6000, "generator steps (iterations) to train")
    d_steps: int = option(1, "discriminator steps per generator step (k)", ge=1)
    optimizer: str = option("adam", "optimizer of G and D (rmsprop: WGAN's, without momentum)",
                            choices=("adam", "rmsprop"))
    lr_d: float = default(2e-4, "the discriminator's learning rate; with R1 (the default); without it 5e-5, "
                                "the seeds' value, was best")
    lr_decay_start: float = option(1.0, "both learning rates decay linearly to 0 from this fraction of the steps on "
                                        "(1: constant)", ge=0, le=1)
    amp: str = default("auto")
    batch_size: int = default(128)
    ema_decay: float = default(0.999)
    label_smoothing: float = option(0.0, "one-sided label smoothing: D's target for real images is 1 - this",
                                    ge=0, lt=1)
    instance_noise: float = option(0.0, "std of Gaussian noise added to D's inputs at the start, decaying linearly "
                                        "to 0", ge=0)
    instance_noise_steps: int = option(0, "steps over which the instance noise decays (0: the whole run)", ge=0)
    augment: str = option("", "differentiable augmentation of every image D sees, real and generated (DiffAugment): "
                              "a comma-separated subset of translation, cutout, color ('': none)")
    gp_weight: float = option(0.0, "WGAN-GP gradient penalty weight (0: off)", ge=0)
    clip: float = option(0.0, "WGAN weight clipping: every critic parameter is clamped to [-clip, clip] after each "
                              "critic step (0: off)", ge=0)
    wasserstein_every: int = option(0, "log the critic's Wasserstein estimate (mean D on held-out real images minus "
                                       "mean D on samples, fixed batches) every this many steps (0: off)", ge=0)
    keep_checkpoints: bool = option(False, "also keep every checkpoint as checkpoints/step_XXXXXX.pt")
    r1_weight: float = option(1.0, "R1 gradient penalty weight (0: off)", ge=0)
    r1_every: int = option(8, "apply R1 on every this many discriminator steps only, its weight multiplied by as "
                              "much (lazy regularisation, StyleGAN2; 1: every step)", ge=1)
    grid_size: int = default(64, "images in each fixed-noise sample grid")
    sample_every: int = default(250)
    checkpoint_every: int = default(250)
    collapse_ratio: float = option(0.2, "warn about mode collapse when the fixed-noise samples' mean pairwise "
                                        "distance falls below this fraction of real images'")
    eval_samples: int = option(1000, "digits only: generated images scored by the digits classifier at the end "
                                     "(0: none)", ge=0)

    def check(self) -> None:
        super().check()
        parse_policy(self.augment)


def mean_pairwise_distance(x: Tensor) -> float:
    f = x.detach().float().flatten(1).cpu()
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1))) if n > 1 else 0.0


class DCGANTrainer(TrainerBase):
    """The DCGAN trainer (see the module docstring); `train()` runs it, `DCGANTrainer.resume(path)` continues a run."""

    checkpoint = CHECKPOINT
    config_class = DCGANConfig
    curve_panels = (("loss ({loss})", {"loss_d": "D loss", "loss_g": "G loss"}),
                    ("score", {"d_real": "D(x)", "d_fake": "D(G(z))"}))

    def __init__(self, config: DCGANConfig, dataset=None):
        """`dataset` (optional): any torch Dataset or ImageData to train on instead of `config.data`."""
        cfg = self._setup(config)
        self.augment = parse_policy(cfg.augment)
        self.source = src = self.setup_data(dataset if dataset is not None else cfg.data, cfg.size, cfg.channels or None)
        self.channels = src.channels
        if cfg.conditional and not src.num_classes:
            raise ValueError("--conditional needs labelled data (digits, class sub-folders, or labels in the file)")
        self.num_classes = src.num_classes if cfg.conditional else 0
        if len(src) < 2:
            raise ValueError(f"need at least 2 training images, got {len(src)}")

        G = DCGANGenerator(cfg.size, self.channels, cfg.latent_dim, cfg.g_width, self.num_classes, fused=cfg.fused)
        D = DCGANDiscriminator(cfg.size, self.channels, cfg.d_width, self.num_classes, fused=cfg.fused,
                               norm=cfg.d_norm)
        self.setup_pair(G, D, cfg.lr_g, cfg.lr_d)

        self.fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=self.gen, device=self.device)
        self.fixed_labels = (torch.arange(cfg.grid_size, device=self.device) % self.num_classes
                             if self.num_classes else None)
        idx = torch.randperm(len(src), generator=self.gen, device=self.device)[: cfg.grid_size]
        self.real_diversity = mean_pairwise_distance(src.take(idx)[0])
        if cfg.wasserstein_every:
            self.w_real, self.w_z, self.w_labels = wasserstein_batch(
                src, cfg.data, cfg.size, self.channels, cfg.latent_dim, self.num_classes, cfg.seed, self.device)

    def make_optimizer(self, which: str, params, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr)
        return super().make_optimizer(which, params, lr)

    # ---------------------------------------------------------------- one iteration
    def _noise_std(self) -> float:
        cfg = self.config
        span = cfg.instance_noise_steps or cfg.steps
        return cfg.instance_noise * max(0.0, 1.0 - self.step / span)

    def _d_input(self, x: Tensor, std: float) -> Tensor:
        if self.augment:
            x = augment(x, self.augment, self.config.batch_size, self.gen, self.my_slice)
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
        rate = linear_decay(self.step, self.total_steps, cfg.lr_decay_start)
        self.set_lr(cfg.lr_g * rate, cfg.lr_d * rate)
        for i in range(cfg.d_steps):
            real, labels = self.source.next()  # this rank's slice of a fresh global batch
            y = labels if self.num_classes else None
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
            gnorm_d = self.step_d(loss_d)
            if cfg.clip > 0:
                clip_weights_(self.D, cfg.clip)

        z, yf = self._latent(n), self._fake_labels(n)
        # G's fused BN + ReLU layers keep one tensor each, not two: their outputs are recomputed in backward
        # by the forward's own kernel (bitwise the same values, so the run does not change)
        with frozen(self.D):
            with self.autocast(), recompute_relu_outputs():
                fake = self.g_fwd(z, yf) if yf is not None else self.g_fwd(z)
                args = (yf,) if yf is not None else ()
                gout = losses.generator_loss(self.d_plain(self._d_input(fake.float(), std), *args).float(),
                                             kind=cfg.loss)
            gnorm_g = self.step_g(gout.loss)
        return {"loss_d": float(loss_d.detach()), "loss_g": float(gout.loss.detach()),
                "d_real": float(out.real_score), "d_fake": float(out.fake_score),
                "grad_norm_d": gnorm_d, "grad_norm_g": gnorm_g, "instance_noise": std}

    def after_step(self, rec: dict) -> None:
        every = self.config.wasserstein_every
        if every and self.is_main and (self.step % every == 0 or self.step == self.total_steps):
            self.log({"step": self.step, "wasserstein_estimate": self.wasserstein_estimate()})

    def wasserstein_estimate(self) -> float:
        """The critic's estimate of the Wasserstein distance between the data and the samples: mean D on a fixed
        held-out real batch minus mean D on samples of the sampling generator from fixed latents."""
        return critic_estimate(self.D, self.w_real, self.sample(self.w_z, self.w_labels), self.w_labels)

    def progress_postfix(self, rec: dict) -> dict:
        return dict(D=f"{rec['loss_d']:.3f}", G=f"{rec['loss_g']:.3f}", Dx=f"{rec['d_real']:.2f}",
                    DGz=f"{rec['d_fake']:.2f}")

    # ---------------------------------------------------------------- outputs
    @property
    def sampler(self) -> DCGANGenerator:
        """The generator for samples and evaluation, in eval mode: a copy of the EMA (or of G when EMA is off)
        whose BatchNorm running statistics are recomputed for its own weights (cached per step)."""
        if getattr(self, "_sampler_step", None) != self.step:
            src = self.evaluation_generator
            # rank 0 alone recalibrates: its copy must not wait for the other ranks' statistics
            copy_ = convert_sync_batch_norm_act(copy.deepcopy(src), sync=False)
            self._sampler = recalibrate_bn(copy_, self.num_classes, seed=self.config.seed)
            self._sampler_step = self.step
        return self._sampler

    @torch.no_grad()
    def sample(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return sample_in_chunks(self.sampler, z, labels)

    def save_samples(self, path: str) -> None:
        """The fixed noise's samples; a warning when their diversity, relative to real images', is that of a
        collapse."""
        cfg = self.config
        x = self.sample(self.fixed_z, self.fixed_labels)
        nrow = self.num_classes if self.num_classes and cfg.grid_size % self.num_classes == 0 else None
        save_grid(x, path, nrow)
        div = mean_pairwise_distance(x) / max(self.real_diversity, 1e-12)
        if div < cfg.collapse_ratio and self.step >= cfg.steps // 4:  # early samples are alike
            msg = (f"possible mode collapse at step {self.step}: the fixed-noise samples' mean pairwise "
                   f"distance is {div:.2f}x that of real images")
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
            self.log({"step": self.step, "warning": msg})

    def panels(self) -> list[tuple[str, dict[str, str]]]:
        extra = [("Wasserstein estimate", {"wasserstein_estimate": "E D(held-out x) - E D(G(z))"})]
        return super().panels() + (extra if self.config.wasserstein_every else [])

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | None = None) -> str:
        path = super().save_checkpoint(path)
        if self.config.keep_checkpoints and self.is_main:
            keep = os.path.join(self.config.out, "checkpoints", f"step_{self.step:06d}.pt")
            with atomic_path(keep, ".pt") as tmp:  # an interrupted copy never leaves a truncated checkpoint
                shutil.copyfile(path, tmp)
        return path

    def models_state_dict(self) -> dict:
        return {
            "channels": self.channels, "num_classes": self.num_classes, "classes": self.source.classes,
            "fixed_z": self.fixed_z.cpu(), "fixed_labels": None if self.fixed_labels is None else self.fixed_labels.cpu(),
            "real_diversity": self.real_diversity,
        }

    def evaluation_state(self) -> dict:
        return self.sampler.state_dict()

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.fixed_z = ckpt["fixed_z"].to(self.device)
        self.fixed_labels = None if ckpt["fixed_labels"] is None else ckpt["fixed_labels"].to(self.device)
        self.real_diversity = ckpt["real_diversity"]

    # ---------------------------------------------------------------- evaluation
    def finish(self) -> dict:
        cfg = self.config
        return self.evaluate() if cfg.eval and cfg.eval_samples and cfg.data == "digits" and self.channels == 1 else {}

    def evaluate(self, n: int | None = None) -> dict:
        """Digits metrics of n samples (balanced labels when conditional), written to metrics.json."""
        extra = {"wasserstein_estimate": self.wasserstein_estimate()} if self.config.wasserstein_every else None
        return write_digits_metrics(self.sample, self.config.latent_dim, self.num_classes, self.step, self.device,
                                    n or self.config.eval_samples, os.path.join(self.config.out, "metrics.json"),
                                    extra)

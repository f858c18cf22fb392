"""The pix2pix trainer (Isola et al. 2017) on the shared training core.

Per step, as the paper's code: G translates the input x; D's step on (x, y) as real and (x, G(x)) as fake, each
batch through D on its own (BatchNorm: per-batch statistics), its objective halved (the paper slows D against G
this way); then G's step on gan_weight x the adversarial loss of (x, G(x)) under the updated D + l1_weight x
|G(x) - y|_1. `--no-conditional` shows D the output alone (the paper's unconditional GAN); gan_weight 0 is L1 only
(D is not trained) and l1_weight 0 the cGAN alone: the paper's ablation. Adam for both; the learning rate is
constant, then decays linearly to 0 from `decay_start` x steps on. Every random draw (minibatches, jitter, flips,
dropout) comes from the checkpointed state: resume is exact.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan import losses
from pygan._io import save_grid
from pygan.data import DataError, PairedImages, PairedInMemory
from pygan.data.paired import paired_source
from pygan.parts import PatchDiscriminator, patch_receptive_field
from pygan.pix2pix.data import scene_pairs, upsized
from pygan.pix2pix.evaluate import CHECKPOINT, evaluate, translate_all
from pygan.pix2pix.models import UnetGenerator
from pygan.training import DataConfig, TrainerBase, default, eval_mode, frozen, option
from pygan.training.schedule import linear_decay

DIRECTIONS = ("AtoB", "BtoA")
PATCHES = {patch_receptive_field(layers): layers for layers in range(6)}  # receptive field -> D's layers
JITTER = 286 / 256  # the paper's resize before the random crop


@dataclass
class Pix2PixConfig(DataConfig):
    data: str = option("scenes", "'scenes' (the embedded label maps -> digit scenes, scored by the FCN-score) or a "
                                 "folder of pairs: each image A and B side by side (A on the left, the paper's "
                                 "format), or only the A images when --data-b is given (large folders are "
                                 "streamed, see --data-mode)")
    data_b: str = option("", "a folder of B images paired with --data's by file name (a.jpg with a.png)")
    direction: str = option("AtoB", "translate A to B (AtoB) or B to A", choices=DIRECTIONS)
    out: str = default("runs/pix2pix")
    size: int = option(48, "training image size: images are resized (shorter side) and cropped to size x size "
                           "(the embedded scenes: 48; the paper: 256)", ge=8)
    load_size: int | None = option(None, "random jitter: the shorter side resized to this, then a random size x "
                                         "size crop (the paper: 286 for 256; equal to size: no jitter)",
                                   unset="size x 286/256")
    flip: bool = default(True, "random horizontal flips of the training pairs (folders; the embedded scenes' "
                               "digits are never mirrored)")
    width: int = option(32, "generator width: channels of its first layer, doubling to 8x (the paper: 64)", ge=1)
    depth: int = option(4, "generator down- and up-sampling steps; images are padded to a multiple of 2**depth "
                           "(the paper: 8 at 256x256)", ge=2)
    dropout: float = option(0.5, "dropout after the first decoder blocks, the paper's noise", ge=0, lt=1)
    dropout_blocks: int | None = option(None, "decoder blocks followed by dropout (at most depth - 1)", ge=0,
                                        unset="3, at most depth - 1")
    test_dropout: bool = option(True, "keep the dropout when translating and evaluating, as the paper (drawn from "
                                      "a fixed seed: scores are reproducible)")
    d_width: int = option(32, "discriminator width (the paper: 64)", ge=1)
    patch: int = option(70, "discriminator receptive field in pixels: 1 (PixelGAN), 16, 34, 70 (the paper's "
                            "default), 142 or 286 (ImageGAN at 256x256)", choices=tuple(PATCHES))
    conditional: bool = option(True, "the discriminator sees the input with the output (cGAN); --no-conditional: "
                                     "the output alone")
    l1_weight: float = option(100.0, "lambda, the weight of the L1 loss to the truth (0: the cGAN alone, the "
                                     "ablation)", ge=0)
    gan_weight: float = option(1.0, "the weight of the adversarial loss (0: L1 alone, the ablation; D is not "
                                    "trained)", ge=0)
    decay_start: float = option(0.5, "the learning rate decays linearly to 0 from this fraction of the steps on",
                                ge=0, lt=1)
    steps: int = default(1500)
    batch_size: int = default(16)
    ema_decay: float = default(0.0)

    @property
    def jitter_size(self) -> int:
        return self.load_size if self.load_size is not None else round(self.size * JITTER)

    def check(self) -> None:
        if self.l1_weight == 0 and self.gan_weight == 0:
            raise ValueError("l1_weight and gan_weight are both 0: the generator would have no loss")
        if self.dropout_blocks is not None and self.dropout_blocks > self.depth - 1:
            raise ValueError(f"dropout_blocks must be <= depth - 1 = {self.depth - 1}, got {self.dropout_blocks}")
        if self.jitter_size < self.size:
            raise ValueError(f"load_size must be >= size ({self.size}), got {self.jitter_size}")
        layers = PATCHES[self.patch]
        if layers and self.size < 3 * 2 ** layers:
            raise ValueError(f"size {self.size} is too small for {self.patch}x{self.patch} patches (at least "
                             f"{3 * 2 ** layers}); choose a smaller --patch")
        if self.data == "scenes" and self.data_b:
            raise ValueError("--data-b pairs a folder of A images (--data) with B images; the embedded scenes "
                             "need neither")


class Pix2PixTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = Pix2PixConfig
    curve_panels = (("generator", {"loss_adv": "adversarial ({loss})", "loss_l1": "L1"}),
                    ("discriminator ({loss}, halved)", {"loss_d": "D"}))

    def __init__(self, config: Pix2PixConfig, dataset=None):
        """`dataset` (optional): a pygan.pix2pix.data.ScenePairs to train and evaluate on instead of `data`."""
        cfg = self._setup(config)
        self.pairs = dataset if dataset is not None else scene_pairs(cfg.size) if cfg.data == "scenes" else None
        if self.pairs is not None:
            load = cfg.jitter_size
            pairs = PairedImages(upsized(self.pairs.train_a, load, labels=True),
                                 upsized(self.pairs.train.images, load, labels=False), [])
            self.source = self.add_source("data", PairedInMemory(pairs, None, self.gen, cfg.batch_size,
                                                                 self.my_slice, self.device, size=cfg.size))
            channels = (3, self.pairs.train.channels)
        else:
            say = (lambda msg: print(f"data: {msg}", file=sys.stderr)) if self.is_main and cfg.progress else None
            self.source = self.add_source("data", paired_source(
                cfg.data, cfg.data_b or None, cfg.size, 3, 3, self.source_options(), gen=self.gen,
                batch_size=cfg.batch_size, rank=self.rank, world_size=self.world_size, seed=cfg.seed,
                device=self.device, load_size=cfg.jitter_size, log=say))
            if len(self.source) < 2:
                raise DataError(f"data needs at least 2 image pairs, got {len(self.source)}")
            channels = (3, 3)
        c_in, c_out = channels if cfg.direction == "AtoB" else channels[::-1]
        G = UnetGenerator(c_in, c_out, cfg.width, cfg.depth, cfg.dropout, cfg.dropout_blocks, cfg.test_dropout,
                          cfg.fused)
        D = PatchDiscriminator(c_in + c_out if cfg.conditional else c_out, cfg.d_width, PATCHES[cfg.patch],
                               cfg.fused, norm="batch")
        self.setup_pair(G, D, cfg.lr_g, cfg.lr_d)
        # fixed pairs for the sample grids: held-out scenes, or the first pairs of a folder
        k = cfg.grid_size
        if self.pairs is not None:
            a, b = self.pairs.test_a[:k], self.pairs.test.images[:k]
        else:
            a, b = self.source.take(list(range(min(k, len(self.source)))))
        self.sample_x, self.sample_y = self._oriented(a.to(self.device), b.to(self.device))

    def _oriented(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return (a, b) if self.config.direction == "AtoB" else (b, a)

    def _d_input(self, x: Tensor, y: Tensor) -> Tensor:
        return self.prep(torch.cat([x, y], 1)) if self.config.conditional else y

    def train_step(self) -> dict:
        cfg = self.config
        rate = linear_decay(self.step, cfg.steps, cfg.decay_start)
        self.set_lr(cfg.lr_g * rate, cfg.lr_d * rate)
        a, b = self.source.next()
        x, y = (self.prep(t) for t in self._oriented(a, b))
        adversarial = cfg.gan_weight > 0
        with self.autocast():
            fake = self.g_fwd(x)
        rec = {"lr": cfg.lr_g * rate}
        if adversarial:
            with self.autocast():
                real_logits = self.d_fwd(self._d_input(x, y)).float()
                fake_logits = self.d_fwd(self._d_input(x, fake.detach())).float()
                out_d = losses.discriminator_loss(real_logits, fake_logits, cfg.loss)
                loss_d = 0.5 * out_d.loss
            rec.update(loss_d=float(loss_d.detach()), d_real=float(out_d.real_score),
                       d_fake=float(out_d.fake_score), grad_norm_d=self.step_d(loss_d))
        with frozen(self.D):
            with self.autocast():
                l1 = F.l1_loss(fake.float(), y)
                loss_g = cfg.l1_weight * l1
                if adversarial:
                    adv = losses.generator_loss(self.d_plain(self._d_input(x, fake)).float(), cfg.loss).loss
                    loss_g = loss_g + cfg.gan_weight * adv
                    rec["loss_adv"] = float(adv.detach())
            rec["grad_norm_g"] = self.step_g(loss_g)
        rec.update(loss_g=float(loss_g.detach()), loss_l1=float(l1.detach()))
        return rec

    def progress_postfix(self, rec: dict) -> dict:
        out = dict(L1=f"{rec['loss_l1']:.3f}")
        if "loss_d" in rec:
            out.update(adv=f"{rec['loss_adv']:.3f}", D=f"{rec['loss_d']:.3f}")
        return out

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        """Rows: input, output, truth."""
        G = self.evaluation_generator
        with eval_mode(G):
            out = translate_all(G, self.prep(self.sample_x))
        rows = [t.float().cpu() for t in (self.sample_x, out, self.sample_y)]
        rows = [r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]
        save_grid(torch.cat(rows), path, nrow=self.sample_x.shape[0], scale=2)

    def finish(self) -> dict:
        cfg = self.config
        if not (cfg.eval and self.pairs is not None and cfg.direction == "AtoB"):
            return {}
        return self.write_metrics({"step": self.step, "objective": objective(cfg),
                                   **evaluate(self.evaluation_generator, self.pairs)})


def objective(cfg: Pix2PixConfig) -> str:
    """The run's objective in the paper's terms: L1, GAN, cGAN, L1+GAN or L1+cGAN."""
    gan = ("cGAN" if cfg.conditional else "GAN") if cfg.gan_weight > 0 else ""
    return "+".join(t for t in ("L1" if cfg.l1_weight > 0 else "", gan) if t)

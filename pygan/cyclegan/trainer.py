"""The CycleGAN trainer (Zhu et al. 2017) on the shared training core.

Per step: one generator step for both generators (adversarial loss of each against its discriminator, cycle L1
x cycle_weight both ways, identity L1 x identity_weight x cycle_weight both ways), then one step for both
discriminators on real images vs generated ones drawn through a history pool of `pool_size` images per domain.
Adam for both pairs; the learning rate is constant, then decays linearly to 0 from `decay_start` x steps on.
Every random draw (minibatches, the pools' choices) comes from the checkpointed generator: resume is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan import losses
from pygan._io import save_grid
from pygan.cyclegan.data import Domains, load_domains
from pygan.cyclegan.evaluate import CHECKPOINT, evaluate
from pygan.cyclegan.models import UPSAMPLE, Discriminators, Generators
from pygan.data import BatchSource, DataError
from pygan.parts import ImagePool
from pygan.training import DataConfig, TrainerBase, default, eval_mode, frozen, option
from pygan.training.schedule import linear_decay


@dataclass
class CycleGANConfig(DataConfig):
    data_a: str = option("digits", "domain A: 'digits' (the embedded digit domains, whose true translation is "
                                   "known; then data_b is 'digits' too) or a folder of images")
    data_b: str = option("digits", "domain B: 'digits' or a folder of images (large folders are streamed, see "
                                   "--data-mode)")
    out: str = default("runs/cyclegan")
    size: int = option(32, "image size (images are resized and centre-cropped to size x size)", ge=8)
    width: int = option(16, "generator width: channels of its first layer (the paper: 64)", ge=1)
    blocks: int = option(6, "generator residual blocks (the paper: 6 at 128x128, 9 at 256x256)", ge=1)
    upsample: str = option("transpose", "generator upsampling: transpose (the paper) or resize (nearest 2x + "
                                        "conv: no checkerboard artefacts)", choices=UPSAMPLE)
    flip: bool = option(True, "random horizontal flips of the training images (image folders; the embedded "
                                "digits are never flipped)")
    d_width: int = option(16, "discriminator width (the paper: 64)", ge=1)
    d_layers: int = option(3, "discriminator stride-2 layers (3: 70x70 patches)", ge=1)
    steps: int = default(1500)
    batch_size: int = default(8)
    loss: str = default("least_squares")
    decay_start: float = option(0.5, "the learning rate decays linearly to 0 from this fraction of the steps on",
                                ge=0, lt=1)
    cycle_weight: float = option(10.0, "weight of the cycle-consistency L1 loss (0: off, the ablation)", ge=0)
    identity_weight: float = option(0.0, "weight of the identity L1 loss G(y) ~ y, relative to cycle_weight (0: "
                                    "off; the paper's code uses 0.5 to keep colours, e.g. painting <-> photo; it "
                                    "resists translations that change brightness, as the embedded domains' does)",
                                    ge=0)
    pool_size: int = option(50, "generated images kept per discriminator's history pool (0: no pool)", ge=0)
    ema_decay: float = default(0.0)

    def check(self) -> None:
        if self.size % 4:
            raise ValueError(f"size must be a multiple of 4, got {self.size}")
        if self.size // 2 ** self.d_layers < 3:  # its last instance norm needs more than one value per plane
            raise ValueError(f"size {self.size} is too small for a discriminator of {self.d_layers} layers "
                             f"(size / 2**d_layers must be >= 3)")


class CycleGANTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = CycleGANConfig
    curve_panels = (("generators", {"loss_adv": "adversarial", "loss_cycle": "cycle L1", "loss_identity": "identity L1"}),
                    ("discriminators ({loss})", {"loss_d_a": "D_A", "loss_d_b": "D_B"}))

    def __init__(self, config: CycleGANConfig, dataset: Domains | None = None):
        """`dataset` (optional): a pygan.cyclegan.data.Domains to train on instead of data_a / data_b."""
        cfg = self._setup(config)
        if dataset is None and cfg.data_a != "digits" and cfg.data_b != "digits":
            self.domains = None  # two folders: each its own batch source, in memory or streamed
            data_a, data_b = cfg.data_a, cfg.data_b
        else:  # the embedded domains (with their held-out test pairs) or a caller's Domains: in memory
            self.domains = dataset if dataset is not None else load_domains(cfg.data_a, cfg.data_b, cfg.size)
            data_a, data_b = self.domains.a, self.domains.b
        self.a, self.b = (self._source(name, data, i) for i, (name, data) in enumerate((("a", data_a),
                                                                                        ("b", data_b))))
        if self.a.channels != self.b.channels:
            raise ValueError(f"the domains' images differ in channels: A {self.a.channels}, B {self.b.channels}")
        c = self.a.channels
        self.flip = cfg.flip and (self.domains is None or self.domains.test_a is None)  # digits: never mirrored
        self.setup_pair(Generators(c, cfg.width, cfg.blocks, cfg.upsample, cfg.fused),
                        Discriminators(c, cfg.d_width, cfg.d_layers, cfg.fused), cfg.lr_g, cfg.lr_d)
        self.pool_a, self.pool_b = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
        # fixed images for the sample grids
        k = min(cfg.grid_size, len(self.a), len(self.b))
        self.sample_a, self.sample_b = self.a.take(list(range(k)))[0], self.b.take(list(range(k)))[0]

    def _source(self, name: str, data, seed_offset: int) -> BatchSource:
        """Domain `name`'s batch source (3 channels; the second domain's stream has a seed of its own)."""
        try:
            source = self.setup_data(data, self.config.size, 3, name=name, seed_offset=seed_offset)
        except DataError as e:
            raise DataError(f"data_{name}: {e}") from None
        if len(source) < 2:
            raise DataError(f"data_{name} needs at least 2 images, got {len(source)}")
        return source

    def _batch(self, source: BatchSource) -> Tensor:
        n = self.config.batch_size
        x, _ = source.next()
        if self.flip and source.kind == "memory":  # (a streamed source flips as it decodes)
            # drawn for the global batch, so that every process count sees the same images
            mirror = (torch.rand(n, generator=self.gen, device=self.device) < 0.5)[self.my_slice]
            x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
        return self.prep(x)

    def train_step(self) -> dict:
        cfg = self.config
        rate = linear_decay(self.step, cfg.steps, cfg.decay_start)
        self.set_lr(cfg.lr_g * rate, cfg.lr_d * rate)
        real_a, real_b = self._batch(self.a), self._batch(self.b)
        idt = cfg.identity_weight * cfg.cycle_weight
        with frozen(self.D):
            with self.autocast():
                out = self.g_fwd(real_a, real_b, identity=idt > 0)
                fake_a, fake_b = out["fake_a"].float(), out["fake_b"].float()
                logits_a, logits_b = self.d_plain(fake_a, fake_b)
                adv = (losses.generator_loss(logits_a.float(), cfg.loss).loss
                       + losses.generator_loss(logits_b.float(), cfg.loss).loss)
                cycle = F.l1_loss(out["rec_a"].float(), real_a) + F.l1_loss(out["rec_b"].float(), real_b)
                loss_g = adv + cfg.cycle_weight * cycle
                if idt > 0:
                    identity = F.l1_loss(out["idt_a"].float(), real_a) + F.l1_loss(out["idt_b"].float(), real_b)
                    loss_g = loss_g + idt * identity
            gnorm_g = self.step_g(loss_g)

        # real and pooled fakes in one batch per discriminator (instance norm: per-sample statistics)
        pa, pb = self.pool_a.query(fake_a, self.gen), self.pool_b.query(fake_b, self.gen)
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        with self.autocast():
            la, lb = self.d_fwd(self.prep(torch.cat([real_a, pa])), self.prep(torch.cat([real_b, pb])))
            la, lb = la.float(), lb.float()
            out_a = losses.discriminator_loss(la[:n_a], la[n_a:], cfg.loss)
            out_b = losses.discriminator_loss(lb[:n_b], lb[n_b:], cfg.loss)
            loss_d = out_a.loss + out_b.loss
        gnorm_d = self.step_d(loss_d)
        rec = {"lr": cfg.lr_g * rate, "loss_g": float(loss_g.detach()), "loss_adv": float(adv.detach()),
               "loss_cycle": float(cycle.detach()), "loss_d_a": float(out_a.loss.detach()),
               "loss_d_b": float(out_b.loss.detach()), "grad_norm_g": gnorm_g, "grad_norm_d": gnorm_d}
        if idt > 0:
            rec["loss_identity"] = float(identity.detach())
        return rec

    def progress_postfix(self, rec: dict) -> dict:
        return dict(G=f"{rec['loss_g']:.3f}", cyc=f"{rec['loss_cycle']:.3f}", DA=f"{rec['loss_d_a']:.3f}",
                    DB=f"{rec['loss_d_b']:.3f}")

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        """Rows x, G(x), F(G(x)) and y, F(y), G(F(y))."""
        G = self.evaluation_generator
        with eval_mode(G):
            out = G(self.sample_a, self.sample_b, identity=False)
        rows = [self.sample_a, out["fake_b"], out["rec_a"], self.sample_b, out["fake_a"], out["rec_b"]]
        save_grid(torch.cat([r.float() for r in rows]), path, nrow=self.sample_a.shape[0], scale=2)

    def models_state_dict(self) -> dict:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.pool_a.load_state_dict(ckpt["pool_a"], self.device)
        self.pool_b.load_state_dict(ckpt["pool_b"], self.device)

    def finish(self) -> dict:
        if not (self.config.eval and self.domains is not None and self.domains.test_a is not None):
            return {}
        return self.write_metrics({"step": self.step, **evaluate(self.evaluation_generator, self.domains)})

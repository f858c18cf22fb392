"""The SRResNet / SRGAN trainer: the paper's recipe (Ledig et al. 2017) on the shared training core.

Steps 1..pretrain_steps train SRResNet alone on the pixel MSE; its weights at the end of that stage are kept in the
checkpoint as `G_srresnet`. Steps after that fine-tune the same generator as SRGAN: per iteration one discriminator
step on HR crops vs the generator's outputs, then one generator step on content loss (`content`: pixel MSE, or the
VGG19 feature loss) + adv_weight x the adversarial loss (`loss`: a pygan.losses kind). Adam for both.

Under torch.distributed it runs as the DCGAN trainer does (see pygan.dcgan.trainer and TrainerBase.distribute_models):
`batch_size` is the global batch, each rank cuts its share of the same draws, G and D in DDP with synchronized
BatchNorm.

The default configuration is the light one that finishes on a 2-core CPU in minutes; the paper's network is
`width=64, blocks=16, d_width=64` (with 10^6 pretraining steps on ImageNet).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import Tensor
import torch.nn.functional as F

from pygan import losses
from pygan.data import CropBatches, DataError, Streaming, scan_folder
from pygan.sr.data import bicubic_upscale, held_out_images, load_pairs, make_lr, save_image
from pygan.sr.evaluate import CHECKPOINT, evaluate_sr, generators_from_checkpoint, save_comparison
from pygan.sr.models import SCALES, SRDiscriminator, SRResNet
from pygan.sr.vgg import VGGFeatureLoss
from pygan.training import DataConfig, TrainerBase, default, eval_mode, frozen, option
from pygan.training.schedule import drop


@dataclass
class SRConfig(DataConfig):
    data: str = option("bundled", "training data: 'bundled' (the training split of the photos bundled with "
                                  "scikit-image and scikit-learn), a folder of images (HR; LR made by bicubic "
                                  "downsampling; large folders are streamed, see --data-mode), or a folder with lr/ "
                                  "and hr/ sub-folders of ready pairs with the same file names")
    out: str = default("runs/srgan")
    crop: str = default("center", "not used by SR: its training crops are random (--hr-crop), flipped and rotated")
    flip: bool = default(False, "not used by SR: its training crops are random (--hr-crop), flipped and rotated")
    scale: int = option(4, "upscaling factor", choices=SCALES)
    hr_crop: int = option(96, "size of the random HR training crops (a multiple of the scale)", ge=16)
    width: int = option(32, "generator channels (the paper: 64)", ge=1)
    blocks: int = option(6, "generator residual blocks (the paper: 16)", ge=1)
    bicubic_skip: bool = option(True, "add the bicubic upscaling of the input to the generator's output: it learns "
                                      "only the missing detail (--no-bicubic-skip: the paper's form)")
    d_width: int = option(16, "discriminator width: channels of its first layer (the paper: 64)", ge=1)
    steps: int = default(2600, "training steps: SRResNet pretraining, then SRGAN fine-tuning")
    pretrain_steps: int = option(2400, "SRResNet steps on the pixel MSE (stage 1); the SRGAN stage is the steps "
                                       "after them (none when equal to --steps)", ge=0)
    batch_size: int = default(8)
    lr_g: float = default(5e-4, "the generator's Adam learning rate (the paper: 1e-4); x0.1 for the last 20% of "
                                "pretraining and the second half of the SRGAN stage")
    lr_d: float = default(5e-4, "the discriminator's Adam learning rate; x0.1 for the second half of the SRGAN "
                                "stage")
    beta1: float = default(0.9)
    content: str = option("mse", "content loss of the SRGAN stage: mse, or vgg (VGG19 features; needs "
                                 "--vgg-weights)", choices=("mse", "vgg"))
    vgg_layer: str = option("5_4", "VGG19 layer i_j of the VGG loss (after the activation of conv j before "
                                   "pooling i)")
    vgg_weights: str = option("", "local torchvision VGG19 state_dict for --content vgg (or set "
                                  "PYGAN_VGG19_WEIGHTS); nothing is downloaded")
    adv_weight: float = option(1e-3, "weight of the adversarial loss in the SRGAN stage", ge=0)
    ema_decay: float = default(0.0)
    channels_last: bool = default(True)

    def check(self) -> None:
        if self.hr_crop % self.scale:
            raise ValueError(f"hr_crop must be a multiple of the scale ({self.scale}), got {self.hr_crop}")
        if self.pretrain_steps > self.steps:
            raise ValueError(f"pretrain_steps ({self.pretrain_steps}) must be at most steps ({self.steps})")

    @property
    def gan_steps(self) -> int:
        return self.steps - self.pretrain_steps


class SRTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = SRConfig
    curve_panels = (("content loss", {"loss_content": "content"}),
                    ("adversarial ({loss})", {"loss_d": "D loss", "loss_adv": "G adversarial"}))

    def __init__(self, config: SRConfig, dataset=None):
        """`dataset` (optional): a pygan.sr.data.PairSampler to train on instead of `config.data`."""
        cfg = self._setup(config)
        self.stream = self._stream(cfg) if dataset is None else None
        self.pairs = None if self.stream is not None else (
            dataset if dataset is not None else load_pairs(cfg.data, cfg.scale, cfg.hr_crop))
        self.data_gen = torch.Generator().manual_seed(cfg.seed)  # crops are cut on the CPU
        G = SRResNet(cfg.scale, 3, cfg.width, cfg.blocks, cfg.bicubic_skip, fused=cfg.fused)
        D = SRDiscriminator(3, cfg.d_width, fused=cfg.fused)
        self.setup_pair(G, D, cfg.lr_g, cfg.lr_d)
        self.G_srresnet: dict | None = None  # the generator's state at the end of pretraining
        self.vgg = None
        if cfg.content == "vgg" and cfg.gan_steps > 0:
            self.vgg = VGGFeatureLoss(cfg.vgg_layer, cfg.vgg_weights or None).to(self.device)
        # a fixed held-out crop for the sample images: bicubic | generator | original
        name, hr = held_out_images(cfg.scale)[0]
        c = min(128, *hr.shape[-2:]) // cfg.scale * cfg.scale
        y0, x0 = (hr.shape[-2] - c) // 2 // cfg.scale * cfg.scale, (hr.shape[-1] - c) // 2 // cfg.scale * cfg.scale
        self.sample_hr = hr[:, y0:y0 + c, x0:x0 + c][None].to(self.device)
        self.sample_lr = make_lr(self.sample_hr, cfg.scale)

    def _stream(self, cfg: SRConfig) -> Streaming | None:
        """A folder of HR images to stream (--data-mode stream, or auto with more bytes on disk - a lower bound of
        their decoded size - than --memory-limit-mb): HR crops decoded in loader workers (pygan.data.stream's
        CropBatches; images drawn uniformly, not by their number of crop positions). None: in memory."""
        if cfg.data_mode == "memory" or not os.path.isdir(cfg.data) or os.path.isdir(os.path.join(cfg.data, "lr")):
            if cfg.data_mode == "stream":
                raise DataError(f"--data-mode stream needs a folder of HR images, not {cfg.data!r}")
            return None
        index = scan_folder(cfg.data)
        if cfg.data_mode == "auto" and sum(index.sizes) <= cfg.memory_limit_mb * 2**20:
            return None
        crops = CropBatches(index, cfg.hr_crop, cfg.scale, cfg.batch_size, cfg.seed, self.rank, self.world_size)
        return self.add_source("data", Streaming(crops, 3, self.source_options(), self.device, [], unit=True))

    @property
    def stage(self) -> str:
        return "srresnet" if self.step < self.config.pretrain_steps else "srgan"

    # ---------------------------------------------------------------- one iteration
    def _batch(self) -> tuple[Tensor, Tensor]:
        # the global batch's draws, this rank's crops (see TrainerBase.distribute_models)
        if self.stream is not None:
            hr, _ = self.stream.next()
            return self.prep(make_lr(hr, self.config.scale)), self.prep(hr)
        lr, hr = self.pairs.sample(self.config.batch_size, self.data_gen, keep=self.my_slice)
        return self.prep(lr.to(self.device, non_blocking=True)), self.prep(hr.to(self.device, non_blocking=True))

    def _content(self, sr: Tensor, hr: Tensor) -> Tensor:
        if self.vgg is not None and self.stage == "srgan":
            return self.vgg(sr, hr)
        return F.mse_loss(sr, hr)

    def rate(self) -> float:
        """The factor on the learning rates in the coming step: x0.1 for the last 20% of pretraining and for the
        second half of the SRGAN stage (a function of the step alone: a resumed run follows the same schedule)."""
        cfg, s = self.config, self.step
        if s < cfg.pretrain_steps:
            return drop(s, cfg.pretrain_steps, at=0.8)
        return drop(s - cfg.pretrain_steps, cfg.gan_steps, at=0.5)

    def train_step(self) -> dict:
        cfg = self.config
        stage = self.stage
        rate = self.rate()
        self.set_lr(cfg.lr_g * rate, cfg.lr_d * rate)
        lr, hr = self._batch()
        rec: dict = {"stage": stage, "lr": cfg.lr_g * rate}
        if stage == "srgan":
            with self.autocast():
                with torch.no_grad():
                    sr = self.g_plain(lr)
                out = losses.discriminator_loss(self.d_fwd(hr).float(), self.d_fwd(sr.float()).float(), kind=cfg.loss)
            rec["grad_norm_d"] = self.step_d(out.loss)
            rec.update(loss_d=float(out.loss.detach()), d_real=float(out.real_score), d_fake=float(out.fake_score))
        with frozen(self.D):
            with self.autocast():
                sr = self.g_fwd(lr).float()
                content = self._content(sr, hr)
                loss_g = content
                if stage == "srgan":
                    adv = losses.generator_loss(self.d_plain(sr).float(), kind=cfg.loss).loss
                    loss_g = content + cfg.adv_weight * adv
                    rec["loss_adv"] = float(adv.detach())
            rec["grad_norm_g"] = self.step_g(loss_g)
        rec.update(loss_content=float(content.detach()), loss_g=float(loss_g.detach()))
        return rec

    def after_step(self, rec: dict) -> None:
        if self.step == self.config.pretrain_steps:
            self.G_srresnet = copy.deepcopy(self.evaluation_generator.state_dict())

    def progress_postfix(self, rec: dict) -> dict:
        post = {"stage": rec["stage"], "content": f"{rec['loss_content']:.4f}"}
        if "loss_d" in rec:
            post.update(D=f"{rec['loss_d']:.3f}", Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}")
        return post

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        """bicubic | generator | original of a held-out crop."""
        G = self.evaluation_generator
        with eval_mode(G):
            sr = G(self.sample_lr).float().clamp(0, 1)
        save_image(torch.cat([bicubic_upscale(self.sample_lr, self.config.scale), sr, self.sample_hr], -1)[0], path)

    def finish(self) -> dict:
        if not self.config.eval:
            return {}
        gens = self.generators()
        metrics = evaluate_sr(gens, self.config.scale)
        metrics["step"] = self.step
        save_comparison(gens, self.config.scale, os.path.join(self.config.out, "comparison.png"))
        return self.write_metrics(metrics)

    def generators(self) -> dict[str, SRResNet]:
        """{'SRResNet': ..., 'SRGAN': ...} in eval mode (the stages this run has reached)."""
        # only what generators_from_checkpoint reads: no optimizer or RNG state is gathered
        ckpt = {"config": {"pretrain_steps": self.config.pretrain_steps}, "step": self.step,
                "G_srresnet": self.G_srresnet, "G_ema": self.evaluation_generator.state_dict(),
                "G_config": self.G.config}
        return generators_from_checkpoint(ckpt, self.device)

    # ---------------------------------------------------------------- checkpoints
    def models_state_dict(self) -> dict:
        return {"G_srresnet": self.G_srresnet, "data_gen": self.data_gen.get_state()}

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.G_srresnet = ckpt["G_srresnet"]
        self.data_gen.set_state(ckpt["data_gen"])

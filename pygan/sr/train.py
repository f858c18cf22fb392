"""The SRResNet / SRGAN trainer: the paper's recipe (Ledig et al. 2017) on pygan.training's machinery.

Steps 1..pretrain_steps train SRResNet alone on the pixel MSE; its weights at the end of that stage are kept in the
checkpoint as `G_srresnet`. Steps after that fine-tune the same generator as SRGAN: per iteration one discriminator
step on HR crops vs the generator's outputs, then one generator step on content loss (`content`: pixel MSE, or the
VGG19 feature loss) + adv_weight x the adversarial loss (`loss`: a pygan.losses kind). Adam for both.

Under torch.distributed it runs as the DCGAN trainer does (see pygan.train and TrainerBase.distribute_models):
`batch_size` is the global batch, each rank cuts its share of the same draws, G and D in DDP with synchronized
BatchNorm.

The default configuration is the light one that finishes on a 2-core CPU in minutes; the paper's network is
`width=64, blocks=16, d_width=64` (with 10^6 pretraining steps on ImageNet).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass

import torch
from torch import Tensor
import torch.nn.functional as F

from pygan import losses
from pygan._io import atomic_path
from pygan.models import SRDiscriminator, SRResNet, check_scale
from pygan.sr.data import bicubic_upscale, held_out_images, load_pairs, make_lr
from pygan.sr.metrics import CONVENTIONS, psnr, ssim
from pygan.training import TrainerBase, ema_update, plot_curves

CHECKPOINT_FORMAT = "pygan-srgan-checkpoint-v1"


@dataclass
class SRTrainConfig:
    data: str = "bundled"             # 'bundled' (the bundled photos' training split), a folder of images, or a
                                      # folder with lr/ and hr/ sub-folders of ready pairs
    out: str = "runs/srgan"           # output folder: checkpoint.pt, log.jsonl, samples/, curves.png, metrics.json
    scale: int = 4                    # 2 or 4
    hr_crop: int = 96                 # HR crop size of the training pairs (a multiple of scale)
    width: int = 32                   # generator channels (the paper: 64)
    blocks: int = 6                   # residual blocks (the paper: 16)
    bicubic_skip: bool = True         # generator output = bicubic upscaling + learned residual (the paper: False)
    d_width: int = 16                 # discriminator width (the paper: 64)
    pretrain_steps: int = 2400        # SRResNet steps on the pixel MSE
    gan_steps: int = 200              # SRGAN fine-tuning steps after that (0: SRResNet only)
    batch_size: int = 8               # the paper: 16
    lr: float = 5e-4                  # Adam, G and D (the paper: 1e-4); x0.1 for the last 20% of pretraining and
                                      # the second half of the SRGAN stage (the paper's 10x drop halfway)
    beta1: float = 0.9
    beta2: float = 0.999
    content: str = "mse"              # SRGAN stage content loss: 'mse' or 'vgg' (needs vgg_weights)
    vgg_layer: str = "5_4"            # phi_i,j of the VGG loss
    vgg_weights: str = ""             # local torchvision VGG19 state_dict (or env PYGAN_VGG19_WEIGHTS)
    adv_weight: float = 1e-3          # weight of the adversarial term in the SRGAN stage
    loss: str = "non_saturating"      # adversarial loss: one of pygan.losses.LOSS_KINDS
    ema_decay: float = 0.0            # EMA of the generator's weights used for evaluation (0: off)
    amp: str = "none"                 # autocast: none, bf16 or fp16
    channels_last: bool = True        # ~1.4x faster convolutions on a CPU (oneDNN) than NCHW, and on GPUs
    compile: bool = False             # torch.compile the models
    fused: bool = True                # pygan's fused BN+activation (False: stock torch.nn layers)
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    eval: bool = True                 # evaluate on the held-out bundled photos at the end
    progress: bool = True

    def validate(self) -> "SRTrainConfig":
        check_scale(self.scale)
        if self.loss not in losses.LOSS_KINDS:
            raise ValueError(f"loss must be one of {', '.join(losses.LOSS_KINDS)}, got {self.loss!r}")
        if self.content not in ("mse", "vgg"):
            raise ValueError(f"content must be 'mse' or 'vgg', got {self.content!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        if self.hr_crop % self.scale or self.hr_crop < 16:
            raise ValueError(f"hr_crop must be a multiple of the scale ({self.scale}) and >= 16, got {self.hr_crop}")
        for name in ("width", "blocks", "d_width", "batch_size", "log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_steps", "gan_steps", "adv_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pretrain_steps + self.gan_steps < 1:
            raise ValueError("pretrain_steps + gan_steps must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        return self


class SRTrainer(TrainerBase):
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "SRGAN"
    config_class = SRTrainConfig

    def __init__(self, config: SRTrainConfig, dataset=None):
        """`dataset` (optional): a pygan.sr.data.PairSampler to train on instead of `config.data`."""
        cfg = config.validate()
        self._setup(cfg)
        self.pairs = dataset if dataset is not None else load_pairs(cfg.data, cfg.scale, cfg.hr_crop)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)  # crops are cut on the CPU
        self.G = SRResNet(cfg.scale, 3, cfg.width, cfg.blocks, cfg.bicubic_skip, fused=cfg.fused).to(self.device)
        self.D = SRDiscriminator(3, cfg.d_width, fused=cfg.fused).to(self.device)
        if cfg.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        self.G_srresnet: dict | None = None  # the generator's state at the end of pretraining
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.scaler_g, self.scaler_d = self.grad_scaler(), self.grad_scaler()
        self.distribute_models(cfg.batch_size)
        self.vgg = None
        if cfg.content == "vgg" and cfg.gan_steps > 0:
            from pygan.sr.vgg import VGGFeatureLoss

            self.vgg = VGGFeatureLoss(cfg.vgg_layer, cfg.vgg_weights or None).to(self.device)
        # a fixed held-out crop for the sample images: bicubic | generator | original
        name, hr = held_out_images(cfg.scale)[0]
        c = min(128, *hr.shape[-2:]) // cfg.scale * cfg.scale
        y0, x0 = (hr.shape[-2] - c) // 2 // cfg.scale * cfg.scale, (hr.shape[-1] - c) // 2 // cfg.scale * cfg.scale
        self.sample_hr = hr[:, y0:y0 + c, x0:x0 + c][None].to(self.device)
        self.sample_lr = make_lr(self.sample_hr, cfg.scale)

    @property
    def total_steps(self) -> int:
        return self.config.pretrain_steps + self.config.gan_steps

    @property
    def stage(self) -> str:
        return "srresnet" if self.step < self.config.pretrain_steps else "srgan"

    # ---------------------------------------------------------------- one iteration
    def _batch(self) -> tuple[Tensor, Tensor]:
        # the global batch's draws, this rank's crops (see TrainerBase.distribute_models)
        lr, hr = self.pairs.sample(self.config.batch_size, self.data_gen, keep=self.my_slice)
        return self.prep(lr.to(self.device, non_blocking=True)), self.prep(hr.to(self.device, non_blocking=True))

    def _content(self, sr: Tensor, hr: Tensor) -> Tensor:
        if self.vgg is not None and self.stage == "srgan":
            return self.vgg(sr, hr)
        return F.mse_loss(sr, hr)

    def learning_rate(self) -> float:
        """The rate of the coming step: `lr`, divided by 10 for the last 20% of pretraining and for the second half
        of the SRGAN stage (a function of the step alone, so a resumed run follows the same schedule)."""
        cfg, s = self.config, self.step
        if s < cfg.pretrain_steps:
            return cfg.lr * (0.1 if s >= 0.8 * cfg.pretrain_steps else 1.0)
        return cfg.lr * (0.1 if s - cfg.pretrain_steps >= 0.5 * cfg.gan_steps else 1.0)

    def train_step(self) -> dict:
        cfg = self.config
        stage = self.stage
        rate = self.learning_rate()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = rate
        lr, hr = self._batch()
        self.G.train()
        rec: dict = {"stage": stage, "lr": rate}
        if stage == "srgan":
            self.D.train()
            with self.autocast():
                with torch.no_grad():
                    sr = self.g_plain(lr)
                out = losses.discriminator_loss(self.d_fwd(hr).float(), self.d_fwd(sr.float()).float(), kind=cfg.loss)
            self.check_finite("discriminator", out.loss)
            rec["grad_norm_d"] = self.optimizer_step(out.loss, self.opt_d, self.scaler_d, self.D.parameters())
            rec.update(loss_d=float(out.loss.detach()), d_real=float(out.real_score), d_fake=float(out.fake_score))
        self.D.requires_grad_(False)  # G's step needs D's input gradient only
        try:
            with self.autocast():
                sr = self.g_fwd(lr).float()
                content = self._content(sr, hr)
                loss_g = content
                if stage == "srgan":
                    adv = losses.generator_loss(self.d_plain(sr).float(), kind=cfg.loss).loss
                    loss_g = content + cfg.adv_weight * adv
                    rec["loss_adv"] = float(adv.detach())
            self.check_finite("generator", loss_g)
            rec["grad_norm_g"] = self.optimizer_step(loss_g, self.opt_g, self.scaler_g, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, cfg.ema_decay, self.step)
        self.step += 1
        if self.step == cfg.pretrain_steps:
            self.G_srresnet = copy.deepcopy(self.evaluation_generator().state_dict())
        rec.update(step=self.step, loss_content=float(content.detach()), loss_g=float(loss_g.detach()))
        return rec

    def progress_postfix(self, rec: dict) -> dict:
        post = {"stage": rec["stage"], "content": f"{rec['loss_content']:.4f}"}
        if "loss_d" in rec:
            post.update(D=f"{rec['loss_d']:.3f}", Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}")
        return post

    # ---------------------------------------------------------------- outputs
    def evaluation_generator(self) -> SRResNet:
        return self.G_ema if self.G_ema is not None else self.G

    def on_sample(self) -> None:
        from pygan.sr.data import save_image

        G = self.evaluation_generator()
        was = G.training
        G.eval()
        with torch.no_grad():
            sr = G(self.sample_lr).float().clamp(0, 1)
        G.train(was)
        row = torch.cat([bicubic_upscale(self.sample_lr, self.config.scale), sr, self.sample_hr], -1)[0]
        save_image(row, os.path.join(self.config.out, "samples", f"step_{self.step:06d}.png"))
        plot_curves(os.path.join(self.config.out, "curves.png"), self.history,
                    [("content loss", {"loss_content": "content"}),
                     (f"adversarial ({self.config.loss})", {"loss_d": "D loss", "loss_adv": "G adversarial"})])

    def finish(self) -> dict:
        if not self.config.eval:
            return {}
        gens = self.generators()
        metrics = evaluate_sr(gens, self.config.scale)
        metrics["step"] = self.step
        save_comparison(gens, self.config.scale, os.path.join(self.config.out, "comparison.png"))
        with atomic_path(os.path.join(self.config.out, "metrics.json"), ".json") as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=1)
        return metrics

    def generators(self) -> dict[str, SRResNet]:
        """{'SRResNet': ..., 'SRGAN': ...} in eval mode (the stages this run has reached)."""
        # only what generators_from_checkpoint reads: no optimizer or RNG state is gathered
        ckpt = {"config": {"pretrain_steps": self.config.pretrain_steps}, "step": self.step,
                "G_srresnet": self.G_srresnet, "G_eval": self.evaluation_generator().state_dict(),
                "G_config": self.G.config}
        return generators_from_checkpoint(ckpt, self.device)

    # ---------------------------------------------------------------- checkpoints
    def models_state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "G_eval": self.evaluation_generator().state_dict(), "G_srresnet": self.G_srresnet,
            "G_config": self.G.config, "D_config": self.D.config,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "data_gen": self.data_gen.get_state(),
        }

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None and ckpt["G_ema"] is not None:
            self.G_ema.load_state_dict(ckpt["G_ema"])
        self.G_srresnet = ckpt["G_srresnet"]
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.scaler_g.load_state_dict(ckpt["scaler_g"])
        self.scaler_d.load_state_dict(ckpt["scaler_d"])
        self.data_gen.set_state(ckpt["data_gen"])


def read_checkpoint(path: str) -> dict:
    return SRTrainer.read_checkpoint(path)


def generators_from_checkpoint(ckpt: dict, device="cpu") -> dict[str, SRResNet]:
    """The generators a checkpoint holds, in eval mode: 'SRResNet' (end of pretraining) and, once the SRGAN stage
    has begun, 'SRGAN' (the latest)."""
    out = {}
    cfg = ckpt["config"]
    states = {}
    if ckpt["G_srresnet"] is not None:
        states["SRResNet"] = ckpt["G_srresnet"]
    if ckpt["step"] > cfg["pretrain_steps"] or ckpt["G_srresnet"] is None:
        states["SRGAN" if ckpt["step"] > cfg["pretrain_steps"] else "SRResNet"] = ckpt["G_eval"]
    for name, state in states.items():
        G = SRResNet(**ckpt["G_config"])
        G.load_state_dict(state)
        out[name] = G.to(device).eval()
    return out


@torch.no_grad()
def evaluate_sr(generators: dict[str, torch.nn.Module], scale: int, images=None) -> dict:
    """PSNR / SSIM (both conventions: 'y' = BT.601 luma, and 'rgb'; border crop = scale) of bicubic and each
    generator on each held-out image (default: the held-out bundled photos) and their means."""
    images = images if images is not None else held_out_images(scale)
    methods = {"bicubic": None, **generators}
    rows = []
    for name, hr in images:
        lr = make_lr(hr, scale)
        row = {"image": name, "size": list(hr.shape[-2:])}
        for method, G in methods.items():
            if G is None:
                sr = bicubic_upscale(lr, scale)
            else:
                p = next(G.parameters())
                sr = G(lr[None].to(p.device, p.dtype))[0].float().cpu().clamp(0, 1)
            for conv in CONVENTIONS:
                row[f"{method}/psnr_{conv}"] = psnr(sr, hr, scale, conv)
                row[f"{method}/ssim_{conv}"] = ssim(sr, hr, scale, conv)
        rows.append(row)
    keys = [k for k in rows[0] if "/" in k]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    return {"scale": scale, "methods": list(methods), "images": rows, "mean": mean}


@torch.no_grad()
def save_comparison(generators: dict[str, torch.nn.Module], scale: int, path: str, crop: int = 128) -> None:
    """A PNG of the same held-out crop side by side: bicubic | each generator | original (`crop` HR pixels square,
    from the centre of the first held-out photo), each panel enlarged 2x (nearest) so the detail is visible."""
    from pygan.sr.data import save_image

    name, hr = held_out_images(scale)[0]
    lr = make_lr(hr, scale)
    c = crop // scale
    y0, x0 = (lr.shape[-2] - c) // 2, (lr.shape[-1] - c) // 2
    # upscale the whole image, then cut: the crop's border sees its real context, as in the table
    panels = [bicubic_upscale(lr, scale)]
    for G in generators.values():
        p = next(G.parameters())
        panels.append(G(lr[None].to(p.device, p.dtype))[0].float().cpu().clamp(0, 1))
    panels.append(hr)
    cut = [x[:, y0 * scale:(y0 + c) * scale, x0 * scale:(x0 + c) * scale] for x in panels]
    gap = torch.ones(3, crop, 4)
    row = torch.cat([t for x in cut for t in (x, gap)][:-1], -1)
    save_image(row.repeat_interleave(2, -1).repeat_interleave(2, -2), path)


def format_table(metrics: dict, convention: str = "y") -> str:
    """A markdown table: one row per image and the mean, PSNR (dB) / SSIM per method."""
    methods = metrics["methods"]
    head = "| image | " + " | ".join(f"{m} PSNR / SSIM" for m in methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 1)]
    for r in metrics["images"] + [{"image": "**mean**", **metrics["mean"]}]:
        cells = [f"{r[f'{m}/psnr_{convention}']:.2f} / {r[f'{m}/ssim_{convention}']:.4f}" for m in methods]
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

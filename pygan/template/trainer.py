"""The template trainer: one discriminator step on real digits against samples, then one generator step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pygan import losses
from pygan._io import save_grid
from pygan.template.evaluate import CHECKPOINT, evaluate
from pygan.template.models import TemplateDiscriminator, TemplateGenerator
from pygan.training import DataConfig, TrainerBase, default, eval_mode, frozen, option


@dataclass
class TemplateConfig(DataConfig):
    data: str = option("digits", "training data: 'digits' or a folder of images")
    out: str = default("runs/template")
    latent_dim: int = option(32, "latent vector size", ge=1)
    width: int = option(16, "channels of the networks' widest layer, halved towards the image", ge=1)
    steps: int = default(300)


class TemplateTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = TemplateConfig
    curve_panels = (("loss ({loss})", {"loss_d": "D", "loss_g": "G"}),)

    def __init__(self, config: TemplateConfig, dataset=None):
        cfg = self._setup(config)
        self.source = self.setup_data(dataset if dataset is not None else cfg.data, 16, None)
        c = self.source.channels
        self.setup_pair(TemplateGenerator(c, cfg.latent_dim, cfg.width, cfg.fused),
                        TemplateDiscriminator(c, cfg.width, cfg.fused), cfg.lr_g, cfg.lr_d)
        self.fixed_z = torch.randn(cfg.grid_size ** 2, cfg.latent_dim, generator=self.gen, device=self.device)

    def train_step(self) -> dict:
        cfg = self.config
        real, _ = self.source.next()
        z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=self.gen, device=self.device)[self.my_slice]
        with self.autocast():
            with torch.no_grad():
                fake = self.g_plain(z)
            d = losses.discriminator_loss(self.d_fwd(self.prep(real)).float(), self.d_fwd(fake).float(), cfg.loss)
        grad_norm_d = self.step_d(d.loss)
        with frozen(self.D):
            with self.autocast():
                g = losses.generator_loss(self.d_plain(self.g_fwd(z)).float(), cfg.loss)
            grad_norm_g = self.step_g(g.loss)
        return {"loss_d": float(d.loss.detach()), "loss_g": float(g.loss.detach()), "grad_norm_d": grad_norm_d,
                "grad_norm_g": grad_norm_g}

    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        with eval_mode(self.evaluation_generator):
            save_grid(self.evaluation_generator(self.fixed_z), path, nrow=self.config.grid_size)

    def finish(self) -> dict:
        if not (self.config.eval and self.config.data == "digits"):
            return {}
        with eval_mode(self.evaluation_generator):
            return self.write_metrics({"step": self.step, **evaluate(self.evaluation_generator)})

    def models_state_dict(self) -> dict:
        return {"fixed_z": self.fixed_z.cpu()}

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.fixed_z = ckpt["fixed_z"].to(self.device)

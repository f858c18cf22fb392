"""The text-to-image trainer (Reed et al. 2016, GAN-CLS + GAN-INT) on the shared training core.

Before training: the captions' text encoder (pygan.text2image.text: pretrained on the training captions and
images by a joint embedding objective, cached) embeds every training caption once; it stays frozen.
Per step, for a minibatch of training images each with one of its captions (drawn at random): G makes images from
noise and the captions' embeddings (and, GAN-INT, from as many interpolations of two captions' embeddings); one
discriminator step on (real image, its caption), (real image, a random other caption), (generated image, its
caption) - GAN-CLS, pygan.text2image.losses -; then one generator step through the frozen D. Every random draw
comes from the checkpointed generator: resume is exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from pygan._io import save_grid
from pygan.text2image.data import CaptionedData, load_captioned
from pygan.text2image.evaluate import CHECKPOINT, evaluate, recalibrate_bn
from pygan.text2image.losses import gan_cls_d_loss, gan_int_g_loss
from pygan.text2image.models import SIZES, MatchingDiscriminator, TextGenerator
from pygan.text2image.text import Text, cached_text_encoder
from pygan.training import TrainConfig, TrainerBase, default, frozen, option

# the rows of the sample grids on the embedded digits; three name held-out combinations (never trained on)
GRID_CAPTIONS = ("a thin zero", "a thick one", "the digit 2 drawn with heavy strokes", "a thick three",
                 "an upright four", "a thin five", "a six leaning left", "a seven leaning right", "a bold eight",
                 "a skinny nine tilted to the right")
CALIBRATION_CAPTIONS = 2048


@dataclass
class Text2ImageConfig(TrainConfig):
    data: str = option("digits", "training data: 'digits' (the embedded captioned digits, scored at the end) or a "
                                 "folder of images, each with a same-named .txt file of captions (one per line)")
    out: str = default("runs/text2image")
    size: int = option(16, "image size", choices=SIZES)
    channels: int = option(0, "image channels, 1 or 3 (0: from the data; digits are 1, folders 3)", choices=(0, 1, 3))
    latent_dim: int = option(32, "noise vector size", ge=1)
    text_dim: int = option(64, "text embedding size (the text encoder's output)", ge=1)
    encoder_steps: int = option(400, "pretraining steps of the text encoder (joint image-text embedding; cached "
                                     "after first use)", ge=1)
    proj_dim: int = option(32, "size the text embedding is projected to in G and in D", ge=1)
    g_width: int = option(32, "generator width: channels of its last hidden layer, doubled towards 4x4", ge=1)
    d_width: int = option(16, "discriminator width: channels of its first layer, doubled per downsampling", ge=1)
    steps: int = default(3000)
    mismatch_weight: float = option(0.5, "GAN-CLS: weight of D's (real image, mismatching caption) term; the "
                                         "generated-image term gets 1 minus it (0: plain conditional GAN)", ge=0, lt=1)
    hard_mismatch: float = option(0.5, "share of the mismatching captions drawn from another image of the same "
                                       "class that the caption does not fit (captioned digits only: it needs the "
                                       "captions' meanings; teaches D the attributes, not just the class; 0: all "
                                       "random, as the paper)", ge=0)
    int_weight: float = option(1.0, "GAN-INT: weight of G's loss on interpolated caption embeddings (0: off)", ge=0)
    int_beta: float = option(0.5, "GAN-INT: interpolation beta h1 + (1 - beta) h2", ge=0, lt=1)
    grid_size: int = default(8, "images per caption in the sample grids")
    eval: bool = default(True, "embedded digits: score the model at the end (class and attribute match, held-out "
                               "combinations, variety)")

    def check(self) -> None:
        if self.hard_mismatch > 1:
            raise ValueError(f"hard_mismatch must be in [0, 1], got {self.hard_mismatch}")


class Text2ImageTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = Text2ImageConfig
    curve_panels = (("losses", {"loss_g": "G", "loss_d": "D (GAN-CLS)"}),
                    ("D's mean sigmoid", {"d_real": "real, matching", "d_mismatch": "real, mismatching",
                                          "d_fake": "generated"}))

    def __init__(self, config: Text2ImageConfig, dataset: CaptionedData | None = None):
        """`dataset` (optional): a pygan.text2image.data.CaptionedData to train on instead of `data`."""
        cfg = self._setup(config)
        self.data = dataset if dataset is not None else load_captioned(cfg.data, cfg.size, cfg.channels or 3)
        train = self.data.train
        if train.images.shape[-1] != cfg.size:
            raise ValueError(f"the dataset's images are {train.images.shape[-1]} pixels wide, size is {cfg.size}")
        if cfg.channels and train.images.shape[1] != cfg.channels:
            raise ValueError(f"channels is {cfg.channels} but the data has {train.images.shape[1]}")
        self.text = cached_text_encoder(train, cfg.text_dim, cfg.encoder_steps)
        self._embed_captions()
        self.images = train.images.to(self.device)
        self.first, self.count = train.first.to(self.device), train.count.to(self.device)
        if train.labels is not None and train.meanings is not None:  # images grouped by class, for hard mismatches
            order = torch.argsort(train.labels, stable=True)
            counts = torch.bincount(train.labels)
            self.by_class, self.class_count = order.to(self.device), counts.to(self.device)
            self.class_first = (torch.cumsum(counts, 0) - counts).to(self.device)
            self.labels, self.levels = train.labels.to(self.device), train.levels.to(self.device)
            self.meanings = train.meanings.to(self.device)
        else:
            self.by_class = None
        c = train.images.shape[1]
        self.setup_pair(TextGenerator(cfg.size, c, cfg.latent_dim, cfg.text_dim, cfg.proj_dim, cfg.g_width, cfg.fused),
                        MatchingDiscriminator(cfg.size, c, cfg.text_dim, cfg.proj_dim, cfg.d_width, cfg.fused),
                        cfg.lr_g, cfg.lr_d)
        caps = list(GRID_CAPTIONS) if self.data.digits else [train.captions[int(i)] for i in train.first[:8]]
        self.grid_captions = caps
        g = torch.Generator().manual_seed(cfg.seed + 1)  # fixed noise: the same for every sample grid
        self.grid_z = torch.randn(len(caps) * cfg.grid_size, cfg.latent_dim, generator=g).to(self.device)

    def _embed_captions(self) -> None:
        train = self.data.train
        self.embeddings = self.text.embed(train.captions).to(self.device)
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, len(train.captions), (CALIBRATION_CAPTIONS,), generator=g)
        self.calibration = self.embeddings[idx.to(self.device)].cpu()

    def train_step(self) -> dict:
        cfg = self.config
        n, gen, dev = cfg.batch_size, self.gen, self.device
        img = torch.randint(0, len(self.images), (n,), generator=gen, device=dev)
        cap = self.first[img] + (torch.rand(n, generator=gen, device=dev) * self.count[img]).long()
        wrong = torch.randint(0, len(self.embeddings), (n,), generator=gen, device=dev)
        if cfg.hard_mismatch > 0 and self.by_class is not None:
            wrong = self._hard_mismatch(img, wrong)
        z = torch.randn(n, cfg.latent_dim, generator=gen, device=dev)
        use_int = cfg.int_weight > 0
        if use_int:  # the interpolation partner: another caption of the batch
            partner = cap[torch.randperm(n, generator=gen, device=dev)]
            z_int = torch.randn(n, cfg.latent_dim, generator=gen, device=dev)
        s = self.my_slice
        x, h, h_wrong = self.prep(self.images[img[s]]), self.embeddings[cap[s]], self.embeddings[wrong[s]]
        b = x.shape[0]
        h_all, z_all = h, z[s]
        if use_int:
            h_int = cfg.int_beta * h + (1 - cfg.int_beta) * self.embeddings[partner[s]]
            h_all, z_all = torch.cat([h, h_int]), torch.cat([z[s], z_int[s]])
        with self.autocast():
            fake_all = self.g_fwd(z_all, h_all)
        fake = fake_all[:b]

        # D: (real, match), (real, mismatch) in one pass (both real images); (fake, match) in another
        with self.autocast():
            s_real = self.d_fwd(torch.cat([x, x]), torch.cat([h, h_wrong])).float()
            s_fake = self.d_fwd(self.prep(fake.detach()), h).float()
            loss_d = gan_cls_d_loss(s_real[:b], s_real[b:], s_fake, cfg.loss, cfg.mismatch_weight)
        gnorm_d = self.step_d(loss_d)

        with frozen(self.D):
            with self.autocast():
                s_g = self.d_plain(self.prep(fake_all), h_all).float()
                loss_g = gan_int_g_loss(s_g[:b], s_g[b:] if use_int else None, cfg.loss, cfg.int_weight)
            gnorm_g = self.step_g(loss_g)
        with torch.no_grad():
            sr, sw, sf = (torch.sigmoid(v).mean() for v in (s_real[:b], s_real[b:], s_fake))
        return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                "d_real": float(sr), "d_mismatch": float(sw), "d_fake": float(sf),
                "grad_norm_g": gnorm_g, "grad_norm_d": gnorm_d}

    def _hard_mismatch(self, img, wrong):
        """With probability hard_mismatch, the mismatching caption of image i becomes a caption of a random image
        of i's class, kept when it does not fit i (another thickness or slant); otherwise the random one stays."""
        n, gen, dev = len(img), self.gen, self.device
        cls = self.labels[img]
        other = self.by_class[self.class_first[cls] + (torch.rand(n, generator=gen, device=dev)
                                                       * self.class_count[cls]).long()]
        cand = self.first[other] + (torch.rand(n, generator=gen, device=dev) * self.count[other]).long()
        m, lv = self.meanings[cand], self.levels[img]
        fits = ((m[:, 1] < 0) | (m[:, 1] == lv[:, 0])) & ((m[:, 2] < 0) | (m[:, 2] == lv[:, 1]))
        hard = (torch.rand(n, generator=gen, device=dev) < self.config.hard_mismatch) & ~fits
        return torch.where(hard, cand, wrong)

    def progress_postfix(self, rec: dict) -> dict:
        return dict(G=f"{rec['loss_g']:.3f}", D=f"{rec['loss_d']:.3f}", real=f"{rec['d_real']:.2f}",
                    wrong=f"{rec['d_mismatch']:.2f}", fake=f"{rec['d_fake']:.2f}")

    # ---------------------------------------------------------------- outputs
    def sampler(self):
        """A copy of the evaluation generator with recalibrated BatchNorm statistics, in eval mode."""
        # seed 0, as load_model: the scores at the end of training and those of eval-text2image are the same
        return recalibrate_bn(copy.deepcopy(self.evaluation_generator), self.calibration, seed=0)

    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        """One row per grid caption (the same noise every time)."""
        cfg = self.config
        G = self.sampler()
        emb = self.text.embed(self.grid_captions).to(self.device).repeat_interleave(cfg.grid_size, 0)
        save_grid(G(self.grid_z, emb).float(), path, nrow=cfg.grid_size, scale=2)

    def models_state_dict(self) -> dict:
        return {"text": self.text.state_dict(), "calibration": self.calibration,
                "grid_captions": self.grid_captions}

    def load_models_state_dict(self, ckpt: dict) -> None:
        self.text = Text.from_state_dict(ckpt["text"])
        self._embed_captions()

    def finish(self) -> dict:
        if not (self.config.eval and self.data.digits):
            return {}
        return self.write_metrics({"step": self.step, **evaluate(self.sampler().cpu(), self.text, self.data)})

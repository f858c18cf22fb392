"""The adversarial segmentation trainer (Luc et al. 2016) on the shared training core.

Per step, on one minibatch of (image, label map): the segmenter's step — per-pixel cross-entropy (ignoring the
ignore index) + adv_weight x the adversarial loss of the adversary's logit for (image, predicted probabilities)
(adv_weight 0: the plain segmenter, the baseline), the adversary frozen and given ground truths and predictions in
one batch as in its own step (its batch norm then normalizes both alike) — then the adversary's step on (image,
encoded ground truth) as real vs (image, detached prediction) as fake. The segmenter's optimizer is Adam or SGD with momentum, its learning
rate constant, poly or cosine over the steps; the adversary's is Adam at lr_d. Every random draw (the minibatches)
comes from the checkpointed generator: resume is exact. The segmenter is the pair's "G", the adversary its "D".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan import losses
from pygan._io import save_grid
from pygan.segmentation.data import Split, load_split
from pygan.data import ImageData, InMemory
from pygan.data.scenes import colorize
from pygan.segmentation.evaluate import CHECKPOINT, evaluate
from pygan.segmentation.models import ENCODINGS, Adversary, Segmenter, ground_truth_map
from pygan.training import TrainConfig, TrainerBase, default, eval_mode, frozen, option
from pygan.training.schedule import SCHEDULES

OPTIMIZERS = ("adam", "sgd")


@dataclass
class SegmentationConfig(TrainConfig):
    data: str = option("scenes", "'scenes' (the embedded digit scenes: background + 10 digit classes) or a folder "
                                 "of images (then --labels and --classes)")
    labels: str = option("", "folder of label maps, one per image (same relative path, .png): index PNG (mode L) "
                             "or palette PNG (mode P, VOC-style)")
    classes: str = option("", "class-names file: one name a line, class 0 first")
    ignore_index: int = option(255, "label value ignored by the loss and the metrics (VOC: 255)", ge=0)
    val_fraction: float = option(0.1, "image folders: fraction of the images held out for evaluation", gt=0, lt=1)
    out: str = default("runs/segmentation")
    size: int = option(48, "image size (images and label maps are resized and centre-cropped to size x size)",
                       ge=16)
    width: int = option(16, "segmenter width: channels of its first stage (doubling per stage)", ge=1)
    depth: int = option(2, "segmenter stride-2 stages (receptive field and the size's divisor 2**depth)", ge=1)
    d_width: int = option(32, "adversary width", ge=1)
    d_layers: int = option(3, "adversary conv blocks (all but the first stride 2)", ge=1)
    encoding: str = option("product", "the adversary's label-map encoding: basic (concatenated with the image), "
                                      "product (each class map times the image) or scaling (basic, ground truth "
                                      "softened)", choices=ENCODINGS)
    tau: float = option(0.9, "the scaling encoding: the least probability of a ground truth's class", gt=0, lt=1)
    adv_weight: float = option(0.1, "lambda, the weight of the adversarial loss in the segmenter's loss (0: the "
                                    "plain segmenter, the baseline)", ge=0)
    loss: str = default("non_saturating")
    steps: int = default(800)
    batch_size: int = default(16)
    optimizer: str = option("adam", "the segmenter's optimizer: adam (AdamW, betas from --beta1/--beta2) or sgd "
                                    "(momentum 0.9)", choices=OPTIMIZERS)
    lr_g: float = default(2e-3, "the segmenter's learning rate")
    lr_d: float = default(2e-4, "the adversary's learning rate (Adam)")
    schedule: str = option("poly", "the segmenter's learning-rate schedule over the steps: constant, poly "
                                   "((1 - step/steps)**0.9) or cosine", choices=("constant", "poly", "cosine"))
    weight_decay: float = option(1e-4, "the segmenter's weight decay", ge=0)
    ema_decay: float = default(0.0)

    def check(self) -> None:
        if self.size % 2 ** self.depth:
            raise ValueError(f"size must be a multiple of 2**depth = {2 ** self.depth}, got {self.size}")
        if self.size // 2 ** (self.d_layers - 1) < 2:
            raise ValueError(f"size {self.size} is too small for an adversary of {self.d_layers} layers "
                             f"(size / 2**(d_layers - 1) must be >= 2)")
        if self.data != "scenes" and not (self.labels and self.classes):
            raise ValueError("an image folder as data needs --labels (label maps) and --classes (class names)")


class SegmentationTrainer(TrainerBase):
    checkpoint = CHECKPOINT
    config_class = SegmentationConfig
    curve_panels = (("segmenter", {"loss_ce": "cross-entropy", "loss_adv": "adversarial"}),
                    ("adversary ({loss})", {"loss_d": "loss"}))

    def __init__(self, config: SegmentationConfig, dataset: Split | None = None):
        """`dataset` (optional): a pygan.segmentation.data.Split to train and evaluate on instead of `data`."""
        cfg = self._setup(config)
        self.split = dataset if dataset is not None else load_split(cfg.data, cfg.labels, cfg.classes, cfg.size,
                                                                    cfg.ignore_index, cfg.val_fraction)
        train = self.split.train
        # image and label map pairs: the label maps travel as the batch source's labels
        self.source = self.add_source("data", InMemory(ImageData(train.images, train.labels, train.classes), None,
                                                       self.gen, cfg.batch_size, self.my_slice, self.device))
        self.ignore_index, k = train.ignore_index, train.num_classes
        self.setup_pair(Segmenter(train.channels, k, cfg.width, cfg.depth, cfg.fused),
                        Adversary(train.channels, k, cfg.d_width, cfg.d_layers, cfg.encoding, cfg.fused),
                        cfg.lr_g, cfg.lr_d)
        test = self.split.test
        n = min(cfg.grid_size, len(test))
        self.sample_x, self.sample_y = test.images[:n].to(self.device), test.labels[:n]

    def make_optimizer(self, which: str, params, lr: float) -> torch.optim.Optimizer:
        cfg = self.config
        if which == "d":
            return super().make_optimizer(which, params, lr)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr, momentum=0.9, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    def ground_truth_map(self, labels: Tensor, probs: Tensor) -> Tensor:
        return ground_truth_map(labels, probs, self.ignore_index, self.config.encoding, self.config.tau)

    def segmenter_loss(self, logits: Tensor, labels: Tensor, adv_logits: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(total, cross-entropy, adversarial): CE + adv_weight x the adversarial loss (0 without adv_logits)."""
        ce = F.cross_entropy(logits, labels, ignore_index=self.ignore_index)
        adv = (losses.generator_loss(adv_logits, self.config.loss).loss if adv_logits is not None
               else torch.zeros((), device=logits.device))
        return ce + self.config.adv_weight * adv, ce, adv

    def train_step(self) -> dict:
        cfg = self.config
        rate = cfg.lr_g * SCHEDULES[cfg.schedule](self.step, cfg.steps)
        self.set_lr(rate)
        x, y = self.source.next()
        x = self.prep(x)
        with frozen(self.D):
            with self.autocast():
                logits = self.g_fwd(x).float()
                probs = logits.softmax(1)
                adv_logits = None
                if cfg.adv_weight > 0:
                    # the adversary sees the batch it trains on (ground truth and prediction): its batch norm
                    # statistics then match its own step's, where predictions alone would be normalized as if
                    # they were the whole distribution
                    real = self.ground_truth_map(y, probs.detach())
                    adv_logits = self.d_plain(torch.cat([x, x]), torch.cat([real, probs])).float()[x.shape[0]:]
                loss_s, ce, adv = self.segmenter_loss(logits, y, adv_logits)
            gnorm_s = self.step_g(loss_s, "segmenter")

        fake = probs.detach()
        real = self.ground_truth_map(y, fake)
        n = x.shape[0]
        with self.autocast():  # real and predicted maps in one batch (batch norm sees both alike)
            d = self.d_fwd(torch.cat([x, x]), torch.cat([real, fake])).float()
            out_d = losses.discriminator_loss(d[:n], d[n:], cfg.loss)
        gnorm_d = self.step_d(out_d.loss, "adversary")
        return {"lr": rate, "loss_s": float(loss_s.detach()), "loss_ce": float(ce.detach()),
                "loss_adv": float(adv.detach()), "loss_d": float(out_d.loss.detach()),
                "d_real": float(out_d.real_score), "d_fake": float(out_d.fake_score),
                "grad_norm_s": gnorm_s, "grad_norm_d": gnorm_d}

    def progress_postfix(self, rec: dict) -> dict:
        return dict(CE=f"{rec['loss_ce']:.3f}", adv=f"{rec['loss_adv']:.3f}", D=f"{rec['loss_d']:.3f}")

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self, path: str) -> None:
        """Rows image, ground truth, prediction (held-out images)."""
        S = self.evaluation_generator
        with eval_mode(S):
            pred = S(self.prep(self.sample_x)).argmax(1).cpu()
        x = self.sample_x.float().cpu()
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        rows = [x, colorize(self.sample_y, self.ignore_index), colorize(pred, self.ignore_index)]
        save_grid(torch.cat(rows), path, nrow=x.shape[0], scale=2)

    def finish(self) -> dict:
        if not self.config.eval:
            return {}
        return self.write_metrics({"step": self.step, "adv_weight": self.config.adv_weight,
                                   **evaluate(self.evaluation_generator, self.split.test, self.D, self.config.loss,
                                              self.config.tau)})

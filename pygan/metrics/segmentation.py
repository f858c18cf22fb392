"""Scores of label maps — pixel accuracy, mean class accuracy, IoU per class — from per-image confusion matrices with
image-bootstrap intervals; a segmenter trained on real labelled scenes (cached) that scores generated ones (the
FCN-score of pix2pix); and its feature statistics, a fixed feature space for the distance between sets of scenes."""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pygan._io import atomic_torch_save
from pygan.metrics.bootstrap import percentile_ci
from pygan.metrics.classifier import cache_dir
from pygan.parts import Segmenter

FIT_VERSION = 1  # bump when fit_segmenter changes: cached segmenters are then retrained


@torch.no_grad()
def predict(S, images: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """(labels (N, H, W) int64, probabilities (N, K, H, W)) of the segmenter S (used as it is: call .eval())."""
    p = next(S.parameters())
    probs = torch.cat([S(images[i:i + batch].to(p.device, p.dtype)).float().softmax(1).cpu()
                       for i in range(0, len(images), batch)])
    return probs.argmax(1), probs


def confusions(pred: Tensor, labels: Tensor, k: int, ignore_index: int) -> np.ndarray:
    """(N, k, k) per-image confusion matrices, [true, predicted], over the pixels not ignored."""
    n = len(labels)
    keep = labels != ignore_index
    img = torch.arange(n)[:, None, None].expand_as(labels)
    flat = (img[keep] * k + labels[keep]) * k + pred[keep]
    return torch.bincount(flat, minlength=n * k * k).reshape(n, k, k).numpy()


def _iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class from (..., k, k) confusions; NaN for a class absent from both truth and prediction."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    union = conf.sum(-1) + conf.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def _class_accuracy(conf: np.ndarray) -> np.ndarray:
    """The share of each class's pixels predicted as it, from (..., k, k) confusions; NaN for an absent class."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    total = conf.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, tp / total, np.nan)


def segmentation_scores(conf: np.ndarray, classes: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Pixel accuracy, mean class accuracy, mIoU and per-class IoU of per-image confusions (N, k, k), with
    image-bootstrap intervals (a class absent from a resample is left out of that resample's means)."""
    n, k, _ = conf.shape
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(np.float64)
    boot = (weights @ conf.reshape(n, k * k)).reshape(n_boot, k, k)
    total = conf.sum(0)
    acc = lambda c: np.trace(c, axis1=-2, axis2=-1) / c.sum((-2, -1))  # noqa: E731
    iou, boot_iou = _iou(total), _iou(boot)
    with warnings.catch_warnings():  # resamples without some class: left out of its interval
        warnings.simplefilter("ignore", RuntimeWarning)
        boot_miou = np.nanmean(boot_iou, axis=1)
        boot_class_acc = np.nanmean(_class_accuracy(boot), axis=1)
        lo, hi = np.nanpercentile(boot_iou, [2.5, 97.5], axis=0)
    per_class = {}
    for c, name in enumerate(classes):
        if not np.isnan(iou[c]):
            per_class[name] = {"mean": float(iou[c]), "ci95": [float(lo[c]), float(hi[c])]}
    return {"pixel_accuracy": {"mean": float(acc(total)), "ci95": percentile_ci(acc(boot))},
            "class_accuracy": {"mean": float(np.nanmean(_class_accuracy(total))),
                               "ci95": percentile_ci(boot_class_acc)},
            "mean_iou": {"mean": float(np.nanmean(iou)), "ci95": percentile_ci(boot_miou)}, "class_iou": per_class}


def fit_segmenter(images: Tensor, labels: Tensor, num_classes: int, ignore_index: int = 255, steps: int = 800,
                  batch: int = 16, width: int = 16, depth: int = 2, lr: float = 2e-3, seed: int = 0) -> Segmenter:
    """A Segmenter trained on `images` (N, C, H, W) in [-1, 1] with label maps `labels` (N, H, W) by per-pixel
    cross-entropy: the plain recipe of `pygan train segmentation --adv-weight 0` (AdamW, betas (0.5, 0.999), weight
    decay 1e-4, poly schedule). Deterministic (own seeds); returned in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Segmenter(images.shape[1], num_classes, width, depth)
    opt = torch.optim.AdamW(model.parameters(), lr, betas=(0.5, 0.999), weight_decay=1e-4)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - step / steps) ** 0.9
        idx = torch.randint(0, len(images), (batch,), generator=g)
        loss = F.cross_entropy(model(images[idx]), labels[idx], ignore_index=ignore_index)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def cached_segmenter(images: Tensor, labels: Tensor, num_classes: int, ignore_index: int = 255,
                     steps: int = 800) -> Segmenter:
    """fit_segmenter(...), trained on first use and cached under cache_dir(), keyed by the data itself (a change of
    data never reuses a stale model)."""
    h = hashlib.sha1(f"{FIT_VERSION}-{num_classes}-{ignore_index}-{steps}-{torch.__version__}-"
                     f"{tuple(images.shape)}".encode())
    h.update(images.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().long().contiguous().numpy().tobytes())
    path = os.path.join(cache_dir(), f"segmenter_{h.hexdigest()[:16]}.pt")
    if os.path.isfile(path):
        try:
            model = Segmenter(images.shape[1], num_classes)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:
            pass  # unreadable cache: retrain and overwrite
    model = fit_segmenter(images, labels, num_classes, ignore_index, steps)
    atomic_torch_save(model.state_dict(), path)
    return model


@torch.no_grad()
def feature_statistics(S: Segmenter, images: Tensor, batch: int = 256) -> np.ndarray:
    """(N, D) per image: the spatial mean and standard deviation of every channel of the segmenter's stem and
    stages. The means say what is where at each scale; the deviations carry texture (noise, clutter, blur), which a
    segmenter's class decisions are blind to."""
    out = []
    for i in range(0, len(images), batch):
        feats = S.features(images[i:i + batch].float())
        out.append(torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in feats], 1))
    return torch.cat(out).double().numpy()

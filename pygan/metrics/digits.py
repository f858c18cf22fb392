"""Digits metrics: a small CNN classifier trained on the training split of the embedded digits (cached, atomically, under
$PYGAN_CACHE or ~/.cache/pygan), scored on the held-out split; on generated samples it gives the mean confidence,
the class histogram and its KL divergence from uniform, and, in its feature space against held-out real digits, the
Fréchet distance, KID, precision/recall and density/coverage — each next to the same figure for real training
digits (what a perfect generator would score), with bootstrap intervals or subset spreads — and the label accuracy
of a conditional generator.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from torch import Tensor

from pygan._io import atomic_torch_save
from pygan.data import digits_split
from pygan.metrics.classifier import SmallClassifier as DigitsClassifier, cache_dir, classify, fit_classifier
from pygan.metrics.frechet import bootstrap_frechet_distance
from pygan.metrics.kid import kernel_distance
from pygan.metrics.manifold import manifold_metrics

CLASSIFIER_VERSION = 2  # bump when the classifier or its training changes: old cache files are then ignored


def _train_classifier(size: int, epochs: int = 30, batch: int = 64) -> tuple[DigitsClassifier, float]:
    # Per-image shifts, one-cycle, 30 epochs: the most accurate recipe tried (benchmarks/README.md); a classifier
    # unsure of real digits would score generated ones low for its own failings. The shifts: generated digits are
    # not pixel-aligned like the scanned ones.
    train, held = digits_split(size)
    model = fit_classifier(train.images, train.labels, 10, epochs, batch, max_shift=size // 16)
    with torch.no_grad():
        acc = (model(held.images).argmax(1) == held.labels).float().mean().item()
    return model, acc


def digits_classifier(size: int = 32) -> tuple[DigitsClassifier, float]:
    """(classifier in eval mode, its held-out accuracy), trained on first use and cached per image size."""
    import sklearn

    key = hashlib.sha1(f"{CLASSIFIER_VERSION}-{size}-{sklearn.__version__}-{torch.__version__}".encode()).hexdigest()[:12]
    path = os.path.join(cache_dir(), f"digits_classifier_{size}_{key}.pt")
    model = DigitsClassifier()
    if os.path.isfile(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(blob["state_dict"])
            return model.eval(), float(blob["held_out_accuracy"])
        except Exception:
            pass  # unreadable cache: retrain and overwrite
    model, acc = _train_classifier(size)
    atomic_torch_save({"state_dict": model.state_dict(), "held_out_accuracy": acc}, path)
    return model, acc


def evaluate_digits(images: Tensor, labels: Tensor | None = None, n_boot: int = 100, seed: int = 0) -> dict:
    """Metrics of generated digit images (N, 1, S, S) in [-1, 1]; `labels` are the classes a conditional
    generator was asked for. Fréchet distances are against the held-out split, with 95% re-centred bootstrap intervals (bootstrap_frechet_distance)."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"evaluate_digits needs 1-channel images (N, 1, S, S), got {tuple(images.shape)}")
    size = images.shape[-1]
    model, acc = digits_classifier(size)
    train, held = digits_split(size)
    probs, feats = classify(model, images)
    _, f_train = classify(model, train.images)
    _, f_held = classify(model, held.images)
    pred = probs.argmax(1)
    hist = torch.bincount(pred, minlength=10).double() / len(pred)
    nz = hist > 0
    kl = float((hist[nz] * (hist[nz] * 10).log()).sum())
    fd, fd_lo, fd_hi = bootstrap_frechet_distance(feats.numpy(), f_held.numpy(), n_boot, seed)
    rd, rd_lo, rd_hi = bootstrap_frechet_distance(f_train.numpy(), f_held.numpy(), n_boot, seed)
    out = {
        "n_samples": int(images.shape[0]),
        "classifier_held_out_accuracy": acc,
        "mean_confidence": float(probs.max(1).values.mean()),
        "class_histogram": [round(float(h), 4) for h in hist],
        "min_class_fraction": float(hist.min()),
        "kl_from_uniform": kl,
        "frechet_distance": fd, "frechet_distance_ci95": [fd_lo, fd_hi],
        "real_train_frechet_distance": rd, "real_train_frechet_distance_ci95": [rd_lo, rd_hi],
        "frechet_ratio": fd / rd if rd > 0 else float("inf"),
    }
    out.update(_set_metrics(feats.numpy(), f_train.numpy(), f_held.numpy(), n_boot, seed))
    if labels is not None:
        out["label_accuracy"] = float((pred == labels.cpu()).float().mean())
    return out


def _set_metrics(f_gen, f_train, f_held, n_boot: int, seed: int) -> dict:
    """KID and the k-NN metrics of generated features against held-out real ones, each beside the same figure for
    as many real training digits (the k-NN metrics depend on the sample sizes; KID's subsets are capped alike)."""
    rng = np.random.default_rng(seed)
    f_real = f_train[rng.choice(len(f_train), min(len(f_gen), len(f_train)), replace=False)]
    out = {}
    if len(f_gen) < 2:
        return out
    size = min(len(f_gen), len(f_real), len(f_held)) // 2  # subsets of half the smallest set: a spread that means something
    # The cubic kernel (x.y / d + 1)^3 was made for Inception features, whose x.x / d is below 1; this classifier's
    # is about 50, where the cubic term swamps the others and the estimate's spread grows ~10^4-fold. One scale for
    # all three sets (from the real training digits) brings them to x.x / d = 1; no other metric depends on it.
    unit = float(np.sqrt((f_train ** 2).sum(1).mean() / f_train.shape[1]))
    for prefix, f in (("", f_gen), ("real_train_", f_real)):
        out[prefix + "kid"], out[prefix + "kid_std"] = kernel_distance(f / unit, f_held / unit, subset_size=size,
                                                                       seed=seed)
    if min(len(f_gen), len(f_real), len(f_held)) > 5:  # k-NN radii need k + 1 samples
        gen, real = manifold_metrics(f_held, f_gen, n_boot=n_boot, seed=seed), manifold_metrics(f_held, f_real,
                                                                                               n_boot=n_boot, seed=seed)
        out.update(gen)
        out.update({"real_train_" + k: v for k, v in real.items() if not k.startswith("k_")})
        out["recall_ratio"] = gen["recall"] / real["recall"] if real["recall"] > 0 else float("nan")
    out["real_train_samples_compared"] = len(f_real)
    return out

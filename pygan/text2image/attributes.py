"""Attributes measured on a digit image itself, the same way for real and generated images:

- thickness: the ink (the sum of the image's intensities mapped to [0, 1]). The embedded digits are scaled to fill
  their box, so within one class the ink grows with the stroke width (correlation 0.7-0.9 with the area over half
  the perimeter, a direct but blur-sensitive width estimate); ink is unchanged by a shift or a blur, which keeps
  the measure fair to slightly soft generated images;
- slant: the shear of the ink's second moments, -mu11 / mu02 (horizontal offset per row, positive leaning right).

Each is binned into three levels per class at the tertiles of the real training images of that class (so every
level holds a third of each class: chance agreement 1/3), the thresholds kept with the data and applied unchanged
to generated images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ATTRIBUTES = ("thickness", "slant")
LEVELS = {"thickness": ("thin", "medium", "thick"), "slant": ("left", "upright", "right")}


def measure(images: Tensor) -> np.ndarray:
    """(N, 2) float64: thickness (ink) and slant of images (N, 1, H, W) in [-1, 1]."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"attributes are measured on 1-channel images (N, 1, H, W), got {tuple(images.shape)}")
    p = ((images[:, 0].detach().double().cpu().numpy() + 1) / 2).clip(0, 1)
    _, h, w = p.shape
    mass = p.sum((1, 2))
    safe = np.maximum(mass, 1e-6)
    ys, xs = np.mgrid[0:h, 0:w]
    cy = (p * ys).sum((1, 2)) / safe
    cx = (p * xs).sum((1, 2)) / safe
    dy, dx = ys[None] - cy[:, None, None], xs[None] - cx[:, None, None]
    mu11 = (p * dx * dy).sum((1, 2)) / safe
    mu02 = np.maximum((p * dy * dy).sum((1, 2)) / safe, 1e-6)
    return np.stack([mass / (h * w), -mu11 / mu02], 1)


def fit_thresholds(values: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """(num_classes, 2 attributes, 2 cut points): each class's tertiles of each attribute."""
    out = np.zeros((num_classes, values.shape[1], 2))
    for c in range(num_classes):
        v = values[labels == c]
        if len(v) < 3:
            raise ValueError(f"class {c} has {len(v)} images: at least 3 are needed to bin its attributes")
        out[c] = np.percentile(v, [100 / 3, 200 / 3], axis=0).T
    return out


def levels(values: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, 2) int64 levels 0, 1, 2 of measured values, with the thresholds of each image's class."""
    labels = np.asarray(labels)
    cuts = thresholds[labels]  # (N, 2, 2)
    return (values[:, :, None] > cuts).sum(2).astype(np.int64)


def image_levels(images: Tensor, labels, thresholds: np.ndarray) -> np.ndarray:
    return levels(measure(images), np.asarray(torch.as_tensor(labels).cpu()), thresholds)

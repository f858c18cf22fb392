"""Per-image distances between images in [-1, 1] and their truth: L1 and PSNR (the range, 2, as the peak)."""

from __future__ import annotations

import torch
from torch import Tensor


def per_image_l1(a: Tensor, b: Tensor) -> Tensor:
    """(N,) mean absolute difference of each image pair."""
    return (a - b).abs().flatten(1).mean(1)


def per_image_psnr(a: Tensor, b: Tensor) -> Tensor:
    """(N,) PSNR in dB of each image pair (MSE floored at 1e-10)."""
    mse = ((a - b) / 2).square().flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)

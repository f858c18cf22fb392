"""PSNR and SSIM for super-resolution, in the two usual conventions.

- "y" (the SRGAN paper's, and most SR papers'): the luma Y of YCbCr per ITU-R BT.601 in studio range
  (Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1], on the 0-255 scale), with `crop` = scale pixels
  removed from every border, because a network cannot know what lies beyond the image edge.
- "rgb": all channels, same crop; SSIM is then the mean over channels.

Images are float tensors in [0, 1], (C, H, W) or (N, C, H, W); values are computed in float64 with a data range
of 1. SSIM is Wang et al. 2004's: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
statistics, averaged over the positions where the window fits inside the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CONVENTIONS = ("y", "rgb")


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 studio-range luma in [16/255, 235/255] of RGB in [0, 1]: (..., 3, H, W) -> (..., 1, H, W)."""
    if x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels in dim -3, got shape {tuple(x.shape)}")
    w = x.new_tensor([65.481, 128.553, 24.966]).view(3, 1, 1) / 255.0
    return (x * w).sum(-3, keepdim=True) + 16.0 / 255.0


def _prepare(a: Tensor, b: Tensor, crop: int, convention: str) -> tuple[Tensor, Tensor]:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'y' or 'rgb', got {convention!r}")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() not in (3, 4):
        raise ValueError(f"images must be (C, H, W) or (N, C, H, W), got shape {tuple(a.shape)}")
    if not isinstance(crop, int) or crop < 0 or 2 * crop >= min(a.shape[-2:]):
        raise ValueError(f"crop must be an integer >= 0 leaving pixels of the {tuple(a.shape[-2:])} image, got {crop!r}")
    a, b = a.double(), b.double()
    if a.dim() == 3:
        a, b = a[None], b[None]
    if convention == "y":
        if a.shape[1] == 3:
            a, b = rgb_to_y(a), rgb_to_y(b)
        elif a.shape[1] != 1:
            raise ValueError(f"convention 'y' needs RGB or 1-channel images, got {a.shape[1]} channels")
    if crop:
        a, b = a[..., crop:-crop, crop:-crop], b[..., crop:-crop, crop:-crop]
    return a, b


def psnr(sr: Tensor, hr: Tensor, crop: int = 0, convention: str = "y") -> float:
    """Peak signal-to-noise ratio in dB over the whole batch (peak 1); inf for identical images."""
    a, b = _prepare(sr, hr, crop, convention)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(sr: Tensor, hr: Tensor, crop: int = 0, convention: str = "y") -> float:
    """Mean structural similarity (over positions, channels and images); see the module docstring."""
    a, b = _prepare(sr, hr, crop, convention)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 after the crop, got {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    win = _gaussian_window().to(a.device)[None, None].expand(c, 1, 11, 11)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win, groups=c)  # 'valid': only where the window fits

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())

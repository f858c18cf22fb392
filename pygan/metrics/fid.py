"""FID: the Fréchet distance between features from a user-supplied extractor, or from a local TorchScript
Inception file compatible with the common FID weights (e.g. `inception-2015-12-05.pt`); nothing is downloaded."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from pygan.metrics.frechet import frechet_distance


def load_inception(path: str) -> Callable[[Tensor], Tensor]:
    """A local TorchScript FID Inception file (as used by StyleGAN2-ADA / clean-fid: `inception-2015-12-05.pt`),
    returned as images in [-1, 1] -> 2048-d pool features."""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights file not found: {path!r} (pygan never downloads weights; give a "
                                "local TorchScript FID Inception file or a feature_extractor)")
    model = torch.jit.load(path, map_location="cpu").eval()

    def extract(x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # that network takes uint8 RGB and resizes itself
        return model(u8, return_features=True)

    return extract


@torch.no_grad()
def image_features(images: Tensor, feature_extractor: Callable[[Tensor], Tensor] | None = None,
                   inception_weights: str | None = None, batch: int = 100) -> np.ndarray:
    """Features (N, D) of images (N, C, H, W) in [-1, 1] from `feature_extractor` or a local Inception file, in
    batches: the input of frechet_distance, kernel_distance and manifold_metrics."""
    if feature_extractor is None:
        if inception_weights is None:
            raise ValueError("a feature_extractor or a local inception_weights file is needed; pygan never "
                             "downloads weights")
        feature_extractor = load_inception(inception_weights)
    return torch.cat([feature_extractor(images[i:i + batch]).flatten(1).double().cpu()
                      for i in range(0, len(images), batch)]).numpy()


def fid(real: Tensor, fake: Tensor, feature_extractor: Callable[[Tensor], Tensor] | None = None,
        inception_weights: str | None = None, batch: int = 100) -> float:
    """Fréchet distance between the features of two image sets (N, C, H, W) in [-1, 1]."""
    if feature_extractor is None and inception_weights is not None:
        feature_extractor = load_inception(inception_weights)  # loaded once for both sets
    return frechet_distance(image_features(real, feature_extractor, inception_weights, batch),
                            image_features(fake, feature_extractor, inception_weights, batch))

"""The VGG19 feature ("perceptual") content loss of SRGAN, on torchvision's VGG19 with weights from a local file.

Layer "i_j" is the feature map after the activation of the j-th convolution before the i-th max-pooling (the
paper's phi_i,j; "5_4" by default). Images in [0, 1] are normalized with ImageNet's mean and std, and the feature
maps divided by 12.75 as in the paper, which brings the loss to the scale of the pixel MSE. Nothing is downloaded:
the weights come from `weights` or the PYGAN_VGG19_WEIGHTS environment variable (a torchvision vgg19 state_dict
such as vgg19-dcbb9e9d.pth, whole model or `features` only).
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_ENV = "PYGAN_VGG19_WEIGHTS"
FEATURE_SCALE = 1 / 12.75
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsMissing(FileNotFoundError):
    pass


def _layer_index(features: nn.Sequential, layer: str) -> int:
    """Index in vgg19.features of the activation after conv j of block i ('i_j')."""
    m = re.fullmatch(r"(\d)_(\d)", layer)
    if not m:
        raise ValueError(f"vgg layer must look like '5_4' (block_conv), got {layer!r}")
    block, conv = int(m.group(1)), int(m.group(2))
    b, c = 1, 0
    for idx, mod in enumerate(features):
        if isinstance(mod, nn.MaxPool2d):
            b, c = b + 1, 0
        elif isinstance(mod, nn.Conv2d):
            c += 1
        elif isinstance(mod, nn.ReLU) and (b, c) == (block, conv):
            return idx
    raise ValueError(f"VGG19 has no layer {layer!r} (blocks 1-5 with 2, 2, 4, 4, 4 convolutions)")


class VGGFeatureLoss(nn.Module):
    """mse(phi(sr) / 12.75, phi(hr) / 12.75) for images in [0, 1]; the VGG is frozen and kept in eval mode."""

    def __init__(self, layer: str = "5_4", weights: str | None = None):
        super().__init__()
        from torchvision.models import vgg19

        path = weights or os.environ.get(WEIGHTS_ENV)
        if not path:
            raise VGGWeightsMissing(
                "the VGG content loss needs VGG19 weights: pass --vgg-weights PATH (or set "
                f"{WEIGHTS_ENV}) to a local torchvision vgg19 state_dict, e.g. vgg19-dcbb9e9d.pth; pygan never "
                "downloads. Without weights use --content mse.")
        if not os.path.isfile(path):
            raise VGGWeightsMissing(f"VGG19 weights file not found: {path}")
        features = vgg19(weights=None).features
        last = _layer_index(features, layer)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read VGG19 weights {path}: {type(e).__name__}: {e}") from None
        if isinstance(state, dict) and any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            features.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ValueError(f"{path} is not a torchvision VGG19 state_dict: {str(e).splitlines()[0]}") from None
        self.layer = layer
        self.features = features[: last + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the VGG always runs in eval mode (it has no BN, but stay explicit)
        super().train(mode)
        self.features.eval()
        return self

    def phi(self, x: Tensor) -> Tensor:
        return self.features((x - self.mean) / self.std) * FEATURE_SCALE

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.phi(hr)
        return F.mse_loss(self.phi(sr), target)

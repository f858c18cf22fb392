"""The segmenter of adversarial segmentation and of pix2pix's FCN-score: a small fully convolutional network — a 3x3
stem, then `depth` stages (a stride-2 3x3 conv block and a 3x3 conv block, width doubling); each scale's features
give class logits through a 1x1 convolution, upsampled (bilinear) to the input size and summed (FCN's skip
architecture). Every conv block is conv + BatchNorm + ReLU through `pygan.nn.conv_bn_act`."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pygan.nn import FusableModel, conv_bn_act


class Segmenter(FusableModel):
    """Images (N, channels, H, W) in [-1, 1], H and W multiples of 2**depth, to class logits (N, classes, H, W)."""

    def __init__(self, channels: int = 1, classes: int = 11, width: int = 16, depth: int = 2, fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, classes=classes, width=width, depth=depth)
        self.config = dict(channels=channels, classes=classes, width=width, depth=depth, fused=fused)
        self.channels, self.classes, self.depth = channels, classes, depth

        def block(cin, cout, stride=1):
            return conv_bn_act(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), "relu", fused=fused)

        self.stem = block(channels, width)
        self.stages = nn.ModuleList()
        self.heads = nn.ModuleList([nn.Conv2d(width, classes, 1)])
        c = width
        for _ in range(depth):
            self.stages.append(nn.Sequential(block(c, 2 * c, 2), block(2 * c, 2 * c)))
            c *= 2
            self.heads.append(nn.Conv2d(c, classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        m = 2 ** self.depth
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"Segmenter: input must have shape (N, {self.channels}, H, W) with H and W multiples "
                             f"of {m}, got {tuple(x.shape)}")
        feats = self.features(x)
        out = self.heads[0](feats[0])
        for h, head in zip(feats[1:], self.heads[1:]):
            out = out + F.interpolate(head(h), size=x.shape[2:], mode="bilinear", align_corners=False)
        return out

    def features(self, x: Tensor) -> list[Tensor]:
        """The activations of the stem and of each stage (full, 1/2, 1/4, ... resolution)."""
        h = self.stem(x)
        out = [h]
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

"""The networks of adversarial segmentation (Luc et al. 2016): a small fully convolutional segmenter and the
adversary that tells ground-truth label maps from predicted ones, given the image.

Segmenter: pygan.parts.Segmenter (shared with pix2pix's FCN-score).

Adversary: the image and a label map (N, K, H, W) of class probabilities, combined by the input encoding —

- "basic": the label map concatenated with the image (K + C channels);
- "product": each class map multiplied with each image channel (K x C channels): the image as seen through each
  class's mask;
- "scaling": as basic, but a ground-truth map is first softened (`soften`): the true class gets
  max(tau, p_true) and the other classes share the rest in proportion to the prediction p, so that the adversary
  cannot tell the two apart by exact zeros and ones alone;

then 3x3 conv blocks (LeakyReLU 0.2, stride 2 from the second on), a 1x1 convolution to one logit per position and
the mean over positions: one logit per image (real = ground truth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan.nn import FusableModel, conv_bn_act
from pygan.parts import Segmenter  # noqa: F401 (the segmenter, shared with pix2pix's FCN-score)

ENCODINGS = ("basic", "product", "scaling")


def soften(onehot: Tensor, probs: Tensor, tau: float = 0.9) -> Tensor:
    """The "scaling" encoding of a ground truth (Luc et al. 2016, sec. 3.2): at each pixel, the true class gets
    y = max(tau, p_true), the other classes (1 - y) * p_k / (1 - p_true), with p the (detached) prediction."""
    p_true = (onehot * probs).sum(1, keepdim=True)
    y = torch.maximum(torch.full_like(p_true, tau), p_true)
    rest = (1 - y) * probs / (1 - p_true).clamp_min(1e-6)
    return onehot * y + (1 - onehot) * rest


def ground_truth_map(labels: Tensor, probs: Tensor, ignore_index: int, encoding: str, tau: float = 0.9) -> Tensor:
    """The adversary's 'real' label map for `labels` (N, H, W): one-hot (the scaling encoding: softened against
    the detached prediction `probs`); at ignored pixels the prediction itself, so that those pixels tell nothing."""
    ignored = labels == ignore_index
    onehot = F.one_hot(labels.masked_fill(ignored, 0), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if encoding == "scaling":
        onehot = soften(onehot, probs, tau)
    return torch.where(ignored[:, None], probs, onehot)


def encode(image: Tensor, label_map: Tensor, encoding: str) -> Tensor:
    """The adversary's input: basic / scaling (concatenation) or product (K x C channels). `label_map` holds
    probabilities (N, K, H, W); "scaling" softens ground truths before (see `soften`)."""
    if encoding == "product":
        n, k, h, w = label_map.shape
        return (label_map[:, :, None] * (image[:, None] + 1) / 2).reshape(n, k * image.shape[1], h, w)
    return torch.cat([label_map, image], 1)


class Adversary(FusableModel):
    """(image (N, channels, H, W), label map (N, classes, H, W) of probabilities) -> one logit per image."""

    def __init__(self, channels: int = 1, classes: int = 11, width: int = 32, layers: int = 3,
                 encoding: str = "product", fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, classes=classes, width=width, layers=layers)
        self.check_choice("encoding", encoding, ENCODINGS)
        self.config = dict(channels=channels, classes=classes, width=width, layers=layers, encoding=encoding,
                           fused=fused)
        self.channels, self.classes, self.encoding = channels, classes, encoding
        cin = classes * channels if encoding == "product" else classes + channels
        seq: list[nn.Module] = []
        c = width
        for i in range(layers):
            out = width * min(2 ** i, 8)
            seq.append(conv_bn_act(nn.Conv2d(cin, out, 3, 1 if i == 0 else 2, 1, bias=False), "leaky_relu", 0.2,
                                   fused=fused))
            cin = c = out
        seq.append(nn.Conv2d(c, 1, 1))
        self.main = nn.Sequential(*seq)

    def forward(self, image: Tensor, label_map: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != self.channels:
            raise ValueError(f"Adversary: image must have shape (N, {self.channels}, H, W), got {tuple(image.shape)}")
        if label_map.shape != (image.shape[0], self.classes, *image.shape[2:]):
            raise ValueError(f"Adversary: label map must have shape {(image.shape[0], self.classes, *image.shape[2:])}"
                             f", got {tuple(label_map.shape)}")
        return self.main(encode(image, label_map, self.encoding)).mean((1, 2, 3))

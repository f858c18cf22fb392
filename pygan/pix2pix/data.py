"""pix2pix's embedded data: label maps -> scenes, made from the digit scenes (pygan.data.scenes). A is the label map
drawn in the VOC class colours (3 channels), B the scene (1 channel). The mapping is one to many — a label map
fixes where each digit's ink is, not the clutter nor the noise —, as the paper's labels -> photo; training and
held-out scenes come from disjoint digits. Users' folders are read by pygan.data.paired."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from pygan.data.scenes import SegData, colorize, digit_scenes


@dataclass
class ScenePairs:
    train: SegData      # training scenes (B) with their label maps
    test: SegData       # held-out scenes with theirs
    train_a: Tensor     # (N, 3, S, S) the training label maps in class colours (A), [-1, 1]
    test_a: Tensor      # the held-out ones


def scene_pairs(size: int = 48) -> ScenePairs:
    split = digit_scenes(size)
    return ScenePairs(split.train, split.test, colorize(split.train.labels), colorize(split.test.labels))


def upsized(x: Tensor, load_size: int, labels: bool) -> Tensor:
    """Images (N, C, S, S) resized to load_size (the jitter's first half); label maps by nearest neighbours, so
    that their colours stay the classes'."""
    if x.shape[-1] == load_size:
        return x
    if labels:
        return F.interpolate(x, size=(load_size, load_size), mode="nearest-exact")
    return F.interpolate(x, size=(load_size, load_size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(-1, 1)

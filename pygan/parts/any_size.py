"""Fully convolutional networks on images of any size: the input reflection-padded to the network's multiple (split
evenly between the two sides) and the output cropped back to the input's size."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor


def at_any_size(fn: Callable[[Tensor], Tensor], x: Tensor, multiple: int) -> Tensor:
    """fn(x) for (N, C, H, W) x of any H and W, where fn takes sides that are multiples of `multiple` and keeps the
    size: x padded by reflection (by repetition where a side is shorter than its pad), fn applied, cropped back."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return fn(x)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    mode = "reflect" if max(pad[:2]) < w and max(pad[2:]) < h else "replicate"
    y = fn(F.pad(x, pad, mode=mode))
    return y[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]

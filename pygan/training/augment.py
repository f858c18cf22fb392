"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

On small data the discriminator memorises the training images and stops teaching the generator; augmenting every
image D sees — real and generated alike, in D's and in G's step — with transformations G's gradient can pass through
keeps D honest without the generator learning the augmentations (they are applied to both distributions).

Every random draw is made for the global batch from the trainer's generator and sliced to this rank's part, so a
run does not depend on the number of processes and resumes exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

POLICIES = ("translation", "cutout", "color")
TRANSLATION = 1 / 8  # largest shift, as a fraction of the image side
CUTOUT = 1 / 2       # side of the erased square, as a fraction of the image side


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (); ValueError naming an unknown one."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"augment: unknown transformation(s) {', '.join(bad)}; expected a comma-separated subset of "
                         f"{', '.join(POLICIES)}")
    return parts


def _uniform(n: int, gen: torch.Generator, mine: slice, like: Tensor) -> Tensor:
    return torch.rand(n, generator=gen, device=gen.device)[mine].to(like.device, like.dtype)


def _translate(x: Tensor, n: int, gen: torch.Generator, mine: slice) -> Tensor:
    """Shift each image by whole pixels (up to TRANSLATION of its side), the border replicated into the gap."""
    b, _, h, w = x.shape
    rh, rw = max(1, round(h * TRANSLATION)), max(1, round(w * TRANSLATION))
    dy = torch.randint(-rh, rh + 1, (n,), generator=gen, device=gen.device)[mine].to(x.device)
    dx = torch.randint(-rw, rw + 1, (n,), generator=gen, device=gen.device)[mine].to(x.device)
    padded = torch.nn.functional.pad(x, (rw, rw, rh, rh), mode="replicate")
    rows = (torch.arange(h, device=x.device)[None] + rh - dy[:, None])[:, :, None]  # (b, h, 1)
    cols = (torch.arange(w, device=x.device)[None] + rw - dx[:, None])[:, None, :]  # (b, 1, w)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]   # (b, h, w, c)
    return out.permute(0, 3, 1, 2)


def _cutout(x: Tensor, n: int, gen: torch.Generator, mine: slice) -> Tensor:
    """Erase (set to 0, mid-grey) one square of side CUTOUT x the image's, centred anywhere in the image."""
    b, _, h, w = x.shape
    ch, cw = round(h * CUTOUT), round(w * CUTOUT)
    cy = torch.randint(0, h, (n,), generator=gen, device=gen.device)[mine].to(x.device)
    cx = torch.randint(0, w, (n,), generator=gen, device=gen.device)[mine].to(x.device)
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    top, left = (cy - ch // 2)[:, None], (cx - cw // 2)[:, None]
    inside_y = ((ys[None] >= top) & (ys[None] < top + ch))[:, :, None]
    inside_x = ((xs[None] >= left) & (xs[None] < left + cw))[:, None, :]
    keep = ~(inside_y & inside_x)
    return x * keep[:, None].to(x.dtype)


def _color(x: Tensor, n: int, gen: torch.Generator, mine: slice) -> Tensor:
    """Brightness (+U(-0.5, 0.5)), then contrast (x U(0.5, 1.5) about the image's mean), then for colour images
    saturation (x U(0, 2) about the pixel's grey)."""
    shape = (-1, 1, 1, 1)
    x = x + (_uniform(n, gen, mine, x) - 0.5).view(shape)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (_uniform(n, gen, mine, x) + 0.5).view(shape) + mean
    if x.shape[1] == 3:
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * (_uniform(n, gen, mine, x) * 2).view(shape) + grey
    return x


_APPLY = {"translation": _translate, "cutout": _cutout, "color": _color}


def augment(x: Tensor, policy: tuple[str, ...], n: int, gen: torch.Generator, mine: slice) -> Tensor:
    """x (this rank's part `mine` of a global batch of n) with each transformation of `policy` applied, in the
    order color, translation, cutout (as in the paper); differentiable with respect to x."""
    for name in ("color", "translation", "cutout"):
        if name in policy:
            x = _APPLY[name](x, n, gen, mine)
    return x

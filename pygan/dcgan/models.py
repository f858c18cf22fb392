"""DCGAN generator and discriminator (Radford et al. 2015), optionally class-conditional.

Layout for an image of size S = 2**k (16 <= S <= 128): G maps the latent (plus, when conditional, a label
embedding) to a 4x4 map with a transposed convolution, doubles the resolution with stride-2 transposed
convolutions (BN + ReLU) and ends in a transposed convolution + Tanh without BN. D mirrors it: stride-2
convolutions with LeakyReLU(0.2), BN everywhere but the first layer, and a final 4x4 convolution to one logit.
D's `norm` chooses that normalisation: 'batch' (DCGAN), 'layer' (per-sample over C, H, W: GroupNorm with one
group; the WGAN-GP paper's advice for a critic with a gradient penalty, whose per-sample input gradients batch
statistics would couple) or 'none' (a WGAN critic under weight clipping: convolution with a bias + LeakyReLU, the
bias and activation one fused bias_act op).
The conditional D adds a projection term <embed(y), sum_hw(h)> (Miyato & Koyama 2018) to the logit.

Each conv+BN+activation block is pygan.nn.conv_bn_act: with fused=True ConvTranspose2dBNAct / Conv2dBNAct (BN
and activation in one op, BN folded into the conv in eval mode), with fused=False its stock twin. The state_dicts
are identical, and `to_stock()` returns the fused=False twin with the same weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pygan.nn import FusableModel, conv_act, conv_bn_act
from pygan.parts import gan_init_

SIZES = (16, 32, 64, 128)
NORMS = ("batch", "layer", "none")


def check_size(size: int) -> int:
    if not isinstance(size, int) or size not in SIZES:
        raise ValueError(f"image size must be a power of two from 16 to 128 ({', '.join(map(str, SIZES))}), got {size!r}")
    return size


def _up(cin: int, cout: int, k: int, s: int, p: int, fused: bool) -> nn.Module:
    return conv_bn_act(nn.ConvTranspose2d(cin, cout, k, s, p, bias=False), "relu", fused=fused)


def _down(cin: int, cout: int, fused: bool) -> nn.Module:
    return conv_bn_act(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), "leaky_relu", 0.2, fused)


def _down_norm(cin: int, cout: int, norm: str, fused: bool) -> nn.Module:
    if norm == "batch":
        return _down(cin, cout, fused)
    if norm == "layer":  # GroupNorm(1, C): normalised over (C, H, W) per sample, affine per channel
        return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.GroupNorm(1, cout), nn.LeakyReLU(0.2))
    return conv_act(nn.Conv2d(cin, cout, 4, 2, 1), "leaky_relu", 0.2, fused)


class _DCGANBase(FusableModel):
    def _check_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError(f"{type(self).__name__}: labels given to an unconditional model (num_classes=0)")
            return None
        if labels is None:
            raise ValueError(f"{type(self).__name__}: a conditional model (num_classes={self.num_classes}) needs labels")
        if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
        return labels.long()


class DCGANGenerator(_DCGANBase):
    """z of shape (N, latent_dim) or (N, latent_dim, 1, 1) [+ labels (N,)] -> images (N, channels, size, size) in [-1, 1]."""

    def __init__(self, size: int = 32, channels: int = 1, latent_dim: int = 64, width: int = 32,
                 num_classes: int = 0, embed_dim: int | None = None, fused: bool = True):
        super().__init__()
        check_size(size)
        self.check_positive(channels=channels, latent_dim=latent_dim, width=width)
        if not isinstance(num_classes, int) or num_classes < 0 or num_classes == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or >= 2, got {num_classes!r}")
        embed_dim = (embed_dim or latent_dim) if num_classes else 0
        self.config = dict(size=size, channels=channels, latent_dim=latent_dim, width=width,
                           num_classes=num_classes, embed_dim=embed_dim or None, fused=fused)
        self.size, self.channels, self.latent_dim, self.num_classes = size, channels, latent_dim, num_classes
        n_up = int(math.log2(size)) - 2  # 4x4 -> size: n_up doublings, the last one is the output layer
        ch = width * 2 ** (n_up - 1)
        if num_classes:
            self.embed = nn.Embedding(num_classes, embed_dim)
        layers = [_up(latent_dim + embed_dim, ch, 4, 1, 0, fused)]
        for _ in range(n_up - 1):
            layers.append(_up(ch, ch // 2, 4, 2, 1, fused))
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        gan_init_(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.latent_dim, 1, 1):
            raise ValueError(f"z must have shape (N, {self.latent_dim}) or (N, {self.latent_dim}, 1, 1), got {tuple(z.shape)}")
        labels = self._check_labels(labels, z.shape[0])
        if labels is not None:
            z = torch.cat([z, self.embed(labels).to(z.dtype)[:, :, None, None]], 1)
        return self.main(z)


class DCGANDiscriminator(_DCGANBase):
    """images (N, channels, size, size) [+ labels (N,)] -> logits (N,)."""

    def __init__(self, size: int = 32, channels: int = 1, width: int = 32, num_classes: int = 0, fused: bool = True,
                 norm: str = "batch"):
        super().__init__()
        check_size(size)
        self.check_positive(channels=channels, width=width)
        if not isinstance(num_classes, int) or num_classes < 0 or num_classes == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or >= 2, got {num_classes!r}")
        self.check_choice("norm", norm, NORMS)
        self.config = dict(size=size, channels=channels, width=width, num_classes=num_classes, fused=fused)
        if norm != "batch":  # batch-norm configs stay as they were (older checkpoints have no 'norm')
            self.config["norm"] = norm
        self.size, self.channels, self.num_classes = size, channels, num_classes
        n_down = int(math.log2(size)) - 2
        ch = width
        layers = [nn.Conv2d(channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]  # no BN on D's input layer
        for _ in range(n_down - 1):
            layers.append(_down_norm(ch, ch * 2, norm, fused))
            ch *= 2
        self.main = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch, 1, 4, 1, 0, bias=False)
        if num_classes:
            self.embed = nn.Embedding(num_classes, ch)
        gan_init_(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.channels, self.size, self.size):
            raise ValueError(f"images must have shape (N, {self.channels}, {self.size}, {self.size}), got {tuple(x.shape)}")
        labels = self._check_labels(labels, x.shape[0])
        h = self.main(x)
        logits = self.out(h).flatten()
        if labels is not None:
            logits = logits + (self.embed(labels).to(h.dtype) * h.sum((2, 3))).sum(1)
        return logits

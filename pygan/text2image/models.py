"""Reed et al.'s text-conditional DCGAN (2016), at S = 2**k (16 <= S <= 64).

Generator G(z, phi(t)): the text embedding is projected (linear + LeakyReLU 0.2) to `proj_dim`, concatenated with
the noise z, mapped to a 4x4 map by a transposed convolution and doubled to S x S by stride-2 transposed
convolutions (BN + ReLU), the last one to the image channels with Tanh. Matching-aware discriminator D(x, phi(t)):
stride-2 convolutions with LeakyReLU 0.2 (BN after the first) down to 4x4; the projected text (its own projection)
is replicated over the 4x4 grid and concatenated with the image features, a 1x1 convolution (BN + LeakyReLU)
mixes them, a 4x4 convolution gives one logit.

Every conv + BN + activation is pygan.nn.conv_bn_act: the fused block, or its stock twin with the same state_dict
(fused=False, `to_stock()`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pygan.nn import FusableModel, conv_bn_act
from pygan.parts import gan_init_

SIZES = (16, 32, 64)


def check_size(size: int) -> int:
    if not isinstance(size, int) or size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
    return size


def _check_text(model, text: Tensor, n: int) -> None:
    if text.dim() != 2 or text.shape != (n, model.text_dim):
        raise ValueError(f"{type(model).__name__}: text embeddings must have shape ({n}, {model.text_dim}), "
                         f"got {tuple(text.shape)}")


class TextGenerator(FusableModel):
    """(z (N, latent_dim), phi(t) (N, text_dim)) -> images (N, channels, size, size) in [-1, 1]."""

    def __init__(self, size: int = 16, channels: int = 1, latent_dim: int = 32, text_dim: int = 64,
                 proj_dim: int = 32, width: int = 32, fused: bool = True):
        super().__init__()
        check_size(size)
        self.check_positive(channels=channels, latent_dim=latent_dim, text_dim=text_dim, proj_dim=proj_dim,
                            width=width)
        self.config = dict(size=size, channels=channels, latent_dim=latent_dim, text_dim=text_dim,
                           proj_dim=proj_dim, width=width, fused=fused)
        self.size, self.channels, self.latent_dim, self.text_dim = size, channels, latent_dim, text_dim
        self.project = nn.Sequential(nn.Linear(text_dim, proj_dim), nn.LeakyReLU(0.2))
        n_up = int(math.log2(size)) - 2
        ch = width * 2 ** (n_up - 1)
        layers = [conv_bn_act(nn.ConvTranspose2d(latent_dim + proj_dim, ch, 4, 1, 0, bias=False), "relu",
                              fused=fused)]
        for _ in range(n_up - 1):
            layers.append(conv_bn_act(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), "relu", fused=fused))
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        gan_init_(self)

    def forward(self, z: Tensor, text: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"TextGenerator: z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        _check_text(self, text, z.shape[0])
        h = torch.cat([z, self.project(text.to(z.dtype))], 1)
        return self.main(h[:, :, None, None])


class MatchingDiscriminator(FusableModel):
    """(images (N, channels, size, size), phi(t) (N, text_dim)) -> logits (N,): does the image look real and
    match the text?"""

    def __init__(self, size: int = 16, channels: int = 1, text_dim: int = 64, proj_dim: int = 32, width: int = 32,
                 fused: bool = True):
        super().__init__()
        check_size(size)
        self.check_positive(channels=channels, text_dim=text_dim, proj_dim=proj_dim, width=width)
        self.config = dict(size=size, channels=channels, text_dim=text_dim, proj_dim=proj_dim, width=width,
                           fused=fused)
        self.size, self.channels, self.text_dim = size, channels, text_dim
        n_down = int(math.log2(size)) - 2
        ch = width
        layers = [nn.Conv2d(channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for _ in range(n_down - 1):
            layers.append(conv_bn_act(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), "leaky_relu", 0.2, fused))
            ch *= 2
        self.main = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(text_dim, proj_dim), nn.LeakyReLU(0.2))
        self.joint = conv_bn_act(nn.Conv2d(ch + proj_dim, ch, 1, bias=False), "leaky_relu", 0.2, fused)
        self.out = nn.Conv2d(ch, 1, 4, 1, 0, bias=False)
        gan_init_(self)

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.channels, self.size, self.size):
            raise ValueError(f"MatchingDiscriminator: images must have shape (N, {self.channels}, {self.size}, "
                             f"{self.size}), got {tuple(x.shape)}")
        _check_text(self, text, x.shape[0])
        h = self.main(x)
        t = self.project(text.to(h.dtype))[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        h = self.joint(torch.cat([h, t], 1))
        return self.out(h).flatten()

"""The template's networks: 16x16 images from a latent vector, and the discriminator scoring them."""

from __future__ import annotations

from torch import Tensor, nn

from pygan.nn import FusableModel, conv_act, conv_bn_act
from pygan.parts import gan_init_


class TemplateGenerator(FusableModel):
    def __init__(self, channels: int = 1, latent_dim: int = 32, width: int = 16, fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, latent_dim=latent_dim, width=width)
        self.config = dict(channels=channels, latent_dim=latent_dim, width=width, fused=fused)  # for to_stock()
        self.latent_dim = latent_dim
        self.main = nn.Sequential(  # 1 -> 4 -> 8 -> 16 pixels
            conv_bn_act(nn.ConvTranspose2d(latent_dim, 2 * width, 4, 1, 0, bias=False), "relu", fused=fused),
            conv_bn_act(nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), "relu", fused=fused),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())
        gan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z[:, :, None, None])


class TemplateDiscriminator(FusableModel):
    def __init__(self, channels: int = 1, width: int = 16, fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, width=width)
        self.config = dict(channels=channels, width=width, fused=fused)
        self.main = nn.Sequential(  # 16 -> 8 -> 4 -> 1 logit
            conv_act(nn.Conv2d(channels, width, 4, 2, 1), "leaky_relu", 0.2, fused),
            conv_bn_act(nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), "leaky_relu", 0.2, fused),
            nn.Conv2d(2 * width, 1, 4, 1, 0), nn.Flatten(0))
        gan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)

"""The PatchGAN discriminator (Isola et al. 2017; CycleGAN's and pix2pix's): a fully convolutional stack of 4x4
convolutions C64-C128-C256-C512 (stride 2, ..., 2, 1; no norm on the first; LeakyReLU 0.2) and a 1-channel 4x4
convolution: one logit per patch, 70x70 pixels with layers=3 (see patch_receptive_field). layers=0 is the PixelGAN
of pix2pix's study: 1x1 convolutions C64-C128 and a 1-channel one, one logit per pixel.

Its first layer's bias + LeakyReLU stay the stock pair (the reference code's): fused bias_act sums the bias
gradient in another order, which would change every CycleGAN run and checkpoint trained so far."""

from __future__ import annotations

from torch import Tensor, nn

from pygan.nn import FusableModel, conv_bn_act, instance_norm_act_block
from pygan.parts.init import gan_init_

NORMS = ("instance", "batch")


def patch_receptive_field(layers: int) -> int:
    """The receptive field, in pixels, of each logit of PatchDiscriminator(layers=layers): 1 (0, the PixelGAN),
    16 (1), 34 (2), 70 (3), 142 (4), 286 (5)."""
    if layers == 0:
        return 1
    strides = [2] * layers + [1, 1]
    rf, jump = 1, 1
    for s in strides:
        rf += 3 * jump
        jump *= s
    return rf


class PatchDiscriminator(FusableModel):
    """Images (N, channels, H, W) to patch logits (N, 1, h, w): `layers` convolutions after the first, each with
    `norm` (instance: affine-free, CycleGAN's; batch: pix2pix's) + LeakyReLU(0.2), the widths doubling to 8 x width."""

    def __init__(self, channels: int = 3, width: int = 64, layers: int = 3, fused: bool = True,
                 norm: str = "instance"):
        super().__init__()
        self.check_positive(channels=channels, width=width)
        self.check_choice("norm", norm, NORMS)
        if layers < 0:
            raise ValueError(f"PatchDiscriminator: layers must be >= 0, got {layers}")
        self.config = dict(channels=channels, width=width, layers=layers, fused=fused, norm=norm)
        self.channels = channels
        if layers == 0:
            self.main = nn.Sequential(nn.Conv2d(channels, width, 1), nn.LeakyReLU(0.2),
                                      *self._block(width, 2 * width, 1, 1, 0, norm, fused),
                                      nn.Conv2d(2 * width, 1, 1, bias=False))
            gan_init_(self)
            return
        seq: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):
            out, stride = width * min(2 ** i, 8), 2 if i < layers else 1
            seq += self._block(c, out, 4, stride, 1, norm, fused)
            c = out
        seq.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)
        gan_init_(self)

    @staticmethod
    def _block(cin: int, cout: int, kernel: int, stride: int, padding: int, norm: str, fused: bool) -> list:
        """conv + norm + LeakyReLU(0.2)."""
        if norm == "batch":
            return [conv_bn_act(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), "leaky_relu", 0.2, fused)]
        return [nn.Conv2d(cin, cout, kernel, stride, padding), instance_norm_act_block(cout, "leaky_relu", 0.2, fused)]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PatchDiscriminator: input must have shape (N, {self.channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.main(x)

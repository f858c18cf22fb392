"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017), BatchNorm + activation through pygan's fused op.

Every conv + BN + activation is pygan.nn.conv_bn_act: the fused block with fused=True (the default), its stock
twin with fused=False (the same state_dict, so `to_stock()` loads it). A BatchNorm with no activation after it
stays stock nn.BatchNorm2d.

Images are in [0, 1]: the generator maps a low-resolution (N, C, h, w) batch to (N, C, scale*h, scale*w), with no
output squashing (clamp when saving). `pygan.fold_bn(model)` gives a faster inference copy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from pygan.nn import FusableModel, conv_bn_act

SCALES = (2, 4)


def check_scale(scale) -> int:
    if not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(f"scale must be 2 or 4, got {scale!r}")
    return scale


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias)


class SRResidualBlock(nn.Module):
    """x + (conv-BN-PReLU-conv-BN)(x)."""

    def __init__(self, width: int, fused: bool = True):
        super().__init__()
        # no conv bias before BN: BN's shift makes it redundant
        self.body = nn.Sequential(conv_bn_act(_conv(width, width, 3, bias=False), "prelu", fused=fused),
                                  _conv(width, width, 3, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@torch.no_grad()
def icnr_(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """ICNR initialisation (Aitken et al. 2017) of a convolution followed by PixelShuffle(factor): the factor**2
    outputs that shuffle into one output channel start with the same kernel and bias, so at initialisation the
    sub-pixel stage is a convolution followed by nearest-neighbour upsampling - no checkerboard for training to
    unlearn. The shared kernel is drawn with the convolution's own default initialisation."""
    r2 = factor * factor
    if conv.out_channels % r2:
        raise ValueError(f"icnr_: out_channels ({conv.out_channels}) must be a multiple of factor**2 ({r2})")
    base = nn.Conv2d(conv.in_channels, conv.out_channels // r2, conv.kernel_size, bias=conv.bias is not None)
    # PixelShuffle takes input channel c * r2 + k to output channel c: repeat each base kernel r2 times in a row
    conv.weight.copy_(base.weight.repeat_interleave(r2, dim=0))
    if conv.bias is not None:
        conv.bias.copy_(base.bias.repeat_interleave(r2, dim=0))
    return conv


class SRResNet(FusableModel):
    """9x9 conv + PReLU, `blocks` residual blocks, conv-BN + the long skip, log2(scale) sub-pixel x2 stages
    (conv to 4x channels, PixelShuffle, PReLU), 9x9 output conv. The paper's network: width 64, blocks 16.

    bicubic_skip=True adds the bicubic upscaling of the input to the output (global residual learning, as in VDSR
    and BasicSR's MSRResNet): the network then only learns the detail bicubic misses. Without it a small network
    trained briefly gets the low frequencies - colours, smooth areas - measurably wrong on photos unlike its
    training set, which costs more PSNR than the detail it adds wins."""

    def __init__(self, scale: int = 4, channels: int = 3, width: int = 64, blocks: int = 16,
                 bicubic_skip: bool = False, fused: bool = True):
        super().__init__()
        check_scale(scale)
        self.check_positive(channels=channels, width=width, blocks=blocks)
        if not isinstance(bicubic_skip, bool):
            raise ValueError(f"bicubic_skip must be True or False, got {bicubic_skip!r}")
        self.config = dict(scale=scale, channels=channels, width=width, blocks=blocks, bicubic_skip=bicubic_skip,
                           fused=fused)
        self.scale, self.channels, self.bicubic_skip = scale, channels, bicubic_skip
        self.head = nn.Sequential(_conv(channels, width, 9), nn.PReLU())
        self.body = nn.Sequential(*[SRResidualBlock(width, fused) for _ in range(blocks)])
        self.post = nn.Sequential(_conv(width, width, 3, bias=False), nn.BatchNorm2d(width))
        up = []
        for _ in range(int(math.log2(scale))):
            up += [_conv(width, 4 * width, 3), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*up)
        self.tail = _conv(width, channels, 9)
        for m in self.upsample:
            if isinstance(m, nn.Conv2d):
                icnr_(m, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SRResNet: input must have shape (N, {self.channels}, H, W), got {tuple(x.shape)}")
        h = self.head(x)
        h = h + self.post(self.body(h))
        out = self.tail(self.upsample(h))
        if self.bicubic_skip:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out


class SRDiscriminator(FusableModel):
    """conv-LeakyReLU(0.2), then 7 conv-BN-LeakyReLU blocks (strides 2,1,2,1,2,1,2; widths w, 2w, 2w, 4w, 4w, 8w,
    8w), adaptive average pooling to `pool` x `pool`, dense(16w) - LeakyReLU - dense(1): one logit per image.
    The paper's network: width 64 on 96x96 crops (pool 6 keeps its 6x6 map); any crop of at least 16x16 works."""

    def __init__(self, channels: int = 3, width: int = 64, pool: int = 6, fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, width=width, pool=pool)
        self.config = dict(channels=channels, width=width, pool=pool, fused=fused)
        self.channels = channels
        layers: list[nn.Module] = [_conv(channels, width, 3), nn.LeakyReLU(0.2)]
        cin = width
        for mult, stride in ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2)):
            layers.append(conv_bn_act(_conv(cin, width * mult, 3, stride, bias=False), "leaky_relu", 0.2, fused))
            cin = width * mult
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * pool * pool, 16 * width), nn.LeakyReLU(0.2),
                                        nn.Linear(16 * width, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or min(x.shape[-2:]) < 16:
            raise ValueError(f"SRDiscriminator: input must have shape (N, {self.channels}, H, W) with H, W >= 16, "
                             f"got {tuple(x.shape)}")
        return self.classifier(self.pool(self.features(x))).flatten()

"""pix2pix's generator (Isola et al. 2017): the U-Net encoder-decoder with skip connections, for images of any size.

Encoder: `depth` 4x4 stride-2 convolutions C(w)-C(2w)-C(4w)-C(8w)-C(8w)-... (widths doubling up to 8w), each
conv + BatchNorm + LeakyReLU(0.2) but the first (no norm) and the innermost (no norm: at the bottleneck a batch of
1 has one value per channel). Decoder: the mirror, 4x4 stride-2 transposed convolutions + BatchNorm + ReLU, each
taking the previous decoder output concatenated with the encoder output of the same scale; dropout 0.5 after the
first `dropout_blocks` decoder blocks (the paper's only noise: the generator sees no z); a last transposed
convolution to the output channels and tanh.

The reference code applies ReLU to the concatenation (skip and decoder output) at the start of each decoder block;
here the decoder block ends with its ReLU (fused into its BatchNorm) and the skip gets its own ReLU: the same
function, since ReLU(LeakyReLU(x)) = ReLU(x) and dropout commutes with ReLU.

Any size: the input is reflection-padded to a multiple of 2**depth (split evenly between the two sides) and the
output cropped back, so a 100x75 image gives a 100x75 image (the reference code accepts multiples of 256 only).

The discriminator is the shared PatchGAN (pygan.parts) with BatchNorm, on the input and output concatenated (the
conditional GAN), or on the output alone (unconditional: the ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan.nn import FusableModel, conv_act, conv_bn_act
from pygan.parts import at_any_size, gan_init_


class UnetGenerator(FusableModel):
    """Images (N, in_channels, H, W) in [-1, 1], any H and W, to (N, out_channels, H, W) in [-1, 1].

    `dropout_blocks` None: 3, or depth - 1 when fewer. `test_dropout`: dropout stays on in eval mode (the paper's
    test-time noise); off, eval mode is deterministic."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, depth: int = 8,
                 dropout: float = 0.5, dropout_blocks: int | None = None, test_dropout: bool = True,
                 fused: bool = True):
        super().__init__()
        self.check_positive(in_channels=in_channels, out_channels=out_channels, width=width)
        if depth < 2:
            raise ValueError(f"UnetGenerator: depth must be >= 2, got {depth}")
        if not 0 <= dropout < 1:
            raise ValueError(f"UnetGenerator: dropout must be in [0, 1), got {dropout}")
        if dropout_blocks is None:  # the paper's 3, as many as a shallower network has
            dropout_blocks = min(3, depth - 1)
        if not 0 <= dropout_blocks <= depth - 1:
            raise ValueError(f"UnetGenerator: dropout_blocks must be in [0, depth - 1 = {depth - 1}], got "
                             f"{dropout_blocks}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, width=width, depth=depth,
                           dropout=dropout, dropout_blocks=dropout_blocks, test_dropout=test_dropout, fused=fused)
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.dropout, self.dropout_blocks, self.test_dropout = dropout, dropout_blocks, test_dropout
        widths = [width * min(2 ** i, 8) for i in range(depth)]  # encoder outputs, outermost first

        def down(cin, cout):
            return conv_bn_act(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), "leaky_relu", 0.2, fused)

        def up(cin, cout):
            return conv_bn_act(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), "relu", fused=fused)

        self.down = nn.ModuleList(
            [conv_act(nn.Conv2d(in_channels, widths[0], 4, 2, 1), "leaky_relu", 0.2, fused)]
            + [down(widths[i - 1], widths[i]) for i in range(1, depth - 1)]
            + [conv_act(nn.Conv2d(widths[-2], widths[-1], 4, 2, 1), "relu", fused=fused)])
        # decoder, innermost first: block i maps to the scale of encoder output depth-2-i, whose skip joins it
        self.up = nn.ModuleList([up(widths[-1], widths[-2])]
                                + [up(2 * widths[i], widths[i - 1]) for i in range(depth - 2, 0, -1)])
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1), nn.Tanh())
        gan_init_(self)

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UnetGenerator: input must have shape (N, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}")
        return at_any_size(self._unet, x, self.multiple)

    def _unet(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        drop = self.training or self.test_dropout
        x = skips.pop()
        for i, block in enumerate(self.up):
            x = block(x)
            if i < self.dropout_blocks and self.dropout > 0:
                x = F.dropout(x, self.dropout, drop)
            x = torch.cat([x, F.relu(skips.pop())], 1)
        return self.out(x)

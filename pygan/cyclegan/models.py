"""CycleGAN's networks (Zhu et al. 2017): the ResNet generator and the PatchGAN discriminator, instance norm
throughout (affine=False, as the paper's code).

Generator: c7s1-w, d2w, d4w (stride-2 convolutions), `blocks` residual blocks at 4w, two upsamplings (u2w, uw: a
stride-2 transposed convolution, or with upsample='resize' nearest 2x resize + 3x3 convolution, which avoids the
checkerboard artefacts of transposed convolutions), c7s1-C, tanh; reflection padding. Discriminator: the shared
PatchGAN (pygan.parts), one per domain.

Each norm + activation is `pygan.nn.instance_norm_act_block`: pygan's fused instance norm + activation with
fused=True, the stock nn.InstanceNorm2d and activation module with fused=False; the state_dicts are the same, so
`to_stock()` loads it.
"""

from __future__ import annotations

from torch import Tensor, nn

from pygan.nn import FusableModel, instance_norm_act_block
from pygan.parts import PatchDiscriminator, gan_init_

UPSAMPLE = ("transpose", "resize")


class ResidualBlock(nn.Module):
    """x + IN((pad-conv-IN-ReLU-pad-conv)(x)); fused, the last instance norm adds x in the same pass."""

    def __init__(self, width: int, fused: bool = True):
        super().__init__()
        self.fused = fused
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3),
                                  instance_norm_act_block(width, "relu", fused=fused),
                                  nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3))
        self.norm = instance_norm_act_block(width, "identity", fused=fused)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        return self.norm(h, x) if self.fused else x + self.norm(h)


class ResnetGenerator(FusableModel):
    """Images (N, channels, H, W) in [-1, 1], H and W multiples of 4, to the other domain's (N, channels, H, W)."""

    def __init__(self, channels: int = 3, width: int = 64, blocks: int = 9, upsample: str = "transpose",
                 fused: bool = True):
        super().__init__()
        self.check_positive(channels=channels, width=width, blocks=blocks)
        self.check_choice("upsample", upsample, UPSAMPLE)
        self.config = dict(channels=channels, width=width, blocks=blocks, upsample=upsample, fused=fused)
        self.channels = channels
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7),
                                   instance_norm_act_block(w, "relu", fused=fused)]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * 2 * m, 3, 2, 1),
                       instance_norm_act_block(w * 2 * m, "relu", fused=fused)]
        layers += [ResidualBlock(4 * w, fused) for _ in range(blocks)]
        for m in (4, 2):
            if upsample == "transpose":
                layers.append(nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1))
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                           nn.Conv2d(w * m, w * m // 2, 3)]
            layers.append(instance_norm_act_block(w * m // 2, "relu", fused=fused))
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        gan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"ResnetGenerator: input must have shape (N, {self.channels}, H, W) with H and W "
                             f"multiples of 4, got {tuple(x.shape)}")
        return self.main(x)


class Generators(FusableModel):
    """The two generators as one module (one optimizer, one DDP wrapper): a2b = G: A -> B, b2a = F: B -> A."""

    def __init__(self, channels: int = 3, width: int = 64, blocks: int = 9, upsample: str = "transpose",
                 fused: bool = True):
        super().__init__()
        self.config = dict(channels=channels, width=width, blocks=blocks, upsample=upsample, fused=fused)
        self.a2b = ResnetGenerator(channels, width, blocks, upsample, fused)
        self.b2a = ResnetGenerator(channels, width, blocks, upsample, fused)

    def forward(self, real_a: Tensor, real_b: Tensor, identity: bool = True) -> dict[str, Tensor]:
        """Everything the generators' losses need: the translations, the cycles and (identity=True) each generator
        applied to its own target domain."""
        fake_b, fake_a = self.a2b(real_a), self.b2a(real_b)
        out = {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.b2a(fake_b), "rec_b": self.a2b(fake_a)}
        if identity:
            out.update(idt_b=self.a2b(real_b), idt_a=self.b2a(real_a))
        return out


class Discriminators(FusableModel):
    """The two discriminators as one module: a judges domain A, b domain B."""

    def __init__(self, channels: int = 3, width: int = 64, layers: int = 3, fused: bool = True):
        super().__init__()
        self.config = dict(channels=channels, width=width, layers=layers, fused=fused)
        self.a = PatchDiscriminator(channels, width, layers, fused)
        self.b = PatchDiscriminator(channels, width, layers, fused)

    def forward(self, x_a: Tensor, x_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.a(x_a), self.b(x_b)

"""The init of DCGAN and of the GAN papers after it (CycleGAN, pix2pix, GAN-CLS)."""

from __future__ import annotations

from torch import nn

from pygan.nn import BatchNormAct2d


def gan_init_(module: nn.Module) -> nn.Module:
    """Every conv, transposed conv, linear and embedding weight N(0, 0.02) and bias 0; BatchNorm weights N(1, 0.02)
    and biases 0 (in `module.modules()` order, from the global generator); returns the module."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, BatchNormAct2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module

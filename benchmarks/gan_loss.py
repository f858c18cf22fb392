"""Fused GAN loss vs the stock composition (BCEWithLogits for D's real and fake halves, G's non-saturating loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case
from pygan.losses import discriminator_loss, generator_loss


def stock_d(real, fake):
    return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.9))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def stock_g(fake):
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def pygan_d(real, fake):
    return discriminator_loss(real, fake, "non_saturating", label_smoothing=0.1).loss


def pygan_g(fake):
    return generator_loss(fake, "non_saturating").loss


def _step(loss_fn, *logits):
    def run():
        for t in logits:
            t.grad = None
        loss_fn(*logits).backward()
    return run


def cases(device: str, quick: bool) -> list[Case]:
    out = []
    for batch in ([64] if quick else [64, 256]):
        real = torch.randn(batch, 1, device=device, requires_grad=True)
        fake = torch.randn(batch, 1, device=device, requires_grad=True)
        out.append(Case("gan_loss", f"D step (real+fake, smoothing 0.1) fwd+bwd batch {batch}", {
            STOCK_EAGER: _step(stock_d, real, fake), STOCK_COMPILE: _step(torch.compile(stock_d, dynamic=False), real, fake),
            PYGAN: _step(pygan_d, real, fake), PYGAN_COMPILE: _step(torch.compile(pygan_d, dynamic=False), real, fake),
        }))
        out.append(Case("gan_loss", f"G step (non-saturating) fwd+bwd batch {batch}", {
            STOCK_EAGER: _step(stock_g, fake), STOCK_COMPILE: _step(torch.compile(stock_g, dynamic=False), fake),
            PYGAN: _step(pygan_g, fake), PYGAN_COMPILE: _step(torch.compile(pygan_g, dynamic=False), fake),
        }))
    return out

"""Whole text-to-image training iterations (Reed et al. 2016, GAN-CLS + GAN-INT) at the CPU default's network
(16x16 digits, G width 32, D width 16) and at Reed et al.'s 64x64 (widths 64, text projected to 128): G makes
images from the captions' embeddings and from as many interpolated ones; D's step on (real, matching), (real,
mismatching) and (generated, matching) pairs; G's step through the frozen D (GAN-CLS + GAN-INT losses); Adam.
pygan's fused models (conv + BN + activation, `conv_bn_act`) and loss kernels against their stock twins
(`to_stock()`, identical weights) with stock BCE losses. The text embeddings are fixed inputs (the encoder is
frozen during GAN training). Memory: the bytes autograd keeps for G's step, eager variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, saved_tensor_bytes
from pygan.text2image.losses import gan_cls_d_loss, gan_int_g_loss
from pygan.text2image.models import MatchingDiscriminator, TextGenerator
from pygan.training import frozen

TEXT_DIM = 64


def _stock_d(real, wrong, fake):  # Reed et al.: log D(x,h) + (log(1 - D(x,h')) + log(1 - D(G(z,h),h))) / 2
    return F.softplus(-real).mean() + 0.5 * F.softplus(wrong).mean() + 0.5 * F.softplus(fake).mean()


def _stock_g(fake, interp):
    return F.softplus(-fake).mean() + F.softplus(-interp).mean()


def _pygan_d(real, wrong, fake):
    return gan_cls_d_loss(real, wrong, fake, "non_saturating", 0.5)


def _pygan_g(fake, interp):
    return gan_int_g_loss(fake, interp, "non_saturating", 1.0)


def _iteration(G, D, x, z, h, h_wrong, h_int, d_loss, g_loss):
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    b = x.shape[0]
    h_all = torch.cat([h, h_int])

    def run():
        fake = G(z, h_all)
        s_real = D(torch.cat([x, x]), torch.cat([h, h_wrong]))
        loss = d_loss(s_real[:b], s_real[b:], D(fake[:b].detach(), h))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        with frozen(D):
            s = D(fake, h_all)
            loss = g_loss(s[:b], s[b:])
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
    return run


def _g_step_saved(G, D, z, h_all, g_loss) -> int:
    b = z.shape[0] // 2
    with frozen(D):
        return saved_tensor_bytes(lambda: g_loss(*D(G(z, h_all), h_all).split(b)))


def cases(device: str, quick: bool) -> list[Case]:
    settings = [(16, 32, 16, 32, 64)] if quick or device == "cpu" else [(16, 32, 16, 32, 64), (64, 64, 64, 128, 64)]
    if quick:
        settings = [(16, 8, 8, 8, 8)]
    out = []
    for size, gw, dw, proj, batch in settings:
        g = torch.Generator().manual_seed(0)
        G = TextGenerator(size, 1 if size == 16 else 3, 32 if size == 16 else 100, TEXT_DIM, proj, gw).to(device)
        D = MatchingDiscriminator(size, G.channels, TEXT_DIM, proj, dw).to(device)
        sG, sD = G.to_stock(), D.to_stock()
        x = (torch.rand(batch, G.channels, size, size, generator=g) * 2 - 1).to(device)
        z = torch.randn(2 * batch, G.latent_dim, generator=g).to(device)
        h, h_wrong, h_int = (F.normalize(torch.randn(batch, TEXT_DIM, generator=g), dim=1).to(device) for _ in range(3))
        cG, cD = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)
        scG, scD = torch.compile(sG, dynamic=False), torch.compile(sD, dynamic=False)
        args = (x, z, h, h_wrong, h_int)
        h_all = torch.cat([h, h_int])
        out.append(Case("text2image", f"{size}x{size} iteration (GAN-CLS D + GAN-INT G) batch {batch}, G {gw} / "
                                      f"D {dw} wide, NCHW fp32", {
            STOCK_EAGER: _iteration(sG, sD, *args, _stock_d, _stock_g),
            STOCK_COMPILE: _iteration(scG, scD, *args, _stock_d, _stock_g),
            PYGAN: _iteration(G, D, *args, _pygan_d, _pygan_g),
            PYGAN_COMPILE: _iteration(cG, cD, *args, _pygan_d, _pygan_g),
        }, saved_bytes={STOCK_EAGER: _g_step_saved(sG, sD, z, h_all, _stock_g),
                        PYGAN: _g_step_saved(G, D, z, h_all, _pygan_g)}))
    return out

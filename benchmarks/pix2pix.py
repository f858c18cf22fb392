"""Whole pix2pix training iterations: the discriminator's step (real and detached fake pairs, objective halved), then
the generator's (the cGAN loss under the updated D + 100 x L1). At the paper's setting (256x256, batch 1, U-Net
64 wide and 8 deep, 70x70 PatchGAN 64 wide, BatchNorm) and at the CPU default (48x48, batch 16, U-Net 32x4,
PatchGAN 32 wide). pygan's fused models (conv + BN + activation, bias + activation) and losses against their stock
twins (`to_stock()`, identical weights) with stock BCE losses. Memory: the bytes autograd keeps for the generator's
step, eager variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, gan_losses, saved_tensor_bytes
from pygan.parts import PatchDiscriminator
from pygan.pix2pix.models import UnetGenerator
from pygan.training import frozen

L1 = 100.0

STOCK, FUSED = gan_losses("non_saturating", stock=True), gan_losses("non_saturating", stock=False)


def _g_loss(G, D, x, y, g_adv):
    fake = G(x)
    return g_adv(D(torch.cat([x, fake], 1))) + L1 * F.l1_loss(fake, y)


def _iteration(G, D, x, y, g_adv, d_loss):
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))

    def run():
        fake = G(x)
        loss = 0.5 * d_loss(D(torch.cat([x, y], 1)), D(torch.cat([x, fake.detach()], 1)))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        with frozen(D):
            loss = g_adv(D(torch.cat([x, fake], 1))) + L1 * F.l1_loss(fake, y)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
    return run


def _g_step_saved(G, D, x, y, g_adv) -> int:
    with frozen(D):
        return saved_tensor_bytes(lambda: _g_loss(G, D, x, y, g_adv))


def cases(device: str, quick: bool) -> list[Case]:
    settings = ([(32, 2, 4, 3, 4)] if quick else
                [(256, 1, 64, 8, 64), (48, 16, 32, 4, 32)])  # size, batch, G width, G depth, D width
    out = []
    for size, batch, width, depth, d_width in settings:
        G = UnetGenerator(3, 3, width, depth).to(device)
        D = PatchDiscriminator(6, d_width, 3, norm="batch").to(device)
        sG, sD = G.to_stock(), D.to_stock()
        x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        y = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        cG, cD = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)
        scG, scD = torch.compile(sG, dynamic=False), torch.compile(sD, dynamic=False)
        out.append(Case("pix2pix", f"{size}x{size} iteration (D + G) batch {batch}, U-Net {width}x{depth}, "
                                   f"D {d_width}, NCHW fp32", {
            STOCK_EAGER: _iteration(sG, sD, x, y, *STOCK),
            STOCK_COMPILE: _iteration(scG, scD, x, y, *STOCK),
            PYGAN: _iteration(G, D, x, y, *FUSED),
            PYGAN_COMPILE: _iteration(cG, cD, x, y, *FUSED),
        }, saved_bytes={STOCK_EAGER: _g_step_saved(sG, sD, x, y, STOCK[0]),
                        PYGAN: _g_step_saved(G, D, x, y, FUSED[0])}))
    return out

"""Whole super-resolution training iterations at the paper's sizes (x4, 96x96 HR crops, batch 16, G width 64 with 16
blocks, D width 64): an SRResNet step (pixel MSE, backward, Adam) and an SRGAN iteration (D step on HR vs G(LR),
then G step on MSE + 1e-3 x adversarial). pygan's fused models and losses against their stock twins
(`to_stock()`, identical weights) with stock BCE-with-logits losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case
from benchmarks.dcgan import _pygan_g_loss, _pygan_losses, _stock_g_loss, _stock_losses
from pygan.sr.models import SRDiscriminator, SRResNet


def _srresnet_step(G, lr, hr):
    opt = torch.optim.Adam(G.parameters(), 1e-4)

    def run():
        loss = F.mse_loss(G(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def _srgan_iteration(G, D, lr, hr, d_loss, g_loss):
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)

    def run():
        sr = G(lr)
        loss = d_loss(D(hr), D(sr.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        loss = F.mse_loss(sr, hr) + 1e-3 * g_loss(D(sr))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    return run


def cases(device: str, quick: bool) -> list[Case]:
    width, blocks, batch, crop = (4, 1, 2, 32) if quick else (64, 16, 16, 96)
    fmt = torch.channels_last
    out = []
    G = SRResNet(4, 3, width, blocks).to(device, memory_format=fmt)
    D = SRDiscriminator(3, width).to(device, memory_format=fmt)
    sG, sD = G.to_stock().to(memory_format=fmt), D.to_stock().to(memory_format=fmt)
    hr = torch.rand(batch, 3, crop, crop, device=device).contiguous(memory_format=fmt)
    lr = torch.rand(batch, 3, crop // 4, crop // 4, device=device).contiguous(memory_format=fmt)
    shape = f"x4 batch {batch} {crop}x{crop} HR, G {width}x{blocks} blocks, NHWC fp32"
    cG, csG = torch.compile(G, dynamic=False), torch.compile(sG, dynamic=False)
    out.append(Case("srgan", f"SRResNet step ({shape})", {
        STOCK_EAGER: _srresnet_step(sG, lr, hr), STOCK_COMPILE: _srresnet_step(csG, lr, hr),
        PYGAN: _srresnet_step(G, lr, hr), PYGAN_COMPILE: _srresnet_step(cG, lr, hr),
    }))
    cD, csD = torch.compile(D, dynamic=False), torch.compile(sD, dynamic=False)
    out.append(Case("srgan", f"SRGAN iteration ({shape}, D {width})", {
        STOCK_EAGER: _srgan_iteration(sG, sD, lr, hr, _stock_losses, _stock_g_loss),
        STOCK_COMPILE: _srgan_iteration(csG, csD, lr, hr, _stock_losses, _stock_g_loss),
        PYGAN: _srgan_iteration(G, D, lr, hr, _pygan_losses, _pygan_g_loss),
        PYGAN_COMPILE: _srgan_iteration(cG, cD, lr, hr, _pygan_losses, _pygan_g_loss),
    }))
    return out

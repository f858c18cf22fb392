"""Whole CycleGAN training iterations at the paper's setting (256x256, ResNet generators of width 64 with 9 blocks,
70x70 PatchGAN discriminators of width 64, LSGAN, cycle weight 10, identity 0.5) at batch 1 and 4: the generators'
step (both translations, both cycles, both identities; adversarial, cycle and identity losses; backward, Adam) and
the discriminators' step (real vs detached fake). pygan's fused models (instance norm + activation and the
residual add in one op) and losses against their stock twins (`to_stock()`, identical weights) with stock MSE
losses. Memory: the bytes autograd keeps for the generators' step (the iteration's largest graph), eager variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, gan_losses, saved_tensor_bytes
from pygan.cyclegan.models import Discriminators, Generators
from pygan.training import frozen

CYCLE, IDENTITY = 10.0, 0.5

STOCK, FUSED = gan_losses("least_squares", stock=True), gan_losses("least_squares", stock=False)


def _g_loss(G, D, a, b, g_adv):
    out = G(a, b)
    la, lb = D(out["fake_a"], out["fake_b"])
    loss = (g_adv(la) + g_adv(lb)
            + CYCLE * (F.l1_loss(out["rec_a"], a) + F.l1_loss(out["rec_b"], b))
            + CYCLE * IDENTITY * (F.l1_loss(out["idt_a"], a) + F.l1_loss(out["idt_b"], b)))
    return loss, out


def _iteration(G, D, a, b, g_adv, d_loss):
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))

    def run():
        with frozen(D):
            loss, out = _g_loss(G, D, a, b, g_adv)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
        ra, rb = D(a, b)
        fa, fb = D(out["fake_a"].detach(), out["fake_b"].detach())
        loss = d_loss(ra, fa) + d_loss(rb, fb)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    return run


def _g_step_saved(G, D, a, b, g_adv) -> int:
    with frozen(D):
        return saved_tensor_bytes(lambda: _g_loss(G, D, a, b, g_adv))


def cases(device: str, quick: bool) -> list[Case]:
    size, width, blocks = (32, 4, 1) if quick else (256, 64, 9)
    out = []
    # batch 4 at 256x256 keeps ~20 GiB alive on the CPU (2 GiB of saved activations per image and direction, four
    # variants' models): measured on GPUs only
    for batch in [1] if quick or device == "cpu" else [1, 4]:
        G, D = Generators(3, width, blocks).to(device), Discriminators(3, width).to(device)
        sG, sD = G.to_stock(), D.to_stock()
        a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        b = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        cG, cD = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)
        scG, scD = torch.compile(sG, dynamic=False), torch.compile(sD, dynamic=False)
        out.append(Case("cyclegan", f"{size}x{size} iteration (2 G + 2 D) batch {batch}, G {width}x{blocks} blocks, "
                                    f"NCHW fp32", {
            STOCK_EAGER: _iteration(sG, sD, a, b, *STOCK),
            STOCK_COMPILE: _iteration(scG, scD, a, b, *STOCK),
            PYGAN: _iteration(G, D, a, b, *FUSED),
            PYGAN_COMPILE: _iteration(cG, cD, a, b, *FUSED),
        }, saved_bytes={STOCK_EAGER: _g_step_saved(sG, sD, a, b, STOCK[0]),
                        PYGAN: _g_step_saved(G, D, a, b, FUSED[0])}))
    return out

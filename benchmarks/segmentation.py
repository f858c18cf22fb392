"""Whole adversarial-segmentation training iterations (Luc et al. 2016): the segmenter's step (forward, per-pixel
cross-entropy + 0.1 x the non-saturating adversarial loss through the frozen adversary, backward, Adam) and the
adversary's step (ground truth vs the detached prediction, product encoding, backward, Adam). pygan's fused models
(conv + BN + activation blocks) and losses against their stock twins (`to_stock()`, identical weights) with stock
BCE-with-logits. Two shapes: the embedded scenes' default (48x48, 1 channel, 11 classes, width 16, depth 2, batch
16) and a VOC-like one (3 channels, 21 classes, width 32, depth 3, batch 8, 128x128; 256x256 on a GPU). Memory: the
bytes autograd keeps for the segmenter's step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, gan_losses, saved_tensor_bytes
from pygan.segmentation.models import Adversary, Segmenter
from pygan.training import frozen

ADV_WEIGHT = 0.1

STOCK, FUSED = gan_losses("non_saturating", stock=True), gan_losses("non_saturating", stock=False)


def _s_loss(S, D, x, y, g_adv):
    logits = S(x)
    probs = logits.softmax(1)
    loss = F.cross_entropy(logits, y) + ADV_WEIGHT * g_adv(D(x, probs))
    return loss, probs


def _iteration(S, D, x, y, onehot, g_adv, d_loss):
    opt_s = torch.optim.Adam(S.parameters(), 2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))

    def run():
        with frozen(D):
            loss, probs = _s_loss(S, D, x, y, g_adv)
            opt_s.zero_grad(set_to_none=True)
            loss.backward()
            opt_s.step()
        n = x.shape[0]
        d = D(torch.cat([x, x]), torch.cat([onehot, probs.detach()]))
        loss = d_loss(d[:n], d[n:])
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    return run


def _s_step_saved(S, D, x, y, g_adv) -> int:
    with frozen(D):
        return saved_tensor_bytes(lambda: _s_loss(S, D, x, y, g_adv))


def cases(device: str, quick: bool) -> list[Case]:
    if quick:
        shapes = [(32, 1, 11, 4, 2, 2)]
    else:
        voc = 256 if device == "cuda" else 128
        shapes = [(48, 1, 11, 16, 2, 16), (voc, 3, 21, 32, 3, 8)]
    out = []
    for size, channels, classes, width, depth, batch in shapes:
        S = Segmenter(channels, classes, width, depth).to(device)
        D = Adversary(channels, classes, 2 * width, 3, "product").to(device)
        sS, sD = S.to_stock(), D.to_stock()
        g = torch.Generator(device).manual_seed(0)
        x = torch.rand(batch, channels, size, size, device=device, generator=g) * 2 - 1
        y = torch.randint(0, classes, (batch, size, size), device=device, generator=g)
        cS, cD = torch.compile(S, dynamic=False), torch.compile(D, dynamic=False)
        scS, scD = torch.compile(sS, dynamic=False), torch.compile(sD, dynamic=False)
        onehot = F.one_hot(y, classes).permute(0, 3, 1, 2).float()
        out.append(Case("segmentation", f"{size}x{size} iteration (S + D) batch {batch}, {channels}ch {classes} "
                                        f"classes, S {width}x{depth}, NCHW fp32", {
            STOCK_EAGER: _iteration(sS, sD, x, y, onehot, *STOCK),
            STOCK_COMPILE: _iteration(scS, scD, x, y, onehot, *STOCK),
            PYGAN: _iteration(S, D, x, y, onehot, *FUSED),
            PYGAN_COMPILE: _iteration(cS, cD, x, y, onehot, *FUSED),
        }, saved_bytes={STOCK_EAGER: _s_step_saved(sS, sD, x, y, STOCK[0]),
                        PYGAN: _s_step_saved(S, D, x, y, FUSED[0])}))
    return out

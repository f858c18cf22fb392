"""Fused instance norm + activation (+ residual add) vs stock InstanceNorm2d followed by the activation (and the
add), at CycleGAN's shapes: the 9-block ResNet generator (64x256x256 after the stem, 128x128x128 and 256x64x64
after the downsampling convolutions; InstanceNorm + ReLU, and InstanceNorm + add in the residual blocks) and the
PatchGAN discriminator (InstanceNorm + LeakyReLU(0.2)); batch 1 and 4; CycleGAN's affine=False."""

from __future__ import annotations

import torch
from torch import nn

import pygan
from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, max_autotune, saved_tensor_bytes

SHAPES = [(64, 256, 256), (128, 128, 128), (256, 64, 64)]
KINDS = ("relu", "residual", "leaky_relu")  # IN + ReLU, IN + add (identity), IN + LeakyReLU(0.2)


class _Stock(nn.Module):
    def __init__(self, C, kind):
        super().__init__()
        self.norm = nn.InstanceNorm2d(C)
        self.act = {"relu": nn.ReLU(True), "leaky_relu": nn.LeakyReLU(0.2, True), "residual": nn.Identity()}[kind]
        self.kind = kind

    def forward(self, x, r):
        y = self.norm(x)
        return y + r if self.kind == "residual" else self.act(y)


class _Fused(nn.Module):
    def __init__(self, C, kind):
        super().__init__()
        act = "identity" if kind == "residual" else kind
        self.norm = pygan.nn.InstanceNormAct2d(C, activation=act, negative_slope=0.2)
        self.kind = kind

    def forward(self, x, r):
        return self.norm(x, r if self.kind == "residual" else None)


def _fwd(model, x, r):
    def run():
        with torch.no_grad():
            return model(x, r)
    return run


def _fwd_bwd(model, x, r, grad):
    def run():
        model(x, r).backward(grad)
    return run


def cases(device: str, quick: bool) -> list[Case]:
    shapes = [(1, 64, 32, 32)] if quick else [(n, *s) for n in (1, 4) for s in SHAPES]
    kinds = ("relu",) if quick else KINDS
    out = []
    for shape in shapes:
        for kind in kinds:
            if kind == "leaky_relu" and shape[1] == 64 and not quick:
                continue  # PatchGAN's normalized layers have 128 / 256 channels
            out += _cases(shape, kind, device)
    return out


def _cases(shape, kind, device) -> list[Case]:
    stock, fused = _Stock(shape[1], kind).to(device), _Fused(shape[1], kind).to(device)
    stock_c, fused_c = torch.compile(stock, dynamic=False), torch.compile(fused, dynamic=False)
    x = torch.randn(shape, device=device)
    r = torch.randn(shape, device=device) if kind == "residual" else None
    xg = x.clone().requires_grad_()
    rg = r.clone().requires_grad_() if r is not None else None
    g = torch.randn_like(x)
    label = f"{'in+add' if kind == 'residual' else kind} {'x'.join(map(str, shape))} fp32 NCHW"
    nbytes = x.numel() * x.element_size()
    extra = nbytes if r is not None else 0
    return [
        Case("instance_norm_act", f"fwd {label}", {
            STOCK_EAGER: _fwd(stock, x, r), STOCK_COMPILE: _fwd(stock_c, x, r),
            PYGAN: _fwd(fused, x, r), PYGAN_COMPILE: _fwd(fused_c, x, r),
            **max_autotune(device, lambda compile_: _fwd(compile_(stock), x, r)),
        }, min_bytes=2 * nbytes + extra),
        Case("instance_norm_act", f"fwd+bwd {label}", {
            STOCK_EAGER: _fwd_bwd(stock, xg, rg, g), STOCK_COMPILE: _fwd_bwd(stock_c, xg, rg, g),
            PYGAN: _fwd_bwd(fused, xg, rg, g), PYGAN_COMPILE: _fwd_bwd(fused_c, xg, rg, g),
            **max_autotune(device, lambda compile_: _fwd_bwd(compile_(stock), xg, rg, g)),
        }, min_bytes=5 * nbytes + extra, saved_bytes={
            STOCK_EAGER: saved_tensor_bytes(lambda: stock(xg, rg)),
            PYGAN: saved_tensor_bytes(lambda: fused(xg, rg)),
        }),
    ]

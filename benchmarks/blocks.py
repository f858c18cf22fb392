"""Conv/ConvTranspose + BN + activation blocks vs the stock composition, and folded-BN sampling of a DCGAN generator."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

import pygan
from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, saved_tensor_bytes

# DCGAN-paper 64x64 layers at batch 64: (transposed?, in, out, input size).
LAYERS = [(True, 512, 256, 8), (True, 256, 128, 16), (False, 128, 256, 16), (False, 256, 512, 8)]


def _pair(transposed: bool, cin: int, cout: int, device):
    if transposed:
        stock = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))
        fused = pygan.nn.ConvTranspose2dBNAct(cin, cout, 4, 2, 1, activation="relu")
    else:
        stock = nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True))
        fused = pygan.nn.Conv2dBNAct(cin, cout, 4, 2, 1, activation="leaky_relu", negative_slope=0.2)
    return stock.to(device), fused.to(device)


def _fwd_bwd(model, x):
    def run():
        model(x).sum().backward()
    return run


def _sample(model, z):
    """Forward without autograd (train-mode blocks: batch statistics; eval-mode generator: sampling)."""
    def run():
        with torch.no_grad():
            return model(z)
    return run


def generator(nz=100, ngf=64, fused=False):
    def block(cin, cout, k, s, p):
        if fused:
            return pygan.nn.ConvTranspose2dBNAct(cin, cout, k, s, p, activation="relu")
        return nn.Sequential(OrderedDict(conv=nn.ConvTranspose2d(cin, cout, k, s, p, bias=False),
                                         bn=nn.BatchNorm2d(cout), act=nn.ReLU(True)))  # child names as pygan's blocks
    return nn.Sequential(block(nz, ngf * 8, 4, 1, 0), block(ngf * 8, ngf * 4, 4, 2, 1), block(ngf * 4, ngf * 2, 4, 2, 1),
                         block(ngf * 2, ngf, 4, 2, 1), nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())


def dcgan_paper(nz=100, ngf=64, ndf=64):
    """The DCGAN paper's 64x64 G (ConvT-BN-ReLU, Tanh) and D (Conv-BN-LeakyReLU(0.2), one logit), stock modules."""
    def g(cin, cout, s, p):
        return [nn.ConvTranspose2d(cin, cout, 4, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    def d(cin, cout):
        return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]

    G = nn.Sequential(*g(nz, ngf * 8, 1, 0), *g(ngf * 8, ngf * 4, 2, 1), *g(ngf * 4, ngf * 2, 2, 1), *g(ngf * 2, ngf, 2, 1),
                      nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True), *d(ndf, ndf * 2),
                      *d(ndf * 2, ndf * 4), *d(ndf * 4, ndf * 8), nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))
    return G, D


def _gd_step(G, D, z, recompute=False):
    def run():
        if recompute:
            with pygan.recompute_relu_outputs():
                out = D(G(z))
        else:
            out = D(G(z))
        out.mean().backward()
    return run


def cases(device: str, quick: bool) -> list[Case]:
    batch = 4 if quick else 64
    out = []
    for transposed, cin, cout, size in LAYERS[:1] if quick else LAYERS:
        if quick:
            cin, cout, size = cin // 8, cout // 8, size // 2
        stock, fused = _pair(transposed, cin, cout, device)
        x = torch.randn(batch, cin, size, size, device=device, requires_grad=True)
        kind = "ConvT+BN+ReLU" if transposed else "Conv+BN+LeakyReLU"
        out.append(Case("blocks", f"{kind} fwd (train mode) {batch}x{cin}x{size}x{size} -> {cout}", {
            STOCK_EAGER: _sample(stock, x), STOCK_COMPILE: _sample(torch.compile(stock, dynamic=False), x),
            PYGAN: _sample(fused, x), PYGAN_COMPILE: _sample(torch.compile(fused, dynamic=False), x),
        }))
        out.append(Case("blocks", f"{kind} fwd+bwd {batch}x{cin}x{size}x{size} -> {cout}", {
            STOCK_EAGER: _fwd_bwd(stock, x), STOCK_COMPILE: _fwd_bwd(torch.compile(stock, dynamic=False), x),
            PYGAN: _fwd_bwd(fused, x), PYGAN_COMPILE: _fwd_bwd(torch.compile(fused, dynamic=False), x),
        }, saved_bytes={STOCK_EAGER: saved_tensor_bytes(lambda: stock(x)), PYGAN: saved_tensor_bytes(lambda: fused(x))}))
    ngf = 8 if quick else 64
    stock_g, fused_g = generator(ngf=ngf).to(device).eval(), generator(ngf=ngf, fused=True).to(device).eval()
    fused_g.load_state_dict(stock_g.state_dict())
    folded = pygan.fold_bn(stock_g)
    z = torch.randn(batch, 100, 1, 1, device=device)
    out.append(Case("blocks", f"DCGAN G sampling (eval) batch {batch} ngf {ngf}", {
        STOCK_EAGER: _sample(stock_g, z), STOCK_COMPILE: _sample(torch.compile(stock_g, dynamic=False), z),
        PYGAN: _sample(fused_g, z), PYGAN_COMPILE: _sample(torch.compile(fused_g, dynamic=False), z),
        "pygan.fold_bn": _sample(folded, z),
    }))
    # A whole DCGAN-paper 64x64 G + D forward/backward: time and the activation memory autograd keeps.
    batch = 2 if quick else 16
    G, D = (m.to(device) for m in dcgan_paper(ngf=8 if quick else 64, ndf=8 if quick else 64))
    fG, fD = pygan.fuse(G), pygan.fuse(D)
    z = torch.randn(batch, 100, 1, 1, device=device)

    def saved(g, d, recompute):
        if recompute:
            with pygan.recompute_relu_outputs():
                return saved_tensor_bytes(lambda: d(g(z)))
        return saved_tensor_bytes(lambda: d(g(z)))

    out.append(Case("blocks", f"DCGAN-paper 64x64 G+D fwd+bwd batch {batch} (pygan: fuse + recompute_relu_outputs)", {
        STOCK_EAGER: _gd_step(G, D, z), PYGAN: _gd_step(fG, fD, z, recompute=True),
    }, saved_bytes={STOCK_EAGER: saved(G, D, False), PYGAN: saved(fG, fD, True)}))
    return out

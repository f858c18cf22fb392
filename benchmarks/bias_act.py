"""Fused per-channel bias + activation (the epilogue of a convolution with BatchNorm folded in) vs stock PyTorch's
`x + bias.view(1, C, 1, 1)` followed by the activation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, saved_tensor_bytes
from pygan.ops import bias_act

SHAPES = [(64, 256, 16, 16), (64, 128, 32, 32)]  # DCGAN generator layers at batch 64


def _stock(activation):
    def f(x, b, s):
        z = x + b.view(1, -1, 1, 1)
        if activation == "relu":
            return torch.relu(z)
        if activation == "leaky_relu":
            return F.leaky_relu(z, 0.2)
        return F.prelu(z, s)
    return f


def _pygan(activation):
    return lambda x, b, s: bias_act(x, b, activation, 0.2, s if activation == "prelu" else None)


def _fwd(f, *args):
    def run():
        with torch.no_grad():
            return f(*args)
    return run


def _fwd_bwd(f, grad, *args):
    def run():
        f(*args).backward(grad)
    return run


def cases(device: str, quick: bool) -> list[Case]:
    shapes = [(8, 64, 8, 8)] if quick else SHAPES
    acts = ["relu"] if quick else ["relu", "leaky_relu", "prelu"]
    out = []
    for shape in shapes:
        for fmt in (torch.contiguous_format, torch.channels_last):
            for act in acts:
                x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
                xg = x.clone().requires_grad_()
                b = torch.randn(shape[1], device=device, requires_grad=True)
                s = torch.full((shape[1],), 0.25, device=device, requires_grad=True)
                g = torch.randn_like(x)
                stock, fused = _stock(act), _pygan(act)
                stock_c, fused_c = torch.compile(stock, dynamic=False), torch.compile(fused, dynamic=False)
                layout = "NHWC" if fmt == torch.channels_last else "NCHW"
                label = f"{act} {'x'.join(map(str, shape))} fp32 {layout}"
                nbytes = x.numel() * 4
                out.append(Case("bias_act", f"fwd {label}", {
                    STOCK_EAGER: _fwd(stock, x, b, s), STOCK_COMPILE: _fwd(stock_c, x, b, s),
                    PYGAN: _fwd(fused, x, b, s), PYGAN_COMPILE: _fwd(fused_c, x, b, s),
                }, min_bytes=2 * nbytes))
                out.append(Case("bias_act", f"fwd+bwd {label}", {
                    STOCK_EAGER: _fwd_bwd(stock, g, xg, b, s), STOCK_COMPILE: _fwd_bwd(stock_c, g, xg, b, s),
                    PYGAN: _fwd_bwd(fused, g, xg, b, s), PYGAN_COMPILE: _fwd_bwd(fused_c, g, xg, b, s),
                }, min_bytes=5 * nbytes, saved_bytes={
                    STOCK_EAGER: saved_tensor_bytes(lambda: stock(xg, b, s)),
                    PYGAN: saved_tensor_bytes(lambda: fused(xg, b, s)),
                }))
    return out

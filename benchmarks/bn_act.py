"""Fused batch norm + activation vs stock BatchNorm2d followed by the activation module."""

from __future__ import annotations

import torch
from torch import nn

import pygan
from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, max_autotune, saved_tensor_bytes

# DCGAN generator layer shapes at batch 64.
SHAPES = [(64, 512, 8, 8), (64, 256, 16, 16), (64, 128, 32, 32)]
STOCK_ACT = {
    "identity": lambda: nn.Identity(),
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "prelu": lambda: nn.PReLU(),
}


def _models(C, activation, device, dtype):
    stock = nn.Sequential(nn.BatchNorm2d(C), STOCK_ACT[activation]()).to(device, dtype)
    fused = pygan.nn.BatchNormAct2d(C, activation=activation, negative_slope=0.2).to(device, dtype)
    return stock, fused


def _fwd(model, x):
    def run():
        with torch.no_grad():
            return model(x)
    return run


def _fwd_bwd(model, x, grad):
    def run():
        y = model(x)
        y.backward(grad)
    return run


def cases(device: str, quick: bool) -> list[Case]:
    shapes = [(8, 64, 8, 8)] if quick else SHAPES
    acts = ["leaky_relu"] if quick else ["relu", "leaky_relu", "identity", "prelu"]
    middle = shapes[len(shapes) // 2]
    out = []
    for shape in shapes:
        for fmt in (torch.contiguous_format, torch.channels_last):
            for act in acts:
                if act in ("identity", "prelu") and shape != middle:
                    continue  # the two other activations on the middle shape only
                out += _cases(shape, fmt, act, torch.float32, device)
    # bf16 activations with fp32 parameters, as under autocast: the middle shape, the two DCGAN activations
    for fmt in (torch.contiguous_format, torch.channels_last):
        for act in acts[:2]:
            out += _cases(middle, fmt, act, torch.bfloat16, device)
    return out


def _cases(shape, fmt, act, dtype, device) -> list[Case]:
    stock, fused = _models(shape[1], act, device, torch.float32)
    stock_c, fused_c = torch.compile(stock, dynamic=False), torch.compile(fused, dynamic=False)
    x = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=fmt)
    xg = x.clone().requires_grad_()
    g = torch.randn_like(x)
    layout = "NHWC" if fmt == torch.channels_last else "NCHW"
    label = f"{act} {'x'.join(map(str, shape))} {'bf16' if dtype == torch.bfloat16 else 'fp32'} {layout}"
    nbytes = x.numel() * x.element_size()
    return [
        Case("bn_act", f"fwd {label}", {
            STOCK_EAGER: _fwd(stock, x), STOCK_COMPILE: _fwd(stock_c, x),
            PYGAN: _fwd(fused, x), PYGAN_COMPILE: _fwd(fused_c, x),
            **max_autotune(device, lambda compile_: _fwd(compile_(stock), x)),
        }, min_bytes=2 * nbytes),
        Case("bn_act", f"fwd+bwd {label}", {
            STOCK_EAGER: _fwd_bwd(stock, xg, g), STOCK_COMPILE: _fwd_bwd(stock_c, xg, g),
            PYGAN: _fwd_bwd(fused, xg, g), PYGAN_COMPILE: _fwd_bwd(fused_c, xg, g),
            **max_autotune(device, lambda compile_: _fwd_bwd(compile_(stock), xg, g)),
        }, min_bytes=5 * nbytes, saved_bytes={
            STOCK_EAGER: saved_tensor_bytes(lambda: stock(xg)),
            PYGAN: saved_tensor_bytes(lambda: fused(xg)),
        }),
    ]

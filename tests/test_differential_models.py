"""The differential suite, modules and whole systems: fused networks against their stock twins, layouts varied.

Modules: a stock block (optional conv or transposed conv, BatchNorm2d or InstanceNorm2d, an activation) is fused
with pygan.fuse; the fused block, with the layout of the model, the input and the incoming gradient drawn
independently, must give the output, input and parameter gradients and running statistics of the stock block run
in NCHW with contiguous tensors (the layout-free truth), in float64.

Systems: each GAN system's G and D at its paper's setting (DCGAN batch 128, SRResNet / SRGAN batch 16, CycleGAN
batch 1, segmentation and text-to-image at their defaults), one G + D loss, every weight gradient compared —
NCHW and channels_last, fp32 (to float rounding) and bf16 autocast (within twice the stock twin's own error) —
against the stock twin in float64 and NCHW.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import pygan
from pygan.nn import conv_bn_act
from pygan.nn.convert import activation_module

from differential import DENSE_FORMS, GRAD_FORMS, arrange, bounded, close, describe, gradient

TOL64 = 1e-9


# ------------------------------------------------------------------ modules


@st.composite
def blocks(draw):
    conv = draw(st.sampled_from(["none", "conv", "conv_transpose"]))
    # "block": pygan's conv + BN + activation module (conv_bn_act), whose eval mode folds BN into the conv
    norm = draw(st.sampled_from(["batch", "instance"] + (["block"] if conv != "none" else [])))
    acts = ["relu", "leaky_relu", "tanh", "sigmoid"] + (["prelu"] if norm == "batch" else [])  # what fuse fuses
    acts += ["identity"] if norm == "block" else []
    return dict(conv=conv, norm=norm, activation=draw(st.sampled_from(acts)),
                cin=draw(st.sampled_from([1, 3])), C=draw(st.sampled_from([1, 3, 33])),
                N=draw(st.sampled_from([1, 2, 3])), H=draw(st.sampled_from([2, 5])), W=draw(st.sampled_from([1, 3, 6])),
                affine=draw(st.booleans()), track=draw(st.booleans()), training=draw(st.booleans()),
                model_form=draw(st.sampled_from(["contiguous", "channels_last"])),
                x_form=draw(st.sampled_from(DENSE_FORMS)), grad_form=draw(st.sampled_from(GRAD_FORMS)),
                seed=draw(st.integers(0, 2**31 - 1)))


def _conv(b) -> nn.Module:
    cin = b["cin"] if b["conv"] != "none" else b["C"]
    if b["conv"] == "conv":
        return nn.Conv2d(cin, b["C"], 3, 1, 1, bias=False)
    return nn.ConvTranspose2d(cin, b["C"], 4, 2, 1, bias=False)


def stock_block(b) -> nn.Module:
    layers = []
    if b["norm"] == "block":
        model = conv_bn_act(_conv(b), b["activation"], 0.2, fused=False).double()
    else:
        if b["conv"] != "none":
            layers.append(_conv(b))
        norm = nn.BatchNorm2d if b["norm"] == "batch" else nn.InstanceNorm2d
        layers.append(norm(b["C"], affine=b["affine"], track_running_stats=b["track"], momentum=0.3))
        act = b["activation"]
        layers.append(nn.PReLU(b["C"]) if act == "prelu" else activation_module(act, 0.2))
        model = nn.Sequential(*layers).double()
    g = torch.Generator().manual_seed(b["seed"])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.2)
        for name, buf in model.named_buffers():
            if "running_mean" in name:
                buf.copy_(0.3 * torch.randn(buf.shape, generator=g, dtype=torch.float64))
            elif "running_var" in name:
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g, dtype=torch.float64))
    return model.train(b["training"])


def _run_block(model, x, grad):
    x = x.detach().requires_grad_(True)
    y = model(x)
    y.backward(grad)
    out = {"output": y.detach(), "grad input": x.grad}
    out.update({f"grad {n}": p.grad for n, p in model.named_parameters()})
    out.update({n: b.clone() for n, b in model.named_buffers()})
    return out


@bounded(60)
@given(b=blocks())
def test_fused_blocks_equal_stock_in_any_layout(b):
    if b["norm"] == "instance" and not b["training"] and not b["track"]:
        b["training"] = True  # stock instance norm uses input statistics then anyway
    stock = stock_block(b)
    if b["norm"] == "block":
        fused = conv_bn_act(copy.deepcopy(stock.conv), b["activation"], 0.2).double().train(b["training"])
        fused.load_state_dict(stock.state_dict())
    else:
        fused = pygan.fuse(copy.deepcopy(stock))
    fused_types = {type(m).__module__ for m in fused.modules()}
    assert any(t.startswith("pygan.nn") for t in fused_types), f"pygan.fuse left {stock} unfused"
    g = torch.Generator().manual_seed(b["seed"] + 1)
    cin = b["cin"] if b["conv"] != "none" else b["C"]
    x = torch.randn(b["N"], cin, b["H"], b["W"], generator=g, dtype=torch.float64) * 1.5 + 0.3
    with torch.no_grad():
        shape = copy.deepcopy(stock)(x).shape  # a copy: training mode updates running statistics
    grad = gradient(shape, torch.float64, b["grad_form"], g)
    truth = _run_block(copy.deepcopy(stock), x.contiguous(), grad.contiguous())
    if b["model_form"] == "channels_last":
        fused = fused.to(memory_format=torch.channels_last)
    got = _run_block(fused, arrange(x, b["x_form"]), grad)
    what = f"{fused} x {describe(arrange(x, b['x_form']))} grad {describe(grad)} training={b['training']}"
    for k, v in truth.items():
        assert k in got, f"{what}: {k} missing (state_dict keys must match stock's)"
        if v is None:
            assert got[k] is None or got[k].abs().max() == 0, f"{what}: {k}"
            continue
        close(got[k], v, TOL64, f"{what} {k}")


# ------------------------------------------------------------------ whole systems


class Step:
    """How a system's D sees G: d_inputs(G's output, G's inputs) -> D's inputs; d(D, *inputs) -> D's output."""

    def __init__(self, d_inputs=lambda out, inp: [out]):
        self.d_inputs = d_inputs

    @staticmethod
    def d(D, *inputs):
        return D(*inputs)


def _dcgan():
    from pygan.dcgan.models import DCGANDiscriminator, DCGANGenerator
    from pygan.dcgan.trainer import DCGANConfig

    c = DCGANConfig()
    G = DCGANGenerator(c.size, 1, width=c.g_width)
    D = DCGANDiscriminator(c.size, 1, width=c.d_width)
    return G, D, lambda g: (torch.randn(c.batch_size, G.latent_dim, generator=g),), Step()


def _sr():
    from pygan.sr.models import SRDiscriminator, SRResNet
    from pygan.sr.trainer import SRConfig

    c = SRConfig()
    G = SRResNet(c.scale, 3, c.width, c.blocks)
    D = SRDiscriminator(3, c.d_width)
    # the paper's batch of 16; 64 x 64 HR crops instead of 96 x 96 keep the suite's time (layout paths are the same)
    lr = 64 // c.scale
    return G, D, lambda g: (torch.rand(16, 3, lr, lr, generator=g) * 2 - 1,), Step()


def _cyclegan():
    from pygan.cyclegan.models import PatchDiscriminator, ResnetGenerator
    from pygan.cyclegan.trainer import CycleGANConfig

    c = CycleGANConfig()
    G = ResnetGenerator(3, c.width, c.blocks)
    D = PatchDiscriminator(3, c.d_width)
    return G, D, lambda g: (torch.rand(1, 3, c.size, c.size, generator=g) * 2 - 1,), Step()


def _segmentation():
    from pygan.segmentation.models import Adversary, Segmenter
    from pygan.segmentation.trainer import SegmentationConfig

    c = SegmentationConfig()
    G = Segmenter(1, 11, c.width)
    D = Adversary(1, 11, c.d_width)

    # D judges (image, G's class probabilities)
    step = Step(d_inputs=lambda out, inp: [inp[0], out.softmax(1)])
    return G, D, lambda g: (torch.rand(c.batch_size, 1, c.size, c.size, generator=g),), step


def _text2image():
    from pygan.text2image.models import MatchingDiscriminator, TextGenerator
    from pygan.text2image.trainer import Text2ImageConfig

    c = Text2ImageConfig()
    G = TextGenerator(c.size, 1, c.latent_dim, c.text_dim, c.proj_dim, c.g_width)
    D = MatchingDiscriminator(c.size, 1, c.text_dim, c.proj_dim, c.d_width)
    n = c.batch_size
    return (G, D, lambda g: (torch.randn(n, c.latent_dim, generator=g), torch.randn(n, c.text_dim, generator=g)),
            Step(d_inputs=lambda out, inp: [out, inp[1]]))  # D judges (image, caption embedding)


SYSTEMS = {"dcgan": _dcgan, "srgan": _sr, "cyclegan": _cyclegan, "segmentation": _segmentation,
           "text2image": _text2image}


def _half_grads(net, forward, inputs, upstream, channels_last: bool, dtype, bf16: bool):
    """Gradients of one network's parameters for fixed inputs and a fixed gradient at its output."""
    net = copy.deepcopy(net).to(dtype)
    inputs = [t.detach().to(dtype) for t in inputs]
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        inputs = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = forward(net, *inputs)
    out.backward(upstream.to(out.dtype).reshape(out.shape))
    return {n: p.grad for n, p in net.named_parameters()}


def _system_grads(G, D, step, inputs, channels_last: bool, dtype, bf16: bool, truth_io):
    """G's and D's weight gradients of one G + D loss, each network given the float64 truth's inputs and output
    gradient (so a rounding difference in one network cannot flip an activation kink in the other and be blamed on
    it)."""
    g_inputs, g_upstream, d_inputs, d_upstream = truth_io
    grads = {f"G.{k}": v for k, v in _half_grads(G, lambda g, *a: g(*a), g_inputs, g_upstream, channels_last, dtype,
                                                  bf16).items()}
    grads.update({f"D.{k}": v for k, v in _half_grads(D, lambda d, *a: step.d(d, *a), d_inputs, d_upstream,
                                                       channels_last, dtype, bf16).items()})
    return grads


def _truth(G, D, step, inputs, weights):
    """The float64 stock run in NCHW: its gradients and each network's inputs and output gradient."""
    G, D = copy.deepcopy(G).double(), copy.deepcopy(D).double()
    g_inputs = [t.double() for t in inputs]
    g_out = G(*g_inputs)
    g_out.retain_grad()
    d_inputs = step.d_inputs(g_out, g_inputs)
    d_out = step.d(D, *d_inputs)
    d_out.retain_grad()
    (d_out.flatten() * weights[: d_out.numel()]).sum().backward()
    grads = {f"G.{n}": p.grad for n, p in G.named_parameters()}
    grads.update({f"D.{n}": p.grad for n, p in D.named_parameters()})
    d_upstream = weights[: d_out.numel()].reshape(d_out.shape)
    return grads, (g_inputs, g_out.grad, [t.detach() for t in d_inputs], d_upstream)


def _scale(grads):
    return max(v.abs().max().item() for v in grads.values() if v is not None)


def _max_err(got, truth):
    return max((got[k].double() - v).abs().max().item() for k, v in truth.items() if v is not None)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_system_gradients_fused_vs_stock(system):
    torch.manual_seed(0)
    G, D, make_inputs, step = SYSTEMS[system]()
    G.train(), D.train()
    g = torch.Generator().manual_seed(1)
    inputs = make_inputs(g)
    weights = torch.randn(4096, generator=g, dtype=torch.float64)
    sG, sD = G.to_stock(), D.to_stock()
    truth, io = _truth(sG, sD, step, inputs, weights)
    scale = _scale(truth)
    fused64 = _system_grads(G, D, step, inputs, False, torch.float64, False, io)
    assert set(truth) == set(fused64)
    assert _max_err(fused64, truth) <= 1e-9 * scale, f"{system}: fused float64 differs from stock"
    # Stock PyTorch's own defect (tests/test_differential_ops.py): InstanceNorm at batch 1 in channels_last on the
    # CPU gets a wrong gradient. There the yardstick is stock's error in NCHW: the math does not depend on layout.
    stock_wrong_cl = system == "cyclegan"
    report, yardstick = [], {}
    for channels_last in (False, True):
        for bf16 in (False, True):
            setting = f"{'bf16 autocast' if bf16 else 'fp32'} channels_last={channels_last}"
            fused = _max_err(_system_grads(G, D, step, inputs, channels_last, torch.float32, bf16, io), truth)
            stock = _max_err(_system_grads(sG, sD, step, inputs, channels_last, torch.float32, bf16, io), truth)
            fused, stock = fused / scale, stock / scale
            if not channels_last:
                yardstick[bf16] = stock
            if channels_last and stock_wrong_cl:
                stock = yardstick[bf16]
            report.append(f"{setting}: fused {fused:.1e}, stock {stock:.1e}")
            slack = 1e-2 if bf16 else 1e-5
            assert fused <= 2 * stock + slack, (f"{system} {setting}: fused error {fused:.3g} of the gradients' "
                                                f"scale > 2 x stock's {stock:.3g} + {slack}")
    print(system, "; ".join(report))

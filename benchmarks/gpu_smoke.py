"""The first GPU minute: every kernel of every op once on each of its launch paths, against the float64 reference.

    python benchmarks/gpu_smoke.py [--device cuda] [--quick]

Each case runs an op (forward, backward and the passes in between) on the device and the same computation in the
float64 reference on the CPU, and prints one line: the case, the worst error relative to its tolerance, ok / FAIL.
Outputs are poisoned (NaN) before each run, so an element a kernel never writes fails. The exit status is 1 when a
case fails. --quick runs one case per kernel family (for compute-sanitizer, which slows every launch a hundredfold).
benchmarks/gpu_check.sh runs it first, then under compute-sanitizer's memcheck, racecheck, synccheck and initcheck.
With --device cpu the CPU kernels stand in (the script's own control flow, tested without a GPU).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import torch

from pygan.ops import reference

EPS, NEG = 1e-5, 0.2
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2 * 2.0**-10, torch.bfloat16: 2 * 2.0**-7}


def _worst(got, want, tol: float) -> float:
    """Largest error over the tensors of got / want, in units of tol * max(1, |want|): <= 1 passes; NaN fails."""
    worst = 0.0
    for g, w in zip(got, want):
        if w is None or w.numel() == 0:
            continue
        g, w = g.detach().double().cpu(), w.detach().double().cpu()
        if g.shape != w.shape:
            return math.inf
        err = (g - w).abs().max().item() / (tol * max(1.0, w.abs().max().item()))
        worst = max(worst, err if not math.isnan(err) else math.inf)
    return worst


def _input(shape, dtype, device, channels_last=False, offset=0):
    x = torch.randn(shape) * 1.7 + 0.4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if offset:  # one element past a 16-byte boundary: the unaligned element paths
        buf = torch.empty(x.numel() + offset, dtype=dtype, device=device)
        return buf[offset:].view(x.shape).copy_(x.to(dtype))
    return x.to(device=device, dtype=dtype)


def _params(C, dtype, device, prelu=False):
    pdt = torch.float64 if dtype == torch.float64 else torch.float32
    w, b = (1 + 0.3 * torch.randn(C)).to(device, pdt), (0.2 * torch.randn(C)).to(device, pdt)
    s = (0.05 + 0.3 * torch.rand(C)).to(device, pdt) if prelu else None
    return w, b, s


def d64(t):
    return None if t is None else t.detach().double().cpu()


def batch_norm_act(shape, dtype, device, act="leaky_relu", channels_last=False, offset=0):
    ops = torch.ops.pygan
    x = _input(shape, dtype, device, channels_last, offset)
    w, b, s = _params(shape[1], dtype, device, act == "prelu")
    y, mean, invstd = ops.batch_norm_act(x, w, b, None, None, s, True, EPS, act, NEG)
    want = reference.batch_norm_act(d64(x), d64(w), d64(b), None, None, d64(s), True, EPS, act, NEG)
    g = torch.randn_like(x)
    got_b = ops.batch_norm_act_backward(g, x, False, w, b, s, mean, invstd, True, act, NEG)
    want_b = reference.batch_norm_act_backward(d64(g), d64(x), False, d64(w), d64(b), d64(s), d64(mean), d64(invstd),
                                               True, act, NEG)
    rm, rv = torch.zeros_like(mean), torch.ones_like(invstd)
    rm64, rv64 = d64(rm), d64(rv)
    ops.batch_norm_update_stats(rm, rv, mean, invstd, 0.1, EPS, x.numel() // shape[1])
    reference.batch_norm_update_stats(rm64, rv64, d64(mean), d64(invstd), 0.1, EPS, x.numel() // shape[1])
    return [*(y, mean, invstd), *got_b, rm, rv], [*want, *want_b, rm64, rv64]


def bias_act(shape, dtype, device, act="relu", channels_last=False, offset=0):
    ops = torch.ops.pygan
    x = _input(shape, dtype, device, channels_last, offset)
    _, b, s = _params(shape[1], dtype, device, act == "prelu")
    y = ops.bias_act(x, b, s, act, NEG)
    g = torch.randn_like(x)
    got = ops.bias_act_backward(g, x, False, b, s, act, NEG)
    want = reference.bias_act_backward(d64(g), d64(x), False, d64(b), d64(s), act, NEG)
    return [y, *got], [reference.bias_act(d64(x), d64(b), d64(s), act, NEG), *want]


def gan_loss(n, dtype, device, term="bce", target=0.9):
    x = (torch.randn(n) * 3).to(device, dtype)
    return list(torch.ops.pygan.gan_loss(x, term, target, True)), list(reference.gan_loss(d64(x), term, target, True))


def instance_norm_act(shape, dtype, device, act="leaky_relu", channels_last=False, offset=0):
    ops = torch.ops.pygan
    x = _input(shape, dtype, device, channels_last, offset)
    w, b, s = _params(shape[1], dtype, device, act == "prelu")
    y, mean, invstd = ops.instance_norm_act(x, w, b, None, s, EPS, act, NEG)
    want = reference.instance_norm_act(d64(x), d64(w), d64(b), None, d64(s), EPS, act, NEG)
    g = torch.randn_like(x)
    got_b = ops.instance_norm_act_backward(g, x, False, None, w, b, s, mean, invstd, True, act, NEG)
    want_b = reference.instance_norm_act_backward(d64(g), d64(x), False, None, d64(w), d64(b), d64(s), d64(mean),
                                                  d64(invstd), True, act, NEG)
    return [y, mean, invstd, *got_b], [*want, *want_b]


def instance_norm_act_apply(shape, dtype, device, act="relu"):
    x = _input(shape, dtype, device)
    w, b, _ = _params(shape[1], dtype, device)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    mean = (0.1 * torch.randn(shape[:2])).to(device, acc)
    invstd = (0.5 + torch.rand(shape[:2])).to(device, acc)
    y = torch.ops.pygan.instance_norm_act_apply(x, w, b, None, mean, invstd, None, act, NEG)
    return [y], [reference.instance_norm_act_apply(d64(x), d64(w), d64(b), None, d64(mean), d64(invstd), None, act,
                                                   NEG)]


f32, f16, f64, bf16 = torch.float32, torch.float16, torch.float64, torch.bfloat16
# (name, function, args, quick): each launch path once. cf/cl = channels first/last.
CASES: list[tuple[str, Callable, tuple, bool]] = [
    ("bn_act cf vector, split reduction", batch_norm_act, ((2, 3, 43, 96), f32), True),
    ("bn_act cf unaligned, partial chunk", batch_norm_act, ((2, 3, 43, 97), f32, "relu", False, 1), False),
    ("bn_act cl partial tile", batch_norm_act, ((3, 40, 9, 37), bf16, "prelu", True), False),
    ("bn_act (N, C) rows", batch_norm_act, ((37, 70), f16, "identity"), False),
    ("bn_act fp64", batch_norm_act, ((2, 5, 17, 32), f64), False),
    ("bias_act cf planes", bias_act, ((2, 3, 43, 96), f32, "prelu"), True),
    ("bias_act cf unaligned", bias_act, ((2, 5, 17, 32), f16, "relu", False, 1), False),
    ("bias_act cl rows", bias_act, ((4, 40, 30, 40), f32, "leaky_relu", True), False),
    ("gan_loss one block", gan_loss, (63, f32), True),
    ("gan_loss several blocks, hinge", gan_loss, (5000, bf16, "hinge", 1.0), False),
    ("in_act plane on chip", instance_norm_act, ((2, 3, 7, 9), f32), True),
    ("in_act plane unaligned", instance_norm_act, ((3, 2, 5, 8), f16, "relu", False, 1), False),
    ("in_act fwd plane 48 KiB window fp32 96x128", instance_norm_act, ((1, 2, 96, 128), f32), False),
    ("in_act bwd plane 48 KiB window fp32 64x96", instance_norm_act, ((1, 2, 64, 96), f32), False),
    ("in_act bwd plane 48 KiB window fp32 48x128", instance_norm_act, ((1, 2, 48, 128), f32), False),
    ("in_act bwd plane 48 KiB window fp16 96x128", instance_norm_act, ((1, 2, 96, 128), f16), False),
    ("in_act bwd plane 48 KiB window fp64 48x64", instance_norm_act, ((1, 2, 48, 64), f64), False),
    ("in_act fwd plane opt-in, bwd split 115x115", instance_norm_act, ((1, 2, 115, 115), f32, "prelu"), False),
    ("in_act bwd plane opt-in 100x100", instance_norm_act, ((1, 2, 100, 100), f32), False),
    ("in_act split both ways 180x180", instance_norm_act, ((1, 2, 180, 180), f32), True),
    ("in_act cl split, partial split", instance_norm_act, ((1, 3, 61, 67), f32, "identity", True), False),
    ("in_act cl tiles bf16", instance_norm_act, ((2, 40, 9, 13), bf16, "relu", True), False),
    ("in_act apply N > 65,535", instance_norm_act_apply, ((70_000, 1, 2), f32), False),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="one case per kernel family")
    args = ap.parse_args(argv)
    import pygan  # noqa: F401 - loads the kernels

    if args.device == "cuda":
        # poisoned allocations: an element a kernel never writes is NaN, not a lucky zero
        torch.utils.deterministic.fill_uninitialized_memory = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    failed = 0
    start = time.perf_counter()
    for name, fn, fargs, quick in CASES:
        if args.quick and not quick:
            continue
        torch.manual_seed(0)
        shape_or_n, dtype, *rest = fargs
        try:
            got, want = fn(shape_or_n, dtype, args.device, *rest)
            if args.device == "cuda":
                torch.cuda.synchronize()
            worst = _worst(got, want, TOL[dtype] * (5 if fn is bias_act or fn is gan_loss else 1))
            status = "ok" if worst <= 1 else "FAIL"
            detail = f"worst error {worst:.3g} x tolerance"
        except Exception as e:  # noqa: BLE001 - a failed launch is this case's result
            status, detail = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        failed += status != "ok"
        print(f"{status:4}  {name} [{str(dtype).removeprefix('torch.')}]: {detail}", flush=True)
    print(f"smoke: {failed} failed, {time.perf_counter() - start:.1f} s on {args.device}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The differential suite, synchronized BatchNorm: sync_batch_norm_act on 2 gloo ranks (CPU) with each rank's
batch size, input layout and incoming-gradient layout drawn independently (tests/differential.py's forms, stride-0
gradients included, batch 1 or 0 on a rank), against the float64 reference on the concatenated batch in one
process: outputs, input and parameter gradients, running statistics.

A seeded sweep rather than hypothesis: the cases must be the same on both processes, and one spawn runs them all.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import pygan
from pygan.ops import activations, reference

from differential import DENSE_FORMS, arrange, close, describe

EPS, MOMENTUM, TOL = 1e-5, 0.3, 1e-9
CASES = 40


def _cases():
    r = random.Random(0)
    for _ in range(CASES):
        sizes = r.choice([(1, 1), (1, 2), (2, 1), (1, 0), (0, 2), (3, 1)])
        yield dict(sizes=sizes, C=r.choice([1, 3, 33]), plane=r.choice([(1, 2), (5, 7), (2, 1), (1, 1), (3,)]),
                   activation=r.choice(activations.NAMES), negative_slope=r.choice([0.2, 0.0]),
                   affine=r.random() < 0.7, x_forms=[r.choice(DENSE_FORMS) for _ in range(2)],
                   grad_forms=[r.choice(DENSE_FORMS + ("expanded",)) for _ in range(2)], seed=r.randrange(2**31))


def _data(case):
    g = torch.Generator().manual_seed(case["seed"])
    N, C = sum(case["sizes"]), case["C"]
    shape = (N, C) + case["plane"]
    if N * torch.Size(case["plane"]).numel() < 2:  # one value per channel: training is refused (tested elsewhere)
        shape = (N, C) + (2,) + case["plane"][1:]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.4
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    w = 1 + 0.3 * torch.randn(C, generator=g, dtype=torch.float64) if case["affine"] else None
    b = 0.2 * torch.randn(C, generator=g, dtype=torch.float64) if case["affine"] else None
    slope = 0.05 + 0.3 * torch.rand(C, generator=g, dtype=torch.float64) if case["activation"] == "prelu" else None
    return x, grad, w, b, slope


def _slice(t, lo, hi, form):
    part = t[lo:hi]
    if form == "expanded":  # the rank's gradient constant along the last dim, stride 0 there
        return part[..., :1].expand(part.shape)
    return arrange(part.clone(), form)


def _worker(rank, world, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for case in _cases():
            x, grad, w, b, slope = _data(case)
            sizes = case["sizes"]
            lo, hi = sum(sizes[:rank]), sum(sizes[:rank + 1])
            g_r = _slice(grad, lo, hi, case["grad_forms"][rank])
            full_grad = torch.cat([_slice(grad, sum(sizes[:k]), sum(sizes[:k + 1]), case["grad_forms"][k])
                                   for k in range(world)])
            x_r = _slice(x, lo, hi, case["x_forms"][rank]).requires_grad_(True)
            params = {k: v.clone().requires_grad_(True) for k, v in (("weight", w), ("bias", b), ("slope", slope))
                      if v is not None}
            rm, rv = torch.zeros(case["C"], dtype=torch.float64), torch.ones(case["C"], dtype=torch.float64)
            y_r = pygan.ops.sync_batch_norm_act(x_r, rm, rv, params.get("weight"), params.get("bias"), MOMENTUM, EPS,
                                                case["activation"], case["negative_slope"], params.get("slope"))
            y_r.backward(g_r)
            for p in params.values():  # parameter gradients stay per rank (DDP averages them): add them up
                dist.all_reduce(p.grad)

            xs = x.clone().requires_grad_(True)
            ref_params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            y = reference.batch_norm_act(xs, ref_params.get("weight"), ref_params.get("bias"), None, None,
                                         ref_params.get("slope"), True, EPS, case["activation"],
                                         case["negative_slope"])[0]
            y.backward(full_grad.contiguous())
            rm_ref, rv_ref = torch.zeros_like(rm), torch.ones_like(rv)
            F.batch_norm(x, rm_ref, rv_ref, None, None, True, MOMENTUM, EPS)
            what = (f"rank {rank} sizes {sizes} {case['activation']} x {describe(x_r)} grad {describe(g_r)} "
                    f"affine={case['affine']}")
            close(y_r.detach(), y.detach()[lo:hi], TOL, what + " output")
            close(x_r.grad, xs.grad[lo:hi], TOL, what + " grad x")
            for k, p in params.items():
                assert p.grad is not None and ref_params[k].grad is not None, \
                    f"{what} grad {k}: {p.grad is None=} {ref_params[k].grad is None=}"
                close(p.grad, ref_params[k].grad, TOL, f"{what} grad {k}")
            close(rm, rm_ref, TOL, what + " running_mean")
            close(rv, rv_ref, TOL, what + " running_var")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_sync_batch_norm_act_any_layout_two_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store")), nprocs=2, join=True)

"""Synchronized fused BatchNorm across processes (CPU, gloo, 2 spawned ranks) against one process on the
concatenated batch, in float64."""

import gc
import json
import os
import re
import traceback

import numpy as np

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pygan
from pygan._compat import batch_norm_eps_error
from pygan.nn import BatchNormAct2d, convert_sync_batch_norm_act
from pygan.ops.sync_batch_norm_act import merge_statistics

# (per-rank batch sizes, activation, channels_last, affine)
CASES = [
    ((3, 5), "leaky_relu", False, True),
    ((4, 4), "relu", True, True),
    ((1, 6), "prelu", False, True),
    ((2, 3), "identity", False, False),
    ((0, 5), "leaky_relu", False, True),  # a rank with an empty batch
    ((0, 0), "prelu", False, True),  # every rank's batch empty: an empty output, running statistics untouched
]


def _module(C, activation, affine, sync):
    torch.manual_seed(1)
    m = BatchNormAct2d(C, affine=affine, activation=activation, negative_slope=0.2, momentum=0.3,
                       prelu_parameters=C, sync=sync).double()
    with torch.no_grad():
        if affine:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
        m.running_var.fill_(2.0)
        if m.slope is not None:
            m.slope.uniform_(0.1, 0.3)
    return m


def _grads(m):
    return [p.grad for p in m.parameters()]


def _in_group(rank, world, init_file, body, *args):
    """body(*args) on this rank of a gloo group of `world` ranks, the group destroyed only after body's frame (and
    with it every DistributedDataParallel module) is gone: a DDP Reducer that holds the last reference to a Gloo
    group destroys it with the GIL held, waiting for the group's worker thread, which may itself wait for the GIL to
    free a finished collective's tensors (a deadlock at teardown, seen with torch 2.11 on a loaded machine)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    error = None
    try:
        body(*args)
    except Exception:  # noqa: BLE001
        error = traceback.format_exc()  # the text only: the traceback's frames would keep body's modules alive
    torch._dynamo.reset()  # compiled code keeps the modules it was traced from
    gc.collect()
    dist.destroy_process_group()
    if error is not None:
        raise RuntimeError(f"rank {rank}:\n{error}")


def _worker(rank, world, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        C, H, W = 3, 5, 4
        for sizes, activation, channels_last, affine in CASES:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(sum(sizes), C, H, W, generator=g, dtype=torch.float64) * 2 + 0.5
            w = torch.randn(x.shape, generator=g, dtype=torch.float64)  # loss = sum(w * y): a non-uniform gradient
            lo = sum(sizes[:rank])
            x_r = x[lo:lo + sizes[rank]].clone()
            if channels_last:
                x_r = x_r.contiguous(memory_format=torch.channels_last)
            x_r.requires_grad_(True)
            synced = _module(C, activation, affine, sync=True)
            y_r = synced(x_r)
            # activation-only saving, as the local op: invertible activations keep the output, not the input
            kept = y_r.grad_fn.saved_tensors[0]
            what = f"case {sizes} {activation} rank {rank}"
            if sizes[rank] > 0:
                assert (kept.data_ptr() == y_r.data_ptr()) == (activation != "relu"), what
            (w[lo:lo + sizes[rank]] * y_r).sum().backward()
            for p in synced.parameters():  # parameter gradients stay per rank (DDP averages them): add them up
                dist.all_reduce(p.grad)

            ref = _module(C, activation, affine, sync=False)
            xr = x.clone().requires_grad_(True)
            y = ref(xr)
            (w * y).sum().backward()
            torch.testing.assert_close(y_r, y[lo:lo + sizes[rank]], msg=what)
            torch.testing.assert_close(x_r.grad, xr.grad[lo:lo + sizes[rank]], msg=what)
            for a, b in zip(_grads(synced), _grads(ref)):
                torch.testing.assert_close(a, b, msg=what)
            torch.testing.assert_close(synced.running_mean, ref.running_mean, msg=what)
            torch.testing.assert_close(synced.running_var, ref.running_var, msg=what)
            if channels_last and sizes[rank] > 0:
                assert y_r.is_contiguous(memory_format=torch.channels_last)
            _check_double_backward(rank, sizes, activation, channels_last, affine, x, w, what)
        # half-precision input, float32 module (autocast-style): statistics in float32, as the local op
        x = torch.randn(8, 3, 5, 4, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
        synced, ref = _module(3, "leaky_relu", True, sync=True).float(), _module(3, "leaky_relu", True, sync=False).float()
        x.requires_grad_(True)
        x_r = x.detach()[4 * rank:4 * rank + 4].clone().requires_grad_(True)
        y_r, y = synced(x_r), ref(x)
        assert y_r.dtype == torch.bfloat16
        torch.testing.assert_close(y_r, y[4 * rank:4 * rank + 4], atol=2e-2, rtol=2e-2)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(6)).to(torch.bfloat16)
        (w[4 * rank:4 * rank + 4] * y_r).float().sum().backward()  # from the kept bf16 output
        (w * y).float().sum().backward()
        torch.testing.assert_close(x_r.grad, x.grad[4 * rank:4 * rank + 4], atol=3e-2, rtol=3e-2)
        torch.testing.assert_close(synced.running_var, ref.running_var)
        # eval mode is per rank (running statistics), as plain BatchNorm
        synced.eval()
        x = torch.randn(2, 3, 5, 4)
        ref.load_state_dict(synced.state_dict())
        torch.testing.assert_close(synced(x), ref.eval()(x))
    finally:
        dist.destroy_process_group()


def _check_double_backward(rank, sizes, activation, channels_last, affine, x, w, what):
    """An R1-like penalty through the synchronized layer: sum(v * (d sum(w * y) / dx)^2), then backward -
    gradients of input and parameters equal one process's on the concatenated batch."""
    v = torch.rand(x.shape, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    lo, hi = sum(sizes[:rank]), sum(sizes[:rank + 1])

    def penalty(module, xs, ws, vs):
        (gx,) = torch.autograd.grad((ws * module(xs)).sum(), xs, create_graph=True)
        (vs * gx * gx).sum().backward()

    x_r = x[lo:hi].clone()
    if channels_last:
        x_r = x_r.contiguous(memory_format=torch.channels_last)
    x_r.requires_grad_(True)
    synced = _module(x.shape[1], activation, affine, sync=True)
    penalty(synced, x_r, w[lo:hi], v[lo:hi])
    for p in synced.parameters():
        dist.all_reduce(p.grad)
    ref, xr = _module(x.shape[1], activation, affine, sync=False), x.clone().requires_grad_(True)
    penalty(ref, xr, w, v)
    torch.testing.assert_close(x_r.grad, xr.grad[lo:hi], msg="double backward " + what)
    for a, b in zip(_grads(synced), _grads(ref)):
        torch.testing.assert_close(a, b, msg="double backward " + what)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_sync_batch_norm_act_two_ranks_equals_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


def _net(dtype):
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8, activation="leaky_relu",
                              negative_slope=0.2), torch.nn.Conv2d(8, 2, 3, padding=1), BatchNormAct2d(2))
    return net.to(dtype)


def _ddp_worker(rank, world, init_file):
    _in_group(rank, world, init_file, _ddp_train, rank, world)


def _ddp_train(rank, world):
    # a user's own DDP script: convert, wrap, train; every rank ends with the parameters and statistics of one
    # process training on the concatenated batch
    for dtype, tol in ((torch.float64, {}), (torch.float32, dict(atol=1e-5, rtol=1e-4))):
        net = torch.nn.parallel.DistributedDataParallel(convert_sync_batch_norm_act(_net(dtype)))
        ref = _net(dtype)
        opt, ref_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (net, ref))
        g = torch.Generator().manual_seed(3)
        for _ in range(3):
            x = torch.randn(4 * world, 3, 6, 5, generator=g, dtype=dtype)
            t = torch.randn(4 * world, 2, 6, 5, generator=g, dtype=dtype)
            mine = slice(4 * rank, 4 * rank + 4)
            for model, o, xs, ts in ((net, opt, x[mine], t[mine]), (ref, ref_opt, x, t)):
                o.zero_grad()
                torch.nn.functional.mse_loss(model(xs), ts).backward()
                o.step()
        for a, b in zip(net.module.state_dict().values(), ref.state_dict().values()):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_sync_batch_norm_act_under_ddp_equals_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


def test_merge_statistics_is_exact_for_unequal_groups():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 4, generator=g, dtype=torch.float64) * 3 + 100  # large mean: sums of squares would cancel
    parts = [x[:2], x[2:2], x[2:9], x[9:]]
    counts = torch.tensor([len(p) for p in parts], dtype=torch.float64)
    means = torch.stack([p.mean(0) if len(p) else torch.zeros(4, dtype=torch.float64) for p in parts])
    m2s = torch.stack([((p - p.mean(0)) ** 2).sum(0) if len(p) else torch.zeros(4, dtype=torch.float64)
                       for p in parts])
    n, mean, var = merge_statistics(counts, means, m2s)
    assert n == 11
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(var, x.var(0, correction=0))


def test_sync_module_without_a_process_group_is_the_plain_module():
    assert not dist.is_initialized()
    plain = _module(3, "leaky_relu", True, sync=False)
    synced = convert_sync_batch_norm_act(torch.nn.Sequential(_module(3, "leaky_relu", True, sync=False)))[0]
    assert synced.sync and "sync=True" in repr(synced)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced.running_var, plain.running_var)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialized"):
        pygan.ops.sync_batch_norm_act(x, None, None)
    with pytest.raises(ValueError, match=re.escape(batch_norm_eps_error(0.0, True))):
        pygan.ops.sync_batch_norm_act(x, None, None, eps=0.0)  # the local op's check, before any collective


def test_converter_replaces_stock_batch_norm_keeping_its_tensors():
    torch.manual_seed(0)
    stock = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    stock[1].weight.data.uniform_(0.5, 1.5)
    stock[1].running_mean.uniform_(-1, 1)
    params, keys = list(stock.parameters()), list(stock.state_dict())
    x = torch.randn(2, 3, 7, 6)
    expect_eval = stock.eval()(x)
    converted = convert_sync_batch_norm_act(stock.train())
    assert type(converted[1]).__name__ == "BatchNormAct2d" and converted[1].sync
    assert all(a is b for a, b in zip(converted.parameters(), params))  # an optimizer keeps working
    assert list(converted.state_dict()) == keys
    torch.testing.assert_close(converted.eval()(x), expect_eval)
    top = convert_sync_batch_norm_act(torch.nn.BatchNorm1d(5, affine=False, track_running_stats=False))
    assert type(top).__name__ == "BatchNormAct1d" and top.weight is None and top.running_mean is None


# ---------------------------------------------------------------- the DCGAN trainer on 2 ranks
def _tiny(out, **kw):
    from pygan.dcgan import DCGANConfig as TrainConfig

    base = dict(out=str(out), size=16, latent_dim=8, g_width=4, d_width=4, batch_size=8, steps=3, r1_weight=0.0,
                log_every=1, sample_every=2, checkpoint_every=2, grid_size=8, eval_samples=0, progress=False,
                collapse_ratio=0.0, device="cpu", amp="none")  # fp32: bf16 rounding would blur the comparison
    return TrainConfig(**{**base, **kw})


def _train_worker(rank, world, init_file, out, kw):
    _in_group(rank, world, init_file, _train_two_ranks, rank, world, out, kw)


def _train_two_ranks(rank, world, out, kw):
    from pygan.dcgan import DCGANTrainer as Trainer

    tr = Trainer(_tiny(out, **kw))
    assert tr.world_size == world and tr.is_main == (rank == 0)
    assert tr.my_slice == slice(4 * rank, 4 * rank + 4)  # half of the global batch of 8 each
    tr.train()
    # every rank holds the same model, running statistics included: BatchNorm is synchronized in G and D
    assert all(any(getattr(m, "sync", False) for m in net.modules()) for net in (tr.G, tr.D))
    same = list(tr.G.state_dict().values()) + list(tr.D.state_dict().values())
    for p in same:
        everyone = [torch.empty_like(p) for _ in range(world)]
        dist.all_gather(everyone, p.detach())
        assert all(torch.equal(everyone[0], q) for q in everyone[1:])


def _assert_same_training(two: dict, one: dict, start: dict) -> None:
    """The state dicts after training on 2 ranks and on 1 process agree to rounding. Adam's first steps are
    about lr * sign(gradient): a gradient element that rounding moves across zero flips its step, so a few
    isolated elements (< 1% of a tensor) may differ by up to 2 lr a step; everything else must agree."""
    for k, v in one.items():
        if not v.is_floating_point():
            continue
        assert torch.isfinite(two[k]).all(), k
        moved, diff = (v - start[k]).abs().max(), (two[k] - v).abs()
        off = diff > 1e-4 + 1e-3 * moved
        assert off.float().mean() < 0.01, (k, int(off.sum()), v.numel(), float(diff.max()), float(moved))


def _states(ckpt):
    return {f"{k}.{n}": v for k in ("G", "D") for n, v in ckpt[k].items()}


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
@pytest.mark.parametrize("kw", [{}, dict(conditional=True, r1_weight=1.0, r1_every=2, instance_noise=0.1,
                                       augment="translation,cutout,color"),
                                dict(compile=True, r1_weight=1.0, r1_every=2)],  # torch.compile(DDP(G)), ...
                         ids=["plain", "conditional-r1", "compiled-r1"])
def test_dcgan_trainer_on_two_ranks_equals_one_process(tmp_path, kw):
    from pygan.dcgan import DCGANTrainer as Trainer, read_checkpoint

    two = tmp_path / "two"
    mp.spawn(_train_worker, args=(2, str(tmp_path / "store"), str(two), kw), nprocs=2, join=True)
    one = Trainer(_tiny(tmp_path / "one", **kw))
    start = {k: v.clone() for k, v in _states({"G": one.G.state_dict(), "D": one.D.state_dict()}).items()}
    one.train()
    # written once, by rank 0: one checkpoint, one log line per step, nothing half-written
    assert sorted(os.listdir(two)) == ["checkpoint.pt", "curves.png", "log.jsonl", "samples"]
    assert sum("precision" not in r for r in map(json.loads, open(two / "log.jsonl"))) == 3
    ck_two, ck_one = read_checkpoint(str(two / "checkpoint.pt")), read_checkpoint(str(tmp_path / "one" / "checkpoint.pt"))
    # BatchNorm synchronized in G and D (R1's double backward too): the same computation up to rounding
    _assert_same_training(_states(ck_two), _states(ck_one), start)
    # resume with 1 process from the 2-process checkpoint: it continues the same global minibatch stream
    assert torch.equal(ck_two["rng"]["gen"], ck_one["rng"]["gen"])
    resumed = Trainer.resume(str(two / "checkpoint.pt"), out=str(tmp_path / "resumed"), steps=5)
    assert resumed.step == 3 and resumed.world_size == 1
    resumed.train()
    assert read_checkpoint(str(tmp_path / "resumed" / "checkpoint.pt"))["step"] == 5


# ---------------------------------------------------------------- the SR trainer on 2 ranks
def _sr_config(out, data):
    from pygan.sr import SRConfig

    return SRConfig(data=str(data), out=str(out), scale=2, hr_crop=16, width=4, blocks=1, d_width=2,
                         steps=4, pretrain_steps=2, batch_size=4, log_every=1, sample_every=2,
                         checkpoint_every=2, eval=False, progress=False, device="cpu")


def _sr_worker(rank, world, init_file, out, data):
    _in_group(rank, world, init_file, _train_sr_two_ranks, rank, world, out, data)


def _train_sr_two_ranks(rank, world, out, data):
    from pygan.sr import SRTrainer

    tr = SRTrainer(_sr_config(out, data))
    assert tr.my_slice == slice(2 * rank, 2 * rank + 2)
    tr.train()
    for p in list(tr.G.state_dict().values()) + list(tr.D.state_dict().values()):
        everyone = [torch.empty_like(p) for _ in range(world)]
        dist.all_gather(everyone, p)
        assert all(torch.equal(everyone[0], q) for q in everyone[1:])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_sr_trainer_on_two_ranks_equals_one_process(tmp_path):
    from PIL import Image

    from pygan.sr import SRTrainer
    from pygan.sr import read_checkpoint

    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(data / f"{i}.png")
    two = tmp_path / "two"
    mp.spawn(_sr_worker, args=(2, str(tmp_path / "store"), str(two), str(data)), nprocs=2, join=True)
    one = SRTrainer(_sr_config(tmp_path / "one", data))
    start = {k: v.clone() for k, v in _states({"G": one.G.state_dict(), "D": one.D.state_dict()}).items()}
    one.train()
    assert sum("precision" not in r for r in map(json.loads, open(two / "log.jsonl"))) == 4
    ck_two, ck_one = read_checkpoint(str(two / "checkpoint.pt")), read_checkpoint(str(tmp_path / "one" / "checkpoint.pt"))
    _assert_same_training(_states(ck_two), _states(ck_one), start)
    resumed = SRTrainer.resume(str(two / "checkpoint.pt"), out=str(tmp_path / "resumed"), steps=5)
    assert resumed.step == 4 and resumed.world_size == 1
    resumed.train()

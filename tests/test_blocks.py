"""Conv/ConvTranspose + BN + activation blocks, pygan.fuse and pygan.fold_bn against stock PyTorch."""

import pytest
import torch
from torch import nn

import pygan
from pygan.nn import Conv2dBNAct, ConvTranspose2dBNAct, conv_bn_act
from pygan.nn.conv_bn_act import fold_into_conv

STOCK_ACT = {"identity": lambda C: nn.Identity(), "relu": lambda C: nn.ReLU(), "leaky_relu": lambda C: nn.LeakyReLU(0.2),
             "prelu": lambda C: nn.PReLU(C, 0.3)}


class StockBlock(nn.Module):
    """The stock composition with the same child names as pygan's blocks."""

    def __init__(self, conv, C, activation):
        super().__init__()
        self.conv, self.bn, self.act = conv, nn.BatchNorm2d(C), STOCK_ACT[activation](C)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def pair(kind, activation, groups=1, bias=False):
    cls, stock_conv = (ConvTranspose2dBNAct, nn.ConvTranspose2d) if kind == "transpose" else (Conv2dBNAct, nn.Conv2d)
    args = (4, 6, 4, 2, 1) if kind == "transpose" else (4, 6, 3, 2, 1)
    block = cls(*args, groups=groups, bias=bias, activation=activation, negative_slope=0.2).double()
    stock = StockBlock(stock_conv(*args, groups=groups, bias=bias), 6, activation).double()
    if activation == "prelu":  # the stock PReLU has a slope per channel: give the block's owner that shape
        block.act.weight = nn.Parameter(torch.empty_like(stock.act.weight))
    with torch.no_grad():
        stock.bn.weight.uniform_(0.5, 1.5)
        stock.bn.bias.uniform_(-0.3, 0.3)
    block.load_state_dict(stock.state_dict())  # the same keys, PReLU's slope included
    return block, stock


@pytest.mark.parametrize("kind", ["transpose", "conv"])
@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "prelu"])
@pytest.mark.parametrize("groups,bias", [(1, False), (2, True)])
def test_block_matches_stock_in_training_and_eval(kind, activation, groups, bias):
    block, stock = pair(kind, activation, groups, bias)
    opt_b = torch.optim.SGD(block.parameters(), lr=0.1)
    opt_s = torch.optim.SGD(stock.parameters(), lr=0.1)
    for _ in range(2):  # training steps: outputs, gradients, running stats
        x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
        yb, ys = block(x), stock(x)
        torch.testing.assert_close(yb, ys)
        g = torch.randn_like(yb)
        for opt, y in ((opt_b, yb), (opt_s, ys)):
            opt.zero_grad()
            y.backward(g)
        torch.testing.assert_close(block.conv.weight.grad, stock.conv.weight.grad)
        torch.testing.assert_close(block.bn.weight.grad, stock.bn.weight.grad)
        opt_b.step()
        opt_s.step()
        torch.testing.assert_close(block.bn.running_var, stock.bn.running_var)
    block.eval(), stock.eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), stock(x))  # folded path
    block.train(), stock.train()
    x2 = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    for opt, m in ((opt_b, block), (opt_s, stock)):  # one more step: the fold cache must not go stale
        opt.zero_grad()
        m(x2).sum().backward()
        opt.step()
    block.eval(), stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), stock(x))
    torch.testing.assert_close(block(x), stock(x))  # with grad recording: the fold is differentiable, uncached


def test_fold_cache_follows_load_state_dict():
    block, stock = pair("transpose", "relu")
    block.eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        before = block(x)
        sd = block.state_dict()
        sd["bn.running_mean"] = sd["bn.running_mean"] + 1.0
        block.load_state_dict(sd)
        after = block(x)
    assert not torch.allclose(before, after)
    stock.load_state_dict({**{k: v for k, v in stock.state_dict().items()}, **sd})
    stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(after, stock(x))


def test_fold_cache_follows_assign_loads_inplace_steps_and_copies():
    import copy
    import pickle

    block, stock = pair("conv", "prelu")
    block.eval()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        first = block(x)
        assert torch.equal(block(x), first)  # served from the cache
        # load_state_dict(assign=True) replaces the tensors themselves (fresh version counters)
        sd = {k: v.clone() for k, v in block.state_dict().items()}
        sd["conv.weight"] = sd["conv.weight"] * 2
        block.load_state_dict(sd, assign=True)
        torch.testing.assert_close(block(x), _eval_uncached(block, x))
        # an in-place optimizer-like update of the BN weight
        block.bn.weight.mul_(0.5)
        torch.testing.assert_close(block(x), _eval_uncached(block, x))
        # eps counts too; copies and pickles start without a cache
        block.bn.eps = 1e-1
        torch.testing.assert_close(block(x), _eval_uncached(block, x))
        for clone in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
            assert "_fold_cache" not in clone.__dict__
            torch.testing.assert_close(clone(x), block(x))


def _eval_uncached(block, x):
    """The eval output computed from scratch: conv, then BN with running statistics, then the activation."""
    bn = block.bn
    y = block._conv(x, block.conv.weight, block.conv.bias)
    y = torch.nn.functional.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return {"identity": lambda t: t, "relu": torch.relu, "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, bn.negative_slope),
            "prelu": lambda t: torch.nn.functional.prelu(t, bn.slope)}[bn.activation](y)


def test_folded_weight_keeps_the_conv_weight_strides():
    """Found by the differential suite: a channels_last (1, C, k, k) transposed-conv weight came back from folding
    with a size-1 stride of C, and conv backward refused it for an input with size-1 strides of its own."""
    block = ConvTranspose2dBNAct(1, 3, 4, 2, 1).double().eval().to(memory_format=torch.channels_last)
    weight, _ = fold_into_conv(block.conv, block.bn)
    assert weight.stride() == block.conv.weight.stride()
    stock = conv_bn_act(nn.ConvTranspose2d(1, 3, 4, 2, 1, bias=False), "relu", fused=False).double().eval()
    stock.load_state_dict(block.state_dict())
    x = torch.randn(1, 1, 2, 1, dtype=torch.float64)
    grads = []
    for m, xs in ((block, x.as_strided(x.shape, (2, 1, 1, 1))), (stock, x)):
        xs = xs.detach().requires_grad_(True)
        m(xs).sum().backward()
        grads.append(xs.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_block_state_dict_keys_are_the_stock_pair():
    block, stock = pair("conv", "leaky_relu")
    assert set(block.state_dict()) == set(stock.state_dict())
    assert isinstance(block.conv, nn.Conv2d) and type(block.conv) is nn.Conv2d


def dcgan_paper(nz=8, ngf=8, ndf=8, nc=3):
    """DCGAN (Radford et al.) for 32x32 images as nn.Sequentials: G ConvT-BN-ReLU ... Tanh, D Conv-BN-LeakyReLU ... logit."""
    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Flatten())
    return G, D


def test_fuse_dcgan_keeps_state_dict_and_matches_in_float64_and_training():
    torch.manual_seed(0)
    G, D = (m.double() for m in dcgan_paper())
    fG, rep_g = pygan.fuse(G, report=True)
    fD, rep_d = pygan.fuse(D, report=True)
    assert len(rep_g) == 3 and len(rep_d) == 2, (rep_g, rep_d)
    for a, b in ((G, fG), (D, fD)):
        assert list(a.state_dict()) == list(b.state_dict())
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    opts = [torch.optim.Adam(m.parameters(), 1e-3, betas=(0.5, 0.999)) for m in (G, D, fG, fD)]
    for _ in range(3):
        z = torch.randn(4, 8, 1, 1, dtype=torch.float64)
        losses = []
        for g, d in ((G, D), (fG, fD)):
            out = d(g(z))
            losses.append(out)
        torch.testing.assert_close(losses[0], losses[1])
        for o in opts:
            o.zero_grad()
        for out in losses:
            out.pow(2).mean().backward()
        for (n, p), q in zip(G.named_parameters(), fG.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=n)
        for o in opts:
            o.step()
    # and checkpoints load back into the stock model
    G2, _ = (m.double() for m in dcgan_paper())
    G2.load_state_dict(fG.state_dict())


def test_fuse_traced_model_and_fold_bn():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3, padding=1)
            self.norm = nn.BatchNorm2d(5)
            self.head = nn.Conv2d(5, 2, 1)

        def forward(self, x):
            return self.head(torch.relu(self.norm(self.conv(x))))

    net = Net().double()
    fused, report = pygan.fuse(net, report=True)
    assert report == ["norm + relu -> BatchNormAct2d(relu)"]
    assert list(fused.state_dict()) == list(net.state_dict())
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(fused(x), net(x))
    net.eval()
    G, _ = dcgan_paper()
    G = G.double().eval()
    folded = pygan.fold_bn(G)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    z = torch.randn(3, 8, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(z), G(z))


@pytest.mark.parametrize("slopes", [1, 5])
def test_fuse_prelu_keeps_the_slope_key_in_sequential_and_traced_models(slopes):
    import copy

    seq = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.PReLU(slopes, 0.3), nn.Conv2d(5, 2, 1)).double()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.act = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.PReLU(slopes, 0.3)

        def forward(self, x):
            return self.act(self.norm(self.conv(x))) * 2

    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    for model in (seq, Net().double()):
        fused, report = pygan.fuse(model, report=True)
        assert len(report) == 1 and "PReLUBatchNormAct2d(prelu)" in report[0], report
        assert list(fused.state_dict()) == list(model.state_dict())
        slope_key = [k for k in model.state_dict() if k.endswith(("2.weight", "act.weight"))][0]
        fused_slope = fused.get_parameter(slope_key)
        assert sum(p is fused_slope for p in fused.parameters()) == 1  # one parameter, one key
        y, yf = model(x), fused(x)
        torch.testing.assert_close(yf, y)
        y.square().sum().backward()
        yf.square().sum().backward()
        torch.testing.assert_close(fused_slope.grad, model.get_parameter(slope_key).grad)
        # a changed slope, loaded by assignment, reaches the fused op; copies keep the link
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        sd[slope_key] = sd[slope_key] * 0 + 0.05
        fused.load_state_dict(sd, assign=True)
        model.load_state_dict(sd)
        torch.testing.assert_close(fused(x), model(x))
        torch.testing.assert_close(copy.deepcopy(fused)(x), model(x))


def test_fuse_leaves_mismatched_prelu_alone():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.PReLU(3))  # would fail in forward anyway
    assert pygan.fuse(model, report=True)[1] == []


def test_bad_block_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        Conv2dBNAct(3, 4, 3, activation="gelu")
    with pytest.raises(RuntimeError):
        Conv2dBNAct(3, 4, 3)(torch.randn(1, 5, 8, 8))  # channel mismatch: the convolution says so


def test_recompute_relu_outputs_saves_memory_and_keeps_gradients():
    from benchmarks.core import saved_tensor_bytes

    torch.manual_seed(0)
    G = nn.Sequential(ConvTranspose2dBNAct(8, 16, 4, 1, 0, activation="relu"),
                      ConvTranspose2dBNAct(16, 8, 4, 2, 1, activation="relu"),
                      nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh()).double()
    z = torch.randn(4, 8, 1, 1, dtype=torch.float64)
    plain = saved_tensor_bytes(lambda: G(z))
    with pygan.recompute_relu_outputs():
        kept = saved_tensor_bytes(lambda: G(z))
    assert kept < plain, (kept, plain)
    grads = []
    for ctx in (torch.enable_grad, pygan.recompute_relu_outputs):
        G.zero_grad()
        with ctx():
            out = G(z)
        out.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in G.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "NHWC"])
def test_recompute_relu_outputs_changes_nothing(dtype, fmt):
    """The recomputed outputs are bitwise the forward's (the forward's own kernel recomputes them), so training
    with and without the context gives identical gradients, in any dtype and layout."""
    torch.manual_seed(0)
    G = nn.Sequential(ConvTranspose2dBNAct(8, 16, 4, 1, 0, activation="relu"),
                      ConvTranspose2dBNAct(16, 8, 4, 2, 1, activation="relu"), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    G = G.to(memory_format=fmt)
    z = torch.randn(4, 8, 1, 1)
    grads = []
    for ctx in (torch.enable_grad, pygan.recompute_relu_outputs):
        G.zero_grad()
        with ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = G(z)
        out.float().pow(2).sum().backward()
        grads.append([p.grad.clone() for p in G.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_recompute_relu_outputs_double_backward_is_exact():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), pygan.nn.BatchNormAct2d(4, activation="relu"), nn.Conv2d(4, 2, 3),
                      nn.Flatten(), nn.Linear(2, 1)).double()
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    results = []
    for ctx in (torch.enable_grad, pygan.recompute_relu_outputs):
        with ctx():
            penalty = pygan.losses.r1_penalty(D, x)
        # biases after the last nonlinearity have no part in R1: allow_unused
        results.append(torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True))
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    assert sum(a is not None for a in results[0]) >= 5


@pytest.mark.parametrize("kind", ["transpose", "conv"])
def test_autocast_and_channels_last_like_stock(kind):
    block, stock = pair(kind, "leaky_relu")
    block, stock = block.float(), stock.float()
    x = torch.randn(4, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    yb, ys = block(x), stock(x)
    assert yb.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yb, ys, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb, ys = block(x), stock(x)
    assert yb.dtype == ys.dtype
    torch.testing.assert_close(yb.float(), ys.float(), rtol=0.05, atol=0.05)

"""pygan.nn.BatchNormAct*d: a drop-in for torch.nn.BatchNorm*d followed by the activation."""

import pytest
import torch
from torch import nn

import pygan
from conftest import DEVICES

STOCK = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
FUSED = {1: pygan.nn.BatchNormAct1d, 2: pygan.nn.BatchNormAct2d, 3: pygan.nn.BatchNormAct3d}
SHAPE = {1: (6, 4, 9), 2: (5, 4, 7, 3), 3: (3, 4, 3, 5, 2)}


def stock_act(activation, C):
    return {"identity": nn.Identity(), "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2),
            "prelu": nn.PReLU(C, init=0.3)}[activation]


def pair(dims, activation, device, **kw):
    """A fused module and the stock BatchNorm + activation with identical parameters (random, not default)."""
    C = SHAPE[dims][1]
    fused = FUSED[dims](C, activation=activation, negative_slope=0.2, prelu_parameters=C, prelu_init=0.3, **kw).to(device).double()
    bn, act = STOCK[dims](C, **kw).to(device).double(), stock_act(activation, C).to(device).double()
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
        if bn.running_mean is not None:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    fused.load_state_dict(bn.state_dict(), strict=activation != "prelu")
    if activation == "prelu":
        fused.slope.data.copy_(act.weight.data)
    return fused, nn.Sequential(bn, act)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "prelu"])
@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}],
                         ids=["default", "cumulative_momentum", "no_affine", "no_running_stats"])
def test_matches_stock_in_training_and_eval(dims, activation, kw, device):
    fused, stock = pair(dims, activation, device, **kw)
    for step in range(3):
        x = torch.randn(SHAPE[dims], dtype=torch.float64, device=device) * 2 + 0.3
        xf, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
        yf, ys = fused(xf), stock(xs)
        torch.testing.assert_close(yf, ys)
        g = torch.randn_like(yf)
        yf.backward(g)
        ys.backward(g)
        torch.testing.assert_close(xf.grad, xs.grad)
    for (name, p), q in zip(fused.named_parameters(), list(stock[0].parameters()) + list(stock[1].parameters())):
        torch.testing.assert_close(p.grad, q.grad, msg=f"grad of {name}")
    for name, buf in stock[0].named_buffers():
        torch.testing.assert_close(getattr(fused, name), buf, msg=name)
    fused.eval(), stock.eval()
    x = torch.randn(SHAPE[dims], dtype=torch.float64, device=device)
    torch.testing.assert_close(fused(x), stock(x))


def test_state_dict_round_trip_with_stock_batchnorm():
    stock = nn.BatchNorm2d(7)
    stock.train()
    for _ in range(3):
        stock(torch.randn(4, 7, 3, 3))
    fused = pygan.nn.BatchNormAct2d(7, activation="leaky_relu", negative_slope=0.2)
    fused.load_state_dict(stock.state_dict())  # strict: same keys
    assert fused.state_dict().keys() == stock.state_dict().keys()
    back = nn.BatchNorm2d(7)
    back.load_state_dict(fused.state_dict())
    for k, v in stock.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert int(fused.num_batches_tracked) == 3


def test_not_rewritten_by_sync_batchnorm_conversion():
    m = nn.Sequential(pygan.nn.BatchNormAct2d(3, activation="relu"))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(m)
    assert isinstance(converted[0], pygan.nn.BatchNormAct2d)  # would otherwise silently lose the activation


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        pygan.nn.BatchNormAct2d(3, activation="swish")
    with pytest.raises(ValueError, match="prelu_parameters must be 1 or num_features"):
        pygan.nn.BatchNormAct2d(3, activation="prelu", prelu_parameters=2)
    with pytest.raises(ValueError, match=r"^expected 4D input \(got 2D input\)$"):
        pygan.nn.BatchNormAct2d(3)(torch.randn(2, 3))


def test_repr_names_the_activation():
    assert "activation=leaky_relu(0.2)" in repr(pygan.nn.BatchNormAct2d(3, activation="leaky_relu", negative_slope=0.2))

"""pygan's eager entry points (pygan.ops.*) run the kernels through their own autograd.Function
(pygan.ops.op_function); torch.ops.pygan.* through torch.library's registered autograd. Same formulas: the two
doors must agree bitwise, for first and second derivatives, and save the same tensors."""

import pytest
import torch

from pygan import _ext
from pygan.ops import batch_norm_act, bias_act, gan_loss

from conftest import DEVICES

pytestmark = pytest.mark.skipif(_ext._C is None, reason="pygan._C not built")


def _both_doors(fast, registered, inputs):
    """(outputs, first and second derivatives w.r.t. inputs) of fast(*inputs) and registered(*inputs)."""
    results = []
    for fn in (fast, registered):
        xs = [t.detach().clone().requires_grad_(True) for t in inputs]
        out = fn(*xs)
        weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
        (first,) = torch.autograd.grad((weights * out * out).sum(), xs[0], create_graph=True)
        second = torch.autograd.grad(first.pow(2).sum(), xs, allow_unused=True)
        results.append((out.detach(), first.detach(), second, type(out.grad_fn).__name__))
    return results


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "prelu"])
def test_batch_norm_act_doors_agree(activation, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 2, generator=g, dtype=torch.float64).to(device)
    w = (torch.rand(4, generator=g, dtype=torch.float64) + 0.5).to(device)
    b = torch.randn(4, generator=g, dtype=torch.float64).to(device)
    s = torch.full((4,), 0.2, dtype=torch.float64, device=device)

    def fast(x, w, b, s):
        return batch_norm_act(x, None, None, w, b, True, 0.1, 1e-5, activation, 0.2, s if activation == "prelu" else None)

    def registered(x, w, b, s):
        return torch.ops.pygan.batch_norm_act(x, w, b, None, None, s if activation == "prelu" else None, True, 1e-5,
                                              activation, 0.2)[0]

    (y1, d1, dd1, fn1), (y2, d2, dd2, fn2) = _both_doors(fast, registered, [x, w, b, s])
    assert "batch_norm_act_function" in fn1 and fn1 != fn2  # the eager door was taken
    assert torch.equal(y1, y2) and torch.equal(d1, d2)
    for a, c in zip(dd1, dd2):
        assert (a is None and c is None) or torch.equal(a, c)
    # activation-only saving kept: invertible activations save the output
    y = fast(x.requires_grad_(), w, b, s)
    assert (y.grad_fn.saved_tensors[0].data_ptr() == y.data_ptr()) == (activation != "relu")


@pytest.mark.parametrize("device", DEVICES)
def test_bias_act_and_gan_loss_doors_agree(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(3, generator=g, dtype=torch.float64).to(device)
    (y1, d1, dd1, fn1), (y2, d2, dd2, fn2) = _both_doors(
        lambda x, b: bias_act(x, b, "leaky_relu", 0.2),
        lambda x, b: torch.ops.pygan.bias_act(x, b, None, "leaky_relu", 0.2), [x, b])
    assert "bias_act_function" in fn1 and torch.equal(y1, y2) and torch.equal(d1, d2)
    assert all(torch.equal(a, c) for a, c in zip(dd1, dd2))
    logits = torch.randn(7, 1, generator=g, dtype=torch.float64).to(device) * 3
    (l1, e1, ee1, fn1), (l2, e2, ee2, fn2) = _both_doors(
        lambda t: gan_loss(t, "bce", 0.9)[0].reshape(1),
        lambda t: torch.ops.pygan.gan_loss(t, "bce", 0.9, True)[0].reshape(1), [logits])
    assert torch.equal(l1, l2) and torch.equal(e1, e2) and torch.equal(ee1[0], ee2[0])


def test_no_autograd_work_without_gradients(monkeypatch):
    """Under no_grad (or with no input requiring grad) the eager door calls the kernel alone: no setup_context,
    so no recoverability check (a host synchronisation on a GPU)."""
    import importlib

    bna = importlib.import_module("pygan.ops.batch_norm_act")  # the module (pygan.ops.batch_norm_act is the function)

    calls = []
    real = bna.can_recover_from_output
    monkeypatch.setattr(bna, "can_recover_from_output", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(4, 3, 5, 5)
    w, b = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    with torch.no_grad():
        y = batch_norm_act(x, None, None, w, b, True, activation="leaky_relu")
    assert y.grad_fn is None and calls == []
    y = batch_norm_act(x, None, None, w.detach(), b.detach(), True, activation="leaky_relu")
    assert y.grad_fn is None and calls == []
    y = batch_norm_act(x, None, None, w, b, True, activation="leaky_relu")
    assert y.grad_fn is not None and calls == [1]
    torch.testing.assert_close(y.detach(), batch_norm_act(x, None, None, w.detach(), b.detach(), True,
                                                          activation="leaky_relu"))

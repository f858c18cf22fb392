"""gan_loss and pygan.losses: the kernel against the float64 reference, extreme logits, penalties, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pygan
from pygan.losses import LOSS_KINDS, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from pygan.ops import reference

from conftest import DEVICES

TERMS = [("bce", 0.9), ("bce", 0.0), ("neg_softplus", 0.0), ("neg_half_exp", 0.0), ("linear", -1.0),
         ("hinge", 1.0), ("hinge", -1.0), ("squared", 1.0)]


def logits_like(shape, dtype, device, scale=3.0):
    return (torch.randn(shape, device=device) * scale).to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (64, 1), (7, 3, 5), (300,)], ids=str)
@pytest.mark.parametrize("term,target", TERMS)
def test_matches_float64_reference(term, target, shape, reduction, dtype, device):
    x = logits_like(shape, dtype, device).requires_grad_()
    loss, scores = pygan.ops.gan_loss(x, term, target, reduction)
    loss.backward()
    xr = x.detach().double().requires_grad_()
    values = reference.gan_loss_term(xr, term, target)
    ref = values.mean() if reduction == "mean" else values.sum()
    ref.backward()
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-2)
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=tol, atol=tol)
    assert x.grad.dtype == dtype and x.grad.shape == x.shape
    grad_tol = tol if dtype in (torch.float32, torch.float64) else 1e-2
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=grad_tol, atol=grad_tol * max(1.0, xr.grad.abs().max().item()))
    torch.testing.assert_close(scores.double(), torch.stack([torch.sigmoid(xr).mean(), xr.mean()]).detach(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("term,target", TERMS)
def test_extreme_logits_stay_finite_and_exact(term, target, device):
    x = torch.tensor([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], device=device, requires_grad=True)
    loss, scores = pygan.ops.gan_loss(x, term, target, "sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(scores).all()
    xr = x.detach().double().requires_grad_()
    reference.gan_loss_term(xr, term, target).sum().backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)


def test_gradcheck_and_create_graph():
    for term, target in TERMS:
        x = (torch.randn(5, dtype=torch.float64) * 2).requires_grad_()
        if term == "hinge":
            x.data = torch.where((1 + target * x.data).abs() < 0.1, x.data + 0.3, x.data)  # off the kink
        assert torch.autograd.gradcheck(lambda t: pygan.ops.gan_loss(t, term, target)[0], (x,))
        assert torch.autograd.gradgradcheck(lambda t: pygan.ops.gan_loss(t, term, target)[0], (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for term, target in TERMS:
        for mean in (True, False):
            x = logits_like((6, 1), torch.float32, device).requires_grad_()
            torch.library.opcheck(torch.ops.pygan.gan_loss.default, (x, term, target, mean))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def d_step(real, fake):
        out = discriminator_loss(real, fake, "non_saturating", label_smoothing=0.1)
        return out.loss, out.real_score, out.fake_score

    real, fake = torch.randn(16, 1, requires_grad=True), torch.randn(16, 1, requires_grad=True)
    got = torch.compile(d_step, fullgraph=True)(real, fake)
    want = d_step(real, fake)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ---------------------------------------------------------------- the loss family against stock compositions


def stock_d(kind, real, fake, smoothing=0.0):
    if kind in ("minimax", "non_saturating", "max_likelihood"):
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1 - smoothing))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "wasserstein":
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return 0.5 * ((real - (1 - smoothing)) ** 2).mean() + 0.5 * (fake**2).mean()


def stock_g(kind, fake):
    return {
        "minimax": lambda: torch.log1p(-torch.sigmoid(fake)).mean(),
        "non_saturating": lambda: F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)),
        "max_likelihood": lambda: -0.5 * torch.exp(fake).mean(),
        "wasserstein": lambda: -fake.mean(),
        "hinge": lambda: -fake.mean(),
        "least_squares": lambda: 0.5 * ((fake - 1) ** 2).mean(),
    }[kind]()


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_loss_family_matches_stock_composition(kind):
    real = torch.randn(32, 1, dtype=torch.float64, requires_grad=True)
    fake = torch.randn(32, 1, dtype=torch.float64, requires_grad=True)
    smoothing = 0.1 if kind not in ("wasserstein", "hinge") else 0.0
    out = discriminator_loss(real, fake, kind, label_smoothing=smoothing)
    want = stock_d(kind, real, fake, smoothing)
    torch.testing.assert_close(out.loss, want)
    g1 = torch.autograd.grad(out.loss, (real, fake))
    g2 = torch.autograd.grad(want, (real, fake))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    prob = kind in ("minimax", "non_saturating", "max_likelihood")
    torch.testing.assert_close(out.real_score, (torch.sigmoid(real) if prob else real).mean().detach())
    torch.testing.assert_close(out.fake_score, (torch.sigmoid(fake) if prob else fake).mean().detach())

    gout = generator_loss(fake, kind)
    gwant = stock_g(kind, fake)
    torch.testing.assert_close(gout.loss, gwant)
    torch.testing.assert_close(torch.autograd.grad(gout.loss, fake)[0], torch.autograd.grad(gwant, fake)[0])
    assert gout.real_score is None


def small_discriminator(fused: bool):
    torch.manual_seed(0)
    bn = pygan.nn.BatchNormAct2d(8, activation="leaky_relu", negative_slope=0.2) if fused else nn.BatchNorm2d(8)
    layers = [nn.Conv2d(3, 8, 3, 2, 1), bn] + ([] if fused else [nn.LeakyReLU(0.2)]) + [nn.Flatten(), nn.Linear(8 * 4 * 4, 1)]
    return nn.Sequential(*layers).double()


def param_grads(value, model):
    """Gradients of value w.r.t. every parameter; zeros for those it does not depend on (D's last bias)."""
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("penalty", ["gp", "r1"])
def test_penalties_match_stock_and_go_through_fused_batchnorm(penalty):
    real, fake = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randn(6, 3, 8, 8, dtype=torch.float64)
    results = []
    for fused in (True, False):
        d = small_discriminator(fused)
        torch.manual_seed(1)
        if penalty == "gp":
            value = gradient_penalty(d, real, fake, weight=10.0)
        else:
            value = r1_penalty(d, real, weight=10.0)
        results.append((value, param_grads(value, d)))
    # Plain PyTorch, written out, on the stock model.
    d = small_discriminator(False)
    torch.manual_seed(1)
    if penalty == "gp":
        alpha = torch.rand(6, 1, 1, 1, dtype=torch.float64)
        x = (alpha * real + (1 - alpha) * fake).requires_grad_()
        g = torch.autograd.grad(d(x).sum(), x, create_graph=True)[0]
        want = 10.0 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    else:
        x = real.clone().requires_grad_()
        g = torch.autograd.grad(d(x).sum(), x, create_graph=True)[0]
        want = 5.0 * g.flatten(1).pow(2).sum(1).mean()
    want_grads = param_grads(want, d)
    for value, grads in results:
        torch.testing.assert_close(value, want)
        for a, b in zip(grads, want_grads):
            torch.testing.assert_close(a, b)


def test_penalty_passes_labels_to_a_conditional_discriminator():
    seen = []

    def d(x, labels):
        seen.append(labels)
        return (x.flatten(1) * 2).sum(1, keepdim=True)

    labels = torch.arange(4)
    r1 = r1_penalty(d, torch.randn(4, 2), weight=2.0, labels=labels)
    assert seen[0] is labels
    torch.testing.assert_close(r1, torch.tensor(2.0 / 2 * 4 * 2, dtype=r1.dtype))  # ||grad||^2 = 4 * 2 per sample


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: pygan.ops.gan_loss(torch.empty(0), "bce", 1.0), "logits must not be empty"),
        (lambda: pygan.ops.gan_loss(torch.ones(3, dtype=torch.int64), "bce", 1.0), "logits must be a floating-point"),
        (lambda: pygan.ops.gan_loss(torch.ones(3), "softmax", 1.0), "term must be one of"),
        (lambda: pygan.ops.gan_loss(torch.ones(3), "bce", 1.0, "max"), "reduction must be 'mean' or 'sum'"),
        (lambda: discriminator_loss(torch.ones(3), torch.ones(3), "vanilla"), "kind must be one of"),
        (lambda: discriminator_loss(torch.ones(3), torch.ones(3), "hinge", label_smoothing=0.1), "no meaning"),
        (lambda: discriminator_loss(torch.ones(3), torch.ones(3), label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
        (lambda: gradient_penalty(lambda x: x.sum(1), torch.ones(3, 2), torch.ones(4, 2)), "same shape"),
    ],
)
def test_bad_input_names_the_argument(make, match):
    with pytest.raises((RuntimeError, ValueError), match=match):
        make()

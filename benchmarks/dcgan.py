"""Whole DCGAN training iterations: one D step (real + fake, loss, backward, Adam) and one G step, pygan's fused
models and losses against the same networks made of stock torch.nn layers (`to_stock()`, identical weights) with
stock BCE-with-logits losses; plus the discriminator-only configuration TorchBench's "dcgan" model times
(batch 32, 3x64x64, D forward + backward), so figures can be set beside published ones. pygan's models run as the
trainer runs them: G's forward inside recompute_relu_outputs() (bitwise the same results; compiled graphs ignore
it). Memory: the bytes autograd keeps for the G step (G's and D's activations), eager variants.

On a GPU the goal rows (batch 128, bf16) add a diagnostic variant, NO_SYNC: pygan with each fused layer's
recoverability verdict read once and reused, i.e. without the host synchronisation that reading the BN parameters
back costs per layer and call — what that synchronisation costs a launch-bound step. Not a mode pygan offers: the
verdict must follow the parameters as they train."""

from __future__ import annotations

import contextlib
import importlib

import torch
import torch.nn.functional as F

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_COMPILE, STOCK_EAGER, Case, max_autotune, saved_tensor_bytes
from pygan.losses import discriminator_loss, generator_loss, gradient_penalty
from pygan.dcgan.models import DCGANDiscriminator, DCGANGenerator
from pygan.ops.recompute import recompute_relu_outputs
from pygan.training import frozen

bna_module = importlib.import_module("pygan.ops.batch_norm_act")  # the module (pygan.ops.batch_norm_act is the function)


def _stock_losses(real_logits, fake_logits):
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def _pygan_losses(real_logits, fake_logits):
    return discriminator_loss(real_logits, fake_logits, "non_saturating").loss


def _stock_g_loss(fake_logits):
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def _pygan_g_loss(fake_logits):
    return generator_loss(fake_logits, "non_saturating").loss


def _iteration(G, D, real, z, d_loss, g_loss, amp_dtype, g_context=contextlib.nullcontext):
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    device_type = real.device.type

    def run():
        with torch.autocast(device_type, amp_dtype, enabled=amp_dtype is not None):
            with g_context():
                fake = G(z)
            loss = d_loss(D(real).float(), D(fake.detach()).float())
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        with torch.autocast(device_type, amp_dtype, enabled=amp_dtype is not None):
            loss = g_loss(D(fake).float())
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    return run


def _stock_gp(D, real, fake, alpha):
    x = (alpha[:, None, None, None] * real + (1 - alpha[:, None, None, None]) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return 10.0 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def _stock_critic_loss(D, real, fake, alpha):
    return D(fake).mean() - D(real).mean() + _stock_gp(D, real, fake, alpha)


def _pygan_critic_loss(D, real, fake, alpha):
    return discriminator_loss(D(real), D(fake), "wasserstein").loss + gradient_penalty(D, real, fake, 10.0, alpha=alpha)


def _wgan_gp_iteration(G, D, real, z, critic_loss, g_loss, g_context=contextlib.nullcontext):
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.9))
    alpha = torch.rand(real.shape[0], device=real.device)

    def run():
        with torch.no_grad():
            fake = G(z)
        loss = critic_loss(D, real, fake, alpha)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        with frozen(D):
            with g_context():
                loss = g_loss(D(G(z)))
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
    return run


def _wgan_gp_cases(device: str, quick: bool) -> list[Case]:
    size, width, batch = (16, 4, 4) if quick else (32, 16, 64)  # the recipe on the digits: 1x32x32, widths 16
    out = []
    for norm in ("layer", "none"):
        G = DCGANGenerator(size, 1, 64, width).to(device)
        D = DCGANDiscriminator(size, 1, width, norm=norm).to(device)
        sG, sD = G.to_stock().to(device), D.to_stock().to(device)
        real = torch.randn(batch, 1, size, size, device=device)
        z = torch.randn(batch, 64, device=device)
        out.append(Case("dcgan", f"WGAN-GP {size}x{size} critic ({'layer norm' if norm == 'layer' else 'no norm'}) + G iteration "
                             f"batch {batch} fp32", {
            STOCK_EAGER: _wgan_gp_iteration(sG, sD, real, z, _stock_critic_loss, lambda f: -f.mean()),
            PYGAN: _wgan_gp_iteration(G, D, real, z, _pygan_critic_loss,
                                      lambda f: generator_loss(f, "wasserstein").loss, recompute_relu_outputs),
        }))
    return out


NO_SYNC = "pygan, verdicts read once (diagnostic)"


@contextlib.contextmanager
def _verdicts_read_once():
    real, seen = bna_module.can_recover_from_output, {}

    def once(activation, negative_slope, weight, bias, slope, dtype):
        key = (id(weight), activation, dtype)
        if key not in seen:
            seen[key] = real(activation, negative_slope, weight, bias, slope, dtype)
        return seen[key]

    bna_module.can_recover_from_output = once
    try:
        yield
    finally:
        bna_module.can_recover_from_output = real


def _inside(context, run):
    def wrapped():
        with context():
            run()
    return wrapped


def _g_step_saved(G, D, z, g_loss, amp_dtype, g_context=contextlib.nullcontext) -> int:
    """Bytes autograd keeps for the G step's backward (G's and D's activations: the iteration's largest graph)."""
    def forward():
        with torch.autocast(z.device.type, amp_dtype, enabled=amp_dtype is not None):
            return g_loss(D(G(z)).float())
    with g_context():  # outside saved_tensor_bytes' hooks, which chain the recompute context's own
        return saved_tensor_bytes(forward)


def _d_only(D, x):
    def run():
        D(x).sum().backward()
    return run


def cases(device: str, quick: bool) -> list[Case]:
    size, width = (16, 8) if quick else (64, 64)
    batches = [4] if quick else [64, 128]
    dtypes = [None] if quick else [None, torch.bfloat16]
    formats = [torch.contiguous_format] if quick else [torch.contiguous_format, torch.channels_last]
    out = []
    for batch in batches:
        for amp in dtypes:
            for fmt in formats:
                G = DCGANGenerator(size, 3, 100, width).to(device)
                D = DCGANDiscriminator(size, 3, width).to(device)
                sG, sD = G.to_stock().to(device), D.to_stock().to(device)
                if fmt == torch.channels_last:
                    for m in (G, D, sG, sD):
                        m.to(memory_format=fmt)
                real = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
                z = torch.randn(batch, 100, device=device)
                label = (f"{size}x{size} G+D iteration batch {batch} {'bf16 autocast' if amp else 'fp32'} "
                         f"{'NHWC' if fmt == torch.channels_last else 'NCHW'}")
                cG, cD = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)
                scG, scD = torch.compile(sG, dynamic=False), torch.compile(sD, dynamic=False)
                out.append(Case("dcgan", label, {
                    STOCK_EAGER: _iteration(sG, sD, real, z, _stock_losses, _stock_g_loss, amp),
                    STOCK_COMPILE: _iteration(scG, scD, real, z, _stock_losses, _stock_g_loss, amp),
                    PYGAN: _iteration(G, D, real, z, _pygan_losses, _pygan_g_loss, amp, recompute_relu_outputs),
                    PYGAN_COMPILE: _iteration(cG, cD, real, z, _pygan_losses, _pygan_g_loss, amp),
                    **max_autotune(device, lambda compile_: _iteration(compile_(sG), compile_(sD), real, z,
                                                                       _stock_losses, _stock_g_loss, amp)),
                    **({NO_SYNC: _inside(_verdicts_read_once, _iteration(G, D, real, z, _pygan_losses, _pygan_g_loss,
                                                                        amp, recompute_relu_outputs))}
                       if device == "cuda" and batch == 128 and amp is not None else {}),
                }, saved_bytes={STOCK_EAGER: _g_step_saved(sG, sD, z, _stock_g_loss, amp),
                                PYGAN: _g_step_saved(G, D, z, _pygan_g_loss, amp, recompute_relu_outputs)}))
    batch = 2 if quick else 32
    D = DCGANDiscriminator(size, 3, width).to(device)
    sD = D.to_stock().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    out.append(Case("dcgan", f"TorchBench dcgan: D fwd+bwd batch {batch} 3x{size}x{size}", {
        STOCK_EAGER: _d_only(sD, x), STOCK_COMPILE: _d_only(torch.compile(sD, dynamic=False), x),
        PYGAN: _d_only(D, x), PYGAN_COMPILE: _d_only(torch.compile(D, dynamic=False), x),
    }))
    return out + _wgan_gp_cases(device, quick)

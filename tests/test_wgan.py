"""The WGAN and WGAN-GP recipes of the DCGAN system: recipe defaults and overrides, the critic (no batch norm),
weight clipping, the gradient penalty's value, the Wasserstein estimate, and an exact resume."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from pygan import losses
from pygan.cli import build_parser
from pygan.dcgan import DCGANConfig, DCGANDiscriminator, DCGANTrainer, load_generator, read_checkpoint
from pygan.dcgan.evaluate import checkpoint_wasserstein_estimate, critic_estimate
from pygan.dcgan.recipes import RECIPES
from pygan.training.config import given


def tiny(tmp_path, **kw) -> DCGANConfig:
    base = dict(out=str(tmp_path / "run"), size=16, latent_dim=8, g_width=4, d_width=4, batch_size=8, steps=4,
                log_every=1, sample_every=2, checkpoint_every=2, grid_size=8, eval_samples=0, progress=False,
                collapse_ratio=0.0, device="cpu")
    return DCGANConfig(**{**base, **kw})


def _config_from_argv(argv):
    args = build_parser().parse_args(["train", "dcgan", *argv])
    return DCGANConfig(**given(args, DCGANConfig))


def test_recipe_defaults():
    wgan, gp = DCGANConfig(recipe="wgan"), DCGANConfig(recipe="wgan-gp")
    assert (wgan.loss, wgan.d_norm, wgan.clip, wgan.optimizer, wgan.lr_g, wgan.lr_d, wgan.d_steps, wgan.gp_weight,
            wgan.r1_weight) == ("wasserstein", "none", 0.01, "rmsprop", 5e-5, 5e-5, 5, 0.0, 0.0)
    assert (gp.loss, gp.d_norm, gp.clip, gp.gp_weight, gp.optimizer, gp.lr_g, gp.lr_d, gp.beta1, gp.beta2,
            gp.d_steps, gp.r1_weight) == ("wasserstein", "none", 0.0, 10.0, "adam", 6e-4, 6e-4, 0.0, 0.9, 5, 0.0)
    assert wgan.wasserstein_every > 0 and gp.wasserstein_every > 0
    # the default recipe is the plain DCGAN config, field for field
    assert dataclasses.asdict(DCGANConfig(recipe="default")) == dataclasses.asdict(DCGANConfig())
    assert _config_from_argv(["--recipe", "wgan-gp"]) == gp


def test_explicit_options_win_over_the_recipe():
    # d_norm="batch" and optimizer="adam" are the class defaults: given explicitly, they must still win
    over = dict(d_norm="batch", optimizer="adam", lr_d=3e-4, d_steps=2, clip=0.05, loss="hinge", steps=7)
    cfg = DCGANConfig(recipe="wgan", **over)
    assert {k: getattr(cfg, k) for k in over} == over
    assert cfg.lr_g == 5e-5  # not given: the recipe's
    argv = ["--recipe", "wgan-gp", "--d-norm", "layer", "--gp-weight", "5", "--beta1", "0.5", "--no-fused"]
    cfg = _config_from_argv(argv)
    assert (cfg.d_norm, cfg.gp_weight, cfg.beta1, cfg.beta2, cfg.fused) == ("layer", 5.0, 0.5, 0.9, False)
    with pytest.raises(ValueError, match="recipe must be one of"):
        DCGANConfig(recipe="wgan-lp").validate()


@pytest.mark.parametrize("recipe,kw,norm_type", [("wgan", {}, None), ("wgan-gp", {}, None),
                                                 ("wgan-gp", dict(d_norm="layer"), nn.GroupNorm)])
def test_critic_has_no_batch_norm_under_the_recipes(tmp_path, recipe, kw, norm_type):
    def norms(D):
        return [type(m) for m in D.modules() if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
                or "BatchNorm" in type(m).__name__ or "BNAct" in type(m).__name__]

    assert norms(DCGANTrainer(tiny(tmp_path / "d")).D)  # the default DCGAN has batch norm: the check can see it
    for fused in (True, False):
        found = norms(DCGANTrainer(tiny(tmp_path / recipe, recipe=recipe, fused=fused, **kw)).D)
        assert found == ([norm_type] * len(found) if norm_type else [])
        assert (len(found) > 0) == (norm_type is not None)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_critic_fused_equals_stock_with_a_double_backward(norm):
    torch.manual_seed(0)
    D = DCGANDiscriminator(16, 1, 4, norm=norm)
    with torch.no_grad():
        for p in D.parameters():
            p.normal_(0, 0.3)  # biases too: the fused bias_act must add them
    S = D.to_stock()
    x = torch.randn(6, 1, 16, 16)
    torch.testing.assert_close(D(x), S(x))
    alpha = torch.rand(6)
    gp_fused = losses.gradient_penalty(D, x, x.flip(0), 10.0, alpha=alpha)
    gp_stock = losses.gradient_penalty(S, x, x.flip(0), 10.0, alpha=alpha)
    torch.testing.assert_close(gp_fused, gp_stock)
    g1 = torch.autograd.grad(gp_fused, list(D.parameters()))
    g2 = torch.autograd.grad(gp_stock, list(S.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradient_penalty_against_a_hand_computation():
    class HalfSquaredNorm(nn.Module):  # f(x) = |x|^2 / 2 per sample: its input gradient is x itself
        def forward(self, x):
            return 0.5 * x.flatten(1).pow(2).sum(1)

    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    alpha = torch.rand(5, generator=g)
    gp = losses.gradient_penalty(HalfSquaredNorm(), real, fake, weight=10.0, alpha=alpha)
    expected = 0.0
    for i in range(5):
        x = [alpha[i].item() * r + (1 - alpha[i].item()) * f for r, f in zip(real[i].flatten().tolist(),
                                                                                fake[i].flatten().tolist())]
        expected += (sum(v * v for v in x) ** 0.5 - 1.0) ** 2
    assert gp.item() == pytest.approx(10.0 * expected / 5, rel=1e-5)


def test_clipping_keeps_every_critic_weight_in_range(tmp_path):
    tr = DCGANTrainer(tiny(tmp_path, recipe="wgan", steps=1, d_steps=1, lr_d=0.1))
    c = tr.config.clip
    params = list(tr.D.parameters())
    assert max(p.abs().max().item() for p in params) > c  # the N(0, 0.02) init has weights outside [-c, c]
    hits = []
    tr.opt_d.register_step_post_hook(lambda opt, *a: hits.append(max(p.abs().max().item() for p in params)))
    tr.iteration()
    assert hits and hits[0] > c  # the optimizer's step leaves some outside (a large learning rate)...
    for p in tr.D.parameters():  # ...clipping brings every one back
        assert p.abs().max().item() <= c
    # in place: the optimizer still holds the module's tensors
    assert all(a is b for a, b in zip(tr.opt_d.param_groups[0]["params"], tr.D.parameters()))
    assert isinstance(tr.opt_d, torch.optim.RMSprop)


def test_critic_estimate_is_the_difference_of_means():
    class Mean(nn.Module):
        def forward(self, x):
            return x.flatten(1).mean(1)

    real, fake = torch.randn(7, 1, 4, 4), torch.randn(9, 1, 4, 4)
    D = Mean().train()
    assert critic_estimate(D, real, fake, chunk=3) == pytest.approx((real.mean() - fake.mean()).item(), abs=1e-6)
    assert D.training


def test_wgan_run_logs_the_estimate_and_resumes_exactly(tmp_path):
    kw = dict(recipe="wgan", steps=4, wasserstein_every=2, keep_checkpoints=True, d_steps=2)
    full = DCGANTrainer(tiny(tmp_path / "a", **kw))
    full.train()
    part = DCGANTrainer(tiny(tmp_path / "b", **{**kw, "steps": 2}))
    part.train()
    resumed = DCGANTrainer.resume(str(tmp_path / "b" / "run" / "checkpoint.pt"), steps=4)
    assert isinstance(resumed.opt_d, torch.optim.RMSprop) and resumed.config.clip == 0.01
    resumed.train()
    for a, b in zip(resumed.D.state_dict().values(), full.D.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.G_ema.state_dict().values(), full.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert all(p.abs().max().item() <= 0.01 for p in resumed.D.parameters())

    def records(run):
        return [json.loads(l) for l in open(tmp_path / run / "run" / "log.jsonl")]

    strip = [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in records("a")]
    assert strip == [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in records("b")]
    est = [r for r in records("a") if "wasserstein_estimate" in r]
    assert [r["step"] for r in est] == [2, 4]
    out = tmp_path / "a" / "run"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000002.pt", "step_000004.pt"]
    # `pygan eval`'s estimate of the checkpoint is the one the run logged last
    G, ckpt = load_generator(str(out / "checkpoint.pt"))
    assert checkpoint_wasserstein_estimate(G, ckpt) == pytest.approx(est[-1]["wasserstein_estimate"], abs=1e-5)
    assert read_checkpoint(str(out / "checkpoints" / "step_000002.pt"))["step"] == 2


@pytest.mark.parametrize("conditional", [False, True])
def test_wgan_gp_run_is_finite(tmp_path, conditional):
    tr = DCGANTrainer(tiny(tmp_path, recipe="wgan-gp", steps=2, wasserstein_every=1, conditional=conditional))
    tr.train()
    recs = [r for r in tr.history if "loss_d" in r]
    assert len(recs) == 2 and all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in recs)
    assert [r["step"] for r in tr.history if "wasserstein_estimate" in r] == [1, 2]
    assert sorted(RECIPES) == ["default", "wgan", "wgan-gp"]

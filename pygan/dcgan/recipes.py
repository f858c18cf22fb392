"""Training recipes of the DCGAN system: `--recipe wgan|wgan-gp` sets a paper's defaults, and every option given
explicitly still wins over them.

  wgan     Arjovsky et al. 2017: Wasserstein loss, critic without normalisation, weights clipped to [-0.01, 0.01]
           after each critic step, RMSprop at 5e-5, 5 critic steps per generator step.
  wgan-gp  Gulrajani et al. 2017: Wasserstein loss, gradient penalty 10 on real/fake interpolates, critic without
           batch norm (whose statistics would couple the per-sample gradients the penalty constrains): none, of the
           paper's two choices (layer norm, `--d-norm layer`, hides a sample's overall brightness from the critic
           and learned half as fast on the digits), Adam with betas (0, 0.9), 5 critic steps per generator step.

Both turn off DCGAN's R1 penalty and log the critic's Wasserstein estimate. The step counts, and WGAN-GP's learning
rate (6e-4 for G and D; the paper's 1e-4 learns too slowly for a run of minutes), are this project's choice, not
the papers': sized for the embedded digits on a CPU (docs/dcgan.md has the measurements).
"""

from __future__ import annotations

import torch
from torch import nn

# the network size, batch, EMA and precision both recipes were measured with (docs/dcgan.md), not the plain
# default's (a wider G, batch 128, bf16 where the CPU has it natively)
_WASSERSTEIN = dict(loss="wasserstein", r1_weight=0.0, d_steps=5, wasserstein_every=50, g_width=16, batch_size=64,
                    ema_decay=0.995, amp="none")

RECIPES: dict[str, dict] = {
    "default": {},
    "wgan": dict(_WASSERSTEIN, d_norm="none", clip=0.01, gp_weight=0.0, optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5,
                 steps=1000),
    "wgan-gp": dict(_WASSERSTEIN, d_norm="none", clip=0.0, gp_weight=10.0, optimizer="adam", lr_g=6e-4, lr_d=6e-4,
                    beta1=0.0, beta2=0.9, steps=1600),
}


def apply_recipe(config_class: type) -> type:
    """Class decorator of a dataclass config with a `recipe` field: its constructor fills the options it was not
    given from RECIPES[recipe] (an unknown recipe is left for validate() to report)."""
    init = config_class.__init__

    def __init__(self, *args, **kwargs):
        if args:
            raise TypeError(f"{config_class.__name__} takes keyword arguments only")
        init(self, **{**RECIPES.get(kwargs.get("recipe", "default"), {}), **kwargs})

    __init__.__doc__ = init.__doc__
    config_class.__init__ = __init__
    return config_class


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> None:
    """WGAN's Lipschitz constraint: every parameter of `module` clamped to [-c, c], in place (the tensors stay the
    ones the optimizer, DDP's buckets and the checkpoint refer to; every rank clamps the same values)."""
    for p in module.parameters():
        p.clamp_(-c, c)

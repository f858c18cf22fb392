"""Scoring a template model: the Fréchet distance between the pixels of its samples and of held-out digits."""

from __future__ import annotations

import torch

from pygan.data import digits_split
from pygan.metrics import frechet_distance
from pygan.template.models import TemplateGenerator
from pygan.training import CheckpointFormat

CHECKPOINT = CheckpointFormat("pygan-template-checkpoint-v1", "template")


@torch.no_grad()
def evaluate(G, n: int = 500, seed: int = 0) -> dict:
    """{'pixel_frechet_distance'}: of n samples from fixed noise (`seed`) against the held-out digits."""
    held_out = digits_split(16)[1].images.flatten(1).double().numpy()
    z = torch.randn(n, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    fake = G(z.to(next(G.parameters()).device)).flatten(1).double().cpu().numpy()
    return {"pixel_frechet_distance": frechet_distance(fake, held_out), "samples": n}


def load_generator(path: str) -> tuple[TemplateGenerator, dict]:
    """(the evaluation generator in eval mode, the checkpoint) of a template checkpoint file."""
    ckpt = CHECKPOINT.read(path)
    G = TemplateGenerator(**ckpt["G_config"])
    G.load_state_dict(CHECKPOINT.generator_state(ckpt))
    return G.eval(), ckpt

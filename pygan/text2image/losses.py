"""GAN-CLS and GAN-INT losses (Reed et al. 2016) on raw logits, for any of pygan's loss kinds.

Discriminator (GAN-CLS): it must accept a real image with its own caption, and reject both a real image with a
mismatching caption and a generated image with the caption it was made from:
    L_D = real(s_r) + mismatch_weight * fake(s_w) + (1 - mismatch_weight) * fake(s_f)
The paper: mismatch_weight 1/2 ((log(1 - D(x, h_wrong)) + log(1 - D(G(z, h), h))) / 2); 0 is the plain
conditional GAN, whose D never sees a mismatched pair. Written as the weighted sum of two pygan discriminator
losses, each real + fake, whose real terms add up to one real term.

Generator: gen(s_g) on its images from the captions' embeddings, plus (GAN-INT) int_weight x gen(s_i) on images
from interpolated embeddings beta h1 + (1 - beta) h2 of two captions, for which there is no real image (only D's
opinion on them trains G).
"""

from __future__ import annotations

from torch import Tensor

from pygan.losses import discriminator_loss, generator_loss


def gan_cls_d_loss(real: Tensor, mismatch: Tensor, fake: Tensor, kind: str = "non_saturating",
                   mismatch_weight: float = 0.5) -> Tensor:
    if not 0 <= mismatch_weight < 1:
        raise ValueError(f"mismatch_weight must be in [0, 1), got {mismatch_weight}")
    loss = (1 - mismatch_weight) * discriminator_loss(real, fake, kind).loss
    if mismatch_weight:
        loss = loss + mismatch_weight * discriminator_loss(real, mismatch, kind).loss
    return loss


def gan_int_g_loss(fake: Tensor, interpolated: Tensor | None, kind: str = "non_saturating",
                   int_weight: float = 1.0) -> Tensor:
    loss = generator_loss(fake, kind).loss
    if interpolated is not None and int_weight:
        loss = loss + int_weight * generator_loss(interpolated, kind).loss
    return loss

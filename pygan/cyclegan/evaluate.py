"""Scoring a CycleGAN where the true translation is known (the embedded digit domains), both directions:

- content kept: a classifier trained on the target domain's real training images reads the translated held-out
  images; the share given their source digit (the analogue of the paper's FCN score), next to the same classifier
  on the real held-out images of that domain (its own ceiling);
- translation error: L1 and PSNR of G(x) against the true translation, next to the identity baseline (x itself
  taken as its translation);
- cycle reconstruction L1 (F(G(x)) against x);
each a mean over the held-out images with a 95% bootstrap interval.
"""

from __future__ import annotations


import torch
from torch import Tensor

from pygan.metrics import mean_ci
from pygan.training import CheckpointFormat, eval_mode
from pygan.cyclegan.models import Generators
from pygan.metrics.pixels import per_image_l1, per_image_psnr
from pygan.metrics.classifier import cached_classifier, classify

CHECKPOINT = CheckpointFormat("pygan-cyclegan-checkpoint-v1", "CycleGAN")
read_checkpoint = CHECKPOINT.read
CLASSIFIER_EPOCHS = 15



def load_generators(path: str, device="cpu"):
    """(the two generators in eval mode — the EMA's when trained with one —, the checkpoint)."""
    ckpt = read_checkpoint(path)
    G = Generators(**ckpt["G_config"])
    G.load_state_dict(CHECKPOINT.generator_state(ckpt))
    return G.to(device).eval(), ckpt



@torch.no_grad()
def translate(G, x: Tensor, batch: int = 256) -> Tensor:
    p = next(G.parameters())
    return torch.cat([G(x[i:i + batch].to(p.device, p.dtype)).float().cpu() for i in range(0, len(x), batch)])


def evaluate(G, domains, n_boot: int = 1000) -> dict:
    """The metrics above for the generators `G` (pygan.cyclegan.models.Generators) on `domains`' held-out pairs."""
    with eval_mode(G):
        labels = domains.test_labels
        half = len(domains.test_a)
        out = {}
        directions = (("a2b", G.a2b, G.b2a, domains.test_a, domains.test_a_true, domains.b, labels[:half]),
                      ("b2a", G.b2a, G.a2b, domains.test_b, domains.test_b_true, domains.a, labels[half:]))
        for name, g, f, x, true, target, y in directions:
            fake = translate(g, x)
            rec = translate(f, fake)
            clf = cached_classifier(target.images, target.labels, len(target.classes), CLASSIFIER_EPOCHS)
            kept = (classify(clf, fake)[0].argmax(1) == y).double()
            ceiling = (classify(clf, true)[0].argmax(1) == y).double()
            l1, base = per_image_l1(fake, true), per_image_l1(x, true)
            out[name] = {
                "content_kept": mean_ci(kept, n_boot), "classifier_on_real": mean_ci(ceiling, n_boot),
                "translation_l1": mean_ci(l1, n_boot), "identity_baseline_l1": mean_ci(base, n_boot),
                "translation_l1_ratio": float(l1.mean() / base.mean()),
                "translation_psnr": mean_ci(per_image_psnr(fake, true), n_boot),
                "identity_baseline_psnr": mean_ci(per_image_psnr(x, true), n_boot),
                "cycle_l1": mean_ci(per_image_l1(rec, x), n_boot),
                "n_images": len(x),
            }
    return out



def format_metrics(m: dict) -> str:
    def ci(d, fmt):
        return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]"

    lines = []
    for name, title in (("a2b", "A -> B"), ("b2a", "B -> A")):
        d = m[name]
        lines.append(f"{title} ({d['n_images']} held-out images): content kept {ci(d['content_kept'], '.3f')} "
                     f"(classifier on real: {d['classifier_on_real']['mean']:.3f}); translation L1 "
                     f"{ci(d['translation_l1'], '.3f')} vs identity {d['identity_baseline_l1']['mean']:.3f} "
                     f"(ratio {d['translation_l1_ratio']:.2f}); PSNR {d['translation_psnr']['mean']:.2f} dB "
                     f"(identity {d['identity_baseline_psnr']['mean']:.2f}); cycle L1 {ci(d['cycle_l1'], '.3f')}")
    return "\n".join(lines)

"""Scoring a text-to-image model on the embedded captioned digits, each number a mean with a 95% bootstrap interval:

- seen combinations: one image per caption of the held-out images (combinations seen in training, images and
  captions not): class match (pygan.metrics.digits' classifier reads the caption's digit) and attribute match
  (the thickness / slant level measured on the generated image, with the caption class's thresholds, is the one
  the caption names; over the attributes each caption names);
- held-out combinations (never in training): ZERO_SHOT_CAPTIONS fresh captions of each (e.g. 'a thick three'),
  the same two scores;
- variety within a caption: VARIETY_SAMPLES images of one caption, their mean pairwise pixel distance over that
  of the real training images of the caption's class (1: as varied as the whole class; 0: one image); next to
  the same ratio for the real images that fit the caption (what a perfect model would give: a caption narrows
  the class).
"""

from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

from pygan.metrics import mean_ci
from pygan.training import CheckpointFormat, recalibrate_batch_norm
from pygan.metrics.classifier import classify
from pygan.metrics.digits import digits_classifier
from pygan.text2image import attributes as attrs
from pygan.text2image.captions import caption
from pygan.text2image.data import describe
from pygan.text2image.models import TextGenerator
from pygan.text2image.text import Text

CHECKPOINT = CheckpointFormat("pygan-text2image-checkpoint-v1", "text-to-image")
read_checkpoint = CHECKPOINT.read
ZERO_SHOT_CAPTIONS = 200
VARIETY_CAPTIONS = 60
VARIETY_SAMPLES = 16




def recalibrate_bn(G, embeddings: Tensor, batches: int = 8, batch_size: int = 256, seed: int = 0):
    """G with its BatchNorm statistics recomputed over fresh batches of noise and training caption embeddings (own
    seeded generator), in eval mode."""
    p = next(G.parameters())
    g = torch.Generator().manual_seed(seed)

    def forward(_):
        z = torch.randn(batch_size, G.latent_dim, generator=g)
        t = embeddings[torch.randint(0, len(embeddings), (batch_size,), generator=g)]
        G(z.to(p.device, p.dtype), t.to(p.device, p.dtype))

    return recalibrate_batch_norm(G, forward, batches)


def load_model(path: str, device="cpu"):
    """(generator ready to sample - the EMA's when trained with one, BN recalibrated -, its Text, the checkpoint)."""
    ckpt = read_checkpoint(path)
    G = TextGenerator(**ckpt["G_config"])
    G.load_state_dict(CHECKPOINT.generator_state(ckpt))
    G = recalibrate_bn(G.to(device), ckpt["calibration"])
    return G, Text.from_state_dict(ckpt["text"]), ckpt


@torch.no_grad()
def generate(G, embeddings: Tensor, seed: int = 0, batch: int = 512) -> Tensor:
    """One image per row of `embeddings`, noise from a generator seeded with `seed`; on the CPU, in [-1, 1]."""
    p = next(G.parameters())
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(embeddings), G.latent_dim, generator=g)
    return torch.cat([G(z[i:i + batch].to(p.device, p.dtype), embeddings[i:i + batch].to(p.device, p.dtype))
                      .float().cpu() for i in range(0, len(z), batch)])


def _scores(images: Tensor, meanings: Tensor, thresholds: np.ndarray, classifier):
    """For images generated from these meanings: (class match (N,), attribute level match (N, 2), named (N, 2):
    the attributes each meaning names)."""
    m = meanings.numpy()
    pred = classify(classifier, images)[0].argmax(1).numpy()
    lv = attrs.image_levels(images, m[:, 0], thresholds)
    return (pred == m[:, 0]).astype(float), (lv == m[:, 1:]).astype(float), m[:, 1:] >= 0


def _mean_pairwise(x: Tensor) -> float:
    f = x.flatten(1).double()
    n = len(f)
    return float(torch.cdist(f, f).sum() / (n * (n - 1)))


def evaluate(G, text, data, n_boot: int = 1000, seed: int = 0) -> dict:
    """The metrics of the module docstring for generator G (eval mode) and its Text on a CaptionedData of the
    digits."""
    size = G.size
    clf, clf_acc = digits_classifier(size)
    test, th = data.test, data.thresholds
    out = {"classifier_held_out_accuracy": clf_acc}

    fake = generate(G, text.embed(test.captions), seed)
    cm, match, named = _scores(fake, test.meanings, th, clf)
    out["seen"] = {"class_match": mean_ci(cm, n_boot), "attribute_match": mean_ci(match[named], n_boot),
                   "attribute_match_by_attribute": {name: mean_ci(match[named[:, a], a], n_boot)
                                                    for a, name in enumerate(("thickness", "slant"))},
                   "n_captions": len(test.captions)}

    rng = np.random.default_rng(seed + 1)
    zs, all_cm, all_am = {}, [], []
    for cls, a, lv in data.held_out:
        t, s = (lv, None) if a == 0 else (None, lv)
        caps = [caption(rng, cls, t, s) for _ in range(ZERO_SHOT_CAPTIONS)]
        meanings = torch.tensor([[cls, -1 if t is None else t, -1 if s is None else s]] * len(caps))
        cm_z, match, named = _scores(generate(G, text.embed(caps), seed + 2), meanings, th, clf)
        am_z = match[named]
        zs[describe(meanings[0])] = {"class_match": mean_ci(cm_z, n_boot), "attribute_match": mean_ci(am_z, n_boot),
                                     "example_caption": caps[0]}
        all_cm.append(cm_z)
        all_am.append(am_z)
    out["held_out_combinations"] = {"class_match": mean_ci(np.concatenate(all_cm), n_boot),
                                    "attribute_match": mean_ci(np.concatenate(all_am), n_boot), "each": zs}

    # variety: captions spread over the held-out images, VARIETY_SAMPLES images each
    train = data.train
    pick = np.linspace(0, len(test.captions) - 1, VARIETY_CAPTIONS).round().astype(int)
    class_spread = {c: _mean_pairwise(train.images[train.labels == c]) for c in range(10)}
    emb = text.embed([test.captions[i] for i in pick])
    ratios, real_ratios = [], []
    for k, i in enumerate(pick):
        cls, t, s = (int(v) for v in test.meanings[i])
        imgs = generate(G, emb[k:k + 1].expand(VARIETY_SAMPLES, -1), seed + 3 + k)
        ratios.append(_mean_pairwise(imgs) / class_spread[cls])
        # the real training images that fit this caption: its class and the attribute levels it names
        own = ((train.labels == cls) & ((t < 0) | (train.levels[:, 0] == t))
               & ((s < 0) | (train.levels[:, 1] == s)))
        if own.sum() > 1:
            real_ratios.append(_mean_pairwise(train.images[own]) / class_spread[cls])
    out["variety"] = {"ratio_to_class": mean_ci(ratios, n_boot),
                      "real_fitting_images_ratio": mean_ci(real_ratios, n_boot), "samples_per_caption": VARIETY_SAMPLES}
    return out



def format_metrics(m: dict) -> str:
    def ci(d):
        return f"{d['mean']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"

    s, h, v = m["seen"], m["held_out_combinations"], m["variety"]
    by = {k: d["mean"] for k, d in s["attribute_match_by_attribute"].items()}
    lines = [f"seen combinations ({s['n_captions']} held-out captions): class match {ci(s['class_match'])}, "
             f"attribute match {ci(s['attribute_match'])} (thickness {by['thickness']:.3f}, slant {by['slant']:.3f}); "
             f"chance 0.1 and 0.33",
             f"held-out combinations (never trained on): class match {ci(h['class_match'])}, attribute match "
             f"{ci(h['attribute_match'])}"]
    lines += [f"  {name}: class {d['class_match']['mean']:.3f}, attribute {d['attribute_match']['mean']:.3f}"
              for name, d in h["each"].items()]
    lines.append(f"variety within a caption / real images of the class: {ci(v['ratio_to_class'])} (real images "
                 f"fitting the caption: {v['real_fitting_images_ratio']['mean']:.3f})")
    return "\n".join(lines)

"""Scoring a pix2pix generator on the held-out scenes (the embedded label maps -> scenes), each score with a 95%
bootstrap interval (images resampled):

- FCN-score, the paper's protocol: a segmenter trained on the *real* training scenes (pygan.metrics.segmentation,
  cached) labels the scenes generated from the held-out label maps; pixel accuracy, mean class accuracy and class
  IoU against those label maps, beside the same segmenter on the real held-out scenes (the ceiling);
- realism: KID and the Fréchet distance between the generated and the real held-out scenes in a fixed feature
  space — the per-channel means and deviations of that segmenter's features (pygan.metrics.segmentation
  .feature_statistics) —, beside the same distances from real training scenes to the held-out ones (the floor: two
  real samples);
- L1 and PSNR to the paired truth: reported, not a target (the truth is one of many scenes of a label map, and
  L1 rewards their blurred average).
Test-time dropout, when the generator keeps it, draws from a fixed seed: a score is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pygan.metrics import bootstrap_frechet_distance, kernel_distance, mean_ci
from pygan.metrics.pixels import per_image_l1, per_image_psnr
from pygan.metrics.segmentation import cached_segmenter, confusions, feature_statistics, predict, segmentation_scores
from pygan.pix2pix.data import ScenePairs
from pygan.pix2pix.models import UnetGenerator
from pygan.training import CheckpointFormat, eval_mode

CHECKPOINT = CheckpointFormat("pygan-pix2pix-checkpoint-v1", "pix2pix")
read_checkpoint = CHECKPOINT.read
KID_SUBSET = 250   # images per KID subset (of the 500 held-out scenes)


def load_generator(path: str, device="cpu") -> tuple[UnetGenerator, dict]:
    """(the generator in eval mode — the EMA's when the run kept one —, the checkpoint)."""
    ckpt = read_checkpoint(path)
    G = UnetGenerator(**ckpt["G_config"])
    G.load_state_dict(CHECKPOINT.generator_state(ckpt))
    return G.to(device).eval(), ckpt


@torch.no_grad()
def translate_all(G, x: Tensor, batch: int = 64, seed: int = 0) -> Tensor:
    """G(x) in batches, on the CPU in float32; dropout left on by the generator draws from `seed`."""
    p = next(G.parameters())
    with torch.random.fork_rng(devices=[p.device] if p.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return torch.cat([G(x[i:i + batch].to(p.device, p.dtype)).float().cpu() for i in range(0, len(x), batch)])


def _realism(f_fake: np.ndarray, f_real: np.ndarray, n_boot: int) -> dict:
    kid, spread = kernel_distance(f_fake, f_real, subset_size=min(KID_SUBSET, len(f_fake), len(f_real)))
    fd, lo, hi = bootstrap_frechet_distance(f_fake, f_real, n_boot, seed=0)
    return {"kid": kid, "kid_spread": spread, "frechet": {"mean": fd, "ci95": [lo, hi]}}


def fcn_segmenter(pairs: ScenePairs):
    """The segmenter of the FCN-score: trained on the real training scenes (cached after the first use)."""
    t = pairs.train
    return cached_segmenter(t.images, t.labels, t.num_classes, t.ignore_index)


def evaluate(G, pairs: ScenePairs, n_boot: int = 1000) -> dict:
    """The scores above for generator G (label maps in class colours -> scenes) on `pairs`' held-out scenes."""
    S = fcn_segmenter(pairs)
    test = pairs.test
    with eval_mode(G):
        fake = translate_all(G, pairs.test_a)

    def fcn(images):
        pred, _ = predict(S, images)
        return segmentation_scores(confusions(pred, test.labels, test.num_classes, test.ignore_index), test.classes,
                                   n_boot)

    f_real, f_fake = feature_statistics(S, test.images), feature_statistics(S, fake)
    f_other = feature_statistics(S, pairs.train.images[:len(test)])
    return {"images": len(test),
            "fcn": fcn(fake), "fcn_real": fcn(test.images),
            "realism": _realism(f_fake, f_real, n_boot), "realism_real": _realism(f_other, f_real, n_boot),
            "l1": mean_ci(per_image_l1(fake, test.images), n_boot),
            "psnr": mean_ci(per_image_psnr(fake, test.images), n_boot)}


def _ci(d: dict, fmt: str = ".3f") -> str:
    return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]"


def format_metrics(m: dict) -> str:
    f, r = m["fcn"], m["fcn_real"]
    lines = [f"held-out scenes: {m['images']} (95% bootstrap intervals; in brackets after '/': real scenes)",
             f"  FCN pixel accuracy   {_ci(f['pixel_accuracy'])}  / {r['pixel_accuracy']['mean']:.3f}",
             f"  FCN class accuracy   {_ci(f['class_accuracy'])}  / {r['class_accuracy']['mean']:.3f}",
             f"  FCN class IoU        {_ci(f['mean_iou'])}  / {r['mean_iou']['mean']:.3f}",
             f"  KID                  {m['realism']['kid']:.4f} (spread {m['realism']['kid_spread']:.4f})"
             f"  / real vs real {m['realism_real']['kid']:.4f}",
             f"  Frechet distance     {_ci(m['realism']['frechet'], '.2f')}  / real vs real "
             f"{m['realism_real']['frechet']['mean']:.2f}",
             f"  L1 to the truth      {_ci(m['l1'])}  (reported, not a target)",
             f"  PSNR to the truth    {_ci(m['psnr'], '.2f')} dB"]
    return "\n".join(lines)

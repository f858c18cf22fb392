"""Scoring a segmenter on held-out images, each score with a 95% percentile-bootstrap interval:

- pixel accuracy, mean IoU and per-class IoU (over the pixels that are not ignored; resampling images and
  recomputing the pooled confusion matrix; mIoU averages the classes that occur);
- shape consistency: the share of objects whose pixels are predicted >= 90% as one class (`consistent`), and as
  their own class (`consistent_correct`); objects are the placed digits of the embedded scenes, the connected
  regions of each class but 0 (the background) otherwise; resampling objects;
- the adversary's accuracy on (image, ground truth) vs (image, prediction): a sanity check that it learns.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

from pygan.metrics import mean_ci
from pygan.metrics.segmentation import confusions, predict, segmentation_scores
from pygan.training import CheckpointFormat, eval_mode
from pygan.segmentation.models import Adversary, Segmenter, ground_truth_map

CHECKPOINT = CheckpointFormat("pygan-segmentation-checkpoint-v1", "segmentation")
read_checkpoint = CHECKPOINT.read
CONSISTENT = 0.9   # an object is consistent when this share of its pixels gets one class



def load_models(path: str, device="cpu"):
    """(segmenter, adversary, checkpoint): both in eval mode, the segmenter's EMA when trained with one."""
    ckpt = read_checkpoint(path)
    S, D = Segmenter(**ckpt["G_config"]), Adversary(**ckpt["D_config"])
    S.load_state_dict(CHECKPOINT.generator_state(ckpt))
    D.load_state_dict(ckpt["D"])
    return S.to(device).eval(), D.to(device).eval(), ckpt




def objects(labels: Tensor, instances: Tensor | None, ignore_index: int) -> list[tuple[int, Tensor, int]]:
    """(image index, boolean mask, true class) of every object: the numbered instances when given, else the
    8-connected regions of each class but 0 (the background)."""
    from scipy import ndimage

    out = []
    for i in range(len(labels)):
        if instances is not None:
            inst = instances[i]
            for j in inst.unique().tolist():
                if j > 0:
                    m = inst == j
                    out.append((i, m, int(labels[i][m][0])))
            continue
        lab = labels[i].numpy()
        for c in np.unique(lab):
            if c == 0 or c == ignore_index:
                continue
            regions, count = ndimage.label(lab == c, structure=np.ones((3, 3)))
            out.extend((i, torch.from_numpy(regions == r), int(c)) for r in range(1, count + 1))
    return out


def shape_consistency(pred: Tensor, labels: Tensor, instances: Tensor | None, ignore_index: int,
                      n_boot: int = 1000) -> dict:
    consistent, correct = [], []
    for i, mask, true in objects(labels, instances, ignore_index):
        counts = torch.bincount(pred[i][mask])
        top = int(counts.argmax())
        one = float(counts[top]) >= CONSISTENT * int(mask.sum())
        consistent.append(one)
        correct.append(one and top == true)
    return {"objects": len(consistent), "consistent": mean_ci(consistent, n_boot),
            "consistent_correct": mean_ci(correct, n_boot)}


def is_real(logits: Tensor, loss: str) -> Tensor:
    """The adversary's decision 'ground truth' from its logits under the loss kind (least squares: nearer 1)."""
    return logits > (0.5 if loss == "least_squares" else 0.0)


@torch.no_grad()
def adversary_accuracy(D, images: Tensor, labels: Tensor, probs: Tensor, ignore_index: int, loss: str,
                       tau: float, batch: int = 256, n_boot: int = 1000) -> dict:
    """Share of right calls on (image, encoded ground truth) and (image, prediction) of every held-out image."""
    p = next(D.parameters())
    right = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(p.device, p.dtype)
        fake = probs[i:i + batch].to(p.device, p.dtype)
        real = ground_truth_map(labels[i:i + batch].to(p.device), fake, ignore_index, D.encoding, tau)
        right += [is_real(D(x, real).float(), loss).cpu(), ~is_real(D(x, fake).float(), loss).cpu()]
    return mean_ci(torch.cat(right).double().numpy(), n_boot)


def evaluate(S, data, D=None, loss: str = "non_saturating", tau: float = 0.9, n_boot: int = 1000) -> dict:
    """The scores above for segmenter S (and adversary D, optional) on `data` (a pygan.segmentation SegData)."""
    with eval_mode(S):
        pred, probs = predict(S, data.images)
    out = {"images": len(data), **segmentation_scores(confusions(pred, data.labels, data.num_classes,
                                                                 data.ignore_index), data.classes, n_boot),
           "shape": shape_consistency(pred, data.labels, data.instances, data.ignore_index, n_boot)}
    if D is not None:
        with eval_mode(D):
            out["adversary_accuracy"] = adversary_accuracy(D, data.images, data.labels, probs, data.ignore_index,
                                                           loss, tau, n_boot=n_boot)
    return out


def _fmt(m: dict) -> str:
    return f"{m['mean']:.4f} [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"


def format_metrics(m: dict) -> str:
    lines = [f"held-out images: {m['images']}, objects: {m['shape']['objects']} (95% bootstrap intervals)",
             f"  pixel accuracy      {_fmt(m['pixel_accuracy'])}",
             f"  mean IoU            {_fmt(m['mean_iou'])}",
             f"  shape consistency   {_fmt(m['shape']['consistent'])}  (objects >= {CONSISTENT:.0%} one class)",
             f"  ... and correct     {_fmt(m['shape']['consistent_correct'])}"]
    if "adversary_accuracy" in m:
        lines.append(f"  adversary accuracy  {_fmt(m['adversary_accuracy'])}")
    lines.append("  IoU per class: " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in m["class_iou"].items()))
    return "\n".join(lines)

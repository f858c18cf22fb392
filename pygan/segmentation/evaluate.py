"""Scoring a segmenter on held-out images, each score with a 95% percentile-bootstrap interval:

- pixel accuracy, mean IoU and per-class IoU (over the pixels that are not ignored; resampling images and
  recomputing the pooled confusion matrix; mIoU averages the classes that occur);
- shape consistency: the share of objects whose pixels are predicted >= 90% as one class (`consistent`), and as
  their own class (`consistent_correct`); objects are the placed digits of the embedded scenes, the connected
  regions of each class but 0 (the background) otherwise; resampling objects;
- the adversary's accuracy on (image, ground truth) vs (image, prediction): a sanity check that it learns.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from pygan.metrics import mean_ci, percentile_ci
from pygan.training import CheckpointFormat, eval_mode
from pygan.segmentation.data import palette
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




@torch.no_grad()
def predict(S, images: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """(labels (N, H, W) int64, probabilities (N, K, H, W)) of the segmenter S (used as it is: call .eval())."""
    p = next(S.parameters())
    probs = torch.cat([S(images[i:i + batch].to(p.device, p.dtype)).float().softmax(1).cpu()
                       for i in range(0, len(images), batch)])
    return probs.argmax(1), probs


def confusions(pred: Tensor, labels: Tensor, k: int, ignore_index: int) -> np.ndarray:
    """(N, k, k) per-image confusion matrices, [true, predicted], over the pixels not ignored."""
    n = len(labels)
    keep = labels != ignore_index
    img = torch.arange(n)[:, None, None].expand_as(labels)
    flat = (img[keep] * k + labels[keep]) * k + pred[keep]
    return torch.bincount(flat, minlength=n * k * k).reshape(n, k, k).numpy()


def _iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class from (..., k, k) confusions; NaN for a class absent from both truth and prediction."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    union = conf.sum(-1) + conf.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def segmentation_scores(conf: np.ndarray, classes: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Pixel accuracy, mIoU and per-class IoU of per-image confusions (N, k, k), with image-bootstrap intervals."""
    n, k, _ = conf.shape
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(np.float64)
    boot = (weights @ conf.reshape(n, k * k)).reshape(n_boot, k, k)
    total = conf.sum(0)
    acc = lambda c: np.trace(c, axis1=-2, axis2=-1) / c.sum((-2, -1))  # noqa: E731
    iou, boot_iou = _iou(total), _iou(boot)
    with warnings.catch_warnings():  # resamples without some class: left out of its interval
        warnings.simplefilter("ignore", RuntimeWarning)
        boot_miou = np.nanmean(boot_iou, axis=1)
        lo, hi = np.nanpercentile(boot_iou, [2.5, 97.5], axis=0)
    per_class = {}
    for c, name in enumerate(classes):
        if not np.isnan(iou[c]):
            per_class[name] = {"mean": float(iou[c]), "ci95": [float(lo[c]), float(hi[c])]}
    return {"pixel_accuracy": {"mean": float(acc(total)), "ci95": percentile_ci(acc(boot))},
            "mean_iou": {"mean": float(np.nanmean(iou)), "ci95": percentile_ci(boot_miou)}, "class_iou": per_class}


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



def colorize(labels: Tensor, ignore_index: int) -> Tensor:
    """(N, H, W) class indices to (N, 3, H, W) colours in [-1, 1] (the VOC colour map; ignored pixels white)."""
    pal = torch.from_numpy(palette()).float() / 127.5 - 1
    lab = labels.clamp(0, 255)
    out = pal[lab].permute(0, 3, 1, 2)
    return torch.where((labels == ignore_index)[:, None], torch.ones(()), out)

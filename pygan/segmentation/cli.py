"""The segmentation system's commands: `pygan train segmentation`, `pygan segment`, and `pygan eval` on its
checkpoints (its own name: `pygan eval-segmentation`)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from pygan.data.scenes import palette
from pygan.segmentation.data import load_split
from pygan.segmentation.evaluate import CHECKPOINT, evaluate, format_metrics, load_models
from pygan.segmentation.trainer import SegmentationTrainer
from pygan.training.cli import CheckpointCommand, CLIError, add_checkpoint_command, add_train_command


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "segmentation", SegmentationTrainer,
                      "adversarial semantic segmentation (Luc et al. 2016)",
                      "Train a segmenter with cross-entropy + adv_weight x an adversarial loss (--adv-weight 0: the "
                      "plain segmenter). With no options: the embedded digit scenes (background + 10 digit classes, "
                      "48x48), finishing in minutes on a CPU, then scored on the held-out scenes.",
                      report=format_metrics)
    what = "`pygan train segmentation`"
    e = CheckpointCommand("eval-segmentation", "score a trained segmenter on its held-out images",
                          "Pixel accuracy, mean and per-class IoU, shape consistency and the adversary's accuracy, "
                          "with bootstrap intervals, on the held-out images of the training data.", _eval, what)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    s = add_checkpoint_command(commands, "segment", "segment images with a trained segmenter",
                               "Write, per image, a label PNG (palette PNG: pixel value = class, VOC colours) and a "
                               "colour overlay, both at the image's own size.", _segment, what)
    s.add_argument("images", nargs="+", help="input images (png, jpg, ...)")
    s.add_argument("--out", default="segmented", help="output folder (default: segmented)")
    return {CHECKPOINT.name: {"eval": e}}


def _eval(a) -> int:
    S, D, ckpt = load_models(a.checkpoint)
    cfg = ckpt["config"]
    test = load_split(cfg["data"], cfg["labels"], cfg["classes"], cfg["size"], cfg["ignore_index"],
                      cfg["val_fraction"]).test
    m = {"step": ckpt["step"], "adv_weight": cfg["adv_weight"], **evaluate(S, test, D, cfg["loss"], cfg["tau"])}
    print(json.dumps(m, indent=1) if a.json else f"checkpoint {a.checkpoint} (step {m['step']})\n" + format_metrics(m))
    return 0


def _segment(a) -> int:
    S, _, ckpt = load_models(a.checkpoint)
    size, m = ckpt["config"]["size"], 2 ** S.depth
    pal = palette()
    missing = [p for p in a.images if not os.path.isfile(p)]
    if missing:  # before the output folder exists: a failed call leaves nothing behind
        raise CLIError(f"image not found: {missing[0]}")
    os.makedirs(a.out, exist_ok=True)
    for path in a.images:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if S.channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise CLIError(f"cannot read image {path}: {e}") from None
        w, h = im.size
        # the shorter side at the training size (the scale the model knows), both sides multiples of 2**depth
        s = size / min(w, h)
        net = im.resize((max(m, round(w * s / m) * m), max(m, round(h * s / m) * m)), Image.Resampling.BICUBIC)
        a_ = np.asarray(net, np.float32)
        x = torch.from_numpy((a_[None] if a_.ndim == 2 else a_.transpose(2, 0, 1)) / 127.5 - 1)[None]
        with torch.no_grad():
            logits = F.interpolate(S(x), size=(h, w), mode="bilinear", align_corners=False)
        labels = logits.argmax(1)[0].numpy().astype(np.uint8)
        stem = os.path.join(a.out, os.path.splitext(os.path.basename(path))[0])
        out = Image.fromarray(labels, "P")
        out.putpalette(pal.flatten().tolist())
        out.save(stem + "_labels.png")
        rgb = np.asarray(im.convert("RGB"), np.float32)
        colour = pal[labels].astype(np.float32)
        blend = np.where((labels > 0)[..., None], 0.5 * rgb + 0.5 * colour, rgb)  # class 0 (background) unpainted
        Image.fromarray(blend.round().astype(np.uint8)).save(stem + "_overlay.png")
        print(stem + "_labels.png")
    return 0


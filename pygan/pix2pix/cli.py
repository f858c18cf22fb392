"""The pix2pix system's commands: `pygan train pix2pix`, and `pygan eval` / `pygan translate` on its checkpoints
(its own name for eval: `pygan eval-pix2pix`)."""

from __future__ import annotations

import json
import os

from pygan._io import save_grid
from pygan.data import read_image
from pygan.pix2pix.data import scene_pairs
from pygan.pix2pix.evaluate import CHECKPOINT, evaluate, format_metrics, load_generator, translate_all
from pygan.pix2pix.trainer import Pix2PixTrainer, objective
from pygan.training.cli import CheckpointCommand, CLIError, add_train_command


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "pix2pix", Pix2PixTrainer, "pix2pix (paired image-to-image translation)",
                      "Train pix2pix (a U-Net generator, a conditional PatchGAN, L1 + cGAN) on paired images. "
                      "With no options: the embedded label maps -> digit scenes at 48x48, finishing in minutes on a "
                      "CPU, then scored by the FCN-score, KID and L1 on the held-out scenes.", report=format_metrics)
    what = "`pygan train pix2pix`"
    e = CheckpointCommand("eval-pix2pix", "score a pix2pix model trained on the embedded scenes",
                          "FCN-score (pixel and class accuracy, class IoU of a segmenter trained on real scenes), "
                          "KID and Fréchet distance to the real held-out scenes, L1 and PSNR to the truth, with "
                          "bootstrap intervals.", _eval, what)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t = CheckpointCommand("translate", "translate images with a trained pix2pix generator",
                          "Translate images of any size, each to an image of its own size (padded to the network's "
                          "multiple and cropped back): NAME_translated.png in the output folder.", _translate, what)
    t.add_argument("images", nargs="+", help="input images (png, jpg, ...)")
    t.add_argument("--out", default="translated", help="output folder (default: translated)")
    t.add_argument("--seed", type=int, default=0, help="seed of the test-time dropout (default 0)")
    return {CHECKPOINT.name: {"eval": e, "translate": t}}


def _eval(a) -> int:
    G, ckpt = load_generator(a.checkpoint)
    cfg = ckpt["config"]
    if cfg["data"] != "scenes" or cfg["direction"] != "AtoB":
        raise CLIError("pygan eval-pix2pix scores models trained on the embedded scenes from label maps (AtoB); the "
                       "truth of other data is not known to it")
    m = {"step": ckpt["step"], "objective": objective(Pix2PixTrainer.config_class(**cfg)),
         **evaluate(G, scene_pairs(cfg["size"]))}
    print(json.dumps(m, indent=1) if a.json else f"checkpoint {a.checkpoint} (step {m['step']}, {m['objective']})\n"
          + format_metrics(m))
    return 0


def _translate(a) -> int:
    G, _ = load_generator(a.checkpoint)
    missing = [p for p in a.images if not os.path.isfile(p)]
    if missing:  # before the output folder exists: a failed call leaves nothing behind
        raise CLIError(f"image not found: {missing[0]}")
    inputs = [(p, read_image(p, G.in_channels)) for p in a.images]
    os.makedirs(a.out, exist_ok=True)
    for path, x in inputs:
        y = translate_all(G, x, seed=a.seed)
        out = os.path.join(a.out, os.path.splitext(os.path.basename(path))[0] + "_translated.png")
        save_grid(y, out, pad=0)
        print(out)
    return 0

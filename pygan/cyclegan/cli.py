"""The CycleGAN system's commands: `pygan train cyclegan`, and `pygan eval` / `pygan translate` on its checkpoints
(its own name for eval: `pygan eval-cyclegan`)."""

from __future__ import annotations

import json
import os

import torch

from pygan._io import save_grid
from pygan.cyclegan.data import load_domains
from pygan.cyclegan.evaluate import CHECKPOINT, evaluate, format_metrics, load_generators
from pygan.cyclegan.trainer import CycleGANTrainer
from pygan.data import read_image
from pygan.parts import at_any_size
from pygan.training.cli import CheckpointCommand, CLIError, add_train_command, positive


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "cyclegan", CycleGANTrainer, "CycleGAN (unpaired image-to-image translation)",
                      "Train CycleGAN on two unpaired domains. With no options: the embedded digit domains (white "
                      "digits <-> thick blue digits on cream) at 32x32, finishing in minutes on a CPU, then scored "
                      "against the known true translation.", report=format_metrics)
    what = "`pygan train cyclegan`"
    e = CheckpointCommand("eval-cyclegan", "score a CycleGAN trained on the embedded domains",
                          "Content kept, translation error against the true translation and cycle error, both "
                          "directions, with bootstrap intervals.", _eval, what)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t = CheckpointCommand("translate", "translate images with a trained CycleGAN",
                          "Translate images to the other domain, each at its own size (padded to the generator's "
                          "multiple of 4 and cropped back): NAME_a2b.png / NAME_b2a.png.", _translate, what)
    t.add_argument("images", nargs="+", help="input images (png, jpg, ...)")
    t.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="a2b (default) or b2a")
    t.add_argument("--out", default="translated", help="output folder (default: translated)")
    t.add_argument("--size", type=int, help="first resize (shorter side) and centre-crop each image to size x size "
                                            "(default: translate it at its own size)")
    return {CHECKPOINT.name: {"eval": e, "translate": t}}


def _eval(a) -> int:
    G, ckpt = load_generators(a.checkpoint)
    cfg = ckpt["config"]
    if cfg["data_a"] != "digits":
        raise CLIError("pygan eval-cyclegan scores models trained on the embedded digit domains (the true "
                       "translation of other data is not known)")
    m = {"step": ckpt["step"], **evaluate(G, load_domains("digits", "digits", cfg["size"]))}
    print(json.dumps(m, indent=1) if a.json else f"checkpoint {a.checkpoint} (step {m['step']})\n" + format_metrics(m))
    return 0


def _translate(a) -> int:
    G, _ = load_generators(a.checkpoint)
    if a.size is not None:
        positive("--size", a.size)
    missing = [p for p in a.images if not os.path.isfile(p)]
    if missing:  # before the output folder exists: a failed call leaves nothing behind
        raise CLIError(f"image not found: {missing[0]}")
    inputs = [(path, read_image(path, G.a2b.channels, a.size)) for path in a.images]
    os.makedirs(a.out, exist_ok=True)
    g = getattr(G, a.direction)
    for path, x in inputs:
        with torch.no_grad():
            y = at_any_size(g, x, 4)
        out = os.path.join(a.out, os.path.splitext(os.path.basename(path))[0] + f"_{a.direction}.png")
        save_grid(y, out, pad=0)
        print(out)
    return 0

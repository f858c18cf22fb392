"""The text-to-image system's commands: `pygan train text2image`, and `pygan eval` / `pygan sample` on its
checkpoints (its own names: `pygan eval-text2image`, `pygan generate`)."""

from __future__ import annotations

import json
import os
import sys

from pygan._io import save_grid
from pygan.text2image.data import load_captioned
from pygan.text2image.evaluate import CHECKPOINT, evaluate, format_metrics, generate, load_model
from pygan.text2image.trainer import Text2ImageTrainer
from pygan.training.cli import CheckpointCommand, CLIError, add_train_command, positive


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "text2image", Text2ImageTrainer,
                      "text-to-image GAN (Reed et al. 2016: GAN-CLS + GAN-INT)",
                      "Train a text-conditional GAN. With no options: the embedded captioned digits at 16x16 (captions "
                      "from each digit's class, stroke thickness and slant), finishing in minutes on a CPU, then "
                      "scored: class and attribute match on held-out captions and on combinations never trained on, "
                      "and variety within a caption.", report=format_metrics)
    what = "`pygan train text2image`"
    e = CheckpointCommand("eval-text2image", "score a text-to-image model trained on the embedded digits",
                          "Class match, attribute match (seen and held-out combinations) and variety within a caption, "
                          "with bootstrap intervals.", _eval, what)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    g = CheckpointCommand("generate", "images from a caption with a trained text-to-image model",
                          "Generate --n images of a caption into one grid image.", _generate, what)
    g.add_argument("caption", help='the caption, e.g. "a thin three"')
    g.add_argument("--n", type=int, default=16, help="images to generate (default 16)")
    g.add_argument("--out", default="grid.png", help="output image (default grid.png)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument("--scale", type=int, default=4, help="nearest-neighbour enlargement of the grid (default 4)")
    return {CHECKPOINT.name: {"eval": e, "sample": g}}


def _eval(a) -> int:
    G, text, ckpt = load_model(a.checkpoint)
    cfg = ckpt["config"]
    if cfg["data"] != "digits":
        raise CLIError("pygan eval-text2image scores models trained on the embedded captioned digits (the "
                       "attributes of other images are not known)")
    m = {"step": ckpt["step"], **evaluate(G, text, load_captioned("digits", cfg["size"]))}
    print(json.dumps(m, indent=1) if a.json else f"checkpoint {a.checkpoint} (step {m['step']})\n" + format_metrics(m))
    return 0


def _generate(a) -> int:
    positive("--n", a.n)
    positive("--scale", a.scale)
    if not a.caption.strip():
        raise CLIError("caption is empty: give a sentence, e.g. \"a thin three\"")
    G, text, _ = load_model(a.checkpoint)
    try:
        emb = text.embed([a.caption])
    except ValueError as e:
        raise CLIError(str(e)) from None
    unknown = text.tokenizer.unknown(a.caption)
    if unknown:
        print(f"pygan: warning: words not in the training captions (read as unknown): {', '.join(unknown)}",
              file=sys.stderr)
    images = generate(G, emb.expand(a.n, -1), a.seed)
    if os.path.dirname(a.out):
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
    save_grid(images, a.out, scale=a.scale)
    print(a.out)
    return 0

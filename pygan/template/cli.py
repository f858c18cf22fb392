"""The template's commands: `pygan train template`, and `pygan eval` on its checkpoints (`pygan eval-template`)."""

from __future__ import annotations

import json

from pygan.template.evaluate import CHECKPOINT, load_generator
from pygan.template.evaluate import evaluate as score
from pygan.template.trainer import TemplateTrainer
from pygan.training.cli import CheckpointCommand, add_train_command


def _report(m: dict) -> str:
    return f"pixel Fréchet distance to the held-out digits: {m['pixel_frechet_distance']:.2f}"


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "template", TemplateTrainer, "the template system (a minimal GAN on digits)",
                      "Train the template system: the smallest complete pygan system, the starting point of a new "
                      "one (docs/add-a-system.md). With no options: 300 steps on the embedded digits at 16x16, then "
                      "the pixel Fréchet distance of its samples to the held-out digits.", report=_report)
    e = CheckpointCommand("eval-template", "score a template model", "The pixel Fréchet distance of its samples to "
                          "the held-out digits.", _eval, "`pygan train template`")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return {CHECKPOINT.name: {"eval": e}}


def _eval(a) -> int:
    G, ckpt = load_generator(a.checkpoint)
    m = {"step": ckpt["step"], **score(G)}
    print(json.dumps(m, indent=1) if a.json else _report(m))
    return 0

"""The template's command: `pygan train template`."""

from __future__ import annotations

from pygan.template.trainer import TemplateTrainer
from pygan.training.cli import add_train_command


def register(train_commands, commands) -> None:
    add_train_command(train_commands, "template", TemplateTrainer, "the template system (a minimal GAN on digits)",
                      "Train the template system: the smallest complete pygan system, the starting point of a new "
                      "one (docs/add-a-system.md). With no options: 300 steps on the embedded digits at 16x16, then "
                      "the pixel Fréchet distance of its samples to the held-out digits.",
                      report=lambda m: f"pixel Fréchet distance to held-out digits: {m['pixel_frechet_distance']:.2f}")

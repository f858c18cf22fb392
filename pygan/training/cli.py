"""What every system's commands share: `pygan train <system>` generated from the system's config and trainer, the
commands that use a trained model (its checkpoint the first argument; CheckpointCommand: the ones `pygan eval`,
`sample` and `translate` reach by the checkpoint's kind), and the one-line error of bad input."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from pygan.training.config import add_options, given


class CLIError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def positive(name: str, value: int) -> int:
    if value < 1:
        raise CLIError(f"{name} must be >= 1, got {value}")
    return value


def add_train_command(train_commands, name: str, trainer_class: type, help: str, description: str,
                      report: Callable[[dict], str] | None = None) -> argparse.ArgumentParser:
    """`pygan train <name>`: one option per field of trainer_class.config_class, plus --threads and --resume;
    `report(metrics)` renders what `finish()` returned."""
    p = train_commands.add_parser(name, help=help, description=description)
    add_options(p, trainer_class.config_class)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's default; on a busy machine 1 can be much faster)")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its checkpoint.pt exactly; options given here override the saved ones "
                        "(e.g. --steps to train longer)")
    p.set_defaults(run=lambda args: _train(args, trainer_class, report))
    return p


def _train(args, trainer_class: type, report) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(positive("--threads", args.threads))
    options = given(args, trainer_class.config_class)
    if args.resume:
        trainer = trainer_class.resume(args.resume, **options)
        if trainer.is_main:
            print(f"resuming {args.resume} at step {trainer.step}", file=sys.stderr)
    else:
        trainer = trainer_class(trainer_class.config_class(**options))
    metrics = trainer.train()
    if not trainer.is_main:  # under torchrun: rank 0 reports
        return 0
    print(f"checkpoint: {trainer.checkpoint_path}")
    if metrics and report is not None:
        print(report(metrics))
    return 0


def add_checkpoint_command(commands, name: str, help: str, description: str, run: Callable,
                           what: str = "`pygan train`") -> argparse.ArgumentParser:
    """`pygan <name> CHECKPOINT`, a command of the system's own (for `pygan eval` / `sample` / `translate`, which
    the checkpoint's kind dispatches, see CheckpointCommand)."""
    p = commands.add_parser(name, help=help, description=description)
    p.add_argument("checkpoint", help=f"a checkpoint.pt written by {what}")
    p.set_defaults(run=run)
    return p


class CheckpointCommand(argparse.ArgumentParser):
    """A system's `eval`, `sample` or `translate`: what `pygan <command> CHECKPOINT [options]` runs when CHECKPOINT is
    of the system's kind (pygan.cli reads the kind, then parses the arguments with this parser). A system's
    register() returns them as {its CHECKPOINT.name: {command: CheckpointCommand}}. `name` is the system's own
    name for the command, which stays a command where it differs (`pygan eval-sr`, an alias); `help` is its line in
    `pygan <command> --help`; `what` writes such checkpoints."""

    def __init__(self, name: str, help: str, description: str, run: Callable, what: str):
        self.value_options: set[str] = set()  # option strings that take a value: the checkpoint is not one of them
        super().__init__(prog=f"pygan {name}", description=description)
        self.name, self.help, self.what = name, help, what
        self.add_argument("checkpoint", help=f"a checkpoint.pt written by {what}")
        self.set_defaults(run=run)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.nargs != 0:
            self.value_options.update(action.option_strings)
        return action

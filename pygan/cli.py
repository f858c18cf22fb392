"""The `pygan` command: each GAN system registers its commands (`pygan train <system>` and its own); errors in
user input end with one line, not a traceback, and warnings print as one `pygan: warning:` line."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from pygan.data import DataError
from pygan.systems import SYSTEMS
from pygan.training import CheckpointError, TrainingDiverged
from pygan.training.cli import CLIError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pygan", description="Train and use GANs (pygan).")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model", description="Train a model.")
    train_commands = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in SYSTEMS:
        importlib.import_module(f"pygan.{name}.cli").register(train_commands, commands)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pygan: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except (CLIError, DataError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError,
                PermissionError, IsADirectoryError) as e:
            print(f"pygan: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("pygan: interrupted (the last checkpoint is intact)", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())

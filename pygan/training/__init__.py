"""The shared training core every GAN system stands on: the config base (options declared once, the command line
generated from them), the trainer base (loop, progress, JSONL log, optimizer steps, learning rates, EMA, atomic
checkpoints and exact resume, stop on a non-finite loss, AMP, DDP, the G/D pair, samples, curves, metrics), the
checkpoint format object, module modes (`frozen`, `eval_mode`), the named learning-rate schedules, BatchNorm
recalibration and the `pygan train` command runner."""

from pygan.training import schedule
from pygan.training.batch_norm import recalibrate_batch_norm
from pygan.training.checkpoint import CheckpointError, CheckpointFormat, read_checkpoint_format
from pygan.training.config import DataConfig, TrainConfig, default, option
from pygan.training.curves import plot_curves
from pygan.training.modes import eval_mode, frozen
from pygan.training.trainer import TrainerBase, TrainingDiverged, ema_update, grad_norm, pick_device

__all__ = ["schedule", "recalibrate_batch_norm", "CheckpointError", "CheckpointFormat", "read_checkpoint_format",
           "DataConfig", "TrainConfig", "default", "option", "plot_curves", "eval_mode", "frozen", "TrainerBase",
           "TrainingDiverged", "ema_update", "grad_norm", "pick_device"]

"""The shared training core every GAN system stands on: the config base (options declared once, the command line
generated from them), the trainer base (loop, progress, JSONL log, atomic checkpoints and exact resume, stop on a
non-finite loss, AMP, EMA, DDP, the G/D pair), BatchNorm recalibration, the loss-curve plot and the `pygan train` command runner."""

from pygan.training.batch_norm import recalibrate_batch_norm
from pygan.training.checkpoint import CheckpointError, read_checkpoint, read_checkpoint_format
from pygan.training.config import DataConfig, TrainConfig, default, option
from pygan.training.curves import plot_curves
from pygan.training.trainer import TrainerBase, TrainingDiverged, ema_update, grad_norm, pick_device

__all__ = ["CheckpointError", "read_checkpoint", "read_checkpoint_format", "DataConfig", "TrainConfig", "default",
           "option", "plot_curves", "TrainerBase", "TrainingDiverged", "ema_update", "grad_norm", "pick_device",
           "recalibrate_batch_norm"]

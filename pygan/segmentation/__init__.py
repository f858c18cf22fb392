"""Adversarial semantic segmentation (Luc et al. 2016): a fully convolutional segmenter trained with per-pixel
cross-entropy plus an adversarial term from a network that tells ground-truth label maps from predicted ones —
models, data (the embedded digit scenes, or image and label-map folders), trainer, evaluation and its commands."""

from pygan.data.scenes import SegData, Split, digit_scenes, palette
from pygan.segmentation.data import label_folder, load_split, read_label_map
from pygan.segmentation.evaluate import evaluate, load_models, read_checkpoint
from pygan.segmentation.models import ENCODINGS, Adversary, Segmenter, encode, ground_truth_map, soften
from pygan.segmentation.trainer import SegmentationConfig, SegmentationTrainer

__all__ = ["SegData", "Split", "digit_scenes", "label_folder", "load_split", "palette", "read_label_map", "evaluate",
           "load_models", "read_checkpoint", "ENCODINGS", "Adversary", "Segmenter", "encode", "ground_truth_map",
           "soften", "SegmentationConfig", "SegmentationTrainer"]

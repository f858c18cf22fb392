"""pix2pix (Isola et al. 2017): paired image-to-image translation — the U-Net generator, the conditional PatchGAN,
L1 + cGAN, data (folders of pairs, or the embedded label maps -> digit scenes), trainer, the FCN-score evaluation
and its commands."""

from pygan.pix2pix.data import ScenePairs, scene_pairs
from pygan.pix2pix.evaluate import CHECKPOINT, evaluate, load_generator, read_checkpoint, translate_all
from pygan.pix2pix.models import UnetGenerator
from pygan.pix2pix.trainer import Pix2PixConfig, Pix2PixTrainer

__all__ = ["ScenePairs", "scene_pairs", "CHECKPOINT", "evaluate", "load_generator", "read_checkpoint",
           "translate_all", "UnetGenerator", "Pix2PixConfig", "Pix2PixTrainer"]

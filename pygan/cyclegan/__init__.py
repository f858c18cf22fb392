"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation — models, data (two folders, or the embedded
digit domains with a known true translation), trainer, evaluation and its commands."""

from pygan.cyclegan.data import Domains, embedded_digits, load_domains, restyle
from pygan.cyclegan.evaluate import evaluate, load_generators, read_checkpoint
from pygan.cyclegan.models import Discriminators, Generators, ResnetGenerator
from pygan.cyclegan.trainer import CycleGANConfig, CycleGANTrainer

__all__ = ["Domains", "embedded_digits", "load_domains", "restyle", "evaluate", "load_generators",
           "read_checkpoint", "Discriminators", "Generators", "ResnetGenerator",
           "CycleGANConfig", "CycleGANTrainer"]

"""DCGAN (Radford et al. 2015), optionally class-conditional: models, trainer, evaluation and its commands."""

from pygan.dcgan.evaluate import load_generator, read_checkpoint, recalibrate_bn
from pygan.dcgan.models import DCGANDiscriminator, DCGANGenerator
from pygan.dcgan.trainer import DCGANConfig, DCGANTrainer, mean_pairwise_distance

__all__ = ["load_generator", "read_checkpoint", "recalibrate_bn", "DCGANDiscriminator", "DCGANGenerator",
           "DCGANConfig", "DCGANTrainer", "mean_pairwise_distance"]

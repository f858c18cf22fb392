"""Super-resolution with SRResNet / SRGAN (Ledig et al. 2017): models, data, PSNR / SSIM, the VGG content loss,
the trainer, evaluation, tiled upscaling and its commands."""

from pygan.sr.evaluate import evaluate_sr, format_table, generators_from_checkpoint, read_checkpoint
from pygan.sr.metrics import psnr, rgb_to_y, ssim
from pygan.sr.models import SRDiscriminator, SRResNet
from pygan.sr.trainer import SRConfig, SRTrainer
from pygan.sr.upscale import receptive_radius, upscale

__all__ = ["evaluate_sr", "format_table", "generators_from_checkpoint", "read_checkpoint", "psnr", "rgb_to_y",
           "ssim", "SRDiscriminator", "SRResNet", "SRConfig", "SRTrainer", "receptive_radius", "upscale"]

"""Super-resolution with SRResNet / SRGAN: data (pygan.sr.data), PSNR/SSIM (pygan.sr.metrics), the VGG content
loss (pygan.sr.vgg), the trainer (pygan.sr.train) and tiled upscaling (pygan.sr.upscale)."""

from pygan.sr.metrics import psnr, rgb_to_y, ssim
from pygan.sr.train import SRTrainConfig, SRTrainer, evaluate_sr, format_table, generators_from_checkpoint
from pygan.sr.upscale import receptive_radius, upscale

__all__ = ["psnr", "rgb_to_y", "ssim", "SRTrainConfig", "SRTrainer", "evaluate_sr", "format_table",
           "generators_from_checkpoint", "receptive_radius", "upscale"]

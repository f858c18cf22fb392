"""GAN models built from pygan's fused blocks, each exportable to stock PyTorch (`to_stock()`)."""

from pygan.models.dcgan import SIZES, DCGANDiscriminator, DCGANGenerator, check_size, dcgan_init_
from pygan.models.srgan import SCALES, ResidualBlock, SRDiscriminator, SRResNet, check_scale

__all__ = ["SIZES", "DCGANDiscriminator", "DCGANGenerator", "check_size", "dcgan_init_",
           "SCALES", "ResidualBlock", "SRDiscriminator", "SRResNet", "check_scale"]

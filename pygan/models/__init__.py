"""GAN models built from pygan's fused blocks, each exportable to stock PyTorch (`to_stock()`)."""

from pygan.models.dcgan import SIZES, DCGANDiscriminator, DCGANGenerator, check_size, dcgan_init_

__all__ = ["SIZES", "DCGANDiscriminator", "DCGANGenerator", "check_size", "dcgan_init_"]

"""GAN parts more than one system uses: the PatchGAN discriminator, the N(0, 0.02) init, the image history pool,
the segmenter, fully convolutional networks at any size. A part lives here as soon as a second system needs it,
never inside a system (tests/test_layout.py checks)."""

from pygan.parts.any_size import at_any_size
from pygan.parts.image_pool import ImagePool
from pygan.parts.init import gan_init_
from pygan.parts.patchgan import PatchDiscriminator, patch_receptive_field
from pygan.parts.segmenter import Segmenter

__all__ = ["at_any_size", "ImagePool", "gan_init_", "PatchDiscriminator", "patch_receptive_field", "Segmenter"]

"""pygan: fast, dependable GAN training for PyTorch.

Fused C++/CUDA kernels registered with the PyTorch dispatcher (torch.ops.pygan.*), drop-in modules (pygan.nn),
the GAN losses, and one package per GAN system (pygan.dcgan, pygan.sr) on a shared training core (pygan.training).
"""

from pygan._ext import build_info
from pygan import ops, nn, losses
from pygan.fuse import fold_bn, fuse
from pygan.ops.recompute import recompute_relu_outputs

__version__ = "0.1.0"
__all__ = ["build_info", "ops", "nn", "losses", "fuse", "fold_bn", "recompute_relu_outputs", "__version__"]

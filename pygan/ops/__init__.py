"""Fused operators. Each is a public function here, backed by torch.ops.pygan.* kernels (CPU and CUDA) with a
pure-PyTorch reference in pygan.ops.reference."""

from pygan.ops.batch_norm_act import batch_norm_act
from pygan.ops.bias_act import bias_act
from pygan.ops.gan_loss import gan_loss
from pygan.ops.instance_norm_act import instance_norm_act
from pygan.ops.sync_batch_norm_act import sync_batch_norm_act

__all__ = ["batch_norm_act", "bias_act", "gan_loss", "instance_norm_act", "sync_batch_norm_act"]

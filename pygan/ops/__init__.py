"""Fused operators. Each is a public function here, backed by torch.ops.pygan.* kernels (CPU and CUDA) with a
pure-PyTorch reference in pygan.ops.reference."""

from pygan.ops.batch_norm_act import batch_norm_act

__all__ = ["batch_norm_act"]

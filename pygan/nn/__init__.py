"""Drop-in modules whose parameters, buffers and state_dict keys are those of the stock torch.nn modules."""

from pygan.nn.batch_norm_act import BatchNormAct1d, BatchNormAct2d, BatchNormAct3d, convert_sync_batch_norm_act
from pygan.nn.conv_bn_act import Conv2dBNAct, ConvTranspose2dBNAct

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "BatchNormAct3d", "Conv2dBNAct", "ConvTranspose2dBNAct",
           "convert_sync_batch_norm_act"]

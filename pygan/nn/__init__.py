"""Drop-in modules whose parameters, buffers and state_dict keys are those of the stock torch.nn modules, and the
blocks pygan's models are built from (conv + BN + activation, conv + activation, instance norm + activation)."""

from pygan.nn.batch_norm_act import BatchNormAct1d, BatchNormAct2d, BatchNormAct3d
from pygan.nn.conv_act import Conv2dAct, conv_act
from pygan.nn.conv_bn_act import Conv2dBNAct, ConvTranspose2dBNAct, StockConvBNAct, conv_bn_act
from pygan.nn.instance_norm_act import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d
from pygan.nn.convert import FusableModel, convert_sync_batch_norm_act
from pygan.nn.norm_act import instance_norm_act_block

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "BatchNormAct3d", "Conv2dAct", "conv_act", "Conv2dBNAct",
           "ConvTranspose2dBNAct", "StockConvBNAct", "conv_bn_act", "InstanceNormAct1d", "InstanceNormAct2d",
           "InstanceNormAct3d", "FusableModel", "convert_sync_batch_norm_act", "instance_norm_act_block"]

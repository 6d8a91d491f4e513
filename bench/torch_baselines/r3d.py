"""torchvision's `r3d_18` (VideoResNet), module for module, with jaxvad's `R3D18` options.

torchvision cannot be installed beside the CPU torch wheel of the dev machine (it fails to
import), so this is a transcription of `torchvision/models/video/resnet.py` restricted to
r3d_18 (`BasicStem`, `BasicBlock`, `Conv3DSimple`, layers [2, 2, 2, 2]). Module and parameter
names, and so `state_dict()` keys, are torchvision's:

  stem.0.weight, stem.1.{weight,bias,running_mean,running_var,num_batches_tracked},
  layerX.Y.conv1.0.weight, layerX.Y.conv1.1.*, layerX.Y.conv2.0.weight, layerX.Y.conv2.1.*,
  layerX.0.downsample.0.weight, layerX.0.downsample.1.* (X = 2, 3, 4), fc.weight, fc.bias.

Beyond torchvision, as `jaxvad.models.r3d.R3D18`: `width` scales the channels (1.0 is
torchvision's), `temporal_strides=False` strides layer2..4 in H, W only, `per_frame_head=True`
pools over H, W only and classifies every frame (`[B, T, num_classes]`), and `in_channels`
sets the stem's input channels (1 for gray frames without pretrained weights). The defaults
are torchvision's r3d_18 exactly.

Layout: input `[B, C, T, H, W]` (NCDHW) as torchvision; `channels_last_3d` memory (the
permuted view of a `[B, T, H, W, C]` batch) runs without a copy.
"""

from __future__ import annotations

from torch import nn

from bench.torch_baselines.common import channels

__all__ = ["Conv3DSimple", "BasicBlock", "BasicStem", "VideoResNet", "r3d_18"]


class Conv3DSimple(nn.Conv3d):

  def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
    del midplanes  # used by Conv2Plus1D only; kept for torchvision's conv_builder signature
    super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(3, 3, 3),
                     stride=stride, padding=padding, bias=False)

  @staticmethod
  def get_downsample_stride(stride):
    if isinstance(stride, tuple):   # (1, 2, 2) without temporal strides (not torchvision's)
      return stride
    return (stride, stride, stride)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, conv_builder, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Sequential(conv_builder(inplanes, planes, None, stride),
                               nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
    self.conv2 = nn.Sequential(conv_builder(planes, planes, None), nn.BatchNorm3d(planes))
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample
    self.stride = stride

  def forward(self, x):
    residual = x
    out = self.conv1(x)
    out = self.conv2(out)
    if self.downsample is not None:
      residual = self.downsample(x)
    out += residual   # in place, as torchvision: hooks must copy what they keep
    out = self.relu(out)
    return out


class BasicStem(nn.Sequential):

  def __init__(self, planes=64, in_channels=3):
    super().__init__(
        nn.Conv3d(in_channels, planes, kernel_size=(3, 7, 7), stride=(1, 2, 2),
                  padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(planes),
        nn.ReLU(inplace=True))


class VideoResNet(nn.Module):
  """torchvision's `VideoResNet` with r3d_18's configuration and jaxvad's `R3D18` options.

  Args:
    num_classes: fc outputs.
    width: channel multiplier (stages 64·width .. 512·width).
    temporal_strides: torchvision's stride 2 in T at layer2..4 (True) or stride 1 (False).
    per_frame_head: pool over H, W and classify every frame (`[B, T', C]`, float32) instead
      of torchvision's clip head (`[B, C]`).
    in_channels: channels of the input frames.
  """

  def __init__(self, num_classes=400, width=1.0, *, temporal_strides=True, per_frame_head=False,
               in_channels=3):
    super().__init__()
    feats = [channels(f, width) for f in (64, 128, 256, 512)]
    self.per_frame_head = per_frame_head
    stride = 2 if temporal_strides else (1, 2, 2)
    self.inplanes = feats[0]
    self.stem = BasicStem(feats[0], in_channels)
    self.layer1 = self._make_layer(BasicBlock, Conv3DSimple, feats[0], 2, stride=1)
    self.layer2 = self._make_layer(BasicBlock, Conv3DSimple, feats[1], 2, stride=stride)
    self.layer3 = self._make_layer(BasicBlock, Conv3DSimple, feats[2], 2, stride=stride)
    self.layer4 = self._make_layer(BasicBlock, Conv3DSimple, feats[3], 2, stride=stride)
    self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
    self.fc = nn.Linear(feats[3] * BasicBlock.expansion, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv3d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(m, nn.BatchNorm3d):
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)
      elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0, 0.01)
        nn.init.constant_(m.bias, 0)

  def forward(self, x):
    x = self.stem(x)
    x = self.layer1(x)
    x = self.layer2(x)
    x = self.layer3(x)
    x = self.layer4(x)
    if self.per_frame_head:
      # [B, C, T', h, w] -> mean over h, w (in float32, as jaxvad) -> [B, T', C] -> fc per frame.
      pooled = x.float().mean(dim=(3, 4)).transpose(1, 2)
      return self.fc(pooled).float()
    x = self.avgpool(x)
    return self.fc(x.flatten(1))

  def _make_layer(self, block, conv_builder, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      ds_stride = conv_builder.get_downsample_stride(stride)
      downsample = nn.Sequential(
          nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1, stride=ds_stride,
                    bias=False),
          nn.BatchNorm3d(planes * block.expansion))
    layers = [block(self.inplanes, planes, conv_builder, stride, downsample)]
    self.inplanes = planes * block.expansion
    for _ in range(1, blocks):
      layers.append(block(self.inplanes, planes, conv_builder))
    return nn.Sequential(*layers)


def r3d_18(num_classes: int = 400, width: float = 1.0, **kwargs) -> VideoResNet:
  """torchvision's `r3d_18()` (untrained) with a width multiplier; kwargs as `VideoResNet`."""
  return VideoResNet(num_classes=num_classes, width=width, **kwargs)


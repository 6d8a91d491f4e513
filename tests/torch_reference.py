"""PyTorch references: torchvision's `r3d_18` (VideoResNet) and `resnet18`, module for module.

torchvision cannot be installed beside the CPU torch wheel here (it fails to import), so these
are transcriptions of `torchvision/models/video/resnet.py` restricted to r3d_18 (`BasicStem`,
`BasicBlock`, `Conv3DSimple`, layers [2, 2, 2, 2]) and of `torchvision/models/resnet.py`
restricted to resnet18 (`BasicBlock`, layers [2, 2, 2, 2]). Module and parameter names, and so
`state_dict()` keys, are torchvision's:

  r3d_18:   stem.0.weight, stem.1.{weight,bias,running_mean,running_var,num_batches_tracked},
            layerX.Y.conv1.0.weight, layerX.Y.conv1.1.*, layerX.Y.conv2.0.weight,
            layerX.Y.conv2.1.*, layerX.0.downsample.0.weight, layerX.0.downsample.1.*
            (X = 2, 3, 4), fc.weight, fc.bias.
  resnet18: conv1.weight, bn1.*, layerX.Y.conv1.weight, layerX.Y.bn1.*, layerX.Y.conv2.weight,
            layerX.Y.bn2.*, layerX.0.downsample.0.weight, layerX.0.downsample.1.* (X = 2, 3, 4),
            fc.weight, fc.bias.

`width` scales the channels (1.0 is torchvision's model; smaller widths are for fast tests).
Layout: input `[B, C, T, H, W]` (NCDHW) for r3d_18, `[B, C, H, W]` (NCHW) for resnet18, as
torchvision.
"""

from __future__ import annotations

import torch
from torch import nn


def _channels(base: int, width: float) -> int:
  return max(1, int(round(base * width)))


class Conv3DSimple(nn.Conv3d):

  def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
    del midplanes  # used by Conv2Plus1D only; kept for torchvision's conv_builder signature
    super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(3, 3, 3),
                     stride=stride, padding=padding, bias=False)

  @staticmethod
  def get_downsample_stride(stride):
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

  def __init__(self, planes=64):
    super().__init__(
        nn.Conv3d(3, planes, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                  bias=False),
        nn.BatchNorm3d(planes),
        nn.ReLU(inplace=True))


class VideoResNet(nn.Module):
  """torchvision's `VideoResNet` with r3d_18's configuration and a width multiplier."""

  def __init__(self, num_classes=400, width=1.0):
    super().__init__()
    feats = [_channels(f, width) for f in (64, 128, 256, 512)]
    self.inplanes = feats[0]
    self.stem = BasicStem(feats[0])
    self.layer1 = self._make_layer(BasicBlock, Conv3DSimple, feats[0], 2, stride=1)
    self.layer2 = self._make_layer(BasicBlock, Conv3DSimple, feats[1], 2, stride=2)
    self.layer3 = self._make_layer(BasicBlock, Conv3DSimple, feats[2], 2, stride=2)
    self.layer4 = self._make_layer(BasicBlock, Conv3DSimple, feats[3], 2, stride=2)
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


def r3d_18(num_classes: int = 400, width: float = 1.0) -> VideoResNet:
  """torchvision's `r3d_18()` (untrained) with a width multiplier."""
  return VideoResNet(num_classes=num_classes, width=width)


class ResNetBasicBlock(nn.Module):
  """torchvision/models/resnet.py `BasicBlock` (groups 1, dilation 1, BatchNorm2d)."""
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample
    self.stride = stride

  def forward(self, x):
    identity = x
    out = self.conv1(x)
    out = self.bn1(out)
    out = self.relu(out)
    out = self.conv2(out)
    out = self.bn2(out)
    if self.downsample is not None:
      identity = self.downsample(x)
    out += identity
    out = self.relu(out)
    return out


class ResNet(nn.Module):
  """torchvision's `ResNet` with resnet18's configuration and a width multiplier."""

  def __init__(self, num_classes=1000, width=1.0):
    super().__init__()
    feats = [_channels(f, width) for f in (64, 128, 256, 512)]
    self.inplanes = feats[0]
    self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(self.inplanes)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(ResNetBasicBlock, feats[0], 2)
    self.layer2 = self._make_layer(ResNetBasicBlock, feats[1], 2, stride=2)
    self.layer3 = self._make_layer(ResNetBasicBlock, feats[2], 2, stride=2)
    self.layer4 = self._make_layer(ResNetBasicBlock, feats[3], 2, stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(feats[3] * ResNetBasicBlock.expansion, num_classes)
    for m in self.modules():   # fc keeps nn.Linear's default init, as in torchvision
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                    bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    for _ in range(1, blocks):
      layers.append(block(self.inplanes, planes))
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.relu(x)
    x = self.maxpool(x)
    x = self.layer1(x)
    x = self.layer2(x)
    x = self.layer3(x)
    x = self.layer4(x)
    x = self.avgpool(x)
    x = torch.flatten(x, 1)
    return self.fc(x)


def resnet18(num_classes: int = 1000, width: float = 1.0) -> ResNet:
  """torchvision's `resnet18()` (untrained) with a width multiplier."""
  return ResNet(num_classes=num_classes, width=width)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
  """Random BN affine parameters and running statistics, so eval mode is no identity."""
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
        n = m.num_features
        m.weight.copy_(0.5 + torch.rand(n, generator=generator))
        m.bias.copy_(0.2 * torch.randn(n, generator=generator))
        m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
        m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        m.num_batches_tracked.fill_(7)


def hooked_activations(model: nn.Module, names) -> tuple[dict, list]:
  """Forward hooks that store (a clone of) the output of each named module."""
  store, handles = {}, []
  modules = dict(model.named_modules())
  for name in names:
    def hook(_, __, out, name=name):
      store[name] = out.detach().clone()   # clone: a later in-place op must not change it
    handles.append(modules[name].register_forward_hook(hook))
  return store, handles

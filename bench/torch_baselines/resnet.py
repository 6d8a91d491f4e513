"""torchvision's `resnet18`, module for module, with a width multiplier and stage outputs.

A transcription of `torchvision/models/resnet.py` restricted to resnet18 (`BasicBlock`, layers
[2, 2, 2, 2]; torchvision does not import beside the dev machine's CPU torch). Module and
parameter names, and so `state_dict()` keys, are torchvision's:

  conv1.weight, bn1.*, layerX.Y.conv1.weight, layerX.Y.bn1.*, layerX.Y.conv2.weight,
  layerX.Y.bn2.*, layerX.0.downsample.0.weight, layerX.0.downsample.1.* (X = 2, 3, 4),
  fc.weight, fc.bias.

`width` scales the channels (1.0 is torchvision's model); `num_classes=None` leaves out
avgpool and fc (a backbone, as `jaxvad.models.resnet.ResNet18()`), and `stages(x)` returns the
outputs of layer1..4 as jaxvad's model does. Layout: input `[B, C, H, W]` (NCHW) as
torchvision; channels-last memory runs without a copy.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.torch_baselines.common import channels

__all__ = ["ResNetBasicBlock", "ResNet", "resnet18", "STAGE_NAMES"]

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


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
  """torchvision's `ResNet` with resnet18's configuration and a width multiplier.

  Args:
    num_classes: fc outputs; None: no avgpool / fc (backbone only; use `stages`).
    width: channel multiplier (stages 64·width .. 512·width).
  """

  def __init__(self, num_classes=1000, width=1.0):
    super().__init__()
    feats = [channels(f, width) for f in (64, 128, 256, 512)]
    self.inplanes = feats[0]
    self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(self.inplanes)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(ResNetBasicBlock, feats[0], 2)
    self.layer2 = self._make_layer(ResNetBasicBlock, feats[1], 2, stride=2)
    self.layer3 = self._make_layer(ResNetBasicBlock, feats[2], 2, stride=2)
    self.layer4 = self._make_layer(ResNetBasicBlock, feats[3], 2, stride=2)
    if num_classes is not None:
      self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
      self.fc = nn.Linear(feats[3] * ResNetBasicBlock.expansion, num_classes)
    else:
      self.avgpool = self.fc = None
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

  def stages(self, x) -> dict[str, torch.Tensor]:
    """The outputs of layer1..4 (what a forward hook on them sees), keyed by `STAGE_NAMES`."""
    x = self.conv1(x)
    x = self.bn1(x)
    x = self.relu(x)
    x = self.maxpool(x)
    out = {}
    for name in STAGE_NAMES:
      x = getattr(self, name)(x)
      out[name] = x
    return out

  def forward(self, x):
    if self.fc is None:
      raise ValueError("a backbone-only ResNet (num_classes=None) has no logits; call stages()")
    x = self.stages(x)["layer4"]
    x = self.avgpool(x)
    x = torch.flatten(x, 1)
    return self.fc(x)


def resnet18(num_classes: int | None = 1000, width: float = 1.0) -> ResNet:
  """torchvision's `resnet18()` (untrained) with a width multiplier."""
  return ResNet(num_classes=num_classes, width=width)

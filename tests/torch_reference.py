"""PyTorch references of the parity tests: torchvision's `r3d_18` and `resnet18`, module for
module, FFP's generator and discriminator as feiyuhuahuo/Anomaly_Prediction writes them, plus
test helpers.

The torchvision transcriptions live in `bench/torch_baselines/` (`r3d.py`, `resnet.py`), where
the PyTorch benchmarks use the same modules, so the parity tests and the benchmark baselines
are one implementation. Module and parameter names, and so `state_dict()` keys, are
torchvision's; `width` scales the channels (1.0 is torchvision's model). Layout: input
`[B, C, T, H, W]` (NCDHW) for r3d_18, `[B, C, H, W]` (NCHW) for resnet18, as torchvision.

FFP (Liu et al. 2018), transcribed here: `FFPUNet` is the port's `models/unet.py` `UNet`
(modules `inc`, `down1..3`, `up1..3`, `outc`, so its `state_dict()` keys are the port's) and
`PixelDiscriminator` its `models/pix2pix_networks.py` class with the default `use_norm=False`
(`net.0 .. net.8`). Additions for the tests, off by default: `width` (channels 64·width .. /
128·width ..), `FFPUNet(form="tf")`, the TF original's U-Net in the same module tree (no BN —
`nn.Identity` in its place, so the conv indices stay — conv biases, ReLU after the transposed
convs), and `PixelDiscriminator(padding_mode="reflect")`, the TF original's REFLECT padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines.r3d import BasicBlock, BasicStem, Conv3DSimple, VideoResNet, r3d_18
from bench.torch_baselines.resnet import ResNet, ResNetBasicBlock, resnet18

__all__ = ["BasicBlock", "BasicStem", "Conv3DSimple", "VideoResNet", "r3d_18", "ResNet",
           "ResNetBasicBlock", "resnet18", "FFPUNet", "PixelDiscriminator", "randomize_bn",
           "hooked_activations"]


class FFPDoubleConv(nn.Module):
  """The port's `double_conv`: `conv = Sequential(conv3x3, BN, ReLU, conv3x3, BN, ReLU)`."""

  def __init__(self, in_ch: int, out_ch: int, form: str = "pytorch"):
    super().__init__()
    tf = form == "tf"
    norm = (lambda c: nn.Identity()) if tf else nn.BatchNorm2d
    self.conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=tf), norm(out_ch),
                              nn.ReLU(inplace=True),
                              nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=tf), norm(out_ch),
                              nn.ReLU(inplace=True))

  def forward(self, x):
    return self.conv(x)


class FFPInConv(nn.Module):
  """The port's `inconv`: a double conv as `conv`."""

  def __init__(self, in_ch: int, out_ch: int, form: str = "pytorch"):
    super().__init__()
    self.conv = FFPDoubleConv(in_ch, out_ch, form)

  def forward(self, x):
    return self.conv(x)


class FFPDown(nn.Module):
  """The port's `down`: `mpconv = Sequential(MaxPool2d(2), double_conv)`."""

  def __init__(self, in_ch: int, out_ch: int, form: str = "pytorch"):
    super().__init__()
    self.mpconv = nn.Sequential(nn.MaxPool2d(2), FFPDoubleConv(in_ch, out_ch, form))

  def forward(self, x):
    return self.mpconv(x)


class FFPUp(nn.Module):
  """The port's `up`: ConvTranspose2d(in, in // 2, 2, stride 2), pad to the skip, cat([skip,
  up]), double conv; `form="tf"` adds the original's ReLU after the transposed conv."""

  def __init__(self, in_ch: int, out_ch: int, form: str = "pytorch"):
    super().__init__()
    self.form = form
    self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
    self.conv = FFPDoubleConv(in_ch, out_ch, form)

  def forward(self, x1, x2):
    x1 = self.up(x1)
    if self.form == "tf":
      x1 = F.relu(x1)
    dy, dx = x2.size(2) - x1.size(2), x2.size(3) - x1.size(3)
    x1 = F.pad(x1, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    return self.conv(torch.cat([x2, x1], dim=1))


class FFPUNet(nn.Module):
  """The port's `UNet(input_channels, output_channel=3)`, channels scaled by `width`."""

  def __init__(self, input_channels: int, output_channel: int = 3, width: float = 1.0,
               form: str = "pytorch"):
    super().__init__()
    c = max(1, int(round(64 * width)))
    self.inc = FFPInConv(input_channels, c, form)
    self.down1 = FFPDown(c, 2 * c, form)
    self.down2 = FFPDown(2 * c, 4 * c, form)
    self.down3 = FFPDown(4 * c, 8 * c, form)
    self.up1 = FFPUp(8 * c, 4 * c, form)
    self.up2 = FFPUp(4 * c, 2 * c, form)
    self.up3 = FFPUp(2 * c, c, form)
    self.outc = nn.Conv2d(c, output_channel, kernel_size=3, padding=1)

  def forward(self, x):
    x1 = self.inc(x)
    x2 = self.down1(x1)
    x3 = self.down2(x2)
    x4 = self.down3(x3)
    x = self.up1(x4, x3)
    x = self.up2(x, x2)
    x = self.up3(x, x1)
    return torch.tanh(self.outc(x))


class PixelDiscriminator(nn.Module):
  """The port's `PixelDiscriminator(input_nc)` (use_norm=False): 4x4 convs, pad 2, strides
  2, 2, 2, 1, LeakyReLU 0.2, a 1-channel 4x4 conv, sigmoid; filters scaled by `width`."""

  def __init__(self, input_nc: int, num_filters=(128, 256, 512, 512), width: float = 1.0,
               padding_mode: str = "zeros"):
    super().__init__()
    f = [max(1, int(round(num_filters[0] * width))) * n // num_filters[0] for n in num_filters]
    conv = lambda i, o, s: nn.Conv2d(i, o, 4, s, 2, padding_mode=padding_mode)  # noqa: E731
    net = [conv(input_nc, f[0], 2), nn.LeakyReLU(0.2, True)]
    for i in range(1, len(f) - 1):
      net += [conv(f[i - 1], f[i], 2), nn.LeakyReLU(0.2, True)]
    net += [conv(f[-2], f[-1], 1), nn.LeakyReLU(0.2, True)]
    net.append(conv(f[-1], 1, 1))
    self.net = nn.Sequential(*net)

  def forward(self, x):
    return torch.sigmoid(self.net(x))


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

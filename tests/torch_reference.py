"""PyTorch references of the parity tests: torchvision's `r3d_18` and `resnet18`, module for
module, FFP's generator and discriminator as feiyuhuahuo/Anomaly_Prediction writes them, plus
test helpers.

The transcriptions live in `bench/torch_baselines/` (`r3d.py`, `resnet.py`, `ffp.py`), where
the PyTorch benchmarks use the same modules, so the parity tests and the benchmark baselines
are one implementation. Module and parameter names, and so `state_dict()` keys, are
torchvision's; `width` scales the channels (1.0 is torchvision's model). Layout: input
`[B, C, T, H, W]` (NCDHW) for r3d_18, `[B, C, H, W]` (NCHW) for resnet18, as torchvision.

FFP (Liu et al. 2018), from `bench/torch_baselines/ffp.py`: `FFPUNet` is the port's
`models/unet.py` `UNet` (modules `inc`, `down1..3`, `up1..3`, `outc`, so its `state_dict()` keys
are the port's) and `PixelDiscriminator` its `models/pix2pix_networks.py` class with the
default `use_norm=False` (`net.0 .. net.8`). Additions, off by default: `width` (channels
64·width .. / 128·width ..), `FFPUNet(form="tf")`, the TF original's U-Net in the same module
tree (no BN — `nn.Identity` in its place, so the conv indices stay — conv biases, ReLU after the
transposed convs), and `PixelDiscriminator(padding_mode="reflect")`, the TF original's REFLECT
padding.

Paper 004's F2LM generator, from `bench/torch_baselines/f2lm.py`: `F2LMGenerator` is the
official `F2LM_Generator/network/unet.py` `UNet` (modules `inc_x .. down3_z`, `transform_xtoy`,
`transform_xtoz`, `fusion_conv`, `se`, `up1..3`, `outc`), built from FFP's blocks above, with
`width` and the ablation switches of `jaxvad.models.f2lm.F2LM`.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.torch_baselines.f2lm import F2LMGenerator, init_weights
from bench.torch_baselines.ffp import FFPUNet, PixelDiscriminator
from bench.torch_baselines.r3d import BasicBlock, BasicStem, Conv3DSimple, VideoResNet, r3d_18
from bench.torch_baselines.resnet import ResNet, ResNetBasicBlock, resnet18

__all__ = ["BasicBlock", "BasicStem", "Conv3DSimple", "VideoResNet", "r3d_18", "ResNet",
           "ResNetBasicBlock", "resnet18", "FFPUNet", "PixelDiscriminator", "F2LMGenerator",
           "init_weights", "randomize_bn", "hooked_activations"]


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

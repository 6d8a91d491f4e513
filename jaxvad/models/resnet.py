"""ResNet-18 (He et al. 2016) in the layout of torchvision's `resnet18`, as an image backbone.

Architecture (torchvision `ResNet` with `BasicBlock`, layers [2, 2, 2, 2]):

  conv1    Conv2d 7x7, stride 2, pad 3 + bn1 + ReLU                        64·width
  maxpool  3x3, stride 2, pad 1
  layer1   2 BasicBlocks, stride 1                                         64·width   H/4
  layer2   2 BasicBlocks, first stride 2 (+ 1x1 stride-2 downsample)      128·width   H/8
  layer3   same                                                           256·width   H/16
  layer4   same                                                           512·width   H/32
  head     (only with `num_classes`) global average pool + fc

A BasicBlock is `relu(bn2(conv2(relu(bn1(conv1(x))))) + residual)` with 3x3 convs (pad 1, no
bias); the residual is `x`, or `downsample(x)` = 1x1 conv (stride 2, no bias) + BN at block 0 of
layer2..4. BN has eps 1e-5 and torch momentum 0.1 (Flax momentum 0.9). Initialisers follow
torchvision: Kaiming normal (fan_out, ReLU gain) for convs, BN scale 1 / bias 0, and torch's
default `nn.Linear` init for fc. Paddings are explicit, so every size maps as in torch
(n -> floor((n - 1) / 2) + 1 per stride-2 op); for H, W divisible by 32 the stages have exactly
H/4 .. H/32.

Layout: input float `[N, H, W, 3]` channels last, RGB normalised by the caller (torchvision's
ImageNet weights expect [0, 1] then `imagenet_normalize`). Outputs follow big_vision's
`(out, aux)` convention, as every jaxvad model: `out, aux = model.apply(v, x)` (`((out, aux),
updates)` with `mutable=`), `out` the float32 logits `[N, num_classes]` with `num_classes`, else
layer4's features, and `aux` the stage outputs `layer1`..`layer4` (`[N, H', W', C']`, what a
forward hook on torchvision's `layerX` sees).

Parameters: `params` / `batch_stats` trees named after torchvision's modules: `conv1`, `bn1`,
`layer{1..4}_{0,1}` each with `conv1`, `bn1`, `conv2`, `bn2` (and `downsample` with `conv`, `bn`
in layer2..4 block 0), then `fc`. `convert_torch.torch_to_flax(..., arch="resnet18")` maps a
torchvision state dict onto them.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import layers

__all__ = ["ResNet18", "stage_features", "imagenet_normalize", "IMAGENET_MEAN", "IMAGENET_STD",
           "STAGE_NAMES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STAGE_FEATURES = (64, 128, 256, 512)
STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
BLOCKS_PER_STAGE = 2
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9     # Flax convention: torch's momentum 0.1 weights the new batch by 0.1

# Kaiming normal, mode fan_out, ReLU gain: torchvision's ResNet init for Conv2d.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch's default nn.Linear init (torchvision's ResNet keeps it for fc): U(±1/sqrt(fan_in)).
_fc_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def stage_features(width: float) -> tuple[int, ...]:
  """Channels of the four stages for a width multiplier.

  Args:
    width: the multiplier (1.0 is torchvision's resnet18).

  Returns:
    (64·width, 128·width, 256·width, 512·width), rounded, at least 1 each; conv1 has the first.
  """
  return tuple(max(1, int(round(f * width))) for f in STAGE_FEATURES)


def imagenet_normalize(x: Any) -> jax.Array:
  """Normalises RGB images as torchvision's ImageNet weights expect.

  Args:
    x: float `[..., 3]` RGB in [0, 1].

  Returns:
    `(x - IMAGENET_MEAN) / IMAGENET_STD` per channel, in x's dtype.

  Raises:
    TypeError: x is not floating point (e.g. uint8 frames: divide by 255 first).
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"imagenet_normalize expects floats in [0, 1], got {x.dtype}; convert "
                    f"uint8 images with x / 255 first")
  return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> layers.Conv2D:
  # torch pads k // 2 on each side (3 for 7x7, 1 for 3x3, 0 for 1x1); explicit, because Flax's
  # "SAME" pads asymmetrically for stride 2 and would shift every even-sized output by a pixel.
  pad = kernel // 2
  return layers.Conv2D(features, (kernel, kernel), strides=(stride, stride),
                       padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=_conv_init,
                       dtype=dtype, name=name)


def _bn(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      dtype=dtype, name=name)


class Downsample(nn.Module):
  """torchvision's `Sequential(conv1x1, bn)` on the residual path of layer2..4 block 0."""
  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = _conv(self.features, 1, self.stride, self.dtype, "conv")(x)
    return _bn(train, self.dtype, "bn")(x)


class BasicBlock(nn.Module):
  """torchvision's 2-D `BasicBlock`: relu(bn2(conv2(relu(bn1(conv1(x))))) + residual)."""
  features: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = _conv(self.features, 3, self.stride, self.dtype, "conv1")(x)
    y = nn.relu(_bn(train, self.dtype, "bn1")(y))
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _bn(train, self.dtype, "bn2")(y)
    residual = x
    # torchvision adds a downsample where the stride or the width changes (layer2..4 block 0).
    if self.stride != 1 or x.shape[-1] != self.features:
      residual = Downsample(self.features, self.stride, self.dtype, name="downsample")(x, train)
    return nn.relu(y + residual)


class ResNet18(nn.Module):
  """torchvision's resnet18: `(logits or layer4, stage outputs)`; see the module docstring.

  Attributes:
    width: channel multiplier; stages have `stage_features(width)` channels (1.0: 64..512,
      torchvision's; smaller widths are for fast tests).
    num_classes: None (default): backbone only, no avgpool / fc; else the fc's outputs (1000
      for ImageNet) and the logits as the main output.
    dtype: compute dtype (parameters and batch statistics stay float32; logits are float32).
  """
  width: float = 1.0
  num_classes: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the network.

    Args:
      x: float `[N, H, W, 3]`, normalised by the caller (e.g. `imagenet_normalize`).
      train: BN uses (and updates, with `mutable=["batch_stats"]`) batch statistics if True,
        the running averages if False.

    Returns:
      `(out, aux)`: out the logits, float32 `[N, num_classes]`, with `num_classes`, else
      `aux["layer4"]`; aux {"layer1": `[N, H/4, W/4, 64·width]`, ..., "layer4":
      `[N, H/32, W/32, 512·width]`}, the stage outputs in the compute dtype (sizes rounded up for
      H, W not divisible by 32).
    """
    feats = stage_features(self.width)
    x = _conv(feats[0], 7, 2, self.dtype, "conv1")(x)
    x = nn.relu(_bn(train, self.dtype, "bn1")(x))
    # Flax pads max_pool with -inf (reduce_window's init value), as torch's MaxPool2d does.
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    stages = {}
    for s, (name, f) in enumerate(zip(STAGE_NAMES, feats), start=1):
      for b in range(BLOCKS_PER_STAGE):
        stride = 2 if (s > 1 and b == 0) else 1
        x = BasicBlock(f, stride, self.dtype, name=f"{name}_{b}")(x, train)
      stages[name] = x
    if self.num_classes is None:
      return x, stages
    # Pool in float32: a mean over many bf16 values loses the low bits.
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    bound = 1.0 / math.sqrt(feats[-1])   # torch's nn.Linear bias init: U(±1/sqrt(fan_in))
    logits = nn.Dense(
        self.num_classes, kernel_init=_fc_kernel_init,
        bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
            key, shape, dtype, -bound, bound),
        dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)
    return logits, stages

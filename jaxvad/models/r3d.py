"""R3D-18 (Tran et al. 2018, "A closer look at spatiotemporal convolutions for action
recognition") in the layout of torchvision's `r3d_18`, for paper 000 §3.1.2 / §3.2.

The background masking model of paper 000 is an R3D-18 trained to predict, for every frame of
a window, which partition of the machine's cycle the frame belongs to (§3.2.1); Eigen-CAM on
the activations of its last N conv layers then gives the attention maps (§3.1.2, Table 4.5).

Architecture (torchvision `VideoResNet` with `BasicBlock`, `Conv3DSimple`, `BasicStem`):

  stem     Conv3d 3x7x7, stride (1, 2, 2), pad (1, 3, 3) + BN + ReLU        64·width
  layer1   2 BasicBlocks, stride 1                                        64·width
  layer2   2 BasicBlocks, first stride 2 (+ 1x1x1 stride-2 downsample)   128·width
  layer3   same                                                          256·width
  layer4   same                                                          512·width
  head     see below

A BasicBlock is `relu(conv2(conv1(x)) + residual)`, with `conv1` = 3x3x3 conv + BN + ReLU and
`conv2` = 3x3x3 conv + BN. Convs have no bias; BN has eps 1e-5 and torch momentum 0.1
(Flax momentum 0.9). Initialisers follow torchvision: Kaiming normal (fan_out, ReLU gain) for
convs, BN scale 1 / bias 0, fc weight N(0, 0.01) and bias 0.

Layout: input float `[B, T, H, W, C]` channels last, normalised by the caller (torchvision's
Kinetics weights expect RGB scaled to [0, 1], then mean (0.43216, 0.394666, 0.37645) and std
(0.22803, 0.22145, 0.216989) per channel). Each spatial stride-2 stage maps n -> ceil(n / 2), so
H' = ceil(H / 16); T' = T, or ceil(T / 8) with `temporal_strides=True`.

Heads:
  per-frame (default): average over H', W' only, then `fc` per frame -> logits `[B, T', C]`.
    With `temporal_strides=False` (default) the stages stride 2 in H, W only, so T' = T and
    there is one prediction per input frame, as the partition-order task needs. That costs
    1x/2x/4x/8x torchvision's FLOPs in layer1..4.
  `torchvision_head=True`: average over T', H', W', then `fc` -> `[B, C]`, torchvision's forward
    exactly (with `temporal_strides=True`; see `TorchvisionR3D18`).
  Both heads name the Dense `fc` with kernel `[512·width, C]`, so a Kinetics fc loads into
  either; the clip logits are then the time average of the per-frame logits (fc is affine).

Outputs (big_vision's `(out, aux)` convention, as every jaxvad model):
`logits, aux = model.apply(v, x, train=False)` (`((logits, aux), updates)` with `mutable=`).
`aux["activations"]` (for Eigen-CAM) is a list of 17 channels-last arrays `[B, T', H', W', C']`
in forward order, named by `ACTIVATION_NAMES`: the outputs of torchvision's modules `stem`,
`layerX.Y.conv1` (after BN + ReLU) and `layerX.Y.conv2` (after BN, before the residual add), the
tensors a PyTorch forward hook on those modules sees. The paper's "last N convolutions"
(N = 1, 2, 4, all in layer4) are `activations[-N:]`. Under jit, unused activations cost nothing.

Parameters: `params` / `batch_stats` trees named after torchvision's modules: `stem`,
`layer{1..4}_{0,1}` each with `conv1`, `conv2` (and `downsample` in layer2..4 block 0), each of
those with `conv` and `bn`; then `fc`. `convert_torch.torch_to_flax` maps a torchvision state
dict onto them.

Training caveat: Flax BN updates the running variance with the biased batch variance, torch
with the unbiased one (factor n / (n - 1), n = B·T'·H'·W'); normalisation in the forward pass is
the same (biased) in both.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvad.models import layers

__all__ = ["R3D18", "R3D18Tiny", "TorchvisionR3D18", "ACTIVATION_NAMES", "stage_features",
           "output_frames"]

STAGE_FEATURES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9     # Flax convention: torch's momentum 0.1 weights the new batch by 0.1

# Names of the activations in `aux["activations"]`, in forward order (torchvision's
# module names, so a hook-based PyTorch Eigen-CAM and this one mean the same layers).
ACTIVATION_NAMES = ("stem",) + tuple(
    f"layer{s}.{b}.conv{k}" for s in range(1, 5) for b in range(BLOCKS_PER_STAGE)
    for k in (1, 2))

# Kaiming normal, mode fan_out, ReLU gain: torchvision's `_initialize_weights` for Conv3d.
# ("normal" in jax is untruncated, as torch's kaiming_normal_.)
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_fc_init = nn.initializers.normal(0.01)


def stage_features(width: float) -> tuple[int, ...]:
  """Channels of the four stages for a width multiplier.

  Args:
    width: the multiplier (1.0 is torchvision's r3d_18).

  Returns:
    (64·width, 128·width, 256·width, 512·width), rounded, at least 1 each; the stem has the
    first.
  """
  return tuple(max(1, int(round(f * width))) for f in STAGE_FEATURES)


def output_frames(t: int, *, temporal_strides: bool) -> int:
  """Frames T' of the per-frame logits and of layer4's activations for a T-frame input.

  Args:
    t: input frames T.
    temporal_strides: the model's `temporal_strides`.

  Returns:
    T, or ceil(T / 8) after layer2..4 each map n -> ceil(n / 2) in time.
  """
  return math.ceil(t / 8) if temporal_strides else t


class ConvBN(nn.Module):
  """Conv3d (no bias) + BatchNorm (+ ReLU): one of torchvision's `Sequential(conv, bn[, relu])`."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: int | Sequence[int]
  relu: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    pad = (self.padding,) * 3 if isinstance(self.padding, int) else tuple(self.padding)
    # XLA:CPU's 3-D convolutions are slow; layers.Conv3D sums 2-D ones there (same params).
    x = layers.Conv3D(self.features, tuple(self.kernel_size), strides=tuple(self.strides),
                      padding=[(p, p) for p in pad], kernel_init=_conv_init, dtype=self.dtype,
                      name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     dtype=self.dtype, name="bn")(x)
    return nn.relu(x) if self.relu else x


class BasicBlock(nn.Module):
  """torchvision's 3D `BasicBlock`: relu(conv2(conv1(x)) + downsample(x) or x).

  Returns (block output, [conv1 output, conv2 output]).
  """
  features: int
  strides: Sequence[int] = (1, 1, 1)
  downsample: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    a1 = ConvBN(self.features, (3, 3, 3), self.strides, 1, relu=True, dtype=self.dtype,
                name="conv1")(x, train)
    a2 = ConvBN(self.features, (3, 3, 3), (1, 1, 1), 1, relu=False, dtype=self.dtype,
                name="conv2")(a1, train)
    residual = x
    if self.downsample:
      residual = ConvBN(self.features, (1, 1, 1), self.strides, 0, relu=False, dtype=self.dtype,
                        name="downsample")(x, train)
    return nn.relu(a2 + residual), [a1, a2]


class R3D18(nn.Module):
  """R3D-18 with a per-frame (default) or torchvision clip classifier; see the module docstring.

  Attributes:
    num_classes: classifier outputs (partition classes; 400 for Kinetics-400).
    width: channel multiplier; stages have `stage_features(width)` channels (1.0: 64..512).
    temporal_strides: True: torchvision's strides (layer2..4 stride 2 in T, H, W), needed for
      exact agreement with torchvision / Kinetics features; False (default): stride 1 in time
      everywhere, so the per-frame head sees every input frame.
    torchvision_head: True: pool over T, H, W and classify the clip (`[B, C]`, torchvision's
      forward); False (default): pool over H, W and classify every frame (`[B, T', C]`).
    dtype: compute dtype (parameters and batch statistics stay float32; logits are float32).
  """
  num_classes: int = 400
  width: float = 1.0
  temporal_strides: bool = False
  torchvision_head: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Runs the network.

    Args:
      x: float `[B, T, H, W, C]`, normalised by the caller.
      train: BN uses (and updates, with `mutable=["batch_stats"]`) batch statistics if True,
        the running averages if False.

    Returns:
      `(logits, aux)`: logits float32 `[B, T', num_classes]` (`[B, num_classes]` with
      `torchvision_head`); aux `{"activations": ...}`, the conv-unit activations, a list of 17
      `[B, T', H', W', C']` arrays in the compute dtype, in the order of `ACTIVATION_NAMES`
      (under jit, unused ones cost nothing).
    """
    feats = stage_features(self.width)
    t_stride = 2 if self.temporal_strides else 1
    x = ConvBN(feats[0], (3, 7, 7), (1, 2, 2), (1, 3, 3), relu=True, dtype=self.dtype,
               name="stem")(x, train)
    activations = [x]
    in_features = feats[0]
    for s, f in enumerate(feats, start=1):
      for b in range(BLOCKS_PER_STAGE):
        strides = (t_stride, 2, 2) if (s > 1 and b == 0) else (1, 1, 1)
        # torchvision adds a downsample where the stride or the width changes (layer2..4 block 0).
        downsample = strides != (1, 1, 1) or in_features != f
        x, acts = BasicBlock(f, strides, downsample, dtype=self.dtype,
                             name=f"layer{s}_{b}")(x, train)
        activations += acts
        in_features = f
    # Pool in float32: a mean over thousands of bf16 values loses the low bits.
    pool_axes = (1, 2, 3) if self.torchvision_head else (2, 3)
    pooled = jnp.mean(x.astype(jnp.float32), axis=pool_axes)
    logits = nn.Dense(self.num_classes, kernel_init=_fc_init, bias_init=nn.initializers.zeros,
                      dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)
    return logits, {"activations": activations}


# torchvision's r3d_18 forward exactly (clip logits [B, 400]); the converter's parity target.
TorchvisionR3D18 = functools.partial(R3D18, num_classes=400, temporal_strides=True,
                                     torchvision_head=True)

# A tiny variant for tests: 8/16/32/64 channels (~0.5 M parameters); runs in well under a
# second on CPU for an 8x32x32 window.
R3D18Tiny = functools.partial(R3D18, width=0.125)

"""The background masking model of paper 000 (§3.1.2, §3.2) in PyTorch: the per-frame R3D-18 of
`jaxvad.methods.r3d_partition` (method `r3d_partition`).

torchvision's r3d_18 layout (`bench.torch_baselines.r3d`) with jaxvad's partition options:
no temporal strides (layer2..4 stride (1, 2, 2)), so every input frame keeps its place in
time, and a per-frame head (mean over H, W, then fc) giving logits `[B, T, C]`. Trained with a
soft-label cross-entropy against the smoothed partition labels; `score` gives the per-frame
partition probabilities, as the jaxvad method's `partition_step` (this model scores no anomalies).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bench.torch_baselines import common
from bench.torch_baselines.r3d import VideoResNet

__all__ = ["build", "train_loss", "score", "load_flax_variables"]

# torchvision's Kinetics-400 normalisation, as jaxvad.methods.r3d_partition.
_MEAN = np.array([0.43216, 0.394666, 0.37645], np.float32)
_STD = np.array([0.22803, 0.22145, 0.216989], np.float32)
# As Python floats, computed once: torch.compile mis-guards numpy globals read in traced code.
_RGB = (tuple(map(float, _MEAN)), tuple(map(float, _STD)))
_GRAY = ((float(_MEAN.mean()),), (float(_STD.mean()),))


def build(config, *, channels_last: bool = True) -> VideoResNet:
  """The per-frame R3D-18 of a jaxvad `r3d_partition` config.

  Args:
    config: a `jaxvad.config.Config` (`model.width`, `model.num_classes`, `data.grayscale`;
      `model.pretrained`, a torchvision r3d_18 `.pth`, loads all but its fc, as jaxvad).
      `train.compute_dtype` is not read (use `torch.autocast`).
    channels_last: keep the conv weights in `channels_last_3d` memory, as the input arrives.

  Returns:
    The module, on the CPU, in train mode. Its stem takes 1 channel for gray frames without
    pretrained weights, else 3 (gray repeated), as jaxvad's.
  """
  m = config.model
  in_channels = 1 if (config.data.grayscale and not m.pretrained) else 3
  model = VideoResNet(num_classes=m.num_classes, width=m.width, temporal_strides=False,
                      per_frame_head=True, in_channels=in_channels)
  if m.pretrained:
    sd = torch.load(m.pretrained, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")},
                          strict=False)
  return model.to(memory_format=torch.channels_last_3d) if channels_last else model


def to_input(model: VideoResNet, frames: torch.Tensor) -> torch.Tensor:
  """uint8 `[B, T, H, W, C]` -> normalised float `[B, C, T, H, W]` (channels-last memory).

  As `jaxvad.methods.r3d_partition.to_input`: Kinetics mean / std per channel; gray frames are
  repeated to RGB for a 3-channel stem, else normalised by the channel-mean constants.
  """
  x = common.to_float(frames, common.device_of(model))
  pretrained = model.stem[0].in_channels == 3
  if x.shape[-1] == 1:
    x = x.expand(*x.shape[:-1], 3) if pretrained else x
    mean, std = _RGB if pretrained else _GRAY
  else:
    mean, std = _RGB
  mean, std = common.constant(mean, x.device), common.constant(std, x.device)
  return ((x - mean) / std).permute(0, 4, 1, 2, 3)


def train_loss(model: VideoResNet, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
  """The loss of jaxvad's `r3d_partition.train_step`: soft-label cross-entropy per frame.

  Args:
    model: from `build`; put in train mode (BN on batch statistics, as jaxvad's step).
    frames: uint8 `[B, T, H, W, C]`.
    targets: float `[B, T, num_classes]`, each row summing to 1 (batch["labels"]).

  Returns:
    float32 scalar: the mean over frames of `-sum_k targets log_softmax(logits)`.
  """
  if targets is None:
    raise ValueError("r3d_partition trains on per-frame partition labels: pass targets "
                     "[B, T, num_classes]")
  model.train()
  logits = model(to_input(model, frames))
  targets = targets.to(logits.device, non_blocking=True)
  return F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1).float())


def score(model: VideoResNet, frames: torch.Tensor) -> torch.Tensor:
  """Per-frame partition probabilities `[B, T, num_classes]`, as `r3d_partition.partition_step`."""
  model.eval()
  with torch.inference_mode():
    return torch.softmax(model(to_input(model, frames)), dim=-1)


def load_flax_variables(model: VideoResNet, variables: Mapping) -> VideoResNet:
  """Copies a jaxvad `R3D18`'s `{"params", "batch_stats"}` into the model (in place).

  The mapping is jaxvad's torchvision converter's (`convert_torch.key_mapping`), inverted.

  Returns:
    The model.
  """
  sd = common.state_dict_from_flax(variables, arch="r3d_18")
  missing, unexpected = model.load_state_dict(sd, strict=False)
  missing = [k for k in missing if not k.endswith("num_batches_tracked")]
  if missing or unexpected:
    raise ValueError(f"state dict does not fit: missing {missing}, unexpected {unexpected}")
  return model

"""The ConvLSTM autoencoder of paper 000 §3.1.1 in PyTorch, layer for layer as
`jaxvad.models.convlstm.ConvLSTMAutoencoder` (method `convlstm_ae`).

  encoder   per frame, for each width f: Conv 3x3 stride 2 + ReLU, Conv 3x3 + ReLU
  convlstm  `lstm_layers` ConvLSTM layers (3x3 gates) over time at the bottleneck
  decoder   ConvTranspose 3x3 stride 2 + ReLU per stage (widths mirrored), Conv 3x3 to C

Where Flax's defaults differ from what `padding=1` would give in torch, the torch layers pad
as Flax does, so the weights carry over exactly:

* stride-2 convs use Flax's 'SAME' padding, (0, 1) on even sizes: output row i reads input
  rows 2i..2i+2, not 2i-1..2i+1 as with `Conv2d(padding=1)`.
* transposed convs use Flax's 'SAME' padding of the dilated input, (2, 1): that is
  `ConvTranspose2d(padding=0)` with its last row and column cropped, not the usual
  `padding=1, output_padding=1` (which pads (1, 2)); and Flax does not flip the kernel.
* the ConvLSTM cell is Flax's `ConvLSTMCell`: separate input and hidden convs (each with a
  bias), gates in the order i, g, f, o, and a forget gate `sigmoid(f + 1)`.

`torch_padding=True` builds the model with the usual PyTorch paddings instead (same shapes,
FLOPs and parameters, no pad / crop copies; not weight-compatible to the pixel), for timing.

As a PyTorch user would, the input-to-hidden convs of all frames run as one batched conv
before the time loop; only the hidden-to-hidden conv is recurrent.

Module names are the Flax paths (`encoder.down0` <-> params/encoder/down0), so
`load_flax_variables` copies a jaxvad state by name.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common

__all__ = ["ConvLSTMAutoencoder", "ConvLSTMLayer", "build", "train_loss", "score",
           "load_flax_variables"]


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
  """Flax / XLA 'SAME' padding (low, high) of one axis of size n."""
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
  """Conv2d with Flax's 'SAME' padding (asymmetric for stride 2 on even sizes), or with
  `torch_padding` the usual `padding=k // 2` (same shapes and FLOPs, grid one pixel off)."""

  def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, torch_padding=False):
    super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2 if torch_padding else 0)
    self.torch_padding = torch_padding

  def forward(self, x):
    if self.torch_padding:
      return super().forward(x)
    (kh, kw), (sh, sw) = self.kernel_size, self.stride
    top, bottom = _same_pads(x.shape[-2], kh, sh)
    left, right = _same_pads(x.shape[-1], kw, sw)
    if (top, bottom) == (left, right) and top == bottom:   # symmetric: let the conv pad
      return F.conv2d(x, self.weight, self.bias, self.stride, top)
    return super().forward(F.pad(x, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
  """Flax's `ConvTranspose(kernel 3, strides 2, padding 'SAME')`: output exactly 2x the input.

  With `torch_padding`: the usual `padding=1, output_padding=1` (same shapes and FLOPs, no
  crop; the output grid is one pixel off Flax's).
  """

  def __init__(self, in_channels, out_channels, torch_padding=False):
    super().__init__(in_channels, out_channels, 3, stride=2, padding=1 if torch_padding else 0,
                     output_padding=1 if torch_padding else 0)
    self.torch_padding = torch_padding

  def forward(self, x):
    out = super().forward(x)
    return out if self.torch_padding else out[..., :-1, :-1]


class Encoder(nn.Module):

  def __init__(self, in_channels: int, features: Sequence[int], torch_padding: bool = False):
    super().__init__()
    for i, f in enumerate(features):
      self.add_module(f"down{i}", SameConv2d(in_channels, f, 3, stride=2,
                                             torch_padding=torch_padding))
      self.add_module(f"conv{i}", SameConv2d(f, f, 3))
      in_channels = f
    self.depth = len(features)

  def forward(self, x):
    for i in range(self.depth):
      x = F.relu(getattr(self, f"down{i}")(x))
      x = F.relu(getattr(self, f"conv{i}")(x))
    return x


class Decoder(nn.Module):
  """Mirror of the encoder: stride-2 transposed convs back to the frame size, then a 3x3 conv."""

  def __init__(self, features: Sequence[int], in_channels: int, out_channels: int,
               torch_padding: bool = False):
    super().__init__()
    widths = list(reversed(features[:-1])) + [features[0]]
    for i, f in enumerate(widths):
      self.add_module(f"up{i}", SameConvTranspose2d(in_channels, f, torch_padding))
      in_channels = f
    self.depth = len(widths)
    self.out = SameConv2d(in_channels, out_channels, 3)

  def forward(self, x):
    for i in range(self.depth):
      x = F.relu(getattr(self, f"up{i}")(x))
    return self.out(x)   # linear: frames in [0, 1], MSE loss


class ConvLSTMLayer(nn.Module):
  """One ConvLSTM layer over time (Flax's `ConvLSTMCell`, scanned), zero initial state."""

  def __init__(self, in_channels: int, features: int):
    super().__init__()
    self.features = features
    self.ih = nn.Conv2d(in_channels, 4 * features, 3, padding=1)
    self.hh = nn.Conv2d(features, 4 * features, 3, padding=1)

  def forward(self, x):  # [B, T, c, h, w] -> [B, T, features, h, w]
    b, t = x.shape[:2]
    frames = x.flatten(0, 1)
    gates_x = self.ih(frames).unflatten(0, (b, t))   # every frame in one conv
    # The zero state in the frames' memory format, so the recurrence keeps one layout.
    fmt = (torch.channels_last if frames.is_contiguous(memory_format=torch.channels_last)
           else torch.contiguous_format)
    c = h = gates_x.new_zeros((b, self.features) + tuple(x.shape[3:])).contiguous(
        memory_format=fmt)
    outputs = []
    for step in range(t):
      i, g, f, o = (gates_x[:, step] + self.hh(h)).chunk(4, dim=1)
      c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)
      h = torch.sigmoid(o) * torch.tanh(c)
      outputs.append(h)
    if fmt == torch.channels_last:   # stack as [B, T, h, w, F], so frames stay channels-last
      return torch.stack([o.permute(0, 2, 3, 1) for o in outputs], dim=1).permute(0, 1, 4, 2, 3)
    return torch.stack(outputs, dim=1)


class ConvLSTMStack(nn.Module):

  def __init__(self, in_channels: int, features: int, num_layers: int):
    super().__init__()
    for i in range(num_layers):
      self.add_module(f"lstm{i}", ConvLSTMLayer(in_channels if i == 0 else features, features))
    self.num_layers = num_layers

  def forward(self, x):
    for i in range(self.num_layers):
      x = getattr(self, f"lstm{i}")(x)
    return x


class ConvLSTMAutoencoder(nn.Module):
  """Reconstructs every frame of a window; as jaxvad's `ConvLSTMAutoencoder`.

  Args:
    in_channels: channels of the frames (1 gray, 3 RGB); also the reconstruction's.
    features: encoder widths, one stride-2 stage each.
    lstm_features: ConvLSTM width.
    lstm_layers: stacked ConvLSTM layers.
    torch_padding: pad the stride-2 convs and the transposed convs as PyTorch code usually
      does (`padding=1`, `output_padding=1`) instead of as Flax's 'SAME': the same shapes,
      FLOPs and parameters without the pad / crop copies, but every stage samples one pixel
      off jaxvad's, so jaxvad weights give other outputs. For timing the usual PyTorch model.
  """

  def __init__(self, in_channels: int = 1, features: Sequence[int] = (32, 64, 64),
               lstm_features: int = 64, lstm_layers: int = 1, torch_padding: bool = False):
    super().__init__()
    self.encoder = Encoder(in_channels, features, torch_padding)
    self.convlstm = ConvLSTMStack(features[-1], lstm_features, lstm_layers)
    self.decoder = Decoder(features, lstm_features, in_channels, torch_padding)

  def forward(self, frames):
    """frames: float `[B, T, H, W, C]` -> reconstruction float `[B, T, H, W, C]`."""
    b, t, h, w, c = frames.shape
    x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2)   # NCHW view, channels-last memory
    codes = self.encoder(x)
    memory = self.convlstm(codes.unflatten(0, (b, t)))
    recon = self.decoder(memory.flatten(0, 1))
    return recon.permute(0, 2, 3, 1).reshape(b, t, h, w, -1).float()


# ------------------------------------------------------------------ the benchmark API


def build(config, *, channels_last: bool = True,
          torch_padding: bool = False) -> ConvLSTMAutoencoder:
  """The model of a jaxvad `convlstm_ae` config (its `model` section and `data.grayscale`).

  Args:
    config: a `jaxvad.config.Config`; `train.compute_dtype` is not read (use `torch.autocast`).
    channels_last: keep the conv weights in channels-last memory, as the input arrives.
    torch_padding: see `ConvLSTMAutoencoder` (False: exactly jaxvad's model).

  Returns:
    The module, on the CPU, in train mode.
  """
  m = config.model
  model = ConvLSTMAutoencoder(in_channels=1 if config.data.grayscale else 3,
                              features=tuple(m.features), lstm_features=m.lstm_features,
                              lstm_layers=m.lstm_layers, torch_padding=torch_padding)
  return model.to(memory_format=torch.channels_last) if channels_last else model


def train_loss(model: ConvLSTMAutoencoder, frames: torch.Tensor, targets=None) -> torch.Tensor:
  """The loss of jaxvad's `convlstm_ae.train_step`: MSE of the reconstruction.

  Args:
    model: from `build`.
    frames: uint8 `[B, T, H, W, C]` (any device; moved to the model's).
    targets: unused (the frames are the targets).

  Returns:
    float32 scalar.
  """
  del targets
  model.train()
  x = common.to_float(frames, common.device_of(model))
  return F.mse_loss(model(x), x)


def score(model: ConvLSTMAutoencoder, frames: torch.Tensor) -> torch.Tensor:
  """Per-frame PSNR `[B, T]` of the clipped reconstruction, as `convlstm_ae.score_step`."""
  model.eval()
  with torch.inference_mode():
    x = common.to_float(frames, common.device_of(model))
    return common.psnr(model(x).clamp(0.0, 1.0), x, dims=(2, 3, 4))


def load_flax_variables(model: ConvLSTMAutoencoder, variables: Mapping) -> ConvLSTMAutoencoder:
  """Copies a jaxvad `ConvLSTMAutoencoder`'s `{"params": ...}` into the model (in place).

  Returns:
    The model.
  """
  common.load_named_modules(model, variables, transpose_kernel=False)
  return model

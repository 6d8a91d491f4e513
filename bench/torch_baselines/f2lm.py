"""Paper 004's F2LM generator in PyTorch: SkiddieAhn/Paper-Making-Anomalies-More-Anomalous
`F2LM_Generator/network/unet.py` `UNet(input_channels1=12, input_channels2=6,
input_channels3=84, output_channels=3)`, module for module, as `F2LMGenerator` (the reference of
tests/test_f2lm_model.py for `jaxvad.models.f2lm.F2LM`).

Modules, named as the official code's, so `state_dict()` keys are its checkpoints' ("net_g" of
its training checkpoints):

  inc_x, down1_x .. down3_x   frame encoder, FFP's U-Net encoder (`ffp.FFPInConv`, `FFPDown`)
  inc_y, down1_y .. down3_y   motion encoder (the flow of the 3 input pairs, 6 channels)
  inc_z, down1_z .. down3_z   label encoder (4 frames x K class maps; K = 21 there, 84 channels)
  transform_xtoy              double conv (`ffp.FFPDoubleConv`) of the frame bottleneck: T_m
  transform_xtoz              the same: T_l
  fusion_conv                 double conv of cat([x, T_m(x), T_l(x)])
  se                          `SELayer`: mean pool, fc1 C -> C / 8 + ReLU, fc2 + sigmoid, scale
  up1 .. up3, outc            FFP's decoder (`ffp.FFPUp`, 3x3 conv), skips from the frame encoder

`forward(x, y, z)` returns `(tanh(out), frame, motion, to_motion, label, to_label)`: the
official `(pred, x4, y4, x_y, z4, x_z)`, the five features L2-normalised over channels
(`F.normalize(dim=1)`) after the fusion has used them unnormalised.

Additions, off by default, mirroring `jaxvad.models.f2lm.F2LM`: `width` (channels 64·width ..,
as `unet.unet_features`), and the paper's ablations (Tables 3-4): `motion=False` /
`labels=False` drop that encoder and its transform (their inputs and outputs are None), fusion
"concat" drops the SE block, "add" feeds x + T_m(x) + T_l(x) to the decoder (no fusion conv, no
SE). The SE block's hidden width is max(1, C // 8), as the Flax port's (the official C // 8
is 0 only below width 1/64).

Initialisation: the official training applies `proposed_weights_init` to the generator (not
FFP's `weights_init_normal`, which it applies to the discriminator); `init_weights` does that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common
from bench.torch_baselines.ffp import FFPDoubleConv, FFPDown, FFPInConv, FFPUp

__all__ = ["F2LMGenerator", "SELayer", "FUSIONS", "init_weights", "proposed_weights_init",
           "weights_init_normal"]

FUSIONS = ("concat_se", "concat", "add")


class SELayer(nn.Module):
  """The official `SELayer(num_channels, reduction_ratio=8)`: squeeze (spatial mean), excite
  (fc1 + ReLU, fc2 + sigmoid), scale the channels."""

  def __init__(self, num_channels: int, reduction_ratio: int = 8):
    super().__init__()
    hidden = max(1, num_channels // reduction_ratio)
    self.fc1 = nn.Linear(num_channels, hidden)
    self.fc2 = nn.Linear(hidden, num_channels)

  def forward(self, x):
    s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
    return x * s[:, :, None, None]


class F2LMGenerator(nn.Module):
  """The official F2LM `UNet`, channels scaled by `width`, with the ablation switches of
  `jaxvad.models.f2lm.F2LM` (see the module docstring)."""

  def __init__(self, input_channels1: int = 12, input_channels2: int = 6,
               input_channels3: int = 84, output_channels: int = 3, width: float = 1.0,
               motion: bool = True, labels: bool = True, fusion: str = "concat_se"):
    super().__init__()
    if fusion not in FUSIONS:
      raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    self.motion, self.labels, self.fusion = motion, labels, fusion
    c = common.channels(64, width)
    # Registration order is the official one (x, y, z encoders, transforms, fusion, decoder),
    # so state_dict() lists the keys as its checkpoints do.
    for suffix, in_ch, on in (("x", input_channels1, True), ("y", input_channels2, motion),
                              ("z", input_channels3, labels)):
      if on:
        setattr(self, f"inc_{suffix}", FFPInConv(in_ch, c))
        for k in (1, 2, 3):
          setattr(self, f"down{k}_{suffix}", FFPDown(c * 2 ** (k - 1), c * 2 ** k))
    bottleneck = 8 * c
    if motion:
      self.transform_xtoy = FFPDoubleConv(bottleneck, bottleneck)
    if labels:
      self.transform_xtoz = FFPDoubleConv(bottleneck, bottleneck)
    if fusion != "add":
      self.fusion_conv = FFPDoubleConv(bottleneck * (1 + motion + labels), bottleneck)
    if fusion == "concat_se":
      self.se = SELayer(bottleneck)
    self.up1 = FFPUp(8 * c, 4 * c)
    self.up2 = FFPUp(4 * c, 2 * c)
    self.up3 = FFPUp(2 * c, c)
    self.outc = nn.Conv2d(c, output_channels, kernel_size=3, padding=1)

  def _encode(self, x, suffix: str) -> list[torch.Tensor]:
    levels = [getattr(self, f"inc_{suffix}")(x)]
    for k in (1, 2, 3):
      levels.append(getattr(self, f"down{k}_{suffix}")(levels[-1]))
    return levels

  def forward(self, x, y=None, z=None):
    """x: frames `[N, 12, H, W]`; y: flows `[N, 6, H, W]` (motion); z: class maps
    `[N, 4·K, H, W]` (labels). Returns `(pred, frame, motion, to_motion, label, to_label)`, the
    features `[N, 512·w, H/8, W/8]` L2-normalised over channels, None where disabled."""
    x1, x2, x3, x4 = self._encode(x, "x")
    y4 = self._encode(y, "y")[-1] if self.motion else None
    z4 = self._encode(z, "z")[-1] if self.labels else None
    x_y = self.transform_xtoy(x4) if self.motion else None
    x_z = self.transform_xtoz(x4) if self.labels else None
    parts = [t for t in (x4, x_y, x_z) if t is not None]
    if self.fusion == "add":
      fs = sum(parts[1:], parts[0])
    else:
      fs = self.fusion_conv(torch.cat(parts, dim=1))
      if self.fusion == "concat_se":
        fs = self.se(fs)
    out = self.up3(self.up2(self.up1(fs, x3), x2), x1)
    out = torch.tanh(self.outc(out))
    norm = lambda t: None if t is None else F.normalize(t, p=2, dim=1)  # noqa: E731
    return out, norm(x4), norm(y4), norm(x_y), norm(z4), norm(x_z)


def proposed_weights_init(m: nn.Module) -> None:
  """The official `utils.proposed_weights_init`, for `model.apply`: Conv2d and Linear weights
  truncated N(0, 0.02) (timm's `trunc_normal_`, cut at ±2: no cut at this std), their biases 0.
  What it leaves at torch's defaults matters as much: BatchNorm2d (weight 1, bias 0; the
  LayerNorm branch never fires in this net) and ConvTranspose2d (no Conv2d subclass: kaiming-
  uniform weight, U(±1/sqrt(4·out)) bias)."""
  if isinstance(m, (nn.Conv2d, nn.Linear)):
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
      nn.init.zeros_(m.bias)
  elif isinstance(m, nn.LayerNorm):
    nn.init.ones_(m.weight)
    nn.init.zeros_(m.bias)


def weights_init_normal(m: nn.Module) -> None:
  """FFP's `weights_init_normal` (the official code's for the discriminator, and the one
  jaxvad's `F2LM` initialisers follow): conv and transposed-conv weights N(0, 0.02) (the
  official test is "Conv" in the class name, which only these match there), BatchNorm2d weight
  N(1, 0.02) and bias 0; biases and Linear untouched."""
  if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(m.weight, 0.0, 0.02)
  elif isinstance(m, nn.BatchNorm2d):
    nn.init.normal_(m.weight, 1.0, 0.02)
    nn.init.zeros_(m.bias)


def init_weights(model: nn.Module) -> nn.Module:
  """The official generator's initialisation (`model.apply(proposed_weights_init)`, as its
  `train_pre_func.load_models` without `--resume`); returns the model."""
  with torch.no_grad():
    return model.apply(proposed_weights_init)

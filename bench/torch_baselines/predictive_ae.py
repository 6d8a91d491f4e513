"""The predictive autoencoder of paper 001 (§3.3.1) in PyTorch, layer for layer as
`jaxvad.models.predictive_ae.PredictiveAE` and the `predictive_ae` method around it.

A frozen ResNet-18 (`bench.torch_baselines.resnet`, torchvision's layout) encodes each of the
`window - 1` input frames; layer4's features are folded into channels frame-major
(`[B, T, C, h, w] -> [B, T·C, h, w]`) and merged by a 1x1 conv; four
`ConvTranspose2d(k3, s2, p1, op1)` + BN + ReLU layers (widths 256, 128, 64, 32 at width 1) and
a last one to the frame's channels predict the next frame in ImageNet-normalised space, which
`to_pixels` maps back to [0, 1]. Variants (§3.3.1.1):

  base       the above.
  dropout    Dropout(0.2) before the first decoder layer, Dropout(0.1) before the second.
  skiptwice  layer3 and layer2 features, time-folded and reduced by a 1x1 conv to a quarter of
             their folded channels, concatenated after the decoder layers of their resolution.
  attention  spatial attention (channel max and mean -> 7x7 conv -> sigmoid -> multiply) after
             each of the four decoder layers.

Frozen encoder (the paper's; `model.finetune = false`): its parameters have
`requires_grad=False`, it stays in eval mode (BN on running statistics) when the model is put
in train mode, and it runs under `torch.no_grad()`.

Decoder module names are the Flax names (`up0`, `bn0`, `attention0.conv`, `merge`, `out`,
`skip_layer3`), so `load_flax_variables` copies them by name; the encoder keeps
torchvision's names and loads through jaxvad's converter mapping.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common
from bench.torch_baselines.resnet import ResNet, resnet18

__all__ = ["PredictiveAE", "SpatialAttention", "VARIANTS", "build", "train_loss", "score",
           "predict", "to_pixels", "load_flax_variables"]

VARIANTS = ("base", "dropout", "skiptwice", "attention")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Per channel count, as Python floats computed once (torch.compile mis-guards numpy globals
# read in traced code); gray uses the channel means, as jaxvad.
_CONSTANTS = {3: (tuple(map(float, IMAGENET_MEAN)), tuple(map(float, IMAGENET_STD))),
              1: ((float(IMAGENET_MEAN.mean()),), (float(IMAGENET_STD.mean()),))}


def up_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
  """The paper's transposed conv: doubles H and W."""
  return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1,
                            output_padding=1)


class SpatialAttention(nn.Module):
  """Channel max and mean -> 7x7 conv -> sigmoid -> multiply (CBAM's spatial gate)."""

  def __init__(self):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, kernel_size=7, padding=3)

  def forward(self, x):
    pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    return x * torch.sigmoid(self.conv(pooled))


def _fold_time(x: torch.Tensor, batch: int) -> torch.Tensor:
  """`[B·T, C, h, w]` -> `[B, T·C, h, w]`, frame-major channels (`unflatten(0, (B, T))
  .flatten(1, 2)`), built in channels-last memory: one copy, as jaxvad's `_fold_time`."""
  bt, c, h, w = x.shape
  t = bt // batch
  nhwc = x.permute(0, 2, 3, 1).unflatten(0, (batch, t)).permute(0, 2, 3, 1, 4)   # [B, h, w, T, C]
  return nhwc.reshape(batch, h, w, t * c).permute(0, 3, 1, 2)


class PredictiveAE(nn.Module):
  """Predicts the frame after `frames` input frames.

  Args:
    variant: one of `VARIANTS`.
    width: channel multiplier of the encoder and decoder (1.0 = ResNet-18, the paper's).
    frames: input frames per window (T = window - 1; the paper's 4).
    finetune: train the encoder too (default False: frozen, as the paper).
    out_channels: channels of the predicted frame.
  """

  def __init__(self, variant: str = "base", width: float = 1.0, frames: int = 4,
               finetune: bool = False, out_channels: int = 3):
    super().__init__()
    if variant not in VARIANTS:
      raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    self.variant, self.finetune = variant, finetune
    widths = [common.channels(f, width) for f in (64, 128, 256, 512)]
    self.encoder: ResNet = resnet18(num_classes=None, width=width)
    if not finetune:
      self.encoder.requires_grad_(False)
    self.merge = nn.Conv2d(frames * widths[3], widths[3], kernel_size=1)
    self.skip_after = {}
    if variant == "skiptwice":
      self.skip_layer3 = nn.Conv2d(frames * widths[2], frames * widths[2] // 4, kernel_size=1)
      self.skip_layer2 = nn.Conv2d(frames * widths[1], frames * widths[1] // 4, kernel_size=1)
      self.skip_after = {0: "layer3", 1: "layer2"}
    self.dropouts = {0: 0.2, 1: 0.1} if variant == "dropout" else {}
    for i, p in self.dropouts.items():
      self.add_module(f"dropout{i}", nn.Dropout(p))
    in_channels = widths[3]
    dec_widths = (widths[2], widths[1], widths[0], max(1, widths[0] // 2))
    for i, f in enumerate(dec_widths):
      self.add_module(f"up{i}", up_conv(in_channels, f))
      self.add_module(f"bn{i}", nn.BatchNorm2d(f))
      if variant == "attention":
        self.add_module(f"attention{i}", SpatialAttention())
      in_channels = f
      if i in self.skip_after:
        in_channels += getattr(self, f"skip_{self.skip_after[i]}").out_channels
    self.depth = len(dec_widths)
    self.out = up_conv(in_channels, out_channels)

  def train(self, mode: bool = True):
    super().train(mode)
    if not self.finetune:
      self.encoder.eval()   # frozen: BN on its running statistics, also in training
    return self

  def forward(self, frames):
    """frames: float `[B, T, 3, H, W]`, ImageNet-normalised (any memory format); H, W
    divisible by 32. Returns float `[B, out_channels, H, W]`, the next frame in that space."""
    b, t = frames.shape[:2]
    with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
      feats = self.encoder.stages(frames.flatten(0, 1))
    skips = {s: getattr(self, f"skip_{s}")(_fold_time(feats[s], b))
             for s in self.skip_after.values()}
    x = self.merge(_fold_time(feats["layer4"], b))
    for i in range(self.depth):
      if i in self.dropouts:
        x = getattr(self, f"dropout{i}")(x)
      x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"up{i}")(x)))
      if self.variant == "attention":
        x = getattr(self, f"attention{i}")(x)
      if i in self.skip_after:
        x = torch.cat([x, skips[self.skip_after[i]]], dim=1)
    return self.out(x)


def _constants(channels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
  mean, std = _CONSTANTS[channels]
  return common.constant(mean, device), common.constant(std, device)


def encoder_input(x: torch.Tensor) -> torch.Tensor:
  """float `[B, T, H, W, C]` in [0, 1] -> ImageNet-normalised `[B, T, 3, H, W]` (gray repeated;
  channels-last memory)."""
  if x.shape[-1] == 1:
    x = x.expand(*x.shape[:-1], 3)
  mean, std = _constants(3, x.device)
  return ((x - mean) / std).permute(0, 1, 4, 2, 3)


def to_pixels(out: torch.Tensor) -> torch.Tensor:
  """The decoder's output `[B, C, H, W]` (ImageNet-normalised space) -> [0, 1] pixels, as
  `jaxvad.methods.predictive_ae.to_pixels` (gray: the mean of the three channels' constants)."""
  mean, std = _constants(out.shape[1], out.device)
  return out.float() * std[:, None, None] + mean[:, None, None]


def build(config, *, channels_last: bool = True) -> PredictiveAE:
  """The model of a jaxvad `predictive_ae` config.

  Args:
    config: a `jaxvad.config.Config`: `model.variant`, `width`, `finetune`, `loss_weights`,
      `pretrained` (a torchvision resnet18 `.pth`: the encoder's weights), `data.window`
      (inputs = window - 1) and `data.grayscale`. `model.augment` must be "none" (the
      baseline has no augmentation); `train.compute_dtype` is not read (use `torch.autocast`).
    channels_last: keep the conv weights in channels-last memory, as the input arrives.

  Returns:
    The module, on the CPU, in train mode, with `loss_weights` as an attribute.
  """
  m = config.model
  if m.augment != "none":
    raise ValueError(f"model.augment = {m.augment!r}: the PyTorch baseline has no "
                     "augmentation; benchmark with model.augment=none")
  model = PredictiveAE(variant=m.variant, width=m.width, frames=config.data.window - 1,
                       finetune=m.finetune, out_channels=1 if config.data.grayscale else 3)
  if m.pretrained:
    sd = torch.load(m.pretrained, map_location="cpu", weights_only=True)
    model.encoder.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
  model.loss_weights = tuple(m.loss_weights)
  return model.to(memory_format=torch.channels_last) if channels_last else model


def _split(model: PredictiveAE, frames: torch.Tensor):
  x = common.to_float(frames, common.device_of(model))
  return encoder_input(x[:, :-1]), x[:, -1].permute(0, 3, 1, 2)   # target [B, C, H, W]


def train_loss(model: PredictiveAE, frames: torch.Tensor, targets=None) -> torch.Tensor:
  """The loss of jaxvad's `predictive_ae.train_step` (without augmentation): paper 001 eq. 3.1,
  `0.6 MSE + 0.25 gradient + 0.15 (1 - SSIM)` (the config's `loss_weights`) between the
  predicted last frame of each window, in pixels, and the frame.

  Args:
    model: from `build`; put in train mode (decoder BN on batch statistics, dropout on).
    frames: uint8 `[B, window, H, W, C]`.
    targets: unused (the last frame is the target).

  Returns:
    float32 scalar.
  """
  del targets
  model.train()
  inputs, target = _split(model, frames)
  pred = to_pixels(model(inputs))
  return common.prediction_loss(pred, target, getattr(model, "loss_weights", (0.6, 0.25, 0.15)))


def predict(model: PredictiveAE, frames: torch.Tensor) -> torch.Tensor:
  """The predicted last frame of each window, float `[B, C, H, W]` in pixels (unclipped); eval
  mode, no autograd."""
  model.eval()
  with torch.inference_mode():
    inputs, _ = _split(model, frames)
    return to_pixels(model(inputs))


def score(model: PredictiveAE, frames: torch.Tensor) -> torch.Tensor:
  """PSNR of each window's predicted last frame, `[B, 1]`, as `predictive_ae.score_step`."""
  model.eval()
  with torch.inference_mode():
    inputs, target = _split(model, frames)
    pred = to_pixels(model(inputs)).clamp(0.0, 1.0)
    return common.psnr(pred, target, dims=(1, 2, 3))[:, None]


def load_flax_variables(model: PredictiveAE, variables: Mapping) -> PredictiveAE:
  """Copies a jaxvad `PredictiveAE`'s `{"params", "batch_stats"}` into the model (in place).

  Returns:
    The model.
  """
  common.load_resnet18_from_flax(model.encoder, variables, flax_path=("encoder",), name="encoder")
  common.load_named_modules(model, variables, transpose_kernel=True, skip=("encoder",))
  return model

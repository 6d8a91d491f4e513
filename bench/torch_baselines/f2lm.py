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

The method (`build` -> `F2LM`: generator, FFP's `PixelDiscriminator`, the Destroyer
`FFPUNet(3, 3)`), its two training phases and its score, as `jaxvad.methods.f2lm` computes
them, for bench/models.py (after the official `F2LM_Generator/training/train_func.py` and
`Destroyer/training/train_func.py`):

  "generator" (`train_losses`, `train_step`)   `first_direction`: 1 · intensity (MSE) + 1 ·
      gradient + 0.05 · LSGAN adversarial + 1 · (motion + label triplet), the discriminator's
      LSGAN loss on the target and the detached prediction; then the generator's AdamW step,
      then the discriminator's (the official order). Both losses come from the one forward, so
      both gradients are taken at the incoming parameters, as jaxvad's jitted step.
  "destroyer" (`destroyer_losses`, `destroyer_step`)   the generator frozen in eval mode (its BN
      on running statistics, no autograd), its prediction A noised per patch (`noise_patches`)
      into N, the Destroyer in train mode on N, the patch-gated loss (`destroyer_loss`), one
      AdamW step.

Where the official code and jaxvad differ, the baseline computes jaxvad's numbers (so that
both run the same arithmetic and the parity test can compare them), as the FFP baseline does:
  * gradient loss: jaxvad's (pairs inside the frame, `common.gradient_loss`), not the TF-style
    zero-padded border;
  * triplet distance: `model.triplet_distance`, default "channels" (torch's `PairwiseDistance`
    over the channel axis, the paper's per-pixel feature vectors; "width" is the official
    `PairwiseDistance` on NCHW maps, over the last axis);
  * Destroyer loss: the mean over the batch of the per-image patch sums (the code sums over the
    batch too), patches noised per image (the code draws one patch mask for the whole batch),
    and the patch SSIM as jaxvad's `scoring.patch_scores`: the frame's SSIM map (Gaussian
    window 11, sigma 1.5, on [0, 1]) averaged over each patch's interior pixels, one
    vectorised pass for the batch — not the code's `ssim_error` called per patch in a Python
    loop (B · 64 calls per step), whose window shrinks to the 8-px patch at 64².
  * one backward pass of both losses, the adversarial term through the discriminator's
    parameters detached (`train_losses`), instead of the official two (`G_l.backward()`, then
    `D_l.backward()`, whose first also fills the discriminator's `.grad` with the adversarial
    term's gradient, discarded by `optimizer_D.zero_grad()`): the same gradients and updates,
    less work, and the one backward `torch.compile`'s single autograd node of both losses
    allows.
Flow and class maps arrive precomputed per frame (`batch["flow"]`, `batch["classes"]`, as
jaxvad's pipeline delivers them); the official code runs FlowNet2-SD and DeepLabv3 inside
every step, weights this project cannot download. Not done: the optional `PolynomialLR`.

Interface (`bench.torch_baselines`): `build`, `train_loss`, `score`, `load_flax_variables`,
`optimizers`, `train_losses`, `train_step` (the first phase, as ffp's) and `PHASES` (every
phase's losses and step, by the phase names of `jaxvad.methods.f2lm.METHOD`). The per-frame
inputs come as the `targets` argument: `{"flow": float32 [B, T, H, W, 2], "classes": uint8
[B, T, H, W]}` (those enabled by the config), and `score(model, frames, inputs)` takes them too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common, ffp
from bench.torch_baselines.ffp import (FFPDoubleConv, FFPDown, FFPInConv, FFPUNet, FFPUp,
                                       PixelDiscriminator)

__all__ = ["F2LMGenerator", "SELayer", "FUSIONS", "init_weights", "proposed_weights_init",
           "weights_init_normal", "F2LM", "build", "optimizers", "model_inputs",
           "triplet_distances", "train_losses", "train_loss", "train_step", "noise_patches",
           "patch_ssim", "destroyer_loss", "destroyer_losses", "destroyer_step", "PHASES",
           "score", "load_flax_variables"]

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


# --------------------------------------------------------------------------- the method


class F2LM(nn.Module):
  """The three networks of a jaxvad `f2lm` config as one module (one `.to(device)`), with the
  settings its steps read (`jaxvad.methods.f2lm.Settings`).

  Attributes:
    generator: `F2LMGenerator`.
    discriminator: `PixelDiscriminator` on C channels (phase 1).
    destroyer: `FFPUNet(C, C)` (phase 2).
  """

  def __init__(self, generator: F2LMGenerator, discriminator: PixelDiscriminator,
               destroyer: FFPUNet, model_config):
    super().__init__()
    self.generator, self.discriminator, self.destroyer = generator, discriminator, destroyer
    m = model_config
    self.loss_weights = tuple(float(w) for w in m.loss_weights)
    self.margin, self.triplet_distance = float(m.margin), m.triplet_distance
    self.flow_scale, self.num_classes = float(m.flow_scale), int(m.num_classes)
    self.noise, self.patch_grid = m.noise, int(m.patch_grid)
    self.destroyer_lambda = float(m.destroyer_lambda)
    self.noise_rate = tuple(float(r) for r in m.noise_rate)
    self.dropout_rate = tuple(float(r) for r in m.dropout_rate)

  def forward(self, x, motion=None, labels=None):
    """The generator's `(pred, frame, motion, to_motion, label, to_label)`."""
    return self.generator(x, motion, labels)


def _init_destroyer(m: nn.Module) -> None:
  # The official `ae_weights_init_normal`: on this U-Net (no DSConv layers) only the BNs,
  # weight N(1, 0.02), bias 0; the convs keep torch's defaults.
  if isinstance(m, nn.BatchNorm2d):
    nn.init.normal_(m.weight, 1.0, 0.02)
    nn.init.zeros_(m.bias)


def build(config, *, channels_last: bool = True) -> F2LM:
  """The networks of a jaxvad `f2lm` config, initialised as the official training does.

  Args:
    config: a `jaxvad.config.Config` of method f2lm: `model.width` (generator and Destroyer),
      `d_width`, `motion` / `label_source` ("none" drops that encoder), `num_classes`,
      `fusion`, the loss and noise settings, `pretrained` (an official checkpoint's "net_g"),
      `data.grayscale`. `train.compute_dtype` is not read (use `torch.autocast`).
    channels_last: keep the conv weights in channels-last memory, as the input arrives.

  Returns:
    The `F2LM` module, on the CPU, in train mode.
  """
  m = config.model
  c = 1 if config.data.grayscale else 3
  with torch.no_grad():
    generator = init_weights(F2LMGenerator(
        4 * c, 6, 4 * m.num_classes, c, width=m.width, motion=m.motion != "none",
        labels=m.label_source != "none", fusion=m.fusion))
    discriminator = PixelDiscriminator(c, width=m.d_width).apply(weights_init_normal)
    destroyer = FFPUNet(c, c, width=m.width).apply(_init_destroyer)
  if m.pretrained:
    checkpoint = torch.load(m.pretrained, map_location="cpu", weights_only=True)
    generator.load_state_dict(checkpoint["net_g"])
  model = F2LM(generator, discriminator, destroyer, m)
  return model.to(memory_format=torch.channels_last) if channels_last else model


def optimizers(model: F2LM, config) -> tuple[torch.optim.AdamW, ...]:
  """The official three AdamWs (`def_optim_sch`): the generator's at `train.learning_rate`, the
  discriminator's at `model.d_learning_rate`, the Destroyer's at
  `model.destroyer_learning_rate`, all with `model.weight_decay` (as jaxvad's optax `adamw`)."""
  m = config.model
  return tuple(torch.optim.AdamW(net.parameters(), lr=rate, weight_decay=m.weight_decay)
               for net, rate in ((model.generator, config.train.learning_rate),
                                 (model.discriminator, m.d_learning_rate),
                                 (model.destroyer, m.destroyer_learning_rate)))


def _stack(x: torch.Tensor) -> torch.Tensor:
  """`[B, T, H, W, C]` -> `[B, T·C, H, W]` frame-major (`ffp.stack_channels`), channels-last
  memory (a permute of the channels-last batch)."""
  b, t, h, w, c = x.shape
  return x.permute(0, 2, 3, 1, 4).reshape(b, h, w, t * c).permute(0, 3, 1, 2)


def model_inputs(model: F2LM, frames: torch.Tensor, inputs: Mapping | None):
  """A batch -> (frames `[B, 4·C, H, W]`, motion `[B, 6, H, W]` or None, labels `[B, 4·K, H, W]`
  or None, target `[B, C, H, W]`), in model space (`jaxvad.methods.f2lm.model_inputs`).

  Args:
    model: from `build`.
    frames: uint8 `[B, 5, H, W, C]`.
    inputs: `{"flow": float32 [B, 5, H, W, 2], "classes": uint8 [B, 5, H, W]}` (the enabled
      ones), moved to the model's device here.
  """
  device = common.device_of(model)
  x = frames.to(device, non_blocking=True).float() / 127.5 - 1.0
  motion = labels = None
  # Each input converted before it is sliced: a view of the caller's tensor taken inside
  # `score`'s inference_mode fails under torch.compile ("Cannot set version_counter for
  # inference tensor"); a view of a tensor made there does not.
  if model.generator.motion:   # the flows into input frames 2..4: the 3 input pairs
    flow = inputs["flow"].to(device, non_blocking=True).float() / model.flow_scale
    motion = _stack(flow[:, 1:-1])
  if model.generator.labels:
    classes = inputs["classes"].to(device, non_blocking=True).long()
    labels = _stack(F.one_hot(classes[:, :-1], model.num_classes).float())
  return _stack(x[:, :-1]), motion, labels, x[:, -1].permute(0, 3, 1, 2)


def triplet_distances(anchor, positive, negative, *, margin: float,
                      distance: str = "channels") -> torch.Tensor:
  """`max(d(a, p) - d(a, n) + margin, 0)` per element, d torch's `PairwiseDistance(p=2)` (the
  official `cosine_similarity_loss`) over the channels ("channels": `[N, H, W]`) or, as the
  official code on NCHW maps, over the width ("width": `[N, C, H]`)."""
  if distance == "channels":
    anchor, positive, negative = (t.movedim(1, -1) for t in (anchor, positive, negative))
  anchor, positive, negative = anchor.float(), positive.float(), negative.float()
  return torch.clamp(margin + F.pairwise_distance(anchor, positive)
                     - F.pairwise_distance(anchor, negative), min=0.0)


def _triplets(model: F2LM, feats, *, per_sample: bool = False) -> dict[str, torch.Tensor]:
  """{"label_triplet", "motion_triplet"} of the enabled encoders: scalars, or `[B]`."""
  frame, motion, to_motion, label, to_label = feats
  out = {}
  for key, anchor, positive in (("label", to_label, label), ("motion", to_motion, motion)):
    if anchor is not None:
      hinge = triplet_distances(anchor, positive, frame, margin=model.margin,
                                distance=model.triplet_distance)
      out[f"{key}_triplet"] = hinge.mean(dim=(1, 2)) if per_sample else hinge.mean()
  return out


def train_losses(model: F2LM, frames: torch.Tensor, targets=None) -> dict[str, torch.Tensor]:
  """Phase 1's losses (the official `first_direction`; jaxvad's `f2lm.generator_step`), in train
  mode (the generator's BN on batch statistics, updating its running ones).

  The adversarial term runs through the discriminator's parameters detached, so that one
  backward pass of `loss + d_loss` gives each network its own loss's gradient (`train_step`).
  One pass, not the official two: `torch.compile` makes one autograd node of both losses,
  which can be backpropagated once (a second `backward` finds its saved tensors freed).

  Args:
    model: from `build`.
    frames: uint8 `[B, 5, H, W, C]`.
    targets: the per-frame inputs (`model_inputs`).

  Returns:
    float32 scalars: "loss" (the generator's weighted sum), "d_loss", and the generator's terms
    "intensity", "gradient", "adversarial", "label_triplet", "motion_triplet" (the enabled
    ones), as the metrics of jaxvad's step.
  """
  model.train()
  x, motion, labels, target = model_inputs(model, frames, targets)
  pred, *feats = model.generator(x, motion, labels)
  pred = pred.float()
  d_fake = ffp._discriminate_frozen(model, pred).float()  # pylint: disable=protected-access
  terms = {"intensity": torch.mean((pred - target) ** 2),
           "gradient": common.gradient_loss(pred, target),
           "adversarial": torch.mean((d_fake - 1) ** 2 / 2), **_triplets(model, feats)}
  w_int, w_grad, w_adv, w_tri = model.loss_weights
  loss = (w_int * terms["intensity"] + w_grad * terms["gradient"]
          + w_adv * terms["adversarial"])
  for key in ("label_triplet", "motion_triplet"):
    if key in terms:
      loss = loss + w_tri * terms[key]
  d_real = model.discriminator(target).float()
  d_pred = model.discriminator(pred.detach()).float()
  d_loss = torch.mean((d_real - 1) ** 2 / 2) + torch.mean(d_pred ** 2 / 2)
  return {"loss": loss, "d_loss": d_loss, **terms}


def train_loss(model: F2LM, frames: torch.Tensor, targets=None) -> torch.Tensor:
  """Phase 1's `loss + d_loss` (`train_losses`): its one backward pass gives each network its
  own loss's gradient (a caller with one optimizer)."""
  losses = train_losses(model, frames, targets)
  return losses["loss"] + losses["d_loss"]


def train_step(model: F2LM, optimizers_: tuple, frames: torch.Tensor, targets=None, *,
               losses_fn=train_losses) -> dict[str, torch.Tensor]:
  """One phase-1 step: one backward pass of `loss + d_loss` (see `train_losses`), then the
  generator's AdamW step and the discriminator's, in the official order.

  The official code runs two backward passes (`G_l.backward()`, then `D_l.backward()`); the
  gradients are the same: the discriminator's loss sees the prediction detached, and the
  generator's adversarial term reaches the generator only (the official pass also fills the
  discriminator's `.grad`, which its `optimizer_D.zero_grad()` discards before `D_l`'s).

  Args:
    model: from `build`.
    optimizers_: from `optimizers` (generator's, discriminator's, Destroyer's).
    frames: uint8 `[B, 5, H, W, C]`.
    targets: the per-frame inputs.
    losses_fn: `train_losses`, or a `torch.compile`d / autocast wrapper of it.

  Returns:
    The losses, detached (no device sync).
  """
  opt_g, opt_d, _ = optimizers_
  losses = losses_fn(model, frames, targets)
  opt_g.zero_grad(set_to_none=True)
  opt_d.zero_grad(set_to_none=True)
  (losses["loss"] + losses["d_loss"]).backward()
  opt_g.step()
  opt_d.step()
  return {k: v.detach() for k, v in losses.items()}


# --------------------------------------------------------------------------- phase 2


def noise_patches(images: torch.Tensor, *, grid: int, kind: str = "ci",
                  noise_rate=(0.05, 0.5), dropout_rate=(0.05, 0.5)) -> torch.Tensor:
  """The Destroyer's input N: `images` (model space `[B, C, H, W]`) with noised patches, as
  `jaxvad.methods.f2lm.noise_patches`.

  One chance r ~ U(noise_rate) and one dropout probability p ~ U(dropout_rate) per call (drawn
  on the device: no host sync); each of the `grid`² patches of each image is noised with
  probability r. "ci": the official `Dropout2d` on the patch (each channel zeroed with
  probability p, the others scaled by 1 / (1 - p)); "cd": pixels zeroed in every channel with
  probability p (unscaled); "none": no noise.
  """
  if kind == "none":
    return images
  b, c, h, w = images.shape
  device = images.device
  rate = torch.empty((), device=device).uniform_(*noise_rate)
  p = torch.empty((), device=device).uniform_(*dropout_rate)
  ph, pw = h // grid, w // grid
  x = images.reshape(b, c, grid, ph, grid, pw)
  noised = torch.rand(b, 1, grid, 1, grid, 1, device=device) < rate
  if kind == "ci":
    keep = torch.rand(b, c, grid, 1, grid, 1, device=device) >= p
    noisy = torch.where(keep, x / (1 - p), 0.0)
  else:
    keep = torch.rand(b, 1, grid, ph, grid, pw, device=device) >= p
    noisy = torch.where(keep, x, 0.0)
  out = torch.where(noised, noisy, x).reshape(b, c, h, w)
  return out.contiguous(memory_format=torch.channels_last)


def patch_ssim(pred: torch.Tensor, target: torch.Tensor, *, grid: int,
               win_size: int = 11) -> torch.Tensor:
  """SSIM of each of the `grid`² patches, frames `[B, C, H, W]` in [0, 1] -> `[B, grid, grid]`.

  jaxvad's `scoring.patch_scores(metric="ssim")`: the frame's SSIM map (Gaussian window 11,
  sigma 1.5; `common.ssim_map`, the interior pixels) averaged over channels and over each
  patch's interior pixels, in one pass for the whole batch. (Not the official per-patch
  `ssim_error` loop; see the module docstring.)
  """
  h, w = pred.shape[2:]
  size, r = h // grid, (win_size - 1) // 2
  smap = common.ssim_map(pred, target, win_size=win_size).mean(dim=1, keepdim=True)
  sums = F.avg_pool2d(F.pad(smap, (r, r, r, r)), size, divisor_override=1)[:, 0]
  interior = np.zeros((h, w), np.float32)
  interior[r:h - r, r:w - r] = 1
  count = interior.reshape(grid, size, grid, w // grid).sum(axis=(1, 3))
  # A patch wholly in the border has no interior pixel: NaN, as jaxvad's.
  return sums / common.constant(count.ravel(), sums.device).view(grid, grid)


def destroyer_loss(output, prediction, noisy, frame, *, grid: int, lam: float):
  """Paper 004's Destroyer loss (`jaxvad.methods.f2lm.destroyer_loss`; the official
  `getDestroyerLoss` with ld = lam and the black background, -1 in model space), mean over the
  batch; all `[B, C, H, W]` in model space.

  Returns:
    (loss, d `[B, grid, grid]`: the per-patch weights of the zero target).
  """
  size = output.shape[2] // grid
  ssim = patch_ssim(((noisy + 1) / 2).clamp(0, 1), (frame + 1) / 2, grid=grid)
  d = torch.clamp(lam * (1 - ssim), max=1.0).detach()
  output = output.float()
  to_zero = F.avg_pool2d((-1.0 - output) ** 2, size).mean(dim=1)
  to_prediction = F.avg_pool2d((prediction - output) ** 2, size).mean(dim=1)
  return (d * to_zero + (1 - d) * to_prediction).sum(dim=(1, 2)).mean(), d


def destroyer_losses(model: F2LM, frames: torch.Tensor, targets=None) -> dict[str, torch.Tensor]:
  """Phase 2's loss (the official `Destroyer/training/train_func.py`; jaxvad's
  `f2lm.destroyer_step`): the frozen generator's prediction in eval mode without autograd, noised,
  through the Destroyer in train mode.

  Returns:
    float32 scalars "loss" and "zero_weight" (the mean d).
  """
  model.generator.eval()
  model.destroyer.train()
  x, motion, labels, target = model_inputs(model, frames, targets)
  with torch.no_grad():
    pred = model.generator(x, motion, labels)[0].float()
  noisy = noise_patches(pred, grid=model.patch_grid, kind=model.noise,
                        noise_rate=model.noise_rate, dropout_rate=model.dropout_rate)
  out = model.destroyer(noisy)
  loss, d = destroyer_loss(out, pred, noisy, target, grid=model.patch_grid,
                           lam=model.destroyer_lambda)
  return {"loss": loss, "zero_weight": d.mean()}


def destroyer_step(model: F2LM, optimizers_: tuple, frames: torch.Tensor, targets=None, *,
                   losses_fn=destroyer_losses) -> dict[str, torch.Tensor]:
  """One phase-2 step: the Destroyer's backward pass and AdamW step (arguments as
  `train_step`'s)."""
  opt_a = optimizers_[2]
  losses = losses_fn(model, frames, targets)
  opt_a.zero_grad(set_to_none=True)
  losses["loss"].backward()
  opt_a.step()
  return {k: v.detach() for k, v in losses.items()}


# The training phases by `jaxvad.methods.f2lm.METHOD.phases` name: (losses, step).
PHASES = {"generator": (train_losses, train_step),
          "destroyer": (destroyer_losses, destroyer_step)}


# --------------------------------------------------------------------------- score


def score(model: F2LM, frames: torch.Tensor, inputs=None) -> dict[str, torch.Tensor]:
  """The terms of `f2lm.score_step`, each `[B, 1]`, in eval mode without autograd: the label
  and motion triplet losses (enabled encoders), the MSE of the prediction and of the Destroyer's
  output on it against the frame, on [0, 1]."""
  model.eval()
  with torch.inference_mode():
    x, motion, labels, target = model_inputs(model, frames, inputs)
    pred, *feats = model.generator(x, motion, labels)
    destroyed = model.destroyer(pred)
    frame = (target + 1) / 2
    pred, destroyed = (pred.float() + 1) / 2, (destroyed.float() + 1) / 2
    out = {"generator_error": torch.mean((pred - frame) ** 2, dim=(1, 2, 3)),
           "destroyer_error": torch.mean((destroyed - frame) ** 2, dim=(1, 2, 3)),
           **_triplets(model, feats, per_sample=True)}
    return {k: v[:, None] for k, v in out.items()}


def load_flax_variables(model: F2LM, variables: Mapping) -> F2LM:
  """Copies jaxvad's networks into the model (in place).

  Args:
    model: from `build`.
    variables: `{"generator": {"params", "batch_stats"}, "discriminator": {"params"},
      "destroyer": {"params", "batch_stats"}}` of `F2LM` / `PatchGAN` / `UNet` (an
      `f2lm.State`'s `generator.params` ...).

  Returns:
    The model.
  """
  g = model.generator
  variant = {"motion": g.motion, "labels": g.labels, "fusion": g.fusion}
  return ffp.load_modules(model, variables, (("generator", "f2lm", variant),
                                             ("discriminator", "ffp_patchgan", None),
                                             ("destroyer", "ffp_unet", None)))

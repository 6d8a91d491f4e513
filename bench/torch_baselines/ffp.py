"""Future Frame Prediction (FFP; Liu et al., CVPR 2018) in PyTorch: the generator and
discriminator of feiyuhuahuo/Anomaly_Prediction (the PyTorch port `jaxvad.methods.ffp` follows),
its training step and its score, as `jaxvad.methods.ffp` computes them.

Modules, transcribed from the port (also the references of tests/test_unet.py, which imports
them through tests/torch_reference.py):

  FFPUNet             `models/unet.py` `UNet(input_channels, output_channel)`: modules `inc`,
                      `down1..3`, `up1..3`, `outc`, so `state_dict()` keys are the port's.
  PixelDiscriminator  `models/pix2pix_networks.py` `PixelDiscriminator(input_nc)` with the
                      default `use_norm=False` (`net.0 .. net.8`).

Additions, off by default: `width` (channels 64·width .. / 128·width .., as jaxvad's
`unet_features` / `patchgan_features`), `FFPUNet(form="tf")`, the TF original's U-Net in the
same module tree (no BN — `nn.Identity` in its place, so the conv indices stay — conv biases,
ReLU after the transposed convs), and `PixelDiscriminator(padding_mode="reflect")`, the TF
original's REFLECT padding; `build` picks them for `model.form = "tf"` as jaxvad does.

The training step (`train_losses`, `train_step`) is the port's `train.py` less its flow loss
(jaxvad has none; see `jaxvad.methods.ffp`): frames scaled to [-1, 1], 4 inputs stacked
frame-major in channels; generator loss = 1 · intensity (MSE) + 1 · gradient difference + 0.05 ·
LSGAN `mean((D(G) - 1)^2 / 2)` (`model.loss_weights`); discriminator loss = `mean((D(real) -
1)^2 / 2) + mean(D(G.detach())^2 / 2)`; two Adams, the generator's at `train.learning_rate`,
the discriminator's at `model.d_learning_rate` (`optimizers`). Both backward passes run from
the one forward before either optimizer steps, so both gradients are taken at the incoming
parameters, as jaxvad's jitted step. (The port steps the discriminator before the generator's
backward pass, which PyTorch >= 1.5 refuses — the discriminator's weights the graph saved
were changed in place — hence the usual fix of stepping both at the end.) The generator's
backward pass is restricted to the generator's parameters (`backward(inputs=...)`): the
discriminator's gradient is its own loss's only, as jaxvad's and as the port's (where the
generator's backward pass left the adversarial term's gradient in the discriminator's `.grad`
after its step, to be zeroed before the next one).

Gradient loss: jaxvad's `losses.gradient_loss` (`common.gradient_loss` here): the mean over
the pairs of neighbouring pixels inside the frame. The port (`losses.py` `Gradient_Loss`,
after the TF original) pads the frame by one zero column / row on the right / bottom, so it
also scores the frame's last column and row against 0 as an edge, and averages the x and y
terms over H·W pixels each; the baseline follows jaxvad, so that both compute the same loss.

Not done here: `model.lr_boundaries` (the step-decayed rates; a run would add a `MultiStepLR`
per optimizer) and the PSNR metric jaxvad's step also returns (the port logs it every 20
steps).

Interface (`bench.torch_baselines`): `build`, `train_loss`, `score`, `load_flax_variables`,
and for FFP's own update `optimizers` and `train_step`, which the benchmark uses.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common

__all__ = ["FFPUNet", "PixelDiscriminator", "FFP", "build", "optimizers", "train_losses",
           "train_loss", "train_step", "predict", "score", "load_flax_variables"]


# --------------------------------------------------------------------------- the port's modules


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
    c = common.channels(64, width)
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
    base = common.channels(num_filters[0], width)
    f = [base * n // num_filters[0] for n in num_filters]
    conv = lambda i, o, s: nn.Conv2d(i, o, 4, s, 2, padding_mode=padding_mode)  # noqa: E731
    net = [conv(input_nc, f[0], 2), nn.LeakyReLU(0.2, True)]
    for i in range(1, len(f) - 1):
      net += [conv(f[i - 1], f[i], 2), nn.LeakyReLU(0.2, True)]
    net += [conv(f[-2], f[-1], 1), nn.LeakyReLU(0.2, True)]
    net.append(conv(f[-1], 1, 1))
    self.net = nn.Sequential(*net)

  def forward(self, x):
    return torch.sigmoid(self.net(x))


# --------------------------------------------------------------------------- the method


class FFP(nn.Module):
  """The two networks of a jaxvad `ffp` config, as one module (one `.to(device)`).

  Attributes:
    generator: `FFPUNet`, (T-1)·C channels in, C out.
    discriminator: `PixelDiscriminator` on C channels.
    loss_weights: intensity, gradient, adversarial (`model.loss_weights`).
  """

  def __init__(self, generator: FFPUNet, discriminator: PixelDiscriminator,
               loss_weights=(1.0, 1.0, 0.05)):
    super().__init__()
    self.generator, self.discriminator = generator, discriminator
    self.loss_weights = tuple(float(w) for w in loss_weights)

  def forward(self, x):
    """The predicted frame `[B, C, H, W]` in (-1, 1) of inputs `[B, (T-1)·C, H, W]`."""
    return self.generator(x)


def build(config, *, channels_last: bool = True) -> FFP:
  """The networks of a jaxvad `ffp` config.

  Args:
    config: a `jaxvad.config.Config`: `model.form` ("pytorch": the port's modules; "tf": the
      TF original's U-Net and reflect-padded discriminator), `width`, `d_width`,
      `loss_weights`, `pretrained` (the port's checkpoint: its "net_g" and "net_d"),
      `data.window` (inputs = window - 1) and `data.grayscale`. `train.compute_dtype` is not
      read (use `torch.autocast`).
    channels_last: keep the conv weights in channels-last memory, as the input arrives.

  Returns:
    The `FFP` module, on the CPU, in train mode.
  """
  m = config.model
  c = 1 if config.data.grayscale else 3
  generator = FFPUNet((config.data.window - 1) * c, c, width=m.width, form=m.form)
  discriminator = PixelDiscriminator(c, width=m.d_width,
                                     padding_mode="reflect" if m.form == "tf" else "zeros")
  if m.pretrained:
    checkpoint = torch.load(m.pretrained, map_location="cpu", weights_only=True)
    generator.load_state_dict(checkpoint["net_g"])
    discriminator.load_state_dict(checkpoint["net_d"])
  model = FFP(generator, discriminator, m.loss_weights)
  return model.to(memory_format=torch.channels_last) if channels_last else model


def optimizers(model: FFP, config) -> tuple[torch.optim.Adam, torch.optim.Adam]:
  """The port's two Adams: the generator's at `train.learning_rate`, the discriminator's at
  `model.d_learning_rate` (torch's defaults otherwise, as optax's `adam`)."""
  return (torch.optim.Adam(model.generator.parameters(), lr=config.train.learning_rate),
          torch.optim.Adam(model.discriminator.parameters(), lr=config.model.d_learning_rate))


def _split(model: FFP, frames: torch.Tensor):
  """uint8 `[B, T, H, W, C]` -> inputs `[B, (T-1)·C, H, W]` (frame-major channels, channels-last
  memory) and target `[B, C, H, W]`, both in [-1, 1] (`jaxvad.methods.ffp.stack_inputs`)."""
  x = frames.to(common.device_of(model), non_blocking=True).float() / 127.5 - 1.0
  b, t, h, w, c = x.shape
  inputs = x[:, :-1].permute(0, 2, 3, 1, 4).reshape(b, h, w, (t - 1) * c).permute(0, 3, 1, 2)
  return inputs, x[:, -1].permute(0, 3, 1, 2)


def _discriminate_frozen(model: FFP, frames: torch.Tensor) -> torch.Tensor:
  """The discriminator on its parameters detached: a gradient reaches the frames only."""
  d = model.discriminator
  return torch.func.functional_call(d, {k: p.detach() for k, p in d.named_parameters()},
                                    (frames,))


def train_losses(model: FFP, frames: torch.Tensor, targets=None, *,
                 frozen_discriminator: bool = False) -> dict[str, torch.Tensor]:
  """The losses of jaxvad's `ffp.train_step` (train mode: the generator's BN on batch statistics,
  updating its running ones).

  Args:
    model: from `build`.
    frames: uint8 `[B, window, H, W, C]`.
    targets: unused (the last frame is the target).
    frozen_discriminator: run the generator's adversarial term through the discriminator's
      parameters detached, so that one backward pass of `loss + d_loss` gives each network its
      own loss's gradient (`train_loss`); otherwise `train_step` restricts the generator's
      backward pass to the generator.

  Returns:
    float32 scalars: "loss" (the generator's weighted sum), "d_loss", and the generator's terms
    "intensity", "gradient", "adversarial", as the metrics of jaxvad's step.
  """
  del targets
  model.train()
  inputs, target = _split(model, frames)
  pred = model.generator(inputs).float()
  d_fake = (_discriminate_frozen(model, pred) if frozen_discriminator
            else model.discriminator(pred)).float()
  terms = {"intensity": torch.mean((pred - target) ** 2),
           "gradient": common.gradient_loss(pred, target),
           "adversarial": torch.mean((d_fake - 1) ** 2 / 2)}
  w_int, w_grad, w_adv = model.loss_weights
  loss = (w_int * terms["intensity"] + w_grad * terms["gradient"]
          + w_adv * terms["adversarial"])
  d_real = model.discriminator(target).float()
  d_pred = model.discriminator(pred.detach()).float()
  d_loss = torch.mean((d_real - 1) ** 2 / 2) + torch.mean(d_pred ** 2 / 2)
  return {"loss": loss, "d_loss": d_loss, **terms}


def train_loss(model: FFP, frames: torch.Tensor, targets=None) -> torch.Tensor:
  """`loss + d_loss` of `train_losses(frozen_discriminator=True)`: one backward pass gives the
  generator the gradient of its loss and the discriminator that of its own, for a caller with
  one optimizer (it then shares one learning rate; `train_step` uses the two of `optimizers`).

  Returns:
    float32 scalar.
  """
  losses = train_losses(model, frames, targets, frozen_discriminator=True)
  return losses["loss"] + losses["d_loss"]


def train_step(model: FFP, optimizers_: tuple, frames: torch.Tensor, targets=None, *,
               losses_fn=train_losses) -> dict[str, torch.Tensor]:
  """One step of both networks, as jaxvad's `ffp.train_step` (see the module docstring).

  Args:
    model: from `build`.
    optimizers_: `(generator's, discriminator's)`, from `optimizers`.
    frames: uint8 `[B, window, H, W, C]`.
    targets: unused.
    losses_fn: computes the losses (`train_losses`, or a `torch.compile`d / autocast wrapper
      of it).

  Returns:
    The losses of `train_losses`, detached (no device sync).
  """
  opt_g, opt_d = optimizers_
  losses = losses_fn(model, frames, targets)
  opt_d.zero_grad(set_to_none=True)
  losses["d_loss"].backward()
  opt_g.zero_grad(set_to_none=True)
  losses["loss"].backward(inputs=list(model.generator.parameters()))
  opt_d.step()
  opt_g.step()
  return {k: v.detach() for k, v in losses.items()}


def predict(model: FFP, frames: torch.Tensor) -> torch.Tensor:
  """The predicted last frame of each window, float `[B, C, H, W]` on the [0, 1] scale
  (unclipped; `jaxvad.methods.ffp.predict`); eval mode, no autograd."""
  model.eval()
  with torch.inference_mode():
    inputs, _ = _split(model, frames)
    return (model.generator(inputs).float() + 1.0) / 2.0


def score(model: FFP, frames: torch.Tensor) -> torch.Tensor:
  """PSNR of each window's predicted last frame, clipped to [0, 1], against the frame / 255:
  `[B, 1]`, as `ffp.score_step` (the port's `psnr_error`)."""
  model.eval()
  with torch.inference_mode():
    inputs, _ = _split(model, frames)
    pred = ((model.generator(inputs).float() + 1.0) / 2.0).clamp(0.0, 1.0)
    target = common.to_float(frames[:, -1], pred.device).permute(0, 3, 1, 2)
    return common.psnr(pred, target, dims=(1, 2, 3))[:, None]


def _state_dict(module: nn.Module, variables: Mapping, arch: str,
                variant: Mapping | None = None) -> dict[str, torch.Tensor]:
  """A torch module's state dict from Flax variables by `convert_torch.key_mapping` (`variant`:
  F2LM's, for arch "f2lm"); the "tf" form's conv biases (keys the port lacks) sit beside their
  kernels. Dense kernels (F2LM's SE) go through `conv_weight` too: `[in, out]` -> `[out, in]`."""
  from jaxvad.models import convert_torch  # pylint: disable=g-import-not-at-top

  mapping = convert_torch.key_mapping(arch=arch, variant=variant)
  out = {}
  for key in module.state_dict():
    if key.endswith("num_batches_tracked"):
      continue
    if key in mapping:
      collection, path = mapping[key]
    else:   # a "tf"-form conv bias
      collection, path = mapping[key.rsplit(".", 1)[0] + ".weight"]
      path = path[:-1] + ("bias",)
    value = variables[collection]
    for name in path:
      value = value[name]
    out[key] = (common.conv_weight(value) if path[-1] == "kernel"
                else torch.from_numpy(np.array(value, np.float32)))
  return out


def load_flax_variables(model: FFP, variables: Mapping) -> FFP:
  """Copies jaxvad's networks into the model (in place).

  Args:
    model: from `build`.
    variables: `{"generator": {"params", "batch_stats"}, "discriminator": {"params"}}` of
      `jaxvad.models.unet.UNet` / `patchgan.PatchGAN` (a `ffp.State`'s `generator.params` ...).

  Returns:
    The model.
  """
  return load_modules(model, variables, (("generator", "ffp_unet", None),
                                          ("discriminator", "ffp_patchgan", None)))


def load_modules(model, variables, modules):
  """Loads `variables[name]` into `model.<name>` for each `(name, arch, variant)` of
  `modules` (converted back to the PyTorch layout); returns the model.

  Raises:
    ValueError: a state dict that does not fit its module.
  """
  for name, arch, variant in modules:
    module = getattr(model, name)
    sd = _state_dict(module, variables[name], arch, variant=variant)
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
      raise ValueError(f"{name} state dict does not fit: missing {missing}, unexpected "
                       f"{unexpected}")
  return model

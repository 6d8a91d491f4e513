"""The generator of Future Frame Prediction (FFP; Liu et al., CVPR 2018): a U-Net that predicts
the next frame from the previous ones stacked in channels.

Two forms, chosen by `form`:

"pytorch" (default): feiyuhuahuo/Anomaly_Prediction `models/unet.py`, the PyTorch port whose
checkpoints `convert_torch.torch_to_flax(..., arch="ffp_unet")` reads. Module names are the
port's (`UNet(input_channels, output_channel)`):

  inc      double conv                                                  64·w   H
  down1    MaxPool2d(2) + double conv                                  128·w   H/2
  down2    same                                                        256·w   H/4
  down3    same (the bottleneck)                                       512·w   H/8
  up1      ConvTranspose2d(k 2, s 2) 512·w -> 256·w, cat([down2, up]),
           double conv                                                 256·w   H/4
  up2      same with down1                                             128·w   H/2
  up3      same with inc                                                64·w   H
  outc     Conv2d 3x3, pad 1, with bias -> out_channels, then tanh

A double conv is [Conv2d 3x3 pad 1 no bias, BatchNorm2d, ReLU] x 2. The skip comes first in
the concatenation (`torch.cat([x2, x1], dim=1)`: encoder features, then the upsampled ones).
The transposed convs and outc have biases (torch's default). Where a pooled size was odd, the
upsampled map is one row / column short of its skip and is zero-padded at the bottom / right
first, as the port's `F.pad(x1, (diffX // 2, diffX - diffX // 2, ...))`, so every H, W >= 8
works; for H, W divisible by 8 no padding happens.

"tf": StevenLiuWen/ano_pred_cvpr2018 `Codes/unet.py`, the authors' TensorFlow original, called
as `unet(inputs, layers=4, features_root=64, filter_size=3, pool_size=2, output_channel=3)`.
Same levels, channels, skip order (`tf.concat([conv[layer], h_deconv], axis=3)`) and output
conv (3x3 + tanh), but `tf.contrib.layers` defaults: no normalisation, every conv and
transposed conv has a bias and is followed by ReLU (the transposed conv too), SAME padding,
`max_pool2d(kernel 2, padding="SAME")`. TF's concatenation fails unless every pooled size is
even, so this form takes H, W divisible by 8 only.

Initialisers are the ones each original trains from: "pytorch" the port's `weights_init_normal`
(conv and transposed-conv weights N(0, 0.02), BN scale N(1, 0.02), BN bias 0) with torch's
default conv biases U(±1/sqrt(fan_in)) (torch takes a transposed conv's fan_in from its weight's
second axis, the output channels); "tf" `tf.contrib.layers`' Xavier-uniform weights and zero
biases. BN: eps 1e-5, torch momentum 0.1 (Flax 0.9).

Layout: input float `[N, H, W, C_in]` channels last, FFP's 4 frames (each in [-1, 1]) stacked
frame-major in channels (C_in = 12 for RGB; any C_in works, the first conv takes it from the
input). Output `(out, aux)` as every jaxvad model: out the predicted frame, float32
`[N, H, W, out_channels]` in (-1, 1); aux the module outputs "inc", "down1" .. "down3" (the
bottleneck), "up1" .. "up3" in the compute dtype (what forward hooks on the port's modules see).
`out_channels=3` on a 3-channel input is also paper 004's Destroyer-style 3 -> 3 net.

Parameters: `params` (and `batch_stats`, "pytorch" form) trees named after the port's modules,
its `Sequential` indices replaced by names: `inc`, `down1..3` and `up1..3` each hold `conv1`,
`bn1`, `conv2`, `bn2` (the port's `.conv.conv.{0,1,3,4}` / `.mpconv.1.conv.{0,1,3,4}`), `up1..3`
also `up` (the transposed conv), then `outc`. Transposed-conv kernels are stored as
`[kh, kw, out, in]` with `transpose_kernel=True`, torch's (and TF's) semantics, so a torch
weight `[in, out, kh, kw]` needs only an axis permutation, no spatial flip.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import layers

__all__ = ["UNet", "Down", "Up", "output_conv", "unet_features", "FORMS", "LEVEL_NAMES"]

FORMS = ("pytorch", "tf")
BASE_FEATURES = 64
LEVELS = 4                # inc + three downs; three ups come back
LEVEL_NAMES = ("inc", "down1", "down2", "down3", "up1", "up2", "up3")
MIN_SIZE = 2 ** (LEVELS - 1)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9         # Flax convention: torch's momentum 0.1 weights the new batch by 0.1

# The port's weights_init_normal (models are `.apply`d with it before training).
_port_kernel_init = nn.initializers.normal(0.02)
# tf.contrib.layers' default weights_initializer: xavier_initializer() (uniform, fan_avg). The
# transposed conv's [kh, kw, out, in] kernel swaps fan_in and fan_out, which fan_avg ignores.
_tf_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _port_bn_scale_init(key, shape, dtype=jnp.float32):
  """weights_init_normal's BatchNorm2d weight: N(1, 0.02)."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def torch_bias_init(fan_in: int):
  """torch's default conv bias: U(±1/sqrt(fan_in)) (weights_init_normal leaves biases alone)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def unet_features(width: float) -> tuple[int, ...]:
  """Channels of the four levels for a width multiplier.

  Args:
    width: the multiplier (1.0 is FFP's 64 / 128 / 256 / 512).

  Returns:
    (c, 2c, 4c, 8c) with c = 64·width rounded, at least 1: each level doubles exactly, so every
    transposed conv halves its input's channels as the port's `ConvTranspose2d(C, C // 2)`.
  """
  base = max(1, int(round(BASE_FEATURES * width)))
  return tuple(base * 2 ** i for i in range(LEVELS))


def _check_form(form: str) -> None:
  if form not in FORMS:
    raise ValueError(f"form must be one of {', '.join(map(repr, FORMS))}, got {form!r}")


def _double_conv(x, features: int, *, form: str, train: bool, dtype: Any):
  """[3x3 conv, BN ("pytorch"), ReLU] x 2, as submodules conv1 / bn1 / conv2 / bn2 of the
  calling module (called inside its compact `__call__`)."""
  pytorch = form == "pytorch"
  for i in (1, 2):
    x = layers.Conv2D(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=not pytorch,
                      kernel_init=_port_kernel_init if pytorch else _tf_kernel_init,
                      dtype=dtype, name=f"conv{i}")(x)
    if pytorch:
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                       scale_init=_port_bn_scale_init, dtype=dtype, name=f"bn{i}")(x)
    x = nn.relu(x)
  return x


def output_conv(x, out_channels: int, in_features: int, *, form: str = "pytorch",
                dtype: Any = jnp.float32):
  """The port's `outc` (3x3 conv with bias, before the tanh) as submodule "outc" of the calling
  module (called inside its compact `__call__`)."""
  pytorch = form == "pytorch"
  return layers.Conv2D(
      out_channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=True,
      kernel_init=_port_kernel_init if pytorch else _tf_kernel_init,
      bias_init=torch_bias_init(9 * in_features) if pytorch else nn.initializers.zeros,
      dtype=dtype, name="outc")(x)


class Down(nn.Module):
  """The port's `inconv` (`pool=False`) or `down`: [MaxPool2d(2)] + double conv."""
  features: int
  pool: bool = True
  form: str = "pytorch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.pool:
      # Floor, as torch's MaxPool2d(2); TF's SAME pooling equals it on the even sizes its form
      # accepts.
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return _double_conv(x, self.features, form=self.form, train=train, dtype=self.dtype)


class Up(nn.Module):
  """The port's `up`: transposed conv (k 2, s 2) to `features`, [ReLU ("tf")], pad to the skip's
  size, concatenate [skip, upsampled], double conv."""
  features: int
  form: str = "pytorch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, skip, train: bool):
    pytorch = self.form == "pytorch"
    # torch's ConvTranspose2d(k 2, s 2, padding 0) pads the stride-dilated input by
    # k - 1 - padding = 1 on each side; TF's SAME padding at k = s = 2 is the same layer.
    x = layers.ConvTranspose(
        self.features, (2, 2), strides=(2, 2), padding=((1, 1), (1, 1)), transpose_kernel=True,
        kernel_init=_port_kernel_init if pytorch else _tf_kernel_init,
        bias_init=torch_bias_init(4 * self.features) if pytorch else nn.initializers.zeros,
        dtype=self.dtype, name="up")(x)
    if not pytorch:
      x = nn.relu(x)   # tf.contrib.layers.conv2d_transpose's default activation_fn
    dy, dx = skip.shape[1] - x.shape[1], skip.shape[2] - x.shape[2]
    if dy or dx:   # an odd skip size (pytorch form only): the port's F.pad, extra row last
      x = jnp.pad(x, ((0, 0), (dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0)))
    x = jnp.concatenate([skip.astype(x.dtype), x], axis=-1)
    return _double_conv(x, self.features, form=self.form, train=train, dtype=self.dtype)


class UNet(nn.Module):
  """FFP's generator: `(next frame, module outputs)`; see the module docstring.

  Attributes:
    form: "pytorch" (feiyuhuahuo/Anomaly_Prediction's port: BN, bias-free convs) or "tf" (the
      authors' TensorFlow original: no BN, biases, ReLU after the transposed convs).
    width: channel multiplier; levels have `unet_features(width)` channels (1.0: 64..512).
    out_channels: channels of the predicted frame (3: RGB; 1: gray).
    dtype: compute dtype (parameters and batch statistics stay float32; out is float32).
  """
  form: str = "pytorch"
  width: float = 1.0
  out_channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Predicts the next frame.

    Args:
      x: float `[N, H, W, C_in]`, the input frames stacked in channels, in [-1, 1]; H, W >= 8
        ("pytorch") or divisible by 8 ("tf").
      train: BN uses (and updates, with `mutable=["batch_stats"]`) batch statistics if True,
        the running averages if False; the "tf" form has no BN and ignores it.

    Returns:
      `(out, aux)`: out float32 `[N, H, W, out_channels]`, tanh of outc; aux {"inc": `[N, H, W,
      64·w]`, "down1": `[N, H/2, W/2, 128·w]`, "down2", "down3" (`[N, H/8, W/8, 512·w]`, the
      bottleneck), "up1": `[N, H/4, W/4, 256·w]`, "up2", "up3": `[N, H, W, 64·w]`} (sizes
      floored where H, W are not divisible by 8), in the compute dtype.

    Raises:
      ValueError: an unknown form, or H, W that the form cannot take.
    """
    _check_form(self.form)
    h, w = x.shape[1:3]
    if min(h, w) < MIN_SIZE or (self.form == "tf" and (h % MIN_SIZE or w % MIN_SIZE)):
      need = "divisible by 8" if self.form == "tf" else "at least 8"
      raise ValueError(f"UNet(form={self.form!r}) needs H, W {need} (three 2x2 poolings), got "
                       f"input shape {tuple(x.shape)}")
    feats = unet_features(self.width)
    aux = {}
    for i, (name, f) in enumerate(zip(LEVEL_NAMES[:LEVELS], feats)):
      x = Down(f, pool=i > 0, form=self.form, dtype=self.dtype, name=name)(x, train)
      aux[name] = x
    for name, skip, f in zip(LEVEL_NAMES[LEVELS:], LEVEL_NAMES[LEVELS - 2::-1], feats[-2::-1]):
      x = Up(f, form=self.form, dtype=self.dtype, name=name)(x, aux[skip], train)
      aux[name] = x
    out = output_conv(x, self.out_channels, feats[0], form=self.form, dtype=self.dtype)
    return jnp.tanh(out.astype(jnp.float32)), aux

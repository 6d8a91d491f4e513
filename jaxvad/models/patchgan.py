"""The discriminator of Future Frame Prediction (FFP; Liu et al., CVPR 2018): pix2pix's PatchGAN
(Isola et al. 2017), scoring overlapping patches of a single frame as real or predicted.

Architecture, feiyuhuahuo/Anomaly_Prediction `models/pix2pix_networks.py`
(`PixelDiscriminator(input_nc, num_filters=(128, 256, 512, 512))`, as its `train.py` builds it):

  conv0  Conv2d 4x4, stride 2, pad 2, bias + LeakyReLU(0.2)     128·w   torch net.0
  conv1  same                                                   256·w   net.2
  conv2  same                                                   512·w   net.4
  conv3  Conv2d 4x4, stride 1, pad 2, bias + LeakyReLU(0.2)     512·w   net.6
  conv4  Conv2d 4x4, stride 1, pad 2, bias                        1     net.8
  sigmoid

No normalisation: the port's `use_norm` defaults to False and its training script keeps the
default (its optional BatchNorm, after the LeakyReLU of net.2 and net.4, is not ported), and the
TF original builds the discriminator outside pix2pix's instance-norm arg scope. The input is
the frame alone (real, or the generator's output), not a conditional pair. Each conv maps
n -> floor(n / s) + 1 (k 4, pad 2), so a 256x256 frame gives a 35x35 map of patch
probabilities, 64x64 gives 11x11.

`form="tf"`: StevenLiuWen/ano_pred_cvpr2018 `Codes/pix2pix.py` `pix2pix_discriminator(inputs,
(128, 256, 512, 512))` (scopes conv0 .. conv4, the names used here) pads each conv's input by 2
with REFLECT padding instead of zeros; otherwise the same layers.

Initialisers: "pytorch" the port's `weights_init_normal` (weights N(0, 0.02)) with torch's
default biases U(±1/sqrt(fan_in)); "tf" `tf.contrib.layers`' Xavier-uniform weights, zero biases.

Layout: input float `[N, H, W, C]` channels last (a frame in [-1, 1]). Output `(out, aux)` as
every jaxvad model: out float32 `[N, H', W', 1]`, the sigmoid probabilities FFP's LSGAN losses
take (`jaxvad.losses.lsgan_*`); aux the LeakyReLU outputs "conv0" .. "conv3" and "logits" (conv4,
before the sigmoid), in the compute dtype. `convert_torch.torch_to_flax(..., arch="ffp_patchgan")`
maps the port's `net.{0,2,4,6,8}` onto `params/conv{0..4}`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import layers

__all__ = ["PatchGAN", "patchgan_features", "patch_map_size", "FORMS", "STRIDES", "PADDING"]

FORMS = ("pytorch", "tf")
BASE_FEATURES = (128, 256, 512, 512)
STRIDES = (2, 2, 2, 1, 1)    # conv0 .. conv4
KERNEL = 4
PADDING = 2
LEAKY_SLOPE = 0.2

_port_kernel_init = nn.initializers.normal(0.02)   # the port's weights_init_normal
_tf_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")   # xavier


def patchgan_features(width: float) -> tuple[int, ...]:
  """Channels of conv0 .. conv3 for a width multiplier.

  Args:
    width: the multiplier (1.0 is FFP's 128 / 256 / 512 / 512).

  Returns:
    (c, 2c, 4c, 4c) with c = 128·width rounded, at least 1.
  """
  base = max(1, int(round(BASE_FEATURES[0] * width)))
  return tuple(base * f // BASE_FEATURES[0] for f in BASE_FEATURES)


def patch_map_size(n: int) -> int:
  """The output size along an axis of input size n: floor((n + 4 - 4) / s) + 1 per conv."""
  for s in STRIDES:
    n = (n + 2 * PADDING - KERNEL) // s + 1
  return n


class PatchGAN(nn.Module):
  """FFP's pix2pix discriminator: `(patch probabilities, activations)`; see the module docstring.

  Attributes:
    form: "pytorch" (the port: zero padding) or "tf" (the original: reflect padding).
    width: channel multiplier; conv0 .. conv3 have `patchgan_features(width)` channels.
    dtype: compute dtype (parameters stay float32; out is float32).
  """
  form: str = "pytorch"
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scores the patches of a frame.

    Args:
      x: float `[N, H, W, C]`; "tf": H, W >= 10 (reflect padding by 2 needs at least 3 pixels
        at every layer's input, as TF's REFLECT).
      train: unused (no normalisation or dropout); taken so a training step calls the
        generator and the discriminator alike.

    Returns:
      `(out, aux)`: out float32 `[N, patch_map_size(H), patch_map_size(W), 1]` in (0, 1);
      aux {"conv0" .. "conv3": the LeakyReLU outputs, "logits": conv4's output}.

    Raises:
      ValueError: an unknown form, or a "tf" input too small to reflect-pad.
    """
    del train
    if self.form not in FORMS:
      raise ValueError(f"form must be one of {', '.join(map(repr, FORMS))}, got {self.form!r}")
    pytorch = self.form == "pytorch"
    feats = patchgan_features(self.width) + (1,)
    aux = {}
    for i, (f, s) in enumerate(zip(feats, STRIDES)):
      if not pytorch and min(x.shape[1:3]) <= PADDING:
        raise ValueError(f"PatchGAN(form='tf') needs H, W >= 10 to reflect-pad every layer's "
                         f"input by {PADDING}; conv{i} got {tuple(x.shape)}")
      # Padded here, not by the conv: XLA:CPU runs the gradients of a 4x4 stride-1 conv with
      # padding 2 on a generic slow kernel (the backward of conv3 took 40 of a 115-ms ffp_demo
      # step); of a VALID conv of the padded input, on its fast path. Same numbers.
      x = jnp.pad(x, ((0, 0), (PADDING, PADDING), (PADDING, PADDING), (0, 0)),
                  mode="constant" if pytorch else "reflect")   # torch's Conv2d(padding=2): zeros
      pad = ((0, 0), (0, 0))
      fan_in = KERNEL * KERNEL * x.shape[-1]
      bound = 1.0 / math.sqrt(fan_in)   # torch's default conv bias: U(±1/sqrt(fan_in))
      x = layers.Conv2D(
          f, (KERNEL, KERNEL), strides=(s, s), padding=pad, use_bias=True,
          kernel_init=_port_kernel_init if pytorch else _tf_kernel_init,
          bias_init=(lambda key, shape, dtype=jnp.float32, b=bound: jax.random.uniform(
              key, shape, dtype, -b, b)) if pytorch else nn.initializers.zeros,
          dtype=self.dtype, name=f"conv{i}")(x)
      if i < len(feats) - 1:
        x = nn.leaky_relu(x, LEAKY_SLOPE)
        aux[f"conv{i}"] = x
    aux["logits"] = x
    return nn.sigmoid(x.astype(jnp.float32)), aux

"""Paper 004's F2LM generator: FFP's U-Net with two more encoders (motion and labels) whose
features the frame encoder's bottleneck learns to predict, fused back before the decoder.

Layout of SkiddieAhn/Paper-Making-Anomalies-More-Anomalous `F2LM_Generator/network/unet.py`
(`UNet(input_channels1=12, input_channels2=6, input_channels3=84)`), the modules named as there:

  inc_x, down1_x .. down3_x   frame encoder: FFP's U-Net encoder (`unet.Down`)  -> 512·w, H/8
  inc_y, down1_y .. down3_y   motion encoder (flow of the 3 input frame pairs, 6 channels)
  inc_z, down1_z .. down3_z   label encoder (per-frame class maps of the 4 inputs, 4·K channels)
  transform_xtoy              double conv 512·w -> 512·w: T_m, frame feature -> motion feature
  transform_xtoz              the same: T_l, frame feature -> label feature
  fusion_conv                 double conv of concat[x, T_m(x), T_l(x)] -> 512·w
  se                          squeeze-and-excitation (fc1 C -> C/8, ReLU, fc2, sigmoid, scale)
  up1 .. up3, outc            FFP's decoder (`unet.Up`), skips from the frame encoder only

Every double conv is FFP's port's [conv 3x3 no bias, BN, ReLU] x 2 with its initialisers
(`unet.Down(pool=False)` is exactly that). The triplet features are the bottlenecks and the
transforms L2-normalised per pixel over channels (`F.normalize(x, dim=1)`); the fusion sees them
unnormalised, as in the code (paper Table 1 puts the normalisation after the encoder, for the
triplet loss).

Ablations (paper Tables 3-4): `motion=False` / `labels=False` drop that encoder and its
transform (the fusion concatenates what is left); `fusion="concat"` drops the SE block,
`fusion="add"` sums x + T_m(x) + T_l(x) instead of the fusion conv and SE (Table 4's "Add").

Layout: channels last. frames float `[N, H, W, 4·C]` in [-1, 1] (frame-major, as FFP), motion
float `[N, H, W, 6]`, labels float `[N, H, W, 4·K]`. Output `(out, aux)`: out float32
`[N, H, W, out_channels]` in (-1, 1); aux the L2-normalised triplet features float32
`[N, H/8, W/8, 512·w]`: "frame", and where enabled "motion", "to_motion" (T_m), "label",
"to_label" (T_l).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import unet

__all__ = ["F2LM", "SEBlock", "FUSIONS", "l2_normalize"]

FUSIONS = ("concat_se", "concat", "add")
SE_REDUCTION = 8
# torch's nn.Linear default weight, U(±1/sqrt(fan_in)). The official training initialises the
# generator with its `proposed_weights_init` instead (truncated N(0, 0.02) conv and Linear
# weights, zero biases, BN scale 1; transposed convs left at torch's default): this port keeps
# FFP's port's scheme for every U-Net part (`unet`), a documented difference in init only.
_torch_linear_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def l2_normalize(x, eps: float = 1e-12):
  """`torch.nn.functional.normalize(x, p=2, dim=channels)`: x / max(||x||, eps) per pixel."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


class SEBlock(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018) as the official `SELayer`: global average pool,
  fc1 (C -> C / reduction, bias) + ReLU, fc2 (-> C, bias) + sigmoid, channel-wise scale.
  Dense kernels are `[in, out]` (torch's Linear weight transposed)."""
  reduction: int = SE_REDUCTION
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    squeeze = jnp.mean(x, axis=(1, 2))
    hidden = max(1, channels // self.reduction)
    s = nn.relu(nn.Dense(hidden, dtype=self.dtype, kernel_init=_torch_linear_init,
                         bias_init=unet.torch_bias_init(channels), name="fc1")(squeeze))
    s = nn.sigmoid(nn.Dense(channels, dtype=self.dtype, kernel_init=_torch_linear_init,
                            bias_init=unet.torch_bias_init(hidden), name="fc2")(s))
    return x * s[:, None, None, :].astype(x.dtype)


class F2LM(nn.Module):
  """Paper 004's F2LM generator; see the module docstring.

  Attributes:
    width: channel multiplier of every encoder and the decoder (1.0: 64..512).
    out_channels: channels of the predicted frame.
    motion: with the motion encoder and T_m.
    labels: with the label encoder and T_l.
    fusion: "concat_se" (the paper), "concat" (no SE) or "add".
    dtype: compute dtype (parameters, batch statistics and outputs float32).
  """
  width: float = 1.0
  out_channels: int = 3
  motion: bool = True
  labels: bool = True
  fusion: str = "concat_se"
  dtype: Any = jnp.float32

  def _encode(self, x, suffix: str, train: bool) -> list[jax.Array]:
    levels = []
    for i, (name, f) in enumerate(zip(unet.LEVEL_NAMES[:unet.LEVELS],
                                      unet.unet_features(self.width))):
      x = unet.Down(f, pool=i > 0, dtype=self.dtype, name=f"{name}_{suffix}")(x, train)
      levels.append(x)
    return levels

  @nn.compact
  def __call__(self, frames, motion=None, labels=None, *, train: bool = False):
    """Predicts the next frame; see the module docstring for shapes.

    Raises:
      ValueError: an unknown fusion, a missing input of an enabled encoder, or H, W < 8.
    """
    if self.fusion not in FUSIONS:
      raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
    for on, given, name in ((self.motion, motion, "motion"), (self.labels, labels, "labels")):
      if on and given is None:
        raise ValueError(f"F2LM(motion={self.motion}, labels={self.labels}) needs `{name}`")
    if min(frames.shape[1:3]) < unet.MIN_SIZE:
      raise ValueError(f"F2LM needs H, W >= {unet.MIN_SIZE}, got {tuple(frames.shape)}")
    feats = unet.unet_features(self.width)
    skips = self._encode(frames, "x", train)
    x = skips[-1]
    aux = {"frame": x}
    fused = [x]
    for on, inputs, key, suffix, transform in (
        (self.motion, motion, "motion", "y", "transform_xtoy"),
        (self.labels, labels, "label", "z", "transform_xtoz")):
      if on:
        aux[key] = self._encode(inputs, suffix, train)[-1]
        aux[f"to_{key}"] = unet.Down(feats[-1], pool=False, dtype=self.dtype,
                                     name=transform)(x, train)
        fused.append(aux[f"to_{key}"])
    if self.fusion == "add":
      x = sum(fused[1:], fused[0])
    else:
      x = unet.Down(feats[-1], pool=False, dtype=self.dtype,
                    name="fusion_conv")(jnp.concatenate(fused, axis=-1), train)
      if self.fusion == "concat_se":
        x = SEBlock(dtype=self.dtype, name="se")(x)
    for name, skip, f in zip(unet.LEVEL_NAMES[unet.LEVELS:], skips[-2::-1], feats[-2::-1]):
      x = unet.Up(f, dtype=self.dtype, name=name)(x, skip, train)
    out = unet.output_conv(x, self.out_channels, feats[0], dtype=self.dtype)
    return jnp.tanh(out.astype(jnp.float32)), {k: l2_normalize(v) for k, v in aux.items()}

"""Predictive autoencoder of paper 001 (§3.3.1): frozen ResNet-18 per frame -> 1x1 time merge ->
transposed-conv decoder -> the next frame.

Four input frames `[B, 4, H, W, C]` are encoded one by one by ResNet-18 (time folded into the
batch), layer4's features `[B, 4, H/32, W/32, 512]` are folded into channels (512·T, frame-major
as PyTorch's `(B, T, C, h, w) -> (B, T·C, h, w)`) and merged by a 1x1 conv to 512; four
stride-2 transposed convs (BN + ReLU, channels halving) and a final one to RGB with no
activation predict frame 5 at full resolution. Variants (§3.3.1.1):

  base       the above.
  dropout    20 % dropout before the first decoder layer, 10 % between the first and second.
  skiptwice  layer3 and layer2 features, each time-folded and reduced by a 1x1 conv to a quarter
             of the folded channels (T·C/4, = C for T = 4), concatenated to the outputs of the
             decoder layers of the same resolution (H/16 and H/8) — U-Net style; the paper's
             figure with the exact join is lost, concatenation is the usual reading.
  attention  a spatial attention block (channel max and mean -> 7x7 conv -> sigmoid -> multiply)
             after each of the four BN-ReLU decoder layers, i.e. between decoder layers.

Transposed convs use PyTorch's `ConvTranspose2d(kernel_size=3, stride=2, padding=1,
output_padding=1)` geometry: flax's `ConvTranspose` takes the padding of the dilated input,
which for that layer is (k - 1 - p, k - 1 - p + output_padding) = (1, 2) per axis (tested
against torch in tests/test_predictive_ae.py); output = 2 x input.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import layers, resnet

__all__ = ["PredictiveAE", "SpatialAttention", "up_conv", "VARIANTS"]

VARIANTS = ("base", "dropout", "skiptwice", "attention")
# PyTorch ConvTranspose2d(3, stride=2, padding=1, output_padding=1) as the padding of the
# stride-dilated input: (k - 1 - p, k - 1 - p + output_padding).
_UP_PADDING = ((1, 2), (1, 2))


def up_conv(features: int, *, dtype: Any = jnp.float32, name: str | None = None,
            use_bias: bool = True) -> layers.ConvTranspose:
  """A transposed conv that doubles H and W exactly as the paper's PyTorch layer.

  Args:
    features: output channels.
    dtype: compute dtype.
    name: module name.
    use_bias: add a bias (PyTorch's default).

  Returns:
    The transposed conv (kernel 3, stride 2, PyTorch padding 1, output padding 1): flax's
    `nn.ConvTranspose` with `layers.ConvTranspose`'s faster stride-2 computation.
  """
  return layers.ConvTranspose(features, (3, 3), strides=(2, 2), padding=_UP_PADDING,
                          transpose_kernel=True, use_bias=use_bias, dtype=dtype, name=name)


class SpatialAttention(nn.Module):
  """Channel max and mean -> 7x7 conv -> sigmoid -> multiply (§3.3.1.1, as CBAM)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    pooled = jnp.concatenate([jnp.max(x, axis=-1, keepdims=True),
                              jnp.mean(x, axis=-1, keepdims=True)], axis=-1)
    gate = nn.Conv(1, (7, 7), padding=3, dtype=self.dtype, name="conv")(pooled)
    return x * nn.sigmoid(gate)


def _fold_time(x, batch: int):
  """`[B·T, h, w, C]` -> `[B, h, w, T·C]`, frame-major channels as PyTorch's flatten(1, 2)."""
  bt, h, w, c = x.shape
  t = bt // batch
  return x.reshape(batch, t, h, w, c).transpose(0, 2, 3, 1, 4).reshape(batch, h, w, t * c)


class PredictiveAE(nn.Module):
  """Predicts the frame after a window of input frames (paper 001 §3.3.1).

  Attributes:
    variant: one of `VARIANTS`.
    width: channel multiplier of the encoder and decoder (1.0 = the paper's; small for tests).
    finetune: train the encoder too; False (the paper) stops its gradients and runs its batch
      norm on the running statistics. The optimizer must also leave its parameters alone
      (`jaxvad.methods.predictive_ae` masks them).
    out_channels: channels of the predicted frame (3 = RGB, 1 = gray).
    dtype: compute dtype (parameters stay float32).
  """
  variant: str = "base"
  width: float = 1.0
  finetune: bool = False
  out_channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames, *, train: bool = False):
    """Predicts the next frame.

    Args:
      frames: float `[B, T, H, W, 3]`, ImageNet-normalised; H, W divisible by 32.
      train: dropout and the decoder's batch norm in training mode (the encoder's too with
        `finetune`); batch statistics update with `mutable=["batch_stats"]`.

    Returns:
      `(out, {})` (big_vision's `(out, aux)` convention, as every jaxvad model; no aux
      outputs): out float32 `[B, H, W, out_channels]`, the predicted next frame.
    """
    if self.variant not in VARIANTS:
      raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
    b, t, h, w, c = frames.shape
    _, feats = resnet.ResNet18(width=self.width, dtype=self.dtype, name="encoder")(
        frames.reshape(b * t, h, w, c), train=train and self.finetune)
    if not self.finetune:
      feats = jax.tree_util.tree_map(jax.lax.stop_gradient, feats)
    widths = resnet.stage_features(self.width)        # (64, 128, 256, 512) at width 1
    dense = lambda f, name: nn.Conv(f, (1, 1), dtype=self.dtype, name=name)  # noqa: E731
    skips = {}
    if self.variant == "skiptwice":
      for stage in ("layer3", "layer2"):
        folded = _fold_time(feats[stage], b)
        skips[stage] = dense(folded.shape[-1] // 4, f"skip_{stage}")(folded)
    x = dense(widths[3], "merge")(_fold_time(feats["layer4"], b))

    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9,  # noqa: E731
                                     epsilon=1e-5, dtype=self.dtype, name=name)
    dropouts = {0: 0.2, 1: 0.1} if self.variant == "dropout" else {}
    skip_after = {0: "layer3", 1: "layer2"}
    for i, features in enumerate((widths[2], widths[1], widths[0], max(1, widths[0] // 2))):
      if i in dropouts:
        x = nn.Dropout(dropouts[i], deterministic=not train)(x)
      x = up_conv(features, dtype=self.dtype, name=f"up{i}")(x)
      x = nn.relu(norm(f"bn{i}")(x))
      if self.variant == "attention":
        x = SpatialAttention(dtype=self.dtype, name=f"attention{i}")(x)
      if skip_after.get(i) in skips:
        x = jnp.concatenate([x, skips[skip_after[i]].astype(x.dtype)], axis=-1)
    out = up_conv(self.out_channels, dtype=self.dtype, name="out")(x)
    return out.astype(jnp.float32), {}

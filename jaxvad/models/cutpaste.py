"""The self-supervised defect classifier of CutPaste (Li et al. 2021) and paper 002 (CropLiq).

ResNet-18 (`jaxvad.models.resnet`, torchvision layout, so ImageNet weights load from a .pth)
-> global average pool (the "pooled" features the Gaussian density is fitted on) -> projection
head -> class logits:

  backbone  ResNet18 without fc                                    [N, h, w, 512·width]
  pool      mean over h, w (float32)                               [N, 512·width]
  head_i    Dense(no bias) + BatchNorm + ReLU, for each hidden width in `head_layers`
  embed     Dense(embed_dim)                                       [N, 128]
  out       Dense(num_classes)                                     [N, K]

The head is google-research deep_representation_one_class's MLP (`model/resnet_util.py`:
dense without bias, BN, ReLU per hidden layer, a final dense to the embedding); Runinho's
PyTorch port drops the BN. Classes: 0 = normal, then one per pseudo-anomaly kind.

Output convention (big_vision's, every jaxvad model): `(logits, aux)`, aux = {"pooled",
"embed", "layer1".."layer4"}. Parameters: `backbone` (the ResNet18 tree, names as torchvision's)
and `head_<i>` / `head_bn_<i>` / `embed` / `out`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import resnet

__all__ = ["CutPasteNet", "BACKBONE"]

BACKBONE = "backbone"


class CutPasteNet(nn.Module):
  """ResNet-18 + projection head + classifier; see the module docstring.

  Attributes:
    num_classes: classes (normal + pseudo-anomaly kinds).
    width: ResNet-18 channel multiplier (1.0 = torchvision's).
    head_layers: hidden widths of the projection head (the reference uses 512 per layer).
    embed_dim: width of the embedding the classifier reads (128 in the references).
    dtype: compute dtype; parameters, pooled features and logits stay float32.
  """
  num_classes: int = 3
  width: float = 1.0
  head_layers: tuple[int, ...] = (512,)
  embed_dim: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Classifies images.

    Args:
      x: float `[N, H, W, 3]`, normalised by the caller (`resnet.imagenet_normalize`).
      train: batch statistics in BN (updated with `mutable=["batch_stats"]`) if True.

    Returns:
      `(logits, aux)`: float32 `[N, num_classes]`; aux {"pooled": float32 `[N, 512·width]`,
      "embed": float32 `[N, embed_dim]`, "layer1".."layer4": the backbone's stage outputs}.
    """
    feats, stages = resnet.ResNet18(width=self.width, dtype=self.dtype, name=BACKBONE)(
        x, train=train)
    pooled = jnp.mean(feats.astype(jnp.float32), axis=(1, 2))
    h = pooled
    for i, features in enumerate(self.head_layers):
      h = nn.Dense(features, use_bias=False, dtype=self.dtype, name=f"head_{i}")(h)
      h = nn.BatchNorm(use_running_average=not train, momentum=resnet.BN_MOMENTUM,
                       epsilon=resnet.BN_EPSILON, dtype=self.dtype, name=f"head_bn_{i}")(h)
      h = nn.relu(h)
    embed = nn.Dense(self.embed_dim, dtype=self.dtype, name="embed")(h).astype(jnp.float32)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="out")(embed)
    return logits.astype(jnp.float32), {"pooled": pooled, "embed": embed, **stages}

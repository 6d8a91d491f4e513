"""Paper 002's CutPaste / CropLiq classifier in PyTorch, layer for layer as
`jaxvad.models.cutpaste.CutPasteNet` and the `cutpaste` method around it.

  backbone  torchvision resnet18 without avgpool / fc (`bench.torch_baselines.resnet`)
  pool      mean over H, W                                          [N, 512·width]
  head_i    Linear(no bias) + BatchNorm1d(eps 1e-5, momentum 0.1) + ReLU, per hidden width
  embed     Linear(embed_dim)
  out       Linear(1 + K) logits: 0 = normal, i = `model.kinds[i - 1]`

Module names are the Flax names (`head_0`, `head_bn_0`, `embed`, `out`), so
`load_flax_variables` copies the head by name; the backbone keeps torchvision's names and loads
through jaxvad's converter mapping. The fitted Gaussians are buffers: `gde_mean` `[D]` /
`gde_precision` `[D, D]` (pooled features, D = 512·width) and `patch_mean` / `patch_precision`
(the `model.cam_layer` feature vectors, for `model.localize = "patch_gde"`); identity at build,
set by `load_flax_variables` (or `set_density`).

Training (`train_losses`, `train_step`): each frame `[B, 1, H, W, C]` and its K pseudo-anomaly
views (`targets["views"]`, `[B, K, H, W, C]`, made on the host as jaxvad's pipeline does) are
classified together, frame-major `[B·(K+1)]` images with labels 0..K, ImageNet-normalised (gray
repeated to RGB), softmax cross-entropy mean; then `torch.optim.SGD(lr, momentum,
weight_decay)` (`optimizers`), which is jaxvad's `add_decayed_weights` + `sgd(momentum)` (grad
+ wd·p, then momentum). Not modelled, as neither changes the step's cost: jaxvad's cosine
learning-rate schedule (a `CosineAnnealingLR` would only rescale lr between steps; the
baseline keeps `train.learning_rate`) and `model.freeze_steps` (the backbone frozen for the
first steps).

Scoring (`score`), in eval mode, as `cutpaste.score_step`: "gde" (Mahalanobis distance, not
squared, of the L2-normalised pooled features to the Gaussian), "softmax" (1 - p(normal)),
"probs" and the anomaly "map": Grad-CAM of the most likely defect class's logit (argmax over
classes 1..K) at the output of `model.cam_layer` (its last block), by `torch.autograd.grad`:
channel weights = spatial mean of the gradient, ReLU of the weighted sum, min-max per image
(a constant map is zeros), then `F.interpolate(bilinear, align_corners=False)` to the frame
size, which is what `jax.image.resize` "bilinear" computes when upsampling (half-pixel
centres, edges clamped; its antialiasing acts only when downsampling). The backbone up to
`cam_layer` runs without autograd, only the rest of the network with it. With
`localize = "patch_gde"` the map is each `cam_layer` position's Mahalanobis distance (feature
vectors L2-normalised over channels) to the patch Gaussian, upsampled the same way, and the
whole score runs without autograd.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_baselines import common
from bench.torch_baselines.resnet import STAGE_NAMES, ResNet, resnet18

__all__ = ["CutPaste", "build", "optimizers", "train_losses", "train_loss", "train_step",
           "score", "features", "encoder_input", "classification_batch", "set_density",
           "load_flax_variables", "LOCALIZERS"]

LOCALIZERS = ("gradcam", "patch_gde")
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))   # jaxvad.models.resnet's


class CutPaste(nn.Module):
  """ResNet-18 + projection head + classifier, with the fitted Gaussians as buffers.

  Args:
    num_classes: 1 + the number of pseudo-anomaly kinds.
    width: ResNet-18 channel multiplier (1.0 = torchvision's).
    head_layers: hidden widths of the projection head.
    embed_dim: width of the embedding the classifier reads.
    localize: "gradcam" or "patch_gde", the anomaly map of `score`.
    cam_layer: "layer1".."layer4", the map's feature layer.
  """

  def __init__(self, num_classes: int = 3, width: float = 1.0, head_layers=(512,),
               embed_dim: int = 128, localize: str = "gradcam", cam_layer: str = "layer3"):
    super().__init__()
    if localize not in LOCALIZERS:
      raise ValueError(f"localize must be one of {', '.join(LOCALIZERS)}, got {localize!r}")
    if cam_layer not in STAGE_NAMES:
      raise ValueError(f"cam_layer must be one of {', '.join(STAGE_NAMES)}, got {cam_layer!r}")
    self.localize, self.cam_layer = localize, cam_layer
    self.backbone: ResNet = resnet18(num_classes=None, width=width)
    feats = [common.channels(f, width) for f in (64, 128, 256, 512)]
    self.head_depth = len(head_layers)
    in_features = feats[-1]
    for i, f in enumerate(head_layers):
      self.add_module(f"head_{i}", nn.Linear(in_features, f, bias=False))
      self.add_module(f"head_bn_{i}", nn.BatchNorm1d(f, eps=1e-5, momentum=0.1))
      in_features = f
    self.embed = nn.Linear(in_features, embed_dim)
    self.out = nn.Linear(embed_dim, num_classes)
    d, c = feats[-1], feats[STAGE_NAMES.index(cam_layer)]
    self.register_buffer("gde_mean", torch.zeros(d))
    self.register_buffer("gde_precision", torch.eye(d))
    self.register_buffer("patch_mean", torch.zeros(c))
    self.register_buffer("patch_precision", torch.eye(c))

  def stem(self, x):
    b = self.backbone
    return b.maxpool(b.relu(b.bn1(b.conv1(x))))

  def stages(self, x, start: int = 0, stop: int = len(STAGE_NAMES)):
    """Runs the backbone stages `STAGE_NAMES[start:stop]` on x (the stem's output for
    start = 0, else the output of stage `start - 1`)."""
    for name in STAGE_NAMES[start:stop]:
      x = getattr(self.backbone, name)(x)
    return x

  def head(self, feats):
    """layer4 features `[N, C, h, w]` -> (logits `[N, K]`, pooled `[N, C]`)."""
    pooled = feats.float().mean(dim=(2, 3))
    h = pooled
    for i in range(self.head_depth):
      h = F.relu(getattr(self, f"head_bn_{i}")(getattr(self, f"head_{i}")(h)))
    return self.out(self.embed(h).float()).float(), pooled

  def forward(self, x):
    """x: ImageNet-normalised `[N, 3, H, W]` -> (logits `[N, K]`, pooled `[N, 512·width]`)."""
    return self.head(self.stages(self.stem(x)))


def build(config, *, channels_last: bool = True) -> CutPaste:
  """The classifier of a jaxvad `cutpaste` config.

  Args:
    config: a `jaxvad.config.Config` of method cutpaste: `model.kinds`, `width`,
      `head_layers`, `embed_dim`, `localize`, `cam_layer`, `pretrained` (a torchvision
      resnet18 `.pth`: the backbone's weights). `train.compute_dtype` is not read (use
      `torch.autocast`); `model.freeze_steps` and the cosine schedule are not modelled (see
      the module docstring).
    channels_last: keep the conv weights in channels-last memory, as the input arrives.

  Returns:
    The module, on the CPU, in train mode.
  """
  m = config.model
  model = CutPaste(num_classes=1 + len(m.kinds), width=m.width,
                   head_layers=tuple(m.head_layers), embed_dim=m.embed_dim,
                   localize=m.localize, cam_layer=m.cam_layer)
  if m.pretrained:
    sd = torch.load(m.pretrained, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
  return model.to(memory_format=torch.channels_last) if channels_last else model


def optimizers(model: CutPaste, config) -> tuple[torch.optim.SGD]:
  """`(SGD,)`: lr `train.learning_rate`, momentum `model.momentum`, weight decay
  `model.weight_decay` on every parameter, as jaxvad's optax chain. The cosine schedule is
  left out (it does not change a step's cost; wrap the optimizer in a
  `CosineAnnealingLR(T_max=train.steps)` to train)."""
  m = config.model
  return (torch.optim.SGD(model.parameters(), lr=config.train.learning_rate,
                          momentum=m.momentum, weight_decay=m.weight_decay),)


def encoder_input(x: torch.Tensor) -> torch.Tensor:
  """float `[N, H, W, C]` in [0, 1] -> ImageNet-normalised `[N, 3, H, W]` (gray repeated;
  channels-last memory), as `jaxvad.methods.cutpaste.encoder_input`."""
  if x.shape[-1] == 1:
    x = x.expand(*x.shape[:-1], 3)
  mean, std = (common.constant(v, x.device) for v in _IMAGENET)
  return ((x - mean) / std).permute(0, 3, 1, 2)


def classification_batch(frames: torch.Tensor, views: torch.Tensor):
  """uint8 frames `[B, 1, H, W, C]` and views `[B, K, H, W, C]` -> images `[B·(K+1), H, W, C]`
  (frame-major: each frame, then its views) and int64 labels 0..K per frame."""
  images = torch.cat([frames, views.to(frames.device)], dim=1)
  b, k = images.shape[:2]
  labels = torch.arange(k, device=images.device).repeat(b)
  return images.flatten(0, 1), labels


def _views(targets) -> torch.Tensor:
  if not isinstance(targets, Mapping) or "views" not in targets:
    raise ValueError("cutpaste trains on each frame's pseudo-anomaly views: pass targets = "
                     "{'views': uint8 [B, K, H, W, C], ...} (the method's host transform)")
  return targets["views"]


def train_losses(model: CutPaste, frames: torch.Tensor, targets=None) -> dict[str, torch.Tensor]:
  """The loss of `cutpaste.train_step`, in train mode: softmax cross-entropy (mean) of the
  frames (class 0) and their views (classes 1..K), and the accuracy (no gradient).

  Args:
    model: from `build`.
    frames: uint8 `[B, 1, H, W, C]`.
    targets: `{"views": uint8 [B, K, H, W, C], "box": ...}` (box unused: the views are made).

  Returns:
    {"loss": float32 scalar, "accuracy": float32 scalar}.
  """
  model.train()
  device = common.device_of(model)
  images, labels = classification_batch(frames.to(device), _views(targets))
  logits, _ = model(encoder_input(common.to_float(images, device)))
  loss = F.cross_entropy(logits, labels)
  accuracy = (logits.detach().argmax(-1) == labels).float().mean()
  return {"loss": loss, "accuracy": accuracy}


def train_loss(model: CutPaste, frames: torch.Tensor, targets=None) -> torch.Tensor:
  """`train_losses`' loss (for a caller with its own optimizer)."""
  return train_losses(model, frames, targets)["loss"]


def train_step(model: CutPaste, optimizers_: tuple, frames: torch.Tensor, targets=None, *,
               losses_fn=train_losses) -> dict[str, torch.Tensor]:
  """One step: `losses_fn`, backward, the SGD step (`optimizers`). Returns the losses,
  detached (no device sync)."""
  (opt,) = optimizers_
  losses = losses_fn(model, frames, targets)
  opt.zero_grad(set_to_none=True)
  losses["loss"].backward()
  opt.step()
  return {k: v.detach() for k, v in losses.items()}


def _mahalanobis(mean, precision, x):
  """sqrt((x - mu)^T P (x - mu)) over the last axis, clamped at 0 (`jaxvad.density`)."""
  diff = x.float() - mean
  return ((diff @ precision) * diff).sum(-1).clamp_min(0).sqrt()


def _min_max(x):
  """`[N, h, w]` min-max scaled per image to [0, 1]; a constant image -> zeros (`jaxvad.cam`)."""
  lo = x.amin(dim=(1, 2), keepdim=True)
  span = x.amax(dim=(1, 2), keepdim=True) - lo
  positive = span > 0
  scaled = ((x - lo) / torch.where(positive, span, torch.ones_like(span))).clamp(0, 1)
  return torch.where(positive, scaled, torch.zeros_like(scaled))


def _upsample(maps, size):
  """`[N, h, w]` -> `[N, 1, H, W]` bilinear, half-pixel centres (jax.image.resize upsampling)."""
  return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)


def features(model: CutPaste, frames: torch.Tensor):
  """L2-normalised pooled features `[N, D]` and `cam_layer` feature vectors `[N, C, h, w]` of
  uint8 images `[N, H, W, C]` (what the Gaussians are fitted on), eval mode, no autograd."""
  model.eval()
  with torch.no_grad():
    x = model.stem(encoder_input(common.to_float(frames, common.device_of(model))))
    stop = STAGE_NAMES.index(model.cam_layer) + 1
    layer = model.stages(x, 0, stop)
    _, pooled = model.head(model.stages(layer, stop))
    return F.normalize(pooled, dim=1), F.normalize(layer.float(), dim=1)


def score(model: CutPaste, frames: torch.Tensor, inputs=None) -> dict[str, torch.Tensor]:
  """As `cutpaste.score_step`, in eval mode: "gde" and "softmax" `[B, 1]`, "probs"
  `[B, 1, K]`, "map" `[B, 1, H, W]` (see the module docstring).

  Args:
    model: from `build` (its Gaussians set by `load_flax_variables` / `set_density`).
    frames: uint8 `[B, 1, H, W, C]`.
    inputs: the per-frame inputs (`{"box": ...}`; unused in scoring).

  Returns:
    float32 tensors, detached.
  """
  del inputs
  model.eval()
  size = tuple(frames.shape[2:4])
  stop = STAGE_NAMES.index(model.cam_layer) + 1
  gradcam = model.localize == "gradcam"
  with torch.no_grad():
    x = model.stem(encoder_input(common.to_float(frames[:, 0], common.device_of(model))))
    layer = model.stages(x, 0, stop)
  with torch.set_grad_enabled(gradcam):
    a = layer.detach().requires_grad_(gradcam)
    logits, pooled = model.head(model.stages(a, stop))
    if gradcam:
      # One backward pass for the batch: in eval mode image b's logit depends on image b only.
      defect = logits[:, 1:].argmax(dim=-1, keepdim=True) + 1
      (grads,) = torch.autograd.grad(logits.gather(1, defect).sum(), a)
  with torch.no_grad():
    logits, pooled = logits.detach(), pooled.detach()
    probs = torch.softmax(logits, dim=-1)
    gde = _mahalanobis(model.gde_mean, model.gde_precision, F.normalize(pooled, dim=1))
    if gradcam:
      alpha = grads.float().mean(dim=(2, 3))
      cam = F.relu(torch.einsum("nchw,nc->nhw", layer.float(), alpha))
      maps = _upsample(_min_max(cam), size)
    else:
      vectors = F.normalize(layer.float(), dim=1).permute(0, 2, 3, 1)
      maps = _upsample(_mahalanobis(model.patch_mean, model.patch_precision, vectors), size)
    return {"gde": gde[:, None], "softmax": (1.0 - probs[:, 0])[:, None],
            "probs": probs[:, None], "map": maps}


def _mean_precision(density: Any):
  """A `jaxvad.density.GaussianDensity`, a {"mean", "precision"} mapping or a (mean, precision)
  pair -> two float32 numpy arrays."""
  if isinstance(density, Mapping):
    mean, precision = density["mean"], density["precision"]
  elif hasattr(density, "mean") and hasattr(density, "precision"):
    mean, precision = density.mean, density.precision
  else:
    mean, precision = density
  return np.asarray(mean, np.float32), np.asarray(precision, np.float32)


def set_density(model: CutPaste, density: Any = None, patch_density: Any = None) -> CutPaste:
  """Sets the fitted Gaussians (each a `GaussianDensity`, {"mean", "precision"} or a pair;
  None leaves that one as it is). Returns the model."""
  for value, prefix in ((density, "gde"), (patch_density, "patch")):
    if value is not None:
      mean, precision = _mean_precision(value)
      common.copy_(getattr(model, f"{prefix}_mean"), mean)
      common.copy_(getattr(model, f"{prefix}_precision"), precision)
  return model


def load_flax_variables(model: CutPaste, variables: Mapping, *, density: Any = None,
                        patch_density: Any = None) -> CutPaste:
  """Copies a jaxvad `CutPasteNet`'s weights (and optionally the Gaussians) into the model.

  Args:
    model: from `build`.
    variables: `{"params", "batch_stats"}` of `CutPasteNet`; may also hold "density" and
      "patch_density" (a `cutpaste.State`'s fields).
    density, patch_density: the fitted Gaussians (`GaussianDensity`, {"mean", "precision"}
      or a (mean, precision) pair), taking precedence over the keys of `variables`.

  Returns:
    The model.
  """
  common.load_resnet18_from_flax(model.backbone, variables, flax_path=("backbone",), name="backbone")
  common.load_named_modules(model, variables, skip=("backbone",))
  return set_density(model,
                     density if density is not None else variables.get("density"),
                     patch_density if patch_density is not None
                     else variables.get("patch_density"))

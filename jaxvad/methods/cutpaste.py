"""Paper 002: self-supervised inspection with CutPaste and CropLiq (and CutPaste, Li et al. 2021).

Frame by frame (`data.window = 1`), a classifier (`models/cutpaste.py`: ResNet-18 + projection
head) learns to tell normal images from self-made defects (`jaxvad.pseudo_anomalies`): each
training image comes with one view per kind in `model.kinds`, made on the host in the grain
pipeline (`host_transform`, seeded by the stream position, so resume is exact), and the step
classifies all of them: class 0 = normal, class i = `model.kinds[i - 1]` (paper 002's 3-way
normal / CutPaste / CropLiq by default; `["cutpaste"]` is CutPaste's binary task, `["cutpaste",
"scar"]` its 3-way). Every kind stays inside the object's box (`model.object_box`): the
synthetic benchmark's rendered moving parts, or the whole (cropped, `data.roi`) frame.

Optimisation (the references): SGD, momentum 0.9, weight decay `model.weight_decay` (3e-5),
learning rate `train.learning_rate` (0.03) on a cosine schedule restarted every
`model.restart_every` steps (0: one cosine over the run); the backbone is frozen for the first
`model.freeze_steps` steps (for ImageNet weights, `model.pretrained`): its gradients and decay
are zeroed before the momentum, so it starts moving as if it had never been frozen, as in torch
where frozen parameters have no gradient.

`fit` (after the last step): a Gaussian (mean + Ledoit–Wolf covariance, `jaxvad.density`) on
the L2-normalised pooled features of every training frame; with `model.localize = patch_gde`
also one on the L2-normalised feature vectors of every position of `model.cam_layer`.

Score per frame (`model.score`): "gde", the Mahalanobis distance of the pooled features to that
Gaussian (paper 002 eq. 2), or "softmax", 1 - p(normal). Anomaly map ("map", `[B, 1, H, W]`):
"gradcam" (`jaxvad.cam.grad_cam` of the most likely defect class's logit at `model.cam_layer`,
min-max per frame) or "patch_gde" (each position's Mahalanobis distance, upsampled bilinearly).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvad import cam, density, pseudo_anomalies
from jaxvad.data import clips, synth
from jaxvad.errors import ConfigError
from jaxvad.methods import predictive_ae
from jaxvad.methods.base import Method, Phase, ScoreSpec, ScoreTerm, TrainState, init_variables
from jaxvad.models import convert_torch, cutpaste, resnet

SCORES = ("gde", "softmax")
LOCALIZERS = ("gradcam", "patch_gde")
OBJECT_BOXES = ("rendered", "frame")
# The synthetic benchmark's moving parts (every scene's): "the object" pseudo-defects go on.
OBJECT_CLASSES = tuple(sorted({n for names in clips.MOVING_PART_CLASSES.values() for n in names}))
_MIN_BOX = 8        # pseudo_anomalies' smallest box side (px)
_BOX_MARGIN = 2     # px around the rendered object


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  kinds: tuple[str, ...] = ("cutpaste", "cropliq")   # pseudo-anomaly classes after "normal"
  cropliq_region: tuple[float, ...] = (0.1, 0.5)   # CropLiq rectangle side / box side, U[a, b]
  cropliq_strength: tuple[float, ...] = pseudo_anomalies.STRENGTH   # largest shift / rect side
  width: float = 1.0                  # ResNet-18 channel multiplier (1.0 = torchvision's)
  head_layers: tuple[int, ...] = (512,)   # projection head's hidden widths
  embed_dim: int = 128
  pretrained: str = ""                # torchvision resnet18 .pth (ImageNet); "" = random
  freeze_steps: int = 0               # backbone frozen for this many first steps (pretrained)
  weight_decay: float = 3e-5
  momentum: float = 0.9
  restart_every: int = 0              # cosine restarts every N steps; 0 = one cosine
  score: str = "gde"                  # gde | softmax (1 - p(normal))
  localize: str = "gradcam"           # gradcam | patch_gde
  cam_layer: str = "layer3"           # layer1..layer4: the anomaly map's feature layer
  object_box: str = "rendered"        # rendered (synthetic benchmark's objects) | frame
  shrinkage: str = "ledoit_wolf"      # the Gaussians' covariance: ledoit_wolf | empirical

  def validate(self):
    if not self.kinds or len(set(self.kinds)) != len(self.kinds) or any(
        k not in pseudo_anomalies.KINDS for k in self.kinds):
      raise ConfigError(f"model.kinds = {list(self.kinds)}: one or more distinct kinds of "
                        f"{', '.join(pseudo_anomalies.KINDS)}")
    for key in ("cropliq_region", "cropliq_strength"):
      pair = tuple(getattr(self, key))
      if len(pair) != 2 or not 0 < pair[0] <= pair[1] <= 1:
        raise ConfigError(f"model.{key} = {list(pair)} must be [low, high] with "
                          "0 < low <= high <= 1")
    if not self.width > 0 or self.embed_dim < 1 or any(n < 1 for n in self.head_layers):
      raise ConfigError("model.width must be > 0, model.embed_dim and model.head_layers >= 1")
    if self.freeze_steps < 0 or self.restart_every < 0 or self.weight_decay < 0:
      raise ConfigError("model.freeze_steps, model.restart_every and model.weight_decay must "
                        "be >= 0")
    if self.freeze_steps and not self.pretrained:
      raise ConfigError(f"model.freeze_steps = {self.freeze_steps} would freeze a randomly "
                        "initialised backbone: set model.pretrained to ImageNet weights (a "
                        "torchvision resnet18 .pth) or model.freeze_steps = 0")
    if not 0 <= self.momentum < 1:
      raise ConfigError(f"model.momentum = {self.momentum} must be in [0, 1)")
    for key, value, known in (("score", self.score, SCORES),
                              ("localize", self.localize, LOCALIZERS),
                              ("cam_layer", self.cam_layer, resnet.STAGE_NAMES),
                              ("object_box", self.object_box, OBJECT_BOXES),
                              ("shrinkage", self.shrinkage, density.SHRINKAGES)):
      if value not in known:
        raise ConfigError(f"model.{key} = {value!r}: choose one of {', '.join(known)}")


class State(TrainState):
  """TrainState + the fitted Gaussians and how to score, static for the jitted steps."""
  density: density.GaussianDensity = None
  patch_density: density.GaussianDensity = None
  score_kind: str = flax.struct.field(pytree_node=False, default="gde")
  localize: str = flax.struct.field(pytree_node=False, default="gradcam")
  cam_layer: str = flax.struct.field(pytree_node=False, default="layer3")


def build_model(config) -> cutpaste.CutPasteNet:
  m = config.model
  return cutpaste.CutPasteNet(num_classes=1 + len(m.kinds), width=m.width,
                              head_layers=tuple(m.head_layers), embed_dim=m.embed_dim,
                              dtype=jnp.dtype(config.train.compute_dtype))


def class_names(config) -> tuple[str, ...]:
  """The classifier's classes: ("normal", *model.kinds)."""
  return ("normal", *config.model.kinds)


# --------------------------------------------------------------------------- host side


def object_boxes(classes: np.ndarray) -> np.ndarray:
  """Per-frame boxes around the synthetic benchmark's moving objects.

  Args:
    classes: uint8 `[T, H, W]` ids into `synth.SEMANTIC_CLASSES`.

  Returns:
    int32 `[T, 4]` (x0, y0, x1, y1), half-open: the objects' pixels (`OBJECT_CLASSES`) grown by
    2 px and to at least 8 x 8 where the frame allows, clipped to the frame; the whole frame
    where no object shows.
  """
  t, h, w = classes.shape
  ids = [synth.SEMANTIC_CLASSES.index(n) for n in OBJECT_CLASSES]
  on = np.isin(classes, ids)
  boxes = np.tile(np.array([0, 0, w, h], np.int32), (t, 1))
  rows, cols = on.any(axis=2), on.any(axis=1)
  for i in np.flatnonzero(rows.any(axis=1)):
    ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
    box = []
    for lo, hi, size in ((xs[0], xs[-1] + 1, w), (ys[0], ys[-1] + 1, h)):
      lo, hi = max(lo - _BOX_MARGIN, 0), min(hi + _BOX_MARGIN, size)
      grow = max(min(_MIN_BOX, size) - (hi - lo), 0)
      lo = max(min(lo - grow // 2, size - (hi - lo) - grow), 0)
      box.append((lo, min(lo + max(hi - lo, min(_MIN_BOX, size)), size)))
    boxes[i] = (box[0][0], box[1][0], box[0][1], box[1][1])
  return boxes


def frame_inputs(config, frames: np.ndarray, clip=None) -> dict[str, np.ndarray]:
  """{"box": int32 `[T, 4]`}: the object's box per frame (`model.object_box`): from the rendered
  class maps of a synthetic clip, else the whole frame (bare footage, other datasets)."""
  t, h, w = frames.shape[:3]
  classes = getattr(clip, "classes", None)
  if config.model.object_box == "rendered" and classes is not None:
    return {"box": object_boxes(np.asarray(classes))}
  return {"box": np.tile(np.array([0, 0, w, h], np.int32), (t, 1))}


def pseudo_anomaly_views(config, item: dict, rng: np.random.Generator) -> dict:
  """Host transform of one training window (a frame): adds "views", uint8 `[K, H, W, C]`, one
  pseudo-anomaly per kind of `model.kinds`, each inside the frame's object box."""
  m = config.model
  frame, box = item["frames"][0], tuple(int(v) for v in item["box"][0])
  views = [pseudo_anomalies.cropliq(frame, rng, box=box, region=tuple(m.cropliq_region),
                                    strength=tuple(m.cropliq_strength))[0]
           if kind == "cropliq" else pseudo_anomalies.apply(kind, frame, rng, box=box)[0]
           for kind in m.kinds]
  return {**item, "views": np.stack(views)}


# --------------------------------------------------------------------------- state


def _frozen_backbone(params, steps: int) -> optax.GradientTransformation:
  """Zeroes the backbone's updates during the first `steps` updates (placed before momentum)."""
  frozen = {k: jax.tree.map(lambda _: k == cutpaste.BACKBONE, v) for k, v in params.items()}

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    thawed = state.count >= steps
    updates = jax.tree.map(lambda u, f: jnp.where(f & ~thawed, jnp.zeros_like(u), u),
                           updates, frozen)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def learning_rate(config) -> optax.Schedule:
  """Cosine from `train.learning_rate` to 0, restarted every `model.restart_every` steps."""
  lr, steps = config.train.learning_rate, config.train.steps
  period = config.model.restart_every or steps
  cosine = optax.cosine_decay_schedule(lr, max(period, 1))
  return lambda count: cosine(count % period)


def optimizer(config, params) -> optax.GradientTransformation:
  """SGD with momentum and decoupled-as-in-torch weight decay (grad + wd·p, then momentum)."""
  m = config.model
  parts = [optax.add_decayed_weights(m.weight_decay)]
  if m.freeze_steps:
    parts.append(_frozen_backbone(params, m.freeze_steps))
  parts.append(optax.sgd(learning_rate(config), momentum=m.momentum or None))
  return optax.chain(*parts)


def _feature_dims(config) -> dict[str, int]:
  feats = resnet.stage_features(config.model.width)
  return {**dict(zip(resnet.STAGE_NAMES, feats)), "pooled": feats[-1]}


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  frames = example_batch["frames"]
  t, h, w = frames.shape[1:4]
  if t != 1:
    raise ConfigError(f"data.window = {t}: the CutPaste classifier looks at single frames; "
                      "set data.window = 1 (and data.stride = 1)")
  if min(h, w) < 32:
    raise ConfigError(f"frames of {h}x{w}: ResNet-18 needs at least 32 px a side; set data.size "
                      "or a larger data.roi")
  model = build_model(config)
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(model, init_rng, encoder_input(to_float(frames[:1, 0])))
  params, batch_stats = variables["params"], variables["batch_stats"]
  if config.model.pretrained and load_pretrained:
    backbone = {"params": params[cutpaste.BACKBONE],
                "batch_stats": batch_stats[cutpaste.BACKBONE]}
    backbone = convert_torch.load_torch_weights(backbone, config.model.pretrained,
                                                arch="resnet18", include_fc=False)
    params = {**params, cutpaste.BACKBONE: backbone["params"]}
    batch_stats = {**batch_stats, cutpaste.BACKBONE: backbone["batch_stats"]}
  dims = _feature_dims(config)
  return State.create(
      apply_fn=model.apply, params=params, batch_stats=batch_stats,
      tx=optimizer(config, params), rng=state_rng,
      density=density.GaussianDensity.identity(dims["pooled"]),
      patch_density=density.GaussianDensity.identity(dims[config.model.cam_layer]),
      score_kind=config.model.score, localize=config.model.localize,
      cam_layer=config.model.cam_layer)


# --------------------------------------------------------------------------- steps


# uint8 -> [0, 1] floats on device, and ImageNet-normalised RGB: as paper 001's ResNet input.
to_float = predictive_ae.to_float
encoder_input = predictive_ae.encoder_input


def classification_batch(batch):
  """Images and labels of a training batch: each frame and its K views, `[B·(K+1), H, W, C]`
  uint8 (frame-major), labels `[B·(K+1)]` = 0, 1, .., K per frame."""
  images = jnp.concatenate([batch["frames"], batch["views"]], axis=1)
  b, k = images.shape[:2]
  return images.reshape(b * k, *images.shape[2:]), jnp.tile(jnp.arange(k), b)


def train_step(state: State, batch):
  images, labels = classification_batch(batch)
  x = encoder_input(to_float(images))

  def loss_fn(params):
    (logits, _), updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                          x, train=True, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return state, {"loss": loss, "accuracy": accuracy}


def _apply(state: State, x):
  return state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x,
                        train=False)


def features(state: State, images):
  """L2-normalised pooled features `[N, D]` and `cam_layer` feature vectors `[N, h, w, C]` of
  uint8 images `[N, H, W, C]` (what the Gaussians are fitted on)."""
  _, aux = _apply(state, encoder_input(to_float(images)))
  return (density.l2_normalize(aux["pooled"]),
          density.l2_normalize(aux[state.cam_layer].astype(jnp.float32)))


def _replace_output(path: tuple[str, ...], value):
  """A Flax method interceptor returning `value` as the output of the module at `path`."""
  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.path == path:
      return value
    return next_fun(*args, **kwargs)
  return interceptor


def anomaly_map(state: State, x, logits, aux):
  """`[N, H, W]` anomaly map of normalised images x `[N, H, W, 3]` (`model.localize`)."""
  size = x.shape[1:3]
  layer = aux[state.cam_layer]
  if state.localize == "patch_gde":
    vectors = density.l2_normalize(layer.astype(jnp.float32))
    distances = density.mahalanobis(state.patch_density, vectors)
    return jax.image.resize(distances, (len(x), *size), "bilinear")
  # The last block of the stage: replacing its output with `a` makes the rest of the network a
  # function of `a` (the part before it is dead code under jit).
  path = (cutpaste.BACKBONE, f"{state.cam_layer}_{resnet.BLOCKS_PER_STAGE - 1}")

  def head(a):
    with nn.intercept_methods(_replace_output(path, a)):
      return _apply(state, x)[0]

  defect = jnp.argmax(logits[:, 1:], axis=-1) + 1
  return cam.grad_cam(head, layer, defect, size=size)


def score_step(state: State, batch):
  """Per frame: "gde" and "softmax" `[B, 1]`, "probs" `[B, 1, K]` and the anomaly "map"
  `[B, 1, H, W]`."""
  x = encoder_input(to_float(batch["frames"][:, 0]))
  logits, aux = _apply(state, x)
  probs = jax.nn.softmax(logits, axis=-1)
  gde = density.mahalanobis(state.density, density.l2_normalize(aux["pooled"]))
  return {"gde": gde[:, None], "softmax": (1.0 - probs[:, 0])[:, None], "probs": probs[:, None],
          "map": anomaly_map(state, x, logits, aux)[:, None]}


# --------------------------------------------------------------------------- fit


def fit(config, state: State, train_clips) -> State:
  """Fits the Gaussians on every frame of the training clips (see the module docstring)."""
  extract = jax.jit(features)
  size = config.score.batch_size
  frames = np.concatenate([np.asarray(c).reshape(-1, *np.shape(c)[-3:]) for c in train_clips])
  pooled, dense = [], []
  for i in range(0, len(frames), size):
    p, d = jax.device_get(extract(state, frames[i:i + size]))
    pooled.append(p)
    if state.localize == "patch_gde":
      dense.append(d.reshape(-1, d.shape[-1]))
  shrinkage = config.model.shrinkage
  state = state.replace(density=density.fit_gaussian(np.concatenate(pooled),
                                                     shrinkage=shrinkage))
  if dense:
    state = state.replace(patch_density=density.fit_gaussian(np.concatenate(dense),
                                                             shrinkage=shrinkage))
  return state


# --------------------------------------------------------------------------- declaration


def score(config) -> ScoreSpec:
  if config.model.score == "gde":
    term = ScoreTerm("gde", "Mahalanobis distance of the L2-normalised pooled features to the "
                     "Gaussian fitted on normal training frames (Ledoit-Wolf covariance)"
                     if config.model.shrinkage == "ledoit_wolf" else
                     "Mahalanobis distance of the L2-normalised pooled features to the "
                     "Gaussian fitted on normal training frames (empirical covariance)",
                     higher_is_anomalous=True)
  else:
    term = ScoreTerm("softmax", "1 - softmax probability of the class normal",
                     higher_is_anomalous=True)
  return ScoreSpec(terms=(term,), pixel_map="map")


def example_inputs(config, shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Random "box" inputs of a batch `(B, T)` (the whole frame is not known here: a box of
  8 x 8 at the origin, which every frame holds)."""
  return {"box": np.tile(np.array([0, 0, _MIN_BOX, _MIN_BOX], np.int32), (*shape, 1))}


METHOD = Method(
    name="cutpaste", model_config=ModelConfig, create_state=create_state,
    phases=(Phase("train", train_step),), score=score, score_step=score_step,
    frame_inputs=frame_inputs, host_transform=pseudo_anomaly_views, fit=fit,
    example_targets=example_inputs, bench_config="cutpaste_demo")

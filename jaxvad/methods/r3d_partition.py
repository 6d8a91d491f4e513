"""Background masking model of paper 000 (§3.1.2, §3.2): R3D-18 trained to predict, for every
frame of a window, which partition of the machine's cycle it belongs to, from weak labels.

The labels come from the training clips alone (`training_targets`, Numba kernels): each clip's
signal (mean L2 distance of every frame to its first frame) -> cycle period and template ->
DTW phase of every frame -> C partition classes with linear transitions of T_trans frames
(eq. 3.2.2-3.2.3). The network learns where the periodic machine is; Eigen-CAM on its last
conv layers (`cam_step`) then gives attention maps that `jaxvad.masking` turns into masks.

This method does not score anomalies itself (`jaxvad eval` on its run says so): its `masker`
gives a clip's background mask, which `jaxvad eval/score --mask-from` and the paper-000
reproduction apply to a detector's score.
"""

from __future__ import annotations

import dataclasses

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxvad_kernels
from jaxvad import cam as cam_lib
from jaxvad import inference, losses, masking
from jaxvad.errors import ConfigError, DataError
from jaxvad.methods.base import Method, Phase, TrainState, init_variables
from jaxvad.models import convert_torch, r3d

# torchvision's Kinetics-400 normalisation, so pretrained weights see what they were trained on.
_MEAN = np.array([0.43216, 0.394666, 0.37645], np.float32)
_STD = np.array([0.22803, 0.22145, 0.216989], np.float32)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  width: float = 1.0            # channel multiplier of R3D-18 (1.0 = torchvision's r3d_18)
  num_classes: int = 8          # C: partitions per cycle (eq. 3.2.2)
  transition: int = 2           # T_trans: frames of linear transition at each boundary (3.2.3)
  period: int = 0               # cycle length in frames; 0 estimates it from the train clips
  pretrained: str = ""          # optional torchvision r3d_18 .pth (e.g. Kinetics-400) to start
                                # from; its fc is dropped (the head predicts partitions)

  def validate(self):
    if not self.width > 0:
      raise ConfigError(f"model.width = {self.width} must be > 0")
    if self.num_classes < 2:
      raise ConfigError(f"model.num_classes = {self.num_classes} must be >= 2 partitions")
    if self.transition < 0 or self.period < 0:
      raise ConfigError("model.transition and model.period must be >= 0 (period 0 = estimate)")


def build_model(config) -> r3d.R3D18:
  return r3d.R3D18(num_classes=config.model.num_classes, width=config.model.width,
                   temporal_strides=False, dtype=jnp.dtype(config.train.compute_dtype))


def to_input(frames, *, pretrained: bool):
  """uint8 `[B, T, H, W, C]` -> float, Kinetics-normalised; gray is repeated to RGB for
  pretrained weights (their stem has 3 input channels)."""
  x = jnp.asarray(frames, jnp.float32) / 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1) if pretrained else x
    mean, std = (_MEAN, _STD) if pretrained else (_MEAN.mean(), _STD.mean())
  else:
    mean, std = _MEAN, _STD
  return (x - mean) / std


def training_targets(config, clips) -> dict:
  """Smoothed partition-order labels `[T_i, C]` of every training clip (paper 000 §3.2)."""
  signals = [jaxvad_kernels.frame_signal(c) for c in clips]
  m = config.model
  try:
    labels = jaxvad_kernels.partition_order_labels(
        signals, num_classes=m.num_classes, transition=m.transition, period=m.period or None)
  except ValueError as e:
    raise DataError(f"cannot build partition labels from the {len(clips)} training clips of "
                    f"{config.data.root} ({e}); set model.period to the cycle length in "
                    f"frames, or lower model.num_classes / model.transition") from None
  return {"labels": [s.astype(np.float32) for s in labels.smooth]}


def example_targets(config, shape, rng) -> dict:
  """Random soft partition labels `[B, T, C]` (benchmarks)."""
  return {"labels": rng.dirichlet(np.ones(config.model.num_classes), shape).astype(np.float32)}


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  pretrained = bool(config.model.pretrained)
  x = to_input(example_batch["frames"][:1], pretrained=pretrained)
  model = build_model(config)
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(model, init_rng, x)
  if pretrained and load_pretrained:
    variables = convert_torch.load_torch_weights(variables, config.model.pretrained,
                                                 include_fc=False)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           tx=optax.adam(config.train.learning_rate), rng=state_rng)


def _pretrained(state) -> bool:
  # The input normalisation depends on whether the stem was built for RGB (3 input channels).
  return state.params["stem"]["conv"]["kernel"].shape[-2] == 3


def train_step(state, batch):
  if "labels" not in batch:
    raise ValueError("r3d_partition trains on batch['labels'], the per-frame partition labels "
                     "that `training_targets` derives from the training clips")
  x = to_input(batch["frames"], pretrained=_pretrained(state))

  def loss_fn(params):
    (logits, _), updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True,
        mutable=["batch_stats"])
    return losses.soft_label_cross_entropy(logits, batch["labels"]), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(batch["labels"], -1))
  state = state.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])
  return state, {"loss": loss, "accuracy": accuracy}


def _forward(state, frames):
  x = to_input(frames, pretrained=_pretrained(state))
  return state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x,
                        train=False)


def partition_step(state, batch):
  """Per-frame partition probabilities `[B, T, C]` (the model scores no anomalies)."""
  logits, _ = _forward(state, batch["frames"])
  return {"partition_probs": jax.nn.softmax(logits, axis=-1)}


def cam_step(state, batch):
  """Eigen-CAM attention of the four convs of layer4, per frame (§3.1.2, Table 4.5).

  Returns:
    {"cams": float `[B, T, 4, h, w]` in [0, 1]}: index -1 is the last conv (layer4.1.conv2),
    so the paper's "last N convolutions" are `cams[:, :, -N:]`. Maps stay at layer4's
    resolution (h = ceil(H / 16)); `jaxvad.masking` averages the chosen layers, thresholds,
    pools over time and resizes them to the frames.
  """
  _, aux = _forward(state, batch["frames"])
  return {"cams": jnp.stack([cam_lib.eigen_cam(a) for a in aux["activations"][-4:]], axis=2)}


def in_masker_colour(config, frames: np.ndarray) -> np.ndarray:
  """uint8 `[T, H, W, C]` frames in the colour the masking model was trained on.

  A detector may read RGB where the masker reads gray (or the reverse): the masker then sees
  the same frames, converted as `jaxvad.data.video` reads them (ITU-R 601 luma, OpenCV).
  """
  want = 1 if config.data.grayscale else 3
  if frames.shape[-1] == want:
    return frames
  if want == 1:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]
  return np.repeat(frames, 3, axis=-1)


def clip_cams(config, state, frames) -> np.ndarray:
  """float32 `[T, 4, h, w]` Eigen-CAM maps of every frame of a clip (`cam_step`); frames of
  either colour (`in_masker_colour`)."""
  runner = inference.WindowRunner(cam_step, window=config.data.window,
                                  batch_size=config.score.batch_size)
  return runner.clip_outputs(state, in_masker_colour(config, frames),
                             ["cams"])["cams"].astype(np.float32)


def clip_mask(config, state, frames, *, setting: masking.MaskSetting = masking.MAIN_SETTING):
  """float32 `[T, H, W]` background mask of a clip (paper 000 §3.1.2 with `setting`)."""
  return masking.mask_from_layer_maps(clip_cams(config, state, frames), setting=setting,
                                      frame_size=frames.shape[1:3])


METHOD = Method(
    name="r3d_partition", model_config=ModelConfig, create_state=create_state,
    phases=(Phase("train", train_step),), score=None,
    not_a_detector=("r3d_partition is paper 000's background masking model: it learns where "
                    "the machine is, it does not score anomalies. Use its masks with a "
                    "detector's run: `jaxvad eval --workdir DETECTOR_RUN --mask-from {workdir}` "
                    "(or `jaxvad reproduce paper000`)"),
    steps={"partition": partition_step, "cam": cam_step}, masker=clip_mask,
    training_targets=training_targets, example_targets=example_targets,
    bench_config="r3d_partition_demo")

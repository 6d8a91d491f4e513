"""Every registered method trains and scores with `train.compute_dtype = bfloat16`.

For each method (its tiny config from `tests/test_methods.TINY`) the same few training steps
run from the same initial state on the same batches, in float32 and in bfloat16, then the score
step scores the same windows. In bfloat16:
  * the steps really compute in bfloat16 (their HLO has bf16 ops: the model honours the
    config), while every floating leaf of the state (parameters, optimizer moments, batch-norm
    statistics, fitted densities) stays float32, and so do the losses and metrics;
  * the loss is finite at every step;
  * every score output is finite, and each score term is within a tolerance of its float32
    value (`SPREAD_FRACTION`, `FLOOR_FACTOR`: see there what it is and why).
r3d_partition scores no anomalies: its partition probabilities are compared instead, and the
background masks its Eigen-CAM maps make.

The batches are windows of one rendered synthetic clip (`synth.render_clip`): real frames, so
the scores vary across the batch (random noise frames all score alike).
"""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import masking, methods
from jaxvad.data import synth
from jaxvad.methods import r3d_partition
from tests.test_methods import TINY, tiny_state

STEPS = 3        # f2lm (generator_steps = 1) and tiny_test (joint_steps = 1) cross their phases
BATCH = 8        # windows per batch; the steps are jitted on one device, unsharded

# Tolerance of a compared output (a score term; r3d_partition's partition probabilities): the
# largest |bf16 - f32| over the batch after the steps must be within
#   max(SPREAD_FRACTION * the float32 output's range over the batch,
#       FLOOR_FACTOR * the noise floor),
# the noise floor being the largest |f32' - f32| where f32' is the same float32 run from the
# initial state rounded to bfloat16 (a perturbation of exactly bf16's resolution).
#  * The spread: evaluation uses a term only through per-video normalisation (min-max or
#    z-score) and ranks (AUROC), so its unit is how much the scores vary across frames, not
#    their absolute value (PSNR 20.00 vs 20.01 dB means nothing alone). A quarter of the range
#    keeps the ordering of all but near-ties. A score reduced in bf16 fails it: the ConvLSTM's
#    PSNR from an MSE taken in bf16 moves by 0.19 dB, 1.6 ranges (6x the tolerance).
#  * The floor: a few steps from a random init can be chaotic (cutpaste's SGD at 0.03 with
#    batch norm on 24 images: rounding the init to bf16 already moves its GDE score by 0.3 of
#    its range), and some terms barely vary yet (f2lm's motion triplet varies by 2e-7 over the
#    batch): there float32 itself does not determine the score to better than that floor, and
#    bf16 has to stay within a few times of it.
# Measured on these runs: deviation / range <= 0.17 where the range decides (ffp 0.11,
# r3d_partition 0.17), deviation / floor <= 1.9 where the floor does (cutpaste).
SPREAD_FRACTION = 0.25
FLOOR_FACTOR = 4.0
# Compiling ResNet-18 / R3D-18 / three U-Nets' steps twice takes 1-3 min on 2 cores: those run
# with -m slow; the default run keeps the contract's tiny_test and the ConvLSTM (~45 s).
SLOW = {"cutpaste", "f2lm", "ffp", "predictive_ae", "r3d_partition"}


def config_for(name: str, dtype: str) -> config_lib.Config:
  """The method's tiny config (`TINY`) in `dtype`, `STEPS` steps of `BATCH` windows; a random
  encoder where it names a pretrained file (the weights' values do not change the dtypes)."""
  path, overrides = TINY[name]
  overrides = [o for o in overrides if "{pth}" not in o]
  return config_lib.load_config(path, [*overrides, f"train.compute_dtype={dtype}",
                                       f"train.steps={STEPS}", f"train.batch_size={BATCH}"])


def _clip(config):
  """A rendered pickplace clip with an anomaly, at the config's frame size and colour."""
  h, w = config.data.size
  clip = synth.render_clip("pickplace", num_cycles=2, anomaly="dropped", size=(32, 32),
                           cycle_range=(16, 20), seed=0)
  frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in clip.frames])
  if config.data.grayscale:
    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]
  return clip, frames


def batches(config):
  """`STEPS` training batches and a score batch of `BATCH` windows of one clip, as the trainer
  and the scorer build them: the method's per-frame inputs (`frame_inputs`), random targets of
  its shapes (`example_targets`) and its host transform (each step its own draw).

  Returns:
    (training batches, score batch, the clip's uint8 frames `[T, H, W, C]` for `fit`).
  """
  method = methods.get(config.method)
  clip, frames = _clip(config)
  per_frame = {"frames": frames}
  if method.frame_inputs is not None:
    per_frame.update(method.frame_inputs(config, frames, clip))
  t = config.data.window
  starts = np.linspace(0, len(frames) - t, BATCH).astype(int)
  windows = {k: np.stack([v[s:s + t] for s in starts]) for k, v in per_frame.items()}
  train = []
  for step in range(STEPS):
    rng = np.random.default_rng(step)
    batch = dict(windows)
    if method.example_targets is not None:
      batch.update({k: v for k, v in method.example_targets(config, (BATCH, t), rng).items()
                    if k not in batch})
    if method.host_transform is not None:
      items = [method.host_transform(config, {k: v[i] for k, v in batch.items()}, rng)
               for i in range(BATCH)]
      batch = {k: np.stack([item[k] for item in items]) for k in items[0]}
    train.append(batch)
  return train, windows, frames


def _score_fn(method):
  if method.is_detector:
    return method.score_step
  # r3d_partition: its logits (as probabilities) and its Eigen-CAM maps, in one program.
  return lambda state, batch: {**r3d_partition.partition_step(state, batch),
                               **r3d_partition.cam_step(state, batch)}


class Runner:
  """Method `name` in `dtype`: `STEPS` training steps from a given initial state, `fit`, then
  the score step on the score batch; each step compiled once for every call."""

  def __init__(self, name: str, dtype: str, example_batch):
    self.config, self.method = config_for(name, dtype), methods.get(name)
    # The state of this dtype's models (their apply_fns), to be filled with an init's values.
    self.like = jax.eval_shape(lambda: self.method.create_state(
        self.config, jax.random.key(0), example_batch))
    self.compiled, self.bf16_ops = {}, False

  def _step(self, key, fn, *args):
    if key not in self.compiled:
      lowered = jax.jit(fn).lower(*args)
      self.bf16_ops |= "bf16" in lowered.as_text()
      self.compiled[key] = lowered.compile()
    return self.compiled[key](*args)

  def __call__(self, init, data) -> dict:
    """Runs from `init` (a state of the same shapes) on `data` (`batches`).

    Returns:
      {"losses": [float], "metric_dtypes": set, "state_dtypes": set of the floating state
      leaves' dtypes, "outputs": {name: np.ndarray} of the score step}.
    """
    train, windows, frames = data
    shapes = lambda tree: [(s.shape, s.dtype) for s in jax.tree.leaves(  # noqa: E731
        jax.eval_shape(lambda: tree))]
    assert shapes(init) == shapes(self.like)
    state = jax.tree.unflatten(jax.tree.structure(self.like), jax.tree.leaves(init))
    losses, metric_dtypes = [], set()
    for step in range(1, STEPS + 1):
      (phase,) = [p for p, first, last in self.method.phase_bounds(self.config)
                  if first <= step <= last]
      state, metrics = self._step(phase.name, phase.train_step, state, train[step - 1])
      losses.append(float(metrics["loss"]))
      metric_dtypes |= {str(v.dtype) for v in metrics.values()}
    if self.method.fit is not None:
      state = self.method.fit(self.config, state, [frames])
    return {"losses": losses, "metric_dtypes": metric_dtypes, "state": state,
            "state_dtypes": {str(x.dtype) for x in jax.tree.leaves(state)
                             if jnp.issubdtype(x.dtype, jnp.floating)},
            "outputs": self.score(state, windows)}

  def score(self, state, windows) -> dict:
    """The score step's outputs `{name: np.ndarray}` for `state` (of this runner's models)."""
    outputs = self._step("score", _score_fn(self.method), state, windows)
    return {k: np.asarray(v) for k, v in jax.device_get(outputs).items()}


def _rounded_to_bf16(tree):
  """Every float32 leaf rounded to the nearest bfloat16 value (and kept float32)."""
  return jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)
                      if getattr(x, "dtype", None) == jnp.float32 else x, tree)


def runs(name: str) -> dict:
  """Method `name` from one init on the same batches: {"float32", "bfloat16", "rounded" (float32
  from the init rounded to bfloat16: the noise floor), "bf16_ops": {dtype: bool}}."""
  data = batches(config_for(name, "float32"))
  _, init, _ = tiny_state(name)   # float32-created; its values go into both dtypes' models
  f32, bf16 = (Runner(name, dtype, data[0][0]) for dtype in ("float32", "bfloat16"))
  out = {"bfloat16": bf16(init, data), "float32": f32(init, data),
         "rounded": f32(_rounded_to_bf16(init), data)}
  return {**out, "bf16_ops": {"float32": f32.bf16_ops, "bfloat16": bf16.bf16_ops}}


def compared(name: str, r: dict) -> dict:
  """{output: (max |bf16 - f32|, max |rounded - f32|, f32 range over the batch)} of the
  compared outputs: a detector's score terms, r3d_partition's partition probabilities."""
  if methods.get(name).is_detector:
    keys = [t.name for t in methods.get(name).score(config_for(name, "float32")).terms]
  else:
    keys = ["partition_probs"]
  out = {}
  for k in keys:
    a, b, c = (r[run]["outputs"][k].astype(np.float64)
               for run in ("float32", "bfloat16", "rounded"))
    out[k] = (float(np.max(np.abs(b - a))), float(np.max(np.abs(c - a))), float(np.ptp(a)))
  return out


def window_masks(config, cams) -> np.ndarray:
  """r3d_partition's background masks (`masking.mask_from_layer_maps`, paper 000's setting)
  from its Eigen-CAM maps `[B, T, 4, h, w]`, the windows' frames taken as one clip."""
  return masking.mask_from_layer_maps(cams.reshape(-1, *cams.shape[2:]),
                                      frame_size=tuple(config.data.size))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(TINY)])
def test_method_trains_and_scores_in_bfloat16(name):
  r = runs(name)
  f32, bf16 = r["float32"], r["bfloat16"]
  assert not r["bf16_ops"]["float32"]
  assert r["bf16_ops"]["bfloat16"], f"{name}: no bf16 op in its steps: it ignores compute_dtype"
  # Parameters, optimizer state, batch statistics and fitted densities stay float32; so do the
  # losses and metrics.
  assert bf16["state_dtypes"] == {"float32"}, bf16["state_dtypes"]
  assert bf16["metric_dtypes"] <= {"float32", "int32"}, bf16["metric_dtypes"]
  assert np.all(np.isfinite(bf16["losses"])), bf16["losses"]
  # Same init, same batch: the first step's loss differs by bf16 rounding only.
  np.testing.assert_allclose(bf16["losses"][0], f32["losses"][0], rtol=0.02)
  for key, value in bf16["outputs"].items():
    assert value.dtype == f32["outputs"][key].dtype, key
    if jnp.issubdtype(value.dtype, jnp.floating):
      assert np.all(np.isfinite(value)), f"{name}: {key} is not finite in bf16"
  for key, (deviation, floor, spread) in compared(name, r).items():
    assert deviation <= max(SPREAD_FRACTION * spread, FLOOR_FACTOR * floor), (
        f"{name}: {key} deviates by {deviation:.3g} in bf16; float32 spread {spread:.3g}, "
        f"noise floor {floor:.3g}")
  if name == "r3d_partition":
    # Its masks, from its Eigen-CAM maps (float32 in [0, 1] whatever the compute dtype). A
    # 3-step model's 2x2 layer4 maps have a near-degenerate leading direction, so single maps
    # flip under any perturbation (the noise floor's too): the masks are compared on average.
    cams = bf16["outputs"]["cams"]
    assert cams.dtype == np.float32 and cams.min() >= 0 and cams.max() <= 1
    config = config_for(name, "float32")
    masks = {run: window_masks(config, r[run]["outputs"]["cams"])
             for run in ("float32", "bfloat16", "rounded")}
    deviation, floor = (np.mean(np.abs(masks[run] - masks["float32"]))
                        for run in ("bfloat16", "rounded"))
    assert deviation <= FLOOR_FACTOR * floor, (deviation, floor)

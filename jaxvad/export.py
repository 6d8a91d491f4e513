"""`jaxvad export`: a trained detector's scoring function as serialized StableHLO (`jax.export`).

The exported function is the method's per-window score step (`Scorer.step`: the patch
reduction of `score.reduce` included) with the trained weights closed over as constants: a
batch of uint8 windows `[b, window, H, W, C]` (b symbolic) and the per-frame inputs the step
reads -> {term: float32 `[b, window | 1]`}. Normalisation happens inside; everything else a
user needs (window tiling, term combination, orientation, the threshold) is in the metadata
and in `jaxvad.exported`, which loads the file with jax and numpy only.
"""

from __future__ import annotations

import datetime
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad import __version__, exported, methods
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate

__all__ = ["PLATFORMS", "export_scorer", "step_inputs"]

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")

# What each method does to the uint8 frames inside the exported function (for the contract).
_NORMALISATION = {
    "convlstm_ae": "frames / 255 (to [0, 1])",
    "predictive_ae": "frames / 255 (to [0, 1]); ImageNet mean/std inside the encoder",
    "ffp": "frames / 127.5 - 1 (to [-1, 1])",
    "f2lm": "frames / 127.5 - 1 (to [-1, 1]); flow / model.flow_scale; class maps one-hot",
    "cutpaste": "frames / 255, then ImageNet mean/std",
}

# The per-frame inputs a score step may read beside the frames (`Method.frame_inputs`).
_INPUTS = {
    "flow": "float32 optical flow from frame t-1 to t in pixels (x, y), zero at t = 0: "
            "jaxvad.data.flow.clip_flow(frames, method=model.motion)",
    "classes": "uint8 class index per pixel (jaxvad.data.semantic.class_maps)",
    "box": "int32 [x, y, w, h] of the object's box in the frame",
}


def _used_keys(step, state, batch: dict) -> list[str]:
  """The keys of `batch` whose arrays the traced step reads (others are dropped from the
  exported signature, so callers need not make them)."""
  keys = sorted(batch)
  jaxpr = jax.make_jaxpr(lambda *arrays: step(state, dict(zip(keys, arrays))))(
      *(batch[k] for k in keys)).jaxpr
  used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
  used |= {id(v) for v in jaxpr.outvars}
  return [k for k, var in zip(keys, jaxpr.invars) if id(var) in used]


def step_inputs(config, *, window: int) -> dict[str, np.ndarray]:
  """Example per-frame inputs of a method for one window (only shapes and dtypes matter).

  Args:
    config: the run's config.
    window: frames per window.

  Returns:
    {name: array `[1, window, ...]`} from the method's `example_targets` (training targets
    among them are dropped later: the score step does not read them); {} for methods without.
  """
  method = methods.get(config.method)
  if method.example_targets is None:
    return {}
  return dict(method.example_targets(config, (1, window), np.random.default_rng(0)))


def export_scorer(config, state, *, frame_shape: Sequence[int], platforms: Sequence[str] = ("cpu",),
                  batch_size: int | None = None, preprocessing: dict | None = None,
                  live: dict | None = None, source: dict | None = None) -> bytes:
  """The bytes of a scorer file (`jaxvad.exported.load_scorer` reads it).

  Args:
    config: the run's config.
    state: its trained state.
    frame_shape: (H, W, C) of the frames the run scores.
    platforms: where the program may run (`PLATFORMS`); lowering for a platform needs no
      device of that kind.
    batch_size: windows per call `ExportedScorer` pads to (default `score.batch_size`); the
      program itself takes any batch.
    preprocessing: how raw footage becomes these frames (read size, crop), for the contract.
    live: the live calibration (`jaxvad.live.calibrate`), or None.
    source: what the scorer was made from (run folder, step), recorded as is.

  Returns:
    The file's bytes (a zip: metadata.json + scorer.stablehlo).

  Raises:
    ConfigError: a method that is not a detector, or an unknown platform.
  """
  bad = [p for p in platforms if p not in PLATFORMS]
  if bad or not platforms:
    raise ConfigError(f"--platforms {','.join(platforms)}: each must be one of "
                      f"{', '.join(PLATFORMS)}")
  h, w, c = (int(v) for v in frame_shape)
  window = config.data.window
  scorer = evaluate.Scorer(config, state)
  scorer.resolve((h, w))   # patch sizes of score.reduce, for these frames
  spec = scorer.spec
  host_state = jax.device_get(state)   # constants of the program, not arrays on this mesh
  names = [t.name for t in spec.terms]

  inputs = step_inputs(config, window=window)
  example = {"frames": np.zeros((1, window, h, w, c), np.uint8), **inputs}
  keys = _used_keys(scorer.step, host_state, example)
  if "frames" not in keys:
    raise ConfigError(f"method {config.method!r}: its score step does not read the frames")

  def score_windows(batch):
    out = scorer.step(host_state, batch)
    return {k: jnp.asarray(out[k], jnp.float32) for k in names}

  (b,) = jax.export.symbolic_shape("b")
  specs = {k: jax.ShapeDtypeStruct((b, *example[k].shape[1:]), example[k].dtype) for k in keys}
  program = jax.export.export(jax.jit(score_windows), platforms=tuple(platforms))(specs)
  out_len = 1 if spec.last_only else window
  metadata = {
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "jaxvad_version": __version__, "jax_version": jax.__version__,
      "platforms": list(platforms),
      "source": dict(source or {}, method=config.method, config=config.name),
      "input": {
          "frames": f"uint8 [b, {window}, {h}, {w}, {c}]: b windows of {window} consecutive "
                    f"frames, channels last, {'grayscale' if c == 1 else 'RGB'} (not BGR), "
                    "0..255 as read; b is symbolic (any batch)",
          "normalisation": _NORMALISATION.get(config.method, "inside the program") +
                           " (inside the program: pass the raw uint8 frames)",
          "window": window, "frame_shape": [h, w, c], "last_only": spec.last_only,
          "batch_size": int(batch_size or config.score.batch_size),
          "tiling": ("windows slide by 1 frame; each window scores its last frame; the first "
                     f"{window - 1} frames of a clip are unscored" if spec.last_only else
                     "non-overlapping windows, plus one ending at the clip's last frame for "
                     "the frames left over; each frame takes its own window's score"),
          "inputs": {k: {"dtype": str(example[k].dtype),
                         "shape": ["b", window, *example[k].shape[2:]],
                         "what": _INPUTS.get(k, "see the method's frame_inputs")}
                     for k in keys if k != "frames"},
          "preprocessing": dict(preprocessing or {}),
      },
      "output": {k: f"float32 [b, {out_len}]" for k in names},
      "score": spec.to_dict(),
      "live": live,
  }
  return exported.serialize(metadata, program.serialize())

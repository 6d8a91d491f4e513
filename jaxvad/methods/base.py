"""The method contract: what a paper pipeline declares, and the state it trains.

A method is a model file (`jaxvad/models/`), a method file (`jaxvad/methods/<name>.py`) that
ends with `METHOD = Method(...)`, a config in `configs/` and a line in the registry
(`jaxvad/methods/__init__.py`). The trainer, evaluation, `jaxvad score`, the reports, the
reproductions and bench/ read only this declaration: none of them names a model or a score.

This module sits low in the import graph (it imports flax, jax and nothing of jaxvad), so every
method and every consumer can import it.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping

import jax
from flax.training import train_state

__all__ = ["TrainState", "ScoreTerm", "PatchReduction", "ScoreSpec", "PREDICTED_FRAME_PSNR",
           "Phase", "Method", "init_variables"]


# XLA:CPU's LLVM passes take about 0.3 s per threefry draw (each parameter's initializer), so an
# optimised init of a U-Net at width 0.125 compiled in 28 s; unoptimised, in 3 s, with the same
# values. It runs once, and its forward pass is dead code (only parameter values and shapes
# are kept), so nothing is lost.
def _init(model, rng, *inputs):
  if "train" in inspect.signature(model.__call__).parameters:
    return model.init(rng, *inputs, train=False)
  return model.init(rng, *inputs)


_init_compiled = jax.jit(_init, static_argnums=0,
                         compiler_options={"xla_backend_optimization_level": 0})


def init_variables(model, rng, *inputs):
  """`model.init(rng, *inputs)` (with `train=False` for models that take it), compiled once per
  model and input shapes: run op by op, a ResNet's init compiles hundreds of small programs.
  Inside a trace (e.g. `jax.eval_shape` of a state) it is part of that trace."""
  if isinstance(rng, jax.core.Tracer):
    return _init(model, rng, *inputs)
  return _init_compiled(model, rng, *inputs)


class TrainState(train_state.TrainState):
  """One network's parameters and optimizer state, a base RNG key and (for models with batch
  norm) its statistics. A method with several networks nests several of these in a state of its
  own (any pytree with `step` and `rng`; see `tests/tiny_method.py`)."""
  rng: jax.Array
  batch_stats: Any = None


@dataclasses.dataclass(frozen=True)
class ScoreTerm:
  """One per-frame output of a method's `score_step` that enters the anomaly score.

  Attributes:
    name: its key in the `score_step` output: float `[B, T]` (`[B, 1]` for a frame predictor).
    description: what the number is, with its unit (goes into every result file).
    higher_is_anomalous: False for normality scores such as PSNR (evaluation negates them).
    weight: its weight when several terms are combined.
  """
  name: str
  description: str
  higher_is_anomalous: bool
  weight: float = 1.0


# The image metrics a ScoreSpec can name (`jaxvad.scoring`): their label in descriptions and
# whether a higher value means a worse (more anomalous) image.
IMAGE_METRICS = {"psnr": ("PSNR (dB)", False), "mse": ("MSE (pixels in [0, 1])", True),
                 "ssim": ("SSIM", False)}


@dataclasses.dataclass(frozen=True)
class PatchReduction:
  """A per-frame score from the worst patches of a frame (paper 004), not the whole frame.

  Attributes:
    metric: the patches' metric, "psnr", "mse" or "ssim" (`jaxvad.scoring.patch_scores`).
    reduce: "max_patch" (the worst patch's value) or "top_k_patches" (the mean of the `top_k`
      worst patches' values); worst = lowest PSNR / SSIM or highest MSE.
    patch_size: patch side in pixels; 0 = automatic (`jaxvad.scoring.patch_geometry`), until
      the frame size is known.
    stride: pixels between neighbouring patches; 0 = automatic.
    top_k: patches averaged by top_k_patches.
  """
  metric: str
  reduce: str
  patch_size: int = 0
  stride: int = 0
  top_k: int = 1

  def __post_init__(self):
    if self.metric not in IMAGE_METRICS:
      raise ValueError(f"unknown patch metric {self.metric!r}: one of {', '.join(IMAGE_METRICS)}")
    if self.reduce not in ("max_patch", "top_k_patches"):
      raise ValueError(f"unknown patch reduction {self.reduce!r}: max_patch or top_k_patches")

  def describe(self, of: str) -> str:
    """What the reduced score is, e.g. "PSNR (dB) of the worst 8x8-px patch (...) of `of`"."""
    label, worse_high = IMAGE_METRICS[self.metric]
    size = (f"{self.patch_size}x{self.patch_size}-px" if self.patch_size
            else "automatically sized")
    stride = f"every {self.stride} px" if self.stride else "half-overlapping"
    which = ("the worst patch" if self.reduce == "max_patch"
             else f"mean over the {self.top_k} worst patches")
    worst = "highest" if worse_high else "lowest"
    return (f"{label}, {which} ({size} patches {stride}; worst = {worst} "
            f"{self.metric.upper()}) of {of}")


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
  """What a detector's `score_step` returns and how it becomes one raw score per frame.

  One term is the raw score as it is. Several terms are combined per video: each is oriented
  (higher = anomalous), z-scored over the video's scored frames, and summed with its weight
  (paper 004's four-term score); the combination is then higher = anomalous.

  Attributes:
    terms: the score terms (at least one).
    last_only: a frame predictor: `score_step` returns outputs for each window's last frame
      only (`[B, 1, ...]`), so evaluation slides windows with stride 1 and the first
      `window - 1` frames of a clip have no score (`unscored_first`).
    image: key of the output frame `[B, T|1, H, W, C]` in [0, 1] that the report shows next to
      the input with its error heat map (None: no image).
    image_kind: what that image is ("reconstruction" or "prediction").
    pixel_map: key of a per-pixel anomaly map `[B, T|1, H, W]` the report shows instead of the
      squared error (None: squared error of `image`).
    image_metric: "psnr", "mse" or "ssim" (`jaxvad.scoring`) when the single term is that
      metric of `image` clipped to [0, 1] against the target frames scaled to [0, 1] (the
      window's frames; its last frame when `last_only`). Evaluation then can recompute the
      term itself: inside a background mask (`--mask-from`, the metric's `mask=`) and from the
      worst patches (`score.reduce`, `patch_reduced`). None: neither is possible.
    reduction: set by `patch_reduced` (never by a method): the single term is then the
      reduction's metric over patches of `image` vs the target frames, reduced per frame.
  """
  terms: tuple[ScoreTerm, ...]
  last_only: bool = False
  image: str | None = None
  image_kind: str = "reconstruction"
  pixel_map: str | None = None
  image_metric: str | None = None
  reduction: PatchReduction | None = None

  def __post_init__(self):
    if not self.terms:
      raise ValueError("a ScoreSpec needs at least one term")
    if self.image_metric is not None:
      if self.image_metric not in IMAGE_METRICS:
        raise ValueError(f"unknown image_metric {self.image_metric!r}: one of "
                         f"{', '.join(IMAGE_METRICS)}")
      if len(self.terms) != 1 or self.image is None:
        raise ValueError("image_metric needs exactly one term and an image output")
      metric = self.reduction.metric if self.reduction else self.image_metric
      if self.terms[0].higher_is_anomalous != IMAGE_METRICS[metric][1]:
        raise ValueError(f"term {self.terms[0].name!r} is {metric}: higher_is_anomalous must "
                         f"be {IMAGE_METRICS[metric][1]}")
    if self.reduction is not None and self.image_metric is None:
      raise ValueError("a patch reduction needs an image_metric")

  def patch_reduced(self, reduction: PatchReduction) -> "ScoreSpec":
    """This score recomputed from the worst patches of the image (`score.reduce`).

    The single term becomes `<metric>_<reduce>` (e.g. "psnr_max_patch"), with the reduction's
    orientation and a description that says what it is; `reduction` records the settings.

    Raises:
      ValueError: the spec has no `image_metric`, so the score cannot be recomputed.
    """
    if self.image_metric is None:
      raise ValueError("this score has no image_metric: it cannot be recomputed from patches")
    term = ScoreTerm(f"{reduction.metric}_{reduction.reduce}",
                     reduction.describe(f"the {self.image_kind} vs the frame"),
                     higher_is_anomalous=IMAGE_METRICS[reduction.metric][1])
    return dataclasses.replace(self, terms=(term,), reduction=reduction)

  @property
  def combined(self) -> bool:
    return len(self.terms) > 1

  @property
  def name(self) -> str:
    """Name of the raw score: the term's, or "combined"."""
    return "combined" if self.combined else self.terms[0].name

  @property
  def description(self) -> str:
    if not self.combined:
      return self.terms[0].description
    parts = ", ".join(f"{t.weight:g}·{t.name}" for t in self.terms)
    return f"weighted sum of per-video z-scored terms ({parts}), higher = anomalous"

  @property
  def higher_is_anomalous(self) -> bool:
    return True if self.combined else self.terms[0].higher_is_anomalous

  def unscored_first(self, window: int) -> int:
    """Frames at the start of every clip without a score."""
    return window - 1 if self.last_only else 0

  def to_dict(self) -> dict:
    return {"name": self.name, "description": self.description,
            "higher_is_anomalous": self.higher_is_anomalous, "last_only": self.last_only,
            "terms": [dataclasses.asdict(t) for t in self.terms],
            "image_metric": self.image_metric,
            "reduction": ({"reduce": "frame"} if self.reduction is None
                          else dataclasses.asdict(self.reduction))}


# The score of a frame predictor (paper 001, FFP): the PSNR of each window's predicted last frame
# (`score_step` outputs "psnr" [B, 1] and the prediction "recon" [B, 1, H, W, C] in [0, 1]).
PREDICTED_FRAME_PSNR = ScoreSpec(
    terms=(ScoreTerm("psnr", "PSNR (dB) of the predicted frame", higher_is_anomalous=False),),
    last_only=True, image="recon", image_kind="prediction", image_metric="psnr")


@dataclasses.dataclass(frozen=True)
class Phase:
  """One stage of training: its own pure step, run until global step `until(config)`.

  Attributes:
    name: shown in the progress bar and the training log.
    train_step: `(state, batch) -> (state, metrics)`, jitted once by the trainer, state
      donated.
    until: `config -> int`, the last global step of this phase (steps count from 1); None
      for the last phase, which runs to `train.steps`. Take it from the model config, not
      from `train.steps`: a resumed run may raise `train.steps`, and the boundary must not
      move under a checkpoint.
  """
  name: str
  train_step: Callable
  until: Callable[[Any], int] | None = None


@dataclasses.dataclass(frozen=True)
class Method:
  """A paper pipeline as the rest of jaxvad sees it.

  Attributes:
    name: the `method` key of configs.
    model_config: frozen dataclass, the schema of the config's `model` table (with `validate`).
    create_state: `(config, rng, example_batch, *, load_pretrained=True) -> state`. The state
      is a pytree with `step` and `rng` (a `TrainState`, or several nested in one). With
      `load_pretrained=False` no weight file is read: the run's checkpoint provides every
      parameter, so a run folder scores without the files it was trained from.
    phases: the training phases, in order (one for most methods).
    score: `config -> ScoreSpec`; None for a model that does not detect anomalies.
    score_step: `(state, {"frames": uint8 [B, T, H, W, C]}) -> {name: array}`, pure.
    not_a_detector: for `score=None`: one line saying what the model is for and what to run.
    steps: further pure per-window steps by name (e.g. "cam": Eigen-CAM maps).
    masker: `(config, state, frames uint8 [T, H, W, C]) -> float32 [T, H, W]` background mask
      of a clip, for a model whose masks a detector's score can be restricted to.
    training_targets: `(config, clips) -> {name: [per-clip array [T_i, ...]]}`, per-frame
      targets computed once from the training clips; batches carry them as `batch[name]`.
    frame_inputs: `(config, frames uint8 [T, H, W, C], clip) -> {name: array [T, ...]}`,
      per-frame inputs beside the frames (optical flow, class maps), computed on the host
      once per clip; the trainer windows them with the frames and every scorer passes them
      with each window batch as `batch[name]`. `clip` is the `jaxvad.data.clips.Clip` the
      frames come from (its name, ground truth), or None for bare footage (`jaxvad score` of
      a video file): a method that then cannot make its inputs raises ConfigError saying so.
    example_targets: `(config, (B, T), numpy Generator) -> {name: array [B, T, ...]}`, random
      per-frame targets and inputs of the right shapes (benchmarks).
    fit: `(config, state, clips) -> state`, run once after the last gradient step and before
      the final checkpoint (e.g. a density over features); `clips` are the uint8 training clips.
    host_transform: `(config, item, numpy Generator) -> item`, a random transform of one
      training window on the host (NumPy / OpenCV work with no device counterpart, e.g. paper
      002's self-made defects). `item` is `{"frames": uint8 [T, H, W, C], **frame inputs and
      targets}`; every returned item has the same keys and shapes. The generator is seeded by
      `train.seed` and the window's position in the training stream, so batch k stays a pure
      function of (seed, k) and a resumed run sees the same batches.
    bench_config: the shipped config bench/ times this method with.
  """
  name: str
  model_config: type
  create_state: Callable
  phases: tuple[Phase, ...]
  score: Callable[[Any], ScoreSpec] | None = None
  score_step: Callable | None = None
  not_a_detector: str = ""
  steps: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
  masker: Callable | None = None
  training_targets: Callable | None = None
  frame_inputs: Callable | None = None
  example_targets: Callable | None = None
  fit: Callable | None = None
  host_transform: Callable | None = None
  bench_config: str = ""

  def __post_init__(self):
    if not self.phases:
      raise ValueError(f"method {self.name}: at least one training phase")
    if self.score is None and not self.not_a_detector:
      raise ValueError(f"method {self.name}: a model without a score says what it is for "
                       "(not_a_detector)")
    if self.score is not None and self.score_step is None:
      raise ValueError(f"method {self.name}: a score needs a score_step")

  @property
  def train_step(self) -> Callable:
    """The first phase's step (the only one of single-phase methods)."""
    return self.phases[0].train_step

  @property
  def is_detector(self) -> bool:
    return self.score is not None

  def phase_bounds(self, config) -> list[tuple[Phase, int, int]]:
    """`(phase, first step, last step)` of every phase; global steps count from 1."""
    bounds, start = [], 0
    for i, phase in enumerate(self.phases):
      last = i == len(self.phases) - 1
      end = config.train.steps if last or phase.until is None else min(
          int(phase.until(config)), config.train.steps)
      bounds.append((phase, start + 1, end))
      start = max(start, end)
    return bounds

"""Score clips with a trained detector and evaluate them under a named protocol.

Two layers, so every command computes its numbers the same way:

* `evaluate_scores` is pure: raw per-frame scores of validation and test clips (`Scored`) ->
  the protocol (`protocol`: drop, orient, smooth, normalise) -> a threshold calibrated on the
  normal validation clips processed the same way (`thresholds`) -> frame and event metrics per
  group of test clips (`clip_groups`: all / no distractors / with distractors). `jaxvad eval`,
  `jaxvad demo`, the reproductions and the report all go through it.
* `Scorer` turns a trained run into those raw scores: it reads the method's `ScoreSpec` (which
  outputs are score terms, whether higher is anomalous, how many leading frames are unscored,
  which output is an image) and nothing else about the method; with a masker run it scores
  inside that model's background masks (paper 000), and with `score.reduce` = max_patch /
  top_k_patches it scores the worst patches of the image (paper 004). `evaluate_clips` = `Scorer` +
  `evaluate_scores` + the worst frames for the report's heat maps.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad import config as config_lib
from jaxvad import exported, inference, methods, scoring
from jaxvad.errors import ConfigError
from jaxvad.evaluation import metrics
from jaxvad.evaluation import protocol as protocol_lib
from jaxvad.evaluation import thresholds
from jaxvad.methods.base import PatchReduction, ScoreSpec

__all__ = ["GROUPS", "Scored", "clip_groups", "detector_spec", "patch_reduction", "protocol_for",
           "combine_terms", "WEIGHT_GRID", "reweighted", "select_term_weights",
           "patch_score_step", "Scorer", "scored_clip", "scored_from",
           "evaluate_scores", "evaluate_clips", "clip_anomaly_type", "pixel_maps",
           "localization_metrics"]

GROUPS = ("all", "no_distractors", "with_distractors")


@dataclasses.dataclass
class Scored:
  """One clip's raw per-frame score and what evaluation needs to know about the clip.

  Attributes:
    name: clip name.
    raw: float64 `[T]`, the method's raw score (`ScoreSpec`); NaN on unscored frames.
    labels: bool `[T]` (True = anomalous), or None for unlabelled (normal validation) clips.
    has_distractors: the clip shows a distractor (person, lighting, ...) at some point.
    distractors: bool `[T, K]` per-frame distractor flags, if known.
    types: str `[T]` anomaly type of each anomalous frame ("" on normal frames), or None when
      unknown (`Clip.frame_types`): adds per-type metrics.
  """
  name: str
  raw: np.ndarray
  labels: np.ndarray | None = None
  has_distractors: bool = False
  distractors: np.ndarray | None = None
  types: np.ndarray | None = None


def clip_groups(clips: Sequence) -> dict[str, list[int]]:
  """Indices of the clips in each group of `GROUPS` (empty groups left out). `clips` are
  anything with a `has_distractors` attribute (`Scored`)."""
  groups = {"all": list(range(len(clips))),
            "no_distractors": [i for i, c in enumerate(clips) if not c.has_distractors],
            "with_distractors": [i for i, c in enumerate(clips) if c.has_distractors]}
  return {name: members for name, members in groups.items() if members}


def detector_spec(config, *, run: str = "RUN") -> ScoreSpec:
  """The run's score declaration.

  Raises:
    ConfigError: the method is not a detector (a masking model); the one-line message says
      what it is for and what to run instead (`run` names its run folder).
  """
  method = methods.get(config.method)
  if not method.is_detector:
    raise ConfigError(method.not_a_detector.format(workdir=run))
  spec = method.score(config)
  reduction = patch_reduction(config, spec)
  return spec if reduction is None else spec.patch_reduced(reduction)


def patch_reduction(config, spec: ScoreSpec) -> PatchReduction | None:
  """The config's patch reduction of a detector's score (`score.reduce`), None for "frame".

  Patch sizes stay as configured (0 = automatic) until `Scorer` sees the frame size.

  Raises:
    ConfigError: a patch reduction of a score that cannot be recomputed from the method's
      image (its ScoreSpec has no `image_metric`).
  """
  s = config.score
  if s.reduce == "frame":
    return None
  if spec.image_metric is None:
    raise ConfigError(f"score.reduce = {s.reduce!r} recomputes the score from patches of the "
                      f"model's image, but method {config.method!r} declares no image_metric "
                      f"in its ScoreSpec; use score.reduce = frame")
  return PatchReduction(metric=s.patch_metric, reduce=s.reduce, patch_size=s.patch_size,
                        stride=s.patch_stride,
                        top_k=s.top_k if s.reduce == "top_k_patches" else 1)


def protocol_for(config, spec: ScoreSpec | None = None) -> protocol_lib.Protocol:
  """The config's protocol preset for the method's raw score; written into every result.

  The score's description and orientation come from the method's `ScoreSpec`; a frame
  predictor's protocol drops at least the leading frames it cannot score."""
  spec = spec or detector_spec(config)
  proto = protocol_lib.get(config.score.protocol, score=spec.description,
                           higher_is_anomalous=spec.higher_is_anomalous,
                           smoothing=config.score.smoothing)
  unscored = spec.unscored_first(config.data.window)
  return dataclasses.replace(proto, drop_first=max(proto.drop_first, unscored))


def combine_terms(spec: ScoreSpec, terms: dict[str, np.ndarray], *,
                  stats: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
  """One clip's raw score from its per-term scores (`ScoreSpec`): the single term as it is, or
  each term oriented, z-scored over the clip's scored frames (or by fixed `stats`: {term:
  (mean, std)}, live scoring) and summed with its weight (`jaxvad.exported.combine_terms`, the
  one definition exported scorers share).

  Returns:
    float64 `[T]`, NaN where any term is NaN (unscored frames).
  """
  return exported.combine_terms([dataclasses.asdict(t) for t in spec.terms], terms, stats=stats)


# The weights each term of a combined score is searched over (0 drops the term).
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def reweighted(spec: ScoreSpec, weights: dict[str, float]) -> ScoreSpec | None:
  """`spec` with its terms re-weighted (terms missing or of weight 0 dropped); None if no term
  is left."""
  terms = tuple(dataclasses.replace(t, weight=float(weights[t.name])) for t in spec.terms
                if weights.get(t.name, 0) > 0)
  return dataclasses.replace(spec, terms=terms) if terms else None


def select_term_weights(spec: ScoreSpec, protocol: protocol_lib.Protocol, labelled: Sequence,
                        *, grid: Sequence[float] = WEIGHT_GRID) -> tuple[dict[str, float], float]:
  """The weights of a combined score, from `grid` per term, with the highest pooled frame AUROC
  on labelled clips (paper 004 picks its gamma so, on the test labels; call this on validation
  data).

  Args:
    spec: the combined score.
    protocol: how raw scores become anomaly scores (`protocol_for`).
    labelled: `(name, labels bool [T], {term: float [T]})` per clip.
    grid: each term's candidate weights.

  Returns:
    ({term: weight}, its AUROC); ties go to the earlier grid point.
  """
  names = [t.name for t in spec.terms]
  best, best_auc = None, -1.0
  for combo in itertools.product(grid, repeat=len(names)):
    candidate = reweighted(spec, dict(zip(names, combo)))
    if candidate is None:
      continue
    processed = protocol_lib.apply_protocol(
        protocol, [protocol_lib.Video(name, combine_terms(candidate, terms), labels)
                   for name, labels, terms in labelled])
    auc = metrics.frame_auroc(np.concatenate([v.labels for v in processed]),
                              np.concatenate([v.scores for v in processed]))
    if auc > best_auc + 1e-12:
      best, best_auc = dict(zip(names, combo)), auc
  return best, best_auc


# The whole-frame metrics a ScoreSpec's image_metric names.
_FRAME_METRICS = {"psnr": scoring.psnr, "mse": scoring.mse, "ssim": scoring.ssim}


def _patch_terms(image, target, mask, reduction: PatchReduction):
  """Per-patch values `[N, gh, gw]` and their per-frame reduction `[N]` of images and target
  frames `[N, H, W, C]` in [0, 1] (patch sizes resolved from the static frame size)."""
  height, width = image.shape[-3:-1]
  size, stride = scoring.patch_geometry(height, width, patch_size=reduction.patch_size,
                                        stride=reduction.stride, metric=reduction.metric)
  values = scoring.patch_scores(image, target, metric=reduction.metric, patch_size=size,
                                stride=stride, mask=mask)
  return values, scoring.reduce_patches(values, metric=reduction.metric,
                                        reduce=reduction.reduce, top_k=reduction.top_k)


def _frame_terms(image, target, mask, metric: str):
  """The whole-frame `metric` `[N]` of images and target frames (the shape of `_patch_terms`'
  reduced output, so both run through `_chunked`)."""
  values = _FRAME_METRICS[metric](image, target, mask=mask)
  return values, values


# Jitted once per (shapes, setting): the masked and report paths score host arrays with them,
# in fixed chunks of frames, so a benchmark of clips of many lengths compiles each once.
_patch_terms_jit = jax.jit(_patch_terms, static_argnames="reduction")
_frame_terms_jit = jax.jit(_frame_terms, static_argnames="metric")


def _chunked(fn, image, target, mask, *, chunk: int = 32, **static):
  """`fn(image, target, mask, **static) -> (values, reduced)` over fixed chunks of frames of
  host arrays (the last chunk padded by repeating its last frame); outputs concatenated."""
  values, reduced = [], []
  for i in range(0, len(image), chunk):
    parts = [image[i:i + chunk], target[i:i + chunk]] + ([] if mask is None else
                                                         [mask[i:i + chunk]])
    n = len(parts[0])
    parts = [np.concatenate([p, np.repeat(p[-1:], chunk - n, axis=0)]) for p in parts]
    v, r = fn(parts[0], parts[1], None if mask is None else parts[2], **static)
    values.append(np.asarray(v)[:n])
    reduced.append(np.asarray(r)[:n])
  if not values:
    return np.zeros((0,)), np.zeros((0,))
  return np.concatenate(values), np.concatenate(reduced)


def patch_score_step(score_step: Callable, spec: ScoreSpec) -> Callable:
  """`score_step` plus the spec's patch-reduced term, in the same pure (jittable) step.

  The term (`spec.terms[0].name`) is recomputed from the step's image output clipped to
  [0, 1] and the window's uint8 frames (its last frame for a frame predictor) scaled to
  [0, 1], with `spec.reduction` (`jaxvad.scoring.patch_scores` + `reduce_patches`).

  Args:
    score_step: the method's pure `(state, batch) -> outputs`.
    spec: its patch-reduced `ScoreSpec` (`ScoreSpec.patch_reduced`; sizes may be 0 =
      automatic, resolved from the traced frame size).

  Returns:
    The pure step `(state, batch) -> outputs`, with the term added; callers jit it.
  """
  reduction, name = spec.reduction, spec.terms[0].name

  def step(state, batch):
    out = dict(score_step(state, batch))
    frames = batch["frames"]
    target = (frames[:, -1:] if spec.last_only else frames).astype(jnp.float32) / 255.0
    image = jnp.clip(out[spec.image], 0.0, 1.0)
    out[name] = _patch_terms(image, target, None, reduction)[1]
    return out

  return step


class Scorer:
  """A trained detector ready to score clips: raw scores, optionally inside learned masks.

  With `score.reduce = frame` the raw score is the method's own (`score_step`'s terms, as
  trained). With a patch reduction (`max_patch`, `top_k_patches`) the single term is
  recomputed from the method's image inside the same jitted window step
  (`patch_score_step`): the worst patches' metric, `spec.reduction` (patch sizes resolved
  when the first clip is scored, so the record names pixels).

  Args:
    config, state: the detector's run (`train.load_trained`).
    masker: optional (config, state) of a masking model's run (`Method.masker`): scores are
      then the spec's `image_metric` (or patch reduction) inside that model's mask of each
      clip.
  """

  def __init__(self, config, state, *, masker=None):
    self.config, self.state = config, state
    self.spec = detector_spec(config)
    self.method = methods.get(config.method)
    self._inputs = (None, None)   # (frames, their frame inputs): one clip's, computed once
    step = self.method.score_step
    if self.spec.reduction is not None:
      step = patch_score_step(step, self.spec)
    self.step = step   # pure (state, window batch) -> outputs, as the runner jits it
    self.runner = inference.WindowRunner(
        step, window=config.data.window, batch_size=config.score.batch_size,
        last_only=self.spec.last_only)
    self.masker = masker
    if masker is not None:
      m_method = methods.get(masker[0].method)
      if m_method.masker is None:
        raise ConfigError(f"--mask-from needs a masking model's run; method "
                          f"{masker[0].method!r} makes no masks")
      if self.spec.image_metric is None:
        raise ConfigError(f"method {config.method!r} cannot score inside a mask (its ScoreSpec "
                          "has no image_metric)")
    self.empty_mask_frames = 0
    self.keep_maps = False   # `terms` also keeps the anomaly maps of clips with pixel masks
    self.maps: dict[str, np.ndarray] = {}

  def resolve(self, frame_size) -> PatchReduction | None:
    """The patch reduction with sizes for `frame_size` (H, W), recorded in `spec`; None for
    whole-frame scores.

    Raises:
      ConfigError: patches that do not fit the frames (names the score.* key).
    """
    if self.spec.reduction is None:
      return None
    s = self.config.score
    h, w = (int(v) for v in frame_size)
    try:
      size, stride = scoring.patch_geometry(h, w, patch_size=s.patch_size, stride=s.patch_stride,
                                            metric=s.patch_metric)
    except ValueError as e:
      raise ConfigError(f"score.patch_size = {s.patch_size}, score.patch_stride = "
                        f"{s.patch_stride} (0 = automatic): {e}") from None
    count = ((h - size) // stride + 1) * ((w - size) // stride + 1)
    reduction = dataclasses.replace(self.spec.reduction, patch_size=size, stride=stride)
    if reduction.top_k > count:
      raise ConfigError(f"score.top_k = {reduction.top_k} exceeds the {count} patches of "
                        f"{size} px every {stride} px in {h}x{w} frames")
    self.spec = self.spec.patch_reduced(reduction)
    return reduction

  def mask_record(self) -> dict | None:
    """What the masked scores used, for result files (None without a masker)."""
    if self.masker is None:
      return None
    return {"method": self.masker[0].method, "config": self.masker[0].name,
            "empty_mask_frames": self.empty_mask_frames,
            "empty_mask_rule": "a frame whose mask keeps no pixel gets the clip's least "
                               "anomalous score (nothing left to flag)"}

  def clip_mask(self, frames: np.ndarray) -> np.ndarray | None:
    """The masker's float32 `[T, H, W]` background mask of a clip (None without a masker)."""
    if self.masker is None:
      return None
    m_config, m_state = self.masker
    return methods.get(m_config.method).masker(m_config, m_state, frames)

  def frame_inputs(self, frames: np.ndarray, clip=None) -> dict[str, np.ndarray] | None:
    """The method's per-frame inputs of a clip (`Method.frame_inputs`; None for methods
    without), computed once for the clip scored last."""
    if self.method.frame_inputs is None:
      return None
    if self._inputs[0] is not frames:
      self._inputs = (frames, self.method.frame_inputs(self.config, frames, clip))
    return self._inputs[1]

  def score(self, frames: np.ndarray, clip=None) -> np.ndarray:
    """float64 `[T]` raw score of every frame of a clip (NaN on unscored frames).

    Args:
      frames: uint8 `[T, H, W, C]`.
      clip: the `jaxvad.data.clips.Clip` they come from, for methods whose per-frame inputs
        need more than the frames (class maps); None for bare footage.
    """
    spec = self.spec
    self.resolve(frames.shape[1:3])
    if self.masker is None:
      return combine_terms(self.spec, self.terms(frames, clip))
    inputs = self.frame_inputs(frames, clip)
    image = self.runner.clip_outputs(self.state, frames, [spec.image], inputs)[spec.image]
    return self.masked(image, frames, self.clip_mask(frames))

  def terms(self, frames: np.ndarray, clip=None) -> dict[str, np.ndarray]:
    """{term: float `[T]`} of the score's terms (NaN on unscored frames), before they are
    combined; no mask. `clip` as in `score`. With `keep_maps` set and a clip with pixel
    masks, the same pass keeps its anomaly maps in `maps[clip.name]` (`pixel_maps`)."""
    self.resolve(frames.shape[1:3])
    keys = [t.name for t in self.spec.terms]
    key = self.spec.pixel_map
    keep = self.keep_maps and key and getattr(clip, "pixel_masks", None) is not None
    out = self.runner.clip_outputs(self.state, frames, keys + ([key] if keep else []),
                                   self.frame_inputs(frames, clip))
    if keep:
      self.maps[clip.name] = np.asarray(out.pop(key), np.float32)
    return out

  def masked(self, image: np.ndarray, frames: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The raw score recomputed from the model's images `[T, H, W, C]` inside `mask`
    (`[T, H, W]`, None = whole frame): the spec's `image_metric` or its patch reduction,
    jitted over fixed chunks of frames; frames no window predicted stay NaN."""
    reduction = self.resolve(frames.shape[1:3])
    scored = np.isfinite(image.reshape(len(image), -1)).all(axis=1)
    raw = np.full(len(frames), np.nan)
    target = frames[scored].astype(np.float32) / 255.0
    m = None if mask is None else np.asarray(mask, np.float32)[scored]
    pred = np.clip(image[scored], 0, 1)
    if reduction is None:
      values = _chunked(_frame_terms_jit, pred, target, m, metric=self.spec.image_metric)[1]
    else:
      values = _chunked(_patch_terms_jit, pred, target, m, reduction=reduction)[1]
    values = np.asarray(values, np.float64)
    empty = ~np.isfinite(values)
    if empty.any():   # nothing left to score: the clip's least anomalous value
      self.empty_mask_frames += int(empty.sum())
      finite = values[~empty]
      fill = (finite.max() if not self.spec.higher_is_anomalous else finite.min()) \
          if finite.size else 0.0
      values[empty] = fill
    raw[scored] = values
    return raw

  def fired_patches(self, frames: np.ndarray, t: int, image: np.ndarray) -> dict | None:
    """The patches behind frame t's patch-reduced score, for the report (None for whole-frame
    scores).

    Args:
      frames: the clip's uint8 frames `[T, H, W, C]` (its mask, with a masker, comes from
        all of them).
      t: the frame.
      image: the model's image of frame t, float `[H, W, C]` in [0, 1].

    Returns:
      {"metric", "reduce", "patch_size", "stride", "top_k", "grid": [gh, gw], "corners":
      [[y, x], ...] top-left pixels of the patches the reduction used, worst first, "values":
      their values}.
    """
    reduction = self.resolve(frames.shape[1:3])
    if reduction is None:
      return None
    mask = self.clip_mask(frames)
    values = _chunked(
        _patch_terms_jit, np.clip(image, 0, 1)[None].astype(np.float32),
        frames[t:t + 1].astype(np.float32) / 255.0,
        None if mask is None else np.asarray(mask, np.float32)[t:t + 1], reduction=reduction)[0][0]
    worse = np.where(np.isfinite(values),
                     values if self.spec.higher_is_anomalous else -values, -np.inf).ravel()
    order = np.argsort(-worse, kind="stable")[:reduction.top_k]
    order = order[np.isfinite(worse[order])]
    gh, gw = values.shape
    return {**dataclasses.asdict(reduction), "grid": [gh, gw],
            "corners": [[int(k // gw) * reduction.stride, int(k % gw) * reduction.stride]
                        for k in order],
            "values": [float(values.ravel()[k]) for k in order]}

  def images(self, frames: np.ndarray, frame_idx: Sequence[int],
             clip=None) -> dict[str, np.ndarray]:
    """The spec's image (and pixel map) outputs of chosen frames: {"image": float32
    `[K, H, W, C]` in [0, 1], "pixel_map": `[K, H, W]` if declared}. `clip` as in `score`."""
    keys = [k for k in (self.spec.image, self.spec.pixel_map) if k]
    out = self.runner.frame_outputs(self.state, frames, frame_idx, keys,
                                    self.frame_inputs(frames, clip))
    result = {}
    if self.spec.image:
      result["image"] = np.clip(out[self.spec.image], 0.0, 1.0).astype(np.float32)
    if self.spec.pixel_map:
      result["pixel_map"] = np.asarray(out[self.spec.pixel_map], np.float32)
    return result


# --------------------------------------------------------------------------- pure evaluation


def _pad_dropped(scores: np.ndarray, drop: int) -> np.ndarray:
  """Processed scores back on the clip's frame axis: NaN where the protocol dropped frames."""
  return np.concatenate([np.full(drop, np.nan), scores])


def evaluate_scores(test: Sequence[Scored], *, val: Sequence[Scored] = (),
                    protocol: protocol_lib.Protocol, threshold: str = "none",
                    threshold_param: float = 0.0, bootstrap: int = 1000,
                    bootstrap_seed: int = 0) -> dict:
  """Frame and event metrics of scored test clips, per group, at a validation threshold.

  Args:
    test: labelled test clips with raw scores.
    val: normal validation clips with raw scores (labelled anomalous frames, if any, are left
      out of the calibration); none: no threshold.
    protocol: how raw scores become anomaly scores (`protocol_for`).
    threshold: a `thresholds` method calibrated on the processed validation scores, or "none".
    threshold_param: its parameter (`config.THRESHOLD_PARAMS`).
    bootstrap: resamples of the bootstrap over test clips behind every metric's 95 % interval
      (0: none); bootstrap_seed: its seed. Each group resamples its own clips.

  Returns:
    {"protocol", "threshold" (record or None), "metrics": {group: `protocol.evaluate` result
    (with "auroc_ci" etc. and, where clips carry `types`, "per_type") + "clips"}, "groups":
    {group: [clip names]}, "clips": [{name, labels, raw, score (processed, NaN on dropped
    frames), flags (score >= threshold, or None), has_distractors, distractors, types}],
    "val": [{name, raw}]}.

  Raises:
    ValueError: an unlabelled test clip.
  """
  calibrated = None
  if threshold != "none" and val:
    processed = protocol_lib.apply_protocol(
        protocol, [protocol_lib.Video(v.name, v.raw, v.labels) for v in val])
    scores = np.concatenate([v.scores for v in processed])
    labels = np.concatenate([np.zeros(v.scores.size, bool) if v.labels is None else v.labels
                             for v in processed])
    calibrated = thresholds.calibrate(threshold, scores, val_labels=labels,
                                      **{config_lib.THRESHOLD_PARAMS[threshold]: threshold_param})
    calibrated = dataclasses.replace(calibrated,
                                     stats={**calibrated.stats, "val_clips": len(val)})

  videos, clips = [], []
  for clip in test:
    if clip.labels is None:
      raise ValueError(f"clip {clip.name} has no labels: it cannot be evaluated")
    video = protocol_lib.Video(clip.name, clip.raw, np.asarray(clip.labels, bool))
    score = _pad_dropped(protocol_lib.apply_protocol(protocol, [video])[0].scores,
                         protocol.drop_first)
    with np.errstate(invalid="ignore"):
      flags = None if calibrated is None else score >= calibrated.value
    videos.append(video)
    clips.append({"name": clip.name, "labels": video.labels, "raw": clip.raw, "score": score,
                  "flags": flags, "has_distractors": clip.has_distractors,
                  "distractors": clip.distractors, "types": clip.types})

  summary, groups = {}, {}
  for name, members in clip_groups(test).items():
    summary[name] = protocol_lib.evaluate(
        protocol, [videos[i] for i in members], threshold=calibrated,
        types=[test[i].types for i in members], bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed)
    summary[name]["clips"] = len(members)
    groups[name] = [test[i].name for i in members]
  return {"protocol": protocol.to_dict(),
          "threshold": None if calibrated is None else calibrated.to_dict(),
          "metrics": summary, "groups": groups, "clips": clips,
          "val": [{"name": v.name, "raw": v.raw} for v in val]}


# --------------------------------------------------------------------------- from a model


def scored_clip(scorer: Scorer, clip) -> Scored:
  """A `datasets.Clip` scored by `scorer`."""
  return scored_from(clip, scorer.score(clip.frames, clip))


def scored_from(clip, raw: np.ndarray) -> Scored:
  """A `datasets.Clip` with its raw per-frame score `raw` (float `[T]`)."""
  return Scored(clip.name, raw, None if clip.labels is None else clip.labels.astype(bool),
                has_distractors=bool(clip.meta.get("distractors")) if clip.meta else False,
                distractors=clip.distractors, types=getattr(clip, "frame_types", None))


def evaluate_clips(config, state, clips: Sequence, *, val_clips: Sequence = (), masker=None,
                   progress: Callable | None = None) -> dict:
  """Scores every clip with a trained detector and evaluates them (`evaluate_scores`).

  Args:
    config: the run's config (`score.protocol`, `score.threshold`, ...).
    state: the trained state.
    clips: labelled test clips (`datasets.Clip`).
    val_clips: normal validation clips to calibrate the threshold on (none: no threshold).
    masker: optional (config, state) of a masking model's run: score inside its masks.
    progress: `progress(clips, description)` wraps each clip iterable (a progress bar).

  Returns:
    `evaluate_scores`' result plus "score_spec" (the method's declaration), "mask" (what the
    masked scores used, or None) and "worst_frames": [{clip, frame, score, label,
    frame_image uint8 [H, W, C], image float [H, W, C] in [0, 1] and model_output (if the method
    has an image), pixel_map (if it has one), patches (with a patch reduction:
    `Scorer.fired_patches`)}] for the report's heat maps; and for a method with anomaly maps
    and clips with pixel masks, "localization" (`localization_metrics`).
  """
  wrap = progress or (lambda xs, desc: xs)
  scorer = Scorer(config, state, masker=masker)
  scorer.keep_maps = True   # the localisation metrics' maps come from the scoring pass
  weights = _term_weights(config, scorer, val_clips, wrap)
  val = [] if config.score.threshold == "none" else [
      scored_clip(scorer, c) for c in wrap(val_clips, "score val")]
  test = [scored_clip(scorer, c) for c in wrap(clips, "score test")]
  result = evaluate_scores(test, val=val, protocol=protocol_for(config, scorer.spec),
                           threshold=config.score.threshold,
                           threshold_param=config.score.threshold_param,
                           bootstrap=config.score.bootstrap)
  result["score_spec"] = scorer.spec.to_dict()
  result["term_weights"] = weights
  result["mask"] = scorer.mask_record()
  result["worst_frames"] = _worst_frames(scorer, clips, result["clips"],
                                         count=config.score.worst_frames)
  masked = [c for c in clips if getattr(c, "pixel_masks", None) is not None]
  if scorer.spec.pixel_map and masked:
    # From the scoring pass; a score inside a masker's masks did not run the maps' step.
    maps = [scorer.maps.pop(c.name, None) for c in masked]
    maps = [pixel_maps(scorer, c) if m is None else m for c, m in zip(masked, maps)]
    result["localization"] = localization_metrics(
        [c.pixel_masks for c in masked], maps,
        [clip_anomaly_type(c) for c in masked], bootstrap=config.score.bootstrap)
  return result


def clip_anomaly_type(clip) -> str:
  """The anomaly type of a clip's anomalous frames.

  Args:
    clip: a `datasets.Clip`.

  Returns:
    Its one type (`Clip.frame_types`), "" for a clip without anomalies (or unknown types),
    "mixed" for a clip with several.
  """
  frame_types = getattr(clip, "frame_types", None)
  types = set() if frame_types is None else {str(t) for t in np.asarray(frame_types) if t}
  return types.pop() if len(types) == 1 else ("mixed" if types else "")


def pixel_maps(scorer: Scorer, clip) -> np.ndarray:
  """The method's anomaly map of every frame of a clip, float32 `[T, H, W]` (NaN on frames no
  window scores).

  Args:
    scorer: a `Scorer` whose spec declares a `pixel_map`.
    clip: a `datasets.Clip`.

  Returns:
    The maps, one per frame.
  """
  key = scorer.spec.pixel_map
  out = scorer.runner.clip_outputs(scorer.state, clip.frames, [key],
                                   scorer.frame_inputs(clip.frames, clip))
  return np.asarray(out[key], np.float32)


LOCALIZATION_MAX_FPR = 0.3


def localization_metrics(masks_per_clip: Sequence, maps_per_clip: Sequence,
                         types_per_clip: Sequence[str] = (), *, bootstrap: int = 1000,
                         seed: int = 0) -> dict:
  """Pixel AUROC and PRO (MVTec AD's per-region overlap up to FPR 0.3) of anomaly maps against
  ground-truth masks, over all scored frames, with 95 % intervals from a bootstrap over clips,
  and per anomaly type (the clips of that type with every normal clip).

  Args:
    masks_per_clip: bool `[T, H, W]` per clip.
    maps_per_clip: float `[T, H, W]` per clip (frames with a NaN map are left out).
    types_per_clip: each clip's anomaly type ("" = normal clip); empty: no per-type rows.
    bootstrap: resamples of clips (0: no intervals).
    seed: the resampling seed.

  Returns:
    {"pixel_auroc", "pixel_auroc_ci", "pro", "pro_ci", "max_fpr", "clips", "frames",
    "per_type": {type: the same keys}}.
  """
  kept_masks, kept_maps = [], []
  for masks, maps in zip(masks_per_clip, maps_per_clip):
    scored = np.isfinite(maps).all(axis=(1, 2))
    kept_masks.append(np.asarray(masks, bool)[scored])
    kept_maps.append(np.asarray(maps, np.float32)[scored])

  def summary(idx):
    masks = [kept_masks[i] for i in idx]
    maps = [kept_maps[i] for i in idx]
    flat_masks = [m for clip in masks for m in clip]
    flat_maps = [m for clip in maps for m in clip]
    out = {"pixel_auroc": metrics.pixel_auroc(flat_masks, flat_maps),
           "pro": metrics.pro_auc(flat_masks, flat_maps, max_fpr=LOCALIZATION_MAX_FPR),
           "pixel_auroc_ci": None, "pro_ci": None, "clips": len(idx),
           "frames": len(flat_maps), "max_fpr": LOCALIZATION_MAX_FPR}
    if bootstrap:
      ci = metrics.pixel_bootstrap_intervals(masks, maps, resamples=bootstrap, seed=seed,
                                             max_fpr=LOCALIZATION_MAX_FPR)
      out["pixel_auroc_ci"], out["pro_ci"] = ci["pixel_auroc"], ci["pro"]
    return out

  result = summary(range(len(kept_maps)))
  types = list(types_per_clip)
  normal = [i for i, t in enumerate(types) if not t]
  result["per_type"] = {t: summary(sorted({*normal, *(i for i, u in enumerate(types) if u == t)}))
                        for t in sorted({t for t in types if t})}
  return result


def _term_weights(config, scorer: Scorer, val_clips, wrap) -> dict | None:
  """Where a combined score's term weights come from (`score.term_weights`), and with
  "val_grid" choose them (`select_term_weights`) on the validation clips' labelled anomalous
  frames and set them on `scorer`. None for a single-term score.

  Raises:
    ConfigError: val_grid for a single-term score, with a mask, or without labelled anomalous
      validation frames.
  """
  spec, how = scorer.spec, config.score.term_weights
  if not spec.combined:
    if how == "val_grid":
      raise ConfigError(f"score.term_weights = val_grid weighs the terms of a combined score; "
                        f"method {config.method!r} scores one term ({spec.name})")
    return None
  if how == "config":
    return {"source": "config", "weights": {t.name: t.weight for t in spec.terms}}
  labelled = [c for c in val_clips if c.labels is not None and np.asarray(c.labels).any()]
  if not labelled or scorer.masker is not None:
    raise ConfigError("score.term_weights = val_grid needs validation clips with labelled "
                      "anomalous frames (and no --mask-from); "
                      + ("this validation split has none" if not labelled else "a mask is set")
                      + ": use score.term_weights = config")
  terms = [(c.name, np.asarray(c.labels, bool), scorer.terms(c.frames, c))
           for c in wrap(labelled, "choose term weights")]
  weights, auroc = select_term_weights(spec, protocol_for(config, spec), terms)
  scorer.spec = reweighted(spec, weights)
  return {"source": "val_grid", "weights": weights, "grid": list(WEIGHT_GRID),
          "val_clips": len(labelled), "val_auroc": auroc,
          "rule": "highest pooled frame AUROC of the protocol's scores on the labelled "
                  "validation clips"}


def _worst_frames(scorer: Scorer, clips, results, *, count: int) -> list[dict]:
  """The highest-scoring frame of each of the `count` highest-scoring clips (with a patch
  reduction, the patches that fired: `Scorer.fired_patches`)."""
  if not (scorer.spec.image or scorer.spec.pixel_map):
    return []
  peaks = [(np.nanmax(r["score"]), i, int(np.nanargmax(r["score"])))
           for i, r in enumerate(results) if np.isfinite(r["score"]).any()]
  worst = []
  for score, i, t in sorted(peaks, reverse=True)[:count]:
    out = scorer.images(clips[i].frames, [t], clips[i])
    patches = (scorer.fired_patches(clips[i].frames, t, out["image"][0])
               if "image" in out else None)
    worst.append({"clip": results[i]["name"], "frame": t, "score": float(score),
                  "label": bool(results[i]["labels"][t]), "frame_image": clips[i].frames[t],
                  **({"image": out["image"][0], "model_output": scorer.spec.image_kind}
                     if "image" in out else {}),
                  **({"pixel_map": out["pixel_map"][0]} if "pixel_map" in out else {}),
                  **({"patches": patches} if patches is not None else {})})
  return worst

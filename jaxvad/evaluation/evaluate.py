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
  inside that model's background masks (paper 000). `evaluate_clips` = `Scorer` +
  `evaluate_scores` + the worst frames for the report's heat maps.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from jaxvad import config as config_lib
from jaxvad import inference, methods
from jaxvad.errors import ConfigError
from jaxvad.evaluation import protocol as protocol_lib
from jaxvad.evaluation import thresholds
from jaxvad.methods.base import ScoreSpec

__all__ = ["GROUPS", "Scored", "clip_groups", "detector_spec", "protocol_for", "combine_terms",
           "Scorer", "evaluate_scores", "evaluate_clips"]

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
  """
  name: str
  raw: np.ndarray
  labels: np.ndarray | None = None
  has_distractors: bool = False
  distractors: np.ndarray | None = None


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
  return method.score(config)


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


def combine_terms(spec: ScoreSpec, terms: dict[str, np.ndarray]) -> np.ndarray:
  """One clip's raw score from its per-term scores (`ScoreSpec`): the single term as it is, or
  each term oriented, z-scored over the clip's scored frames and summed with its weight.

  Returns:
    float64 `[T]`, NaN where any term is NaN (unscored frames).
  """
  if not spec.combined:
    return np.asarray(terms[spec.terms[0].name], np.float64)
  total = 0.0
  for term in spec.terms:
    x = np.asarray(terms[term.name], np.float64)
    x = x if term.higher_is_anomalous else -x
    finite = np.isfinite(x)
    mean = x[finite].mean() if finite.any() else 0.0
    std = x[finite].std() if finite.any() else 0.0
    total = total + term.weight * (x - mean) / (std if std > 0 else 1.0)
  return total


class Scorer:
  """A trained detector ready to score clips: raw scores, optionally inside learned masks.

  Args:
    config, state: the detector's run (`train.load_trained`).
    masker: optional (config, state) of a masking model's run (`Method.masker`): scores are
      then the spec's `masked_score` inside that model's mask of each clip.
  """

  def __init__(self, config, state, *, masker=None):
    self.config, self.state = config, state
    self.spec = detector_spec(config)
    self.runner = inference.WindowRunner(
        methods.get(config.method).score_step, window=config.data.window,
        batch_size=config.score.batch_size, last_only=self.spec.last_only)
    self.masker = masker
    if masker is not None:
      m_method = methods.get(masker[0].method)
      if m_method.masker is None:
        raise ConfigError(f"--mask-from needs a masking model's run; method "
                          f"{masker[0].method!r} makes no masks")
      if self.spec.masked_score is None:
        raise ConfigError(f"method {config.method!r} cannot score inside a mask (its ScoreSpec "
                          "has no masked_score)")
    self.empty_mask_frames = 0

  def mask_record(self) -> dict | None:
    """What the masked scores used, for result files (None without a masker)."""
    if self.masker is None:
      return None
    return {"method": self.masker[0].method, "config": self.masker[0].name,
            "empty_mask_frames": self.empty_mask_frames,
            "empty_mask_rule": "a frame whose mask keeps no pixel gets the clip's least "
                               "anomalous score (nothing left to flag)"}

  def score(self, frames: np.ndarray) -> np.ndarray:
    """float64 `[T]` raw score of every frame of a clip (NaN on unscored frames)."""
    spec = self.spec
    if self.masker is None:
      terms = self.runner.clip_outputs(self.state, frames, [t.name for t in spec.terms])
      return combine_terms(spec, terms)
    m_config, m_state = self.masker
    mask = methods.get(m_config.method).masker(m_config, m_state, frames)
    image = self.runner.clip_outputs(self.state, frames, [spec.image])[spec.image]
    return self.masked(image, frames, mask)

  def masked(self, image: np.ndarray, frames: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The raw score recomputed from the model's images `[T, H, W, C]` inside `mask`
    (`[T, H, W]`, None = whole frame); frames no window predicted stay NaN."""
    scored = np.isfinite(image.reshape(len(image), -1)).all(axis=1)
    raw = np.full(len(frames), np.nan)
    target = frames[scored].astype(np.float32) / 255.0
    m = None if mask is None else np.asarray(mask, np.float32)[scored]
    values = np.asarray(self.spec.masked_score(np.clip(image[scored], 0, 1), target, m),
                        np.float64)
    empty = ~np.isfinite(values)
    if empty.any():   # nothing left to score: the clip's least anomalous value
      self.empty_mask_frames += int(empty.sum())
      finite = values[~empty]
      fill = (finite.max() if not self.spec.higher_is_anomalous else finite.min()) \
          if finite.size else 0.0
      values[empty] = fill
    raw[scored] = values
    return raw

  def images(self, frames: np.ndarray, frame_idx: Sequence[int]) -> dict[str, np.ndarray]:
    """The spec's image (and pixel map) outputs of chosen frames: {"image": float32
    `[K, H, W, C]` in [0, 1], "pixel_map": `[K, H, W]` if declared}."""
    keys = [k for k in (self.spec.image, self.spec.pixel_map) if k]
    out = self.runner.frame_outputs(self.state, frames, frame_idx, keys)
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
                    threshold_param: float = 0.0) -> dict:
  """Frame and event metrics of scored test clips, per group, at a validation threshold.

  Args:
    test: labelled test clips with raw scores.
    val: normal validation clips with raw scores (labelled anomalous frames, if any, are left
      out of the calibration); none: no threshold.
    protocol: how raw scores become anomaly scores (`protocol_for`).
    threshold: a `thresholds` method calibrated on the processed validation scores, or "none".
    threshold_param: its parameter (`config.THRESHOLD_PARAMS`).

  Returns:
    {"protocol", "threshold" (record or None), "metrics": {group: `protocol.evaluate` result +
    "clips"}, "groups": {group: [clip names]}, "clips": [{name, labels, raw, score (processed,
    NaN on dropped frames), flags (score >= threshold, or None), has_distractors,
    distractors}], "val": [{name, raw}]}.

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
                  "distractors": clip.distractors})

  summary, groups = {}, {}
  for name, members in clip_groups(test).items():
    summary[name] = protocol_lib.evaluate(protocol, [videos[i] for i in members],
                                          threshold=calibrated)
    summary[name]["clips"] = len(members)
    groups[name] = [test[i].name for i in members]
  return {"protocol": protocol.to_dict(),
          "threshold": None if calibrated is None else calibrated.to_dict(),
          "metrics": summary, "groups": groups, "clips": clips,
          "val": [{"name": v.name, "raw": v.raw} for v in val]}


# --------------------------------------------------------------------------- from a model


def scored_clip(scorer: Scorer, clip) -> Scored:
  """A `datasets.Clip` scored by `scorer`."""
  return Scored(clip.name, scorer.score(clip.frames),
                None if clip.labels is None else clip.labels.astype(bool),
                has_distractors=bool(clip.meta.get("distractors")) if clip.meta else False,
                distractors=clip.distractors)


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
    frame_image uint8 [H, W, C], image float [H, W, C] in [0, 1], pixel_map (if the method has
    one), model_output}] for the report's heat maps.
  """
  wrap = progress or (lambda xs, desc: xs)
  scorer = Scorer(config, state, masker=masker)
  val = [] if config.score.threshold == "none" else [
      scored_clip(scorer, c) for c in wrap(val_clips, "score val")]
  test = [scored_clip(scorer, c) for c in wrap(clips, "score test")]
  result = evaluate_scores(test, val=val, protocol=protocol_for(config, scorer.spec),
                           threshold=config.score.threshold,
                           threshold_param=config.score.threshold_param)
  result["score_spec"] = scorer.spec.to_dict()
  result["mask"] = scorer.mask_record()
  result["worst_frames"] = _worst_frames(scorer, clips, result["clips"],
                                         count=config.score.worst_frames)
  return result


def _worst_frames(scorer: Scorer, clips, results, *, count: int) -> list[dict]:
  """The highest-scoring frame of each of the `count` highest-scoring clips."""
  if not scorer.spec.image:
    return []
  peaks = [(np.nanmax(r["score"]), i, int(np.nanargmax(r["score"])))
           for i, r in enumerate(results) if np.isfinite(r["score"]).any()]
  worst = []
  for score, i, t in sorted(peaks, reverse=True)[:count]:
    out = scorer.images(clips[i].frames, [t])
    worst.append({"clip": results[i]["name"], "frame": t, "score": float(score),
                  "label": bool(results[i]["labels"][t]), "frame_image": clips[i].frames[t],
                  "image": out["image"][0], "model_output": scorer.spec.image_kind,
                  **({"pixel_map": out["pixel_map"][0]} if "pixel_map" in out else {})})
  return worst

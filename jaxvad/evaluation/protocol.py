"""Evaluation protocols: how raw per-frame scores become the numbers a result file reports.

Published VAD numbers differ as much through the evaluation protocol as through the model, so a
`Protocol` names every choice and `evaluate` writes it (`Protocol.to_dict`) into its result.

Per video (so smoothing and normalisation never cross a video boundary), the steps run in this
fixed order (`ORDER`):

1. **drop**: the first `drop_first` frames are removed from scores *and* labels (a 4-frame
   predictor cannot score them). They are dropped first so that whatever stands in for them
   (ano_pred copies frame 4's PSNR into frames 0-3) never reaches smoothing or normalisation.
2. **orient**: if `higher_is_anomalous` is False (a normality score such as PSNR), the score is
   negated, so from here on higher = more anomalous.
3. **smooth**: centred moving average of `smoothing` frames (`metrics.moving_average`; it
   averages (w-1)//2 past and w//2 future frames, so it is an offline, not a causal, filter).
4. **normalise**: "per_video_minmax" maps each video's scores to [0, 1] by its own minimum and
   maximum (after dropping and smoothing); a constant video maps to all 0.0, where ano_pred and
   MNAD would divide 0 by 0.

Then AUROC/AUPR/EER are computed over the pooled frames of all videos ("micro") or per video and
averaged ("macro"). Macro skips videos that hold only one class, whose AUROC is undefined (the
per-video `roc_auc_score` would raise on them), and lists them; `macro_single_class="error"`
raises instead.

Every AUROC / AUPR / EER comes with a 95 % percentile interval from a bootstrap over the test
videos (`metrics.bootstrap_intervals`: whole videos resampled with replacement, the metric
recomputed the same micro or macro way; seeded, so a result file is reproducible). Given
per-frame anomaly types, `evaluate` also reports each type's AUROC / AUPR / EER: the
anomalous frames of that type against all normal frames of the videos (other types' frames
left out).

Presets (`PROTOCOLS`), all for a raw score that is the PSNR of the reconstructed or predicted
frame (pass PSNR; for another raw score use `dataclasses.replace(preset, score=...,
higher_is_anomalous=...)`):

* "jaxvad": -PSNR pooled raw over all videos, micro AUROC, nothing dropped, no smoothing: scores
  keep one scale across videos, as a deployed detector with one threshold sees them.
* "ano_pred": per-video min-max of PSNR (the regularity score), first 4 frames dropped, micro
  AUROC over the pooled normalised scores: the convention of ano_pred (Liu et al. 2018,
  `Codes/evaluate.py`: `NORMALIZE`, `DECIDABLE_IDX = 4`, `roc_curve(..., pos_label=0)`) and
  MNAD (Park et al. 2020, `Evaluate.py`/`utils.py`: `anomaly_score_list`, labels from frame 4),
  behind the FFP and MNAD Ped2 / Avenue / ShanghaiTech AUCs (e.g. those paper 004 compares
  with); it uses each test video's own extremes, so it rewards within-video ranking and is not
  a deployable threshold scale.
* "macro": -PSNR, mean of per-video AUROCs: every video weighs the same whatever its length,
  and cross-video score offsets cannot matter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from jaxvad.evaluation import metrics
from jaxvad.errors import ConfigError

__all__ = ["ORDER", "NORMALISATIONS", "AUROC_MODES", "MACRO_SINGLE_CLASS", "Protocol", "Video",
           "PROTOCOLS", "PER_TYPE_DEFINITION", "get", "apply_protocol", "evaluate", "json_safe"]

ORDER = ("drop", "orient", "smooth", "normalise")
NORMALISATIONS = ("none", "per_video_minmax")
AUROC_MODES = ("micro", "macro")
MACRO_SINGLE_CLASS = ("skip", "error")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A named, recorded evaluation protocol (see the module docstring for the order of steps).

  Attributes:
    name: preset name or a user label.
    score: what the raw score is, free text (e.g. "PSNR (dB) of the predicted frame").
    higher_is_anomalous: False for normality scores (PSNR, SSIM): they are negated.
    normalisation: "none" (raw scores pooled) or "per_video_minmax".
    drop_first: frames removed at the start of every video (4 for 4-frame predictors).
    smoothing: centred moving-average window in frames (1 = none).
    auroc: "micro" (one ROC over pooled frames) or "macro" (mean of per-video metrics).
    macro_single_class: for macro, "skip" videos with one class only (listed in the result) or
      "error".
    description: one sentence on what the protocol is for.
  """
  name: str = "jaxvad"
  score: str = "PSNR (dB) of the reconstructed/predicted frame"
  higher_is_anomalous: bool = False
  normalisation: str = "none"
  drop_first: int = 0
  smoothing: int = 1
  auroc: str = "micro"
  macro_single_class: str = "skip"
  description: str = ""

  def validate(self) -> "Protocol":
    """Checks every field; returns self.

    Raises:
      ConfigError: naming the field and the allowed values.
    """
    def bad(field, allowed):
      raise ConfigError(f"protocol {self.name!r}: {field} = {getattr(self, field)!r}; "
                        f"expected {allowed}")
    if not isinstance(self.name, str) or not self.name:
      bad("name", "a non-empty string")
    if not isinstance(self.score, str):
      bad("score", "a string")
    if not isinstance(self.higher_is_anomalous, (bool, np.bool_)):
      bad("higher_is_anomalous", "true or false")
    if self.normalisation not in NORMALISATIONS:
      bad("normalisation", " or ".join(NORMALISATIONS))
    if isinstance(self.drop_first, bool) or not isinstance(self.drop_first, (int, np.integer)) \
        or self.drop_first < 0:
      bad("drop_first", "an integer >= 0")
    if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, np.integer)) \
        or self.smoothing < 1:
      bad("smoothing", "an integer >= 1")
    if self.auroc not in AUROC_MODES:
      bad("auroc", " or ".join(AUROC_MODES))
    if self.macro_single_class not in MACRO_SINGLE_CLASS:
      bad("macro_single_class", " or ".join(MACRO_SINGLE_CLASS))
    if not isinstance(self.description, str):
      bad("description", "a string")
    return self

  def to_dict(self) -> dict:
    """JSON-ready record of every field plus the fixed `order` of the steps."""
    d = dataclasses.asdict(self)
    d["drop_first"], d["smoothing"] = int(self.drop_first), int(self.smoothing)
    d["higher_is_anomalous"] = bool(self.higher_is_anomalous)
    d["order"] = list(ORDER)
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Protocol":
    """Inverse of `to_dict`; validates.

    Raises:
      ConfigError: an unknown key, or an `order` other than this version's `ORDER`.
    """
    d = dict(d)
    order = d.pop("order", None)
    if order is not None and tuple(order) != ORDER:
      raise ConfigError(f"protocol order {order} differs from this jaxvad's {list(ORDER)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"unknown protocol keys {unknown}; expected some of {sorted(known)}")
    return cls(**d).validate()


PROTOCOLS: dict[str, Protocol] = {
    "jaxvad": Protocol(
        name="jaxvad",
        description="the raw score (oriented: higher = anomalous) pooled over all videos, "
                    "micro AUROC, nothing dropped: one score scale across videos, as a deployed "
                    "detector with one threshold sees it."),
    "ano_pred": Protocol(
        name="ano_pred", normalisation="per_video_minmax", drop_first=4,
        description="per-video min-max of the oriented score, first 4 frames dropped, micro "
                    "AUROC (ano_pred / MNAD): comparable with published Ped2/Avenue/ShanghaiTech AUCs, but uses "
                    "each test video's own extremes."),
    "macro": Protocol(
        name="macro", auroc="macro",
        description="the oriented raw score, mean of per-video AUROCs (single-class videos "
                    "skipped): each video "
                    "weighs the same and cross-video score offsets cannot matter."),
}


def get(name: str, **overrides) -> Protocol:
  """A preset by name, with fields replaced (e.g. `get("jaxvad", smoothing=10)`), validated.

  Raises:
    ConfigError: unknown preset name or bad override.
  """
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
  try:
    return dataclasses.replace(PROTOCOLS[name], **overrides).validate()
  except TypeError as e:
    raise ConfigError(f"protocol {name!r}: {e}") from None


class Video(NamedTuple):
  """One video's per-frame scores and labels (labels None = unlabelled, e.g. validation)."""
  name: str
  scores: np.ndarray
  labels: np.ndarray | None = None


def _as_video(v, i: int, *, unchecked_first: int = 0) -> Video:
  """A validated Video; the first `unchecked_first` scores (about to be dropped) may be NaN."""
  if isinstance(v, Mapping):
    v = Video(v.get("name", str(i)), v["scores"], v.get("labels"))
  elif not isinstance(v, Video):
    v = Video(*v)
  scores = np.asarray(v.scores, dtype=np.float64)
  if scores.ndim != 1:
    raise ValueError(f"video {v.name!r}: scores must be 1-D, got shape {scores.shape}")
  if not np.isfinite(scores[unchecked_first:]).all():
    raise ValueError(f"video {v.name!r}: scores contain NaN or inf")
  labels = None
  if v.labels is not None:
    labels = np.asarray(v.labels)
    if labels.shape != scores.shape:
      raise ValueError(f"video {v.name!r}: labels {labels.shape} and scores {scores.shape} "
                       "differ in shape")
    labels = labels.astype(bool)
  return Video(str(v.name), scores, labels)


def _minmax(x: np.ndarray) -> np.ndarray:
  lo, hi = x.min(), x.max()
  return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def apply_protocol(protocol: Protocol, videos: Iterable) -> list[Video]:
  """Runs the per-video steps drop -> orient -> smooth -> normalise.

  Args:
    protocol: the protocol (validated here).
    videos: `Video`s, `(name, scores, labels)` tuples or {"name", "scores", "labels"} mappings;
      raw scores as the protocol's `score` describes (the frames it drops may be NaN: a frame
      predictor does not score them); labels bool (True = anomalous) or None.

  Returns:
    One `Video` per input, in order: float64 anomaly scores (higher = more anomalous) and bool
    labels (or None), both without the dropped frames.

  Raises:
    ValueError: bad shapes, non-finite scores, or a video with no frame left after dropping.
  """
  protocol.validate()
  out = []
  for i, v in enumerate(videos):
    v = _as_video(v, i, unchecked_first=protocol.drop_first)
    scores = v.scores[protocol.drop_first:]
    labels = None if v.labels is None else v.labels[protocol.drop_first:]
    if scores.size == 0:
      raise ValueError(f"video {v.name!r} has {v.scores.size} frames; protocol "
                       f"{protocol.name!r} drops the first {protocol.drop_first}")
    if not protocol.higher_is_anomalous:
      scores = -scores
    scores = metrics.moving_average(scores, window=int(protocol.smoothing))
    if protocol.normalisation == "per_video_minmax":
      scores = _minmax(scores)
    out.append(Video(v.name, scores, labels))
  return out


def _threshold_record(threshold) -> tuple[float, dict]:
  if hasattr(threshold, "to_dict") and hasattr(threshold, "value"):
    return float(threshold.value), threshold.to_dict()
  value = float(threshold)
  if math.isnan(value):
    raise ValueError("threshold is NaN")
  return value, {"value": value, "method": "given", "params": {}}


def _mean(values: Sequence[float]) -> float:
  return float(np.mean(values)) if len(values) else float("nan")


PER_TYPE_DEFINITION = (
    "per anomaly type X: the anomalous frames of type X against all normal frames of the "
    "group's videos (anomalous frames of other or unknown types left out); micro: pooled over "
    "the videos, macro: mean over the videos holding both X and normal frames")


def _check_types(types, videos: list, drop: int) -> list:
  """Per-video str type arrays after the drop, or None where unknown."""
  if types is None:
    return [None] * len(videos)
  types = list(types)
  if len(types) != len(videos):
    raise ValueError(f"{len(types)} type arrays for {len(videos)} videos")
  out = []
  for v, t in zip(videos, types):
    if t is None:
      out.append(None)
      continue
    t = np.asarray(t).astype(str)
    if t.shape != (v.labels.size + drop,):
      raise ValueError(f"video {v.name!r}: frame types have shape {t.shape}, its scores "
                       f"{(v.labels.size + drop,)}")
    out.append(t[drop:])
  return out


def _metric_set(average: str, labels: list, scores: list) -> dict:
  """AUROC, AUPR and EER of videos, micro (pooled) or macro (mean over two-class videos)."""
  if average == "micro":
    y, s = np.concatenate(labels), np.concatenate(scores)
    return {"auroc": metrics.frame_auroc(y, s), "aupr": metrics.frame_aupr(y, s),
            "eer": metrics.frame_eer(y, s)[0]}
  both = [(y, s) for y, s in zip(labels, scores) if y.any() and not y.all()]
  return {"auroc": _mean([metrics.frame_auroc(y, s) for y, s in both]),
          "aupr": _mean([metrics.frame_aupr(y, s) for y, s in both]),
          "eer": _mean([metrics.frame_eer(y, s)[0] for y, s in both])}


def _intervals(average: str, labels: list, scores: list, bootstrap: dict) -> dict:
  """{"auroc_ci", "aupr_ci", "eer_ci", "bootstrap"} (NaN intervals and None when off)."""
  if not bootstrap["resamples"]:
    nan = [float("nan")] * 2
    return {"auroc_ci": nan, "aupr_ci": list(nan), "eer_ci": list(nan), "bootstrap": None}
  ci = metrics.bootstrap_intervals(labels, scores, average=average, **bootstrap)
  return {"auroc_ci": ci["auroc"], "aupr_ci": ci["aupr"], "eer_ci": ci["eer"],
          "bootstrap": ci["method"]}


def _per_type(average: str, processed: list, types: list, bootstrap: dict) -> dict:
  """{type: metrics of its anomalous frames against every normal frame} (see evaluate)."""
  names = sorted({str(x) for v, t in zip(processed, types) if t is not None
                  for x in np.unique(t[v.labels]) if x != ""})
  out = {}
  for name in names:
    labels, scores, clips = [], [], 0
    for v, t in zip(processed, types):
      of_type = np.zeros_like(v.labels) if t is None else v.labels & (t == name)
      keep = ~v.labels | of_type
      labels.append(v.labels[keep])
      scores.append(v.scores[keep])
      clips += bool(of_type.any())
    y = np.concatenate(labels)
    out[name] = {**_metric_set(average, labels, scores),
                 **_intervals(average, labels, scores, bootstrap),
                 "anomalous_frames": int(y.sum()), "normal_frames": int((~y).sum()),
                 "videos_with_type": clips}
  return out


def evaluate(protocol: Protocol, videos: Iterable, *, threshold=None, types=None,
             bootstrap: int = 1000, bootstrap_seed: int = 0,
             bootstrap_level: float = 0.95) -> dict:
  """Frame and event metrics of labelled videos under a protocol.

  Args:
    protocol: the protocol.
    videos: as for `apply_protocol`, every video labelled.
    threshold: optional decision threshold on the *processed* scores (a float, or a
      `jaxvad.evaluation.thresholds.Threshold` calibrated on validation scores processed by the same
      protocol); adds confusion counts/rates and event counts at it.
    types: optional per-video str arrays `[T]` (the raw frame axis, before the drop) naming each
      anomalous frame's anomaly type ("" on normal frames), or None for a video whose types
      are unknown; adds "per_type".
    bootstrap: resamples of the bootstrap over videos behind the intervals (0: no intervals).
    bootstrap_seed, bootstrap_level: its seed and coverage (`metrics.bootstrap_intervals`).

  Returns:
    A dict of plain Python values; undefined metrics are NaN (`json_safe` turns them into null):
    "protocol" (`to_dict`), "videos", "frames", "anomalous_frames", "auroc", "aupr", "eer"
    (micro: over pooled frames; macro: mean over the videos with both classes), "auroc_ci",
    "aupr_ci", "eer_ci" ([lo, hi] bootstrap intervals over videos, NaN without the bootstrap),
    "bootstrap" (`bootstrap_intervals`' "method" record: unit "clips", resamples, seed, level,
    skipped resamples; None when off), "eer_threshold"
    (micro only, else NaN), "macro" ({"videos_used", "skipped": [{"name", "reason"}]}, macro
    only), "per_video" ([{"name", "frames", "anomalous_frames", "auroc", "aupr", "eer"}]),
    with types: "per_type" ({type: {"auroc", "aupr", "eer", their "_ci" intervals, "bootstrap",
    "anomalous_frames", "normal_frames", "videos_with_type"}}, `PER_TYPE_DEFINITION` in
    "per_type_definition") and "untyped_anomalous_frames",
    "events" ({"auc", "auc_ci", "anomalous_events", "normal_intervals", "fpr", "tpr"}:
    threshold-free event ROC, `metrics.event_roc`, `metrics.event_auc_interval`), and with a threshold: "threshold" (its record),
    "confusion" (TP/FN/FP/TN + `metrics.confusion_rates`) and "events_at_threshold"
    (`metrics.event_metrics`). "notes" lists caveats.

  Raises:
    ValueError: an unlabelled video, bad input, or a single-class video under
      `macro_single_class="error"`.
  """
  processed = apply_protocol(protocol, videos)
  if not processed:
    raise ValueError("no videos to evaluate")
  for v in processed:
    if v.labels is None:
      raise ValueError(f"video {v.name!r} has no labels: it cannot be evaluated")
  types = _check_types(types, processed, protocol.drop_first)
  boot = {"resamples": int(bootstrap), "seed": int(bootstrap_seed),
          "level": float(bootstrap_level)}
  labels = np.concatenate([v.labels for v in processed])
  scores = np.concatenate([v.scores for v in processed])
  notes = []

  per_video, skipped, used = [], [], []
  for v in processed:
    single = bool(v.labels.all() or not v.labels.any())
    eer = metrics.frame_eer(v.labels, v.scores)[0]
    per_video.append({"name": v.name, "frames": int(v.labels.size),
                      "anomalous_frames": int(v.labels.sum()),
                      "auroc": metrics.frame_auroc(v.labels, v.scores),
                      "aupr": metrics.frame_aupr(v.labels, v.scores), "eer": eer})
    if single:
      skipped.append({"name": v.name,
                      "reason": "all anomalous" if v.labels.any() else "all normal"})
    else:
      used.append(per_video[-1])

  result = {"protocol": protocol.to_dict(), "videos": len(processed), "frames": int(labels.size),
            "anomalous_frames": int(labels.sum())}
  if protocol.auroc == "micro":
    eer, eer_threshold = metrics.frame_eer(labels, scores)
    result.update(auroc=metrics.frame_auroc(labels, scores),
                  aupr=metrics.frame_aupr(labels, scores), eer=eer, eer_threshold=eer_threshold)
  else:
    if skipped and protocol.macro_single_class == "error":
      raise ValueError(f"protocol {protocol.name!r}: macro AUROC is undefined for single-class "
                       f"videos {[s['name'] for s in skipped]}")
    result.update(auroc=_mean([p["auroc"] for p in used]), aupr=_mean([p["aupr"] for p in used]),
                  eer=_mean([p["eer"] for p in used]), eer_threshold=float("nan"),
                  macro={"videos_used": len(used), "skipped": skipped})
    if skipped:
      notes.append(f"macro: {len(skipped)} single-class video(s) skipped (AUROC undefined)")
  result.update(_intervals(protocol.auroc, [v.labels for v in processed],
                           [v.scores for v in processed], boot))
  if result["bootstrap"] and result["bootstrap"]["skipped"]:
    notes.append(f"bootstrap: {result['bootstrap']['skipped']} of {bootstrap} resamples "
                 "skipped (metric undefined on them)")
  if any(t is not None for t in types):
    result["per_type"] = _per_type(protocol.auroc, processed, types, boot)
    result["per_type_definition"] = PER_TYPE_DEFINITION
    result["untyped_anomalous_frames"] = int(sum(
        (v.labels if t is None else v.labels & (t == "")).sum()
        for v, t in zip(processed, types)))
  result["per_video"] = per_video

  roc = metrics.event_roc([v.labels for v in processed], [v.scores for v in processed])
  result["events"] = {"auc": roc["auc"], "auc_ci": (
                          metrics.event_auc_interval([v.labels for v in processed],
                                                     [v.scores for v in processed], **boot)["auc"]
                          if boot["resamples"] else [float("nan")] * 2),
                      "anomalous_events": roc["anomalous_events"],
                      "normal_intervals": roc["normal_intervals"],
                      "fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist()}

  if threshold is not None:
    value, record = _threshold_record(threshold)
    counts = metrics.confusion_counts(labels, scores, value)
    result["threshold"] = record
    result["confusion"] = {**counts, **metrics.confusion_rates(counts)}
    video_ids = np.repeat(np.arange(len(processed)), [v.labels.size for v in processed])
    result["events_at_threshold"] = metrics.event_metrics(labels, scores >= value,
                                                          video_ids=video_ids)
    if protocol.normalisation == "per_video_minmax":
      notes.append("threshold applied to per-video min-max scores, which use each test video's "
                   "own extremes: not a deployable operating point")
  result["notes"] = notes
  return result


def json_safe(obj):
  """A copy with NaN/inf floats as None and NumPy scalars/arrays as Python values (for JSON)."""
  if isinstance(obj, np.ndarray):
    obj = obj.tolist()
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, Mapping):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  return obj

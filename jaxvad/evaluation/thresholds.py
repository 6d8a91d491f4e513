"""Decision thresholds on anomaly scores, calibrated on validation data only.

All thresholds live on the anomaly-score scale (higher = more anomalous) and flag a frame when
`score >= value` (as `jaxvad.evaluation.metrics.confusion_counts`). Calibrate on validation scores processed
by the same protocol as the test scores (`jaxvad.evaluation.protocol.apply_protocol`), never on test data.

Paper 001 works on PSNR, a normality score, and flags frames whose (smoothed) PSNR is *below*
its threshold; with the anomaly score s = -PSNR its rules become:

* 001 §2.2.4.2 / §3.4: "a number of standard deviations lower than the mean [PSNR] on unseen
  normal data": PSNR < mean_P - k std_P  <=>  s > mean_s + k std_s  ->  `mean_k_std`.
* 001 §3.4: "a set number of dB below the worst PSNR score in the validation set" (an absolute
  margin in score units): PSNR < min_P - margin  <=>  s > max_s + margin  ->
  `margin_from_worst`.

The paper's rule is strict (<) and jaxvad's is >=; they differ only for a score exactly on the
threshold. Also here: `target_false_alarm_rate` (a validation quantile) and `grid_search` (paper
002 §2.4, for labelled validation data).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxvad.evaluation import metrics
from jaxvad.errors import ConfigError

__all__ = ["Threshold", "mean_k_std", "margin_from_worst", "target_false_alarm_rate",
           "grid_search", "GRID_METRICS", "METHODS", "calibrate"]

GRID_METRICS = ("f1", "balanced_accuracy", "accuracy")


@dataclasses.dataclass(frozen=True)
class Threshold:
  """A calibrated threshold and how it was chosen.

  Attributes:
    value: flag a frame when its anomaly score >= value.
    method: the calibration method's name (a key of `METHODS`).
    params: the method's parameters (k, margin, rate, metric, ...).
    stats: what the calibration saw: validation frame count, mean/std/max score and the
      fraction of validation frames the threshold flags (its false-alarm rate there).
  """
  value: float
  method: str
  params: dict = dataclasses.field(default_factory=dict)
  stats: dict = dataclasses.field(default_factory=dict)

  def flag(self, scores) -> np.ndarray:
    """Bool flags `scores >= value`."""
    return np.asarray(scores, dtype=np.float64) >= self.value

  def to_dict(self) -> dict:
    """JSON-ready record (the value may be +inf; `protocol.json_safe` maps it to null)."""
    return {"value": float(self.value), "method": self.method, "rule": "score >= value",
            "params": dict(self.params), "stats": dict(self.stats)}


def _val_scores(val_scores) -> np.ndarray:
  val_scores = np.asarray(val_scores, dtype=np.float64)
  if val_scores.ndim != 1 or val_scores.size == 0:
    raise ValueError(f"val_scores must be a non-empty 1-D array, got shape {val_scores.shape}")
  if not np.isfinite(val_scores).all():
    raise ValueError("val_scores contain NaN or inf")
  return val_scores


def _finite_param(name: str, value, *, minimum: float | None = None) -> float:
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, got {value!r}") from None
  if not np.isfinite(value) or (minimum is not None and value < minimum):
    raise ValueError(f"{name} must be finite{f' and >= {minimum}' if minimum is not None else ''}"
                     f", got {value}")
  return value


def _stats(val_scores: np.ndarray, value: float) -> dict:
  return {"frames": int(val_scores.size), "mean": float(val_scores.mean()),
          "std": float(val_scores.std()), "max": float(val_scores.max()),
          "flag_rate": float(np.mean(val_scores >= value))}


def mean_k_std(val_scores, *, k: float) -> Threshold:
  """mean + k * std of normal validation anomaly scores (001 §2.2.4.2, §3.4, §4.1).

  The anomaly-score form of paper 001's "k standard deviations below the mean validation PSNR"
  (module docstring). std is the population standard deviation (ddof = 0).

  Args:
    val_scores: float `[N]` anomaly scores of normal validation frames.
    k: number of standard deviations (finite; usually >= 0).

  Returns:
    The `Threshold`.

  Raises:
    ValueError: empty or non-finite scores, non-finite k.
  """
  val_scores = _val_scores(val_scores)
  k = _finite_param("k", k)
  value = float(val_scores.mean() + k * val_scores.std())
  return Threshold(value, "mean_k_std", {"k": k}, _stats(val_scores, value))


def margin_from_worst(val_scores, *, margin: float) -> Threshold:
  """max + margin over normal validation anomaly scores (001 §3.4).

  Paper 001 §3.4 suggests "a set number of dB below the worst PSNR score in the validation set":
  an absolute margin in the score's own units (dB for PSNR), not a fraction. A margin > 0 flags
  no validation frame; margin = 0 puts the threshold on the worst validation score, which the
  `>=` rule flags.

  Args:
    val_scores: float `[N]` anomaly scores of normal validation frames.
    margin: margin >= 0 in score units.

  Returns:
    The `Threshold`.

  Raises:
    ValueError: empty or non-finite scores, a negative or non-finite margin.
  """
  val_scores = _val_scores(val_scores)
  margin = _finite_param("margin", margin, minimum=0.0)
  value = float(val_scores.max() + margin)
  return Threshold(value, "margin_from_worst", {"margin": margin}, _stats(val_scores, value))


def target_false_alarm_rate(val_scores, *, rate: float) -> Threshold:
  """The lowest threshold that flags at most `rate` of the normal validation frames.

  With N frames, at most m = floor(rate * N) may be flagged. The threshold is the smallest
  validation score strictly above the (m+1)-th largest one, so exactly the frames scoring above
  that one are flagged: m of them without ties. Tied scores are flagged together or not at all,
  so ties at the cut flag fewer than m. With m = 0 the threshold lies just above the maximum
  (`np.nextafter`), flagging nothing; with m = N (rate 1) it is the minimum, flagging all.

  Args:
    val_scores: float `[N]` anomaly scores of normal validation frames.
    rate: target false-alarm rate in [0, 1].

  Returns:
    The `Threshold`; `stats["flag_rate"]` is the rate achieved on validation (<= rate).

  Raises:
    ValueError: empty or non-finite scores, rate outside [0, 1].
  """
  val_scores = _val_scores(val_scores)
  rate = _finite_param("rate", rate, minimum=0.0)
  if rate > 1:
    raise ValueError(f"rate must be in [0, 1], got {rate}")
  n = val_scores.size
  m = int(np.floor(rate * n + 1e-9))  # tolerate rate * n landing just below an integer
  desc = np.sort(val_scores)[::-1]
  if m >= n:
    value = float(desc[-1])
  else:
    cut = desc[m]  # the (m+1)-th largest: must not be flagged
    above = desc[desc > cut]
    value = float(above.min()) if above.size else float(np.nextafter(cut, np.inf))
  return Threshold(value, "target_false_alarm_rate", {"rate": rate}, _stats(val_scores, value))


def grid_search(val_labels, val_scores, *, metric: str = "f1", num: int = 101,
                grid=None) -> Threshold:
  """The grid threshold that maximises a frame metric on labelled validation data (002 §2.4).

  Paper 002 tries thresholds 0.1, 0.15, ..., 0.9 on its anomaly probability and keeps the one
  with the most correct detections "without too many false positives"; here the criterion is
  explicit (`metric`) and ties go to the highest threshold (fewest alarms). Unlike the other
  methods this needs labelled validation frames of both classes, still never test data.

  Args:
    val_labels: bool `[N]`, True = anomalous.
    val_scores: float `[N]` anomaly scores.
    metric: "f1", "balanced_accuracy" (= (TPR + TNR) / 2, same argmax as Youden's J) or
      "accuracy".
    num: grid size when `grid` is None: `num` evenly spaced thresholds from the lowest to the
      highest validation score.
    grid: explicit thresholds, e.g. 002's `np.round(np.arange(0.1, 0.95, 0.05), 2)` on [0, 1]
      scores (rounded: unrounded `arange` gives 0.6000000000000001, which misses a score 0.6).

  Returns:
    The `Threshold`; params record metric and grid size, stats the best metric value.

  Raises:
    ValueError: bad shapes, one class only, unknown metric, bad grid.
  """
  if metric not in GRID_METRICS:
    raise ValueError(f"metric must be one of {GRID_METRICS}, got {metric!r}")
  labels, scores = metrics._check_labels_scores(  # pylint: disable=protected-access
      val_labels, val_scores)
  if scores.size == 0 or labels.all() or not labels.any():
    raise ValueError("grid_search needs validation frames of both classes")
  if grid is None:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
      raise ValueError(f"num must be an integer >= 2, got {num!r}")
    grid = np.linspace(scores.min(), scores.max(), int(num))
  grid = np.asarray(grid, dtype=np.float64)
  if grid.ndim != 1 or grid.size == 0 or np.isnan(grid).any():
    raise ValueError("grid must be a non-empty 1-D array without NaN")
  grid = np.unique(grid)
  # Counts at every grid point at once: flagged = scores >= t.
  pos = np.sort(scores[labels])
  neg = np.sort(scores[~labels])
  tp = pos.size - np.searchsorted(pos, grid, side="left")
  fp = neg.size - np.searchsorted(neg, grid, side="left")
  fn, tn = pos.size - tp, neg.size - fp
  if metric == "f1":
    values = 2 * tp / (2 * tp + fp + fn)
  elif metric == "balanced_accuracy":
    values = (tp / pos.size + tn / neg.size) / 2
  else:
    values = (tp + tn) / scores.size
  best = np.flatnonzero(values == values.max())[-1]  # highest threshold among the ties
  value = float(grid[best])
  stats = {"frames": int(scores.size), "anomalous_frames": int(pos.size),
           metric: float(values[best]), "flag_rate_normal": float(fp[best] / neg.size),
           "tpr": float(tp[best] / pos.size)}
  return Threshold(value, "grid_search", {"metric": metric, "grid_size": int(grid.size)}, stats)


METHODS = {
    "mean_k_std": mean_k_std,
    "margin_from_worst": margin_from_worst,
    "target_false_alarm_rate": target_false_alarm_rate,
    "grid_search": grid_search,
}


def calibrate(name: str, val_scores, *, val_labels=None, **params: Any) -> Threshold:
  """Calibrates a threshold by method name (for configs).

  Args:
    name: a key of `METHODS`.
    val_scores: float `[N]` validation anomaly scores.
    val_labels: bool `[N]` (True = anomalous) or None. Required by "grid_search"; the other
      methods use only the normal frames (labels False) when labels are given, all frames
      otherwise (then the validation data must be normal).
    **params: the method's keyword options (k, margin, rate, metric, num, grid).

  Returns:
    The `Threshold`.

  Raises:
    ConfigError: unknown method or parameters.
    ValueError: bad scores or labels.
  """
  if name not in METHODS:
    raise ConfigError(f"unknown threshold method {name!r}; choose one of {sorted(METHODS)}")
  fn = METHODS[name]
  if name == "grid_search":
    if val_labels is None:
      raise ValueError("grid_search needs val_labels")
    args = (val_labels, val_scores)
  else:
    val_scores = _val_scores(val_scores)
    if val_labels is not None:
      val_labels = np.asarray(val_labels).astype(bool)
      if val_labels.shape != val_scores.shape:
        raise ValueError(f"val_labels {val_labels.shape} and val_scores {val_scores.shape} "
                         "differ in shape")
      val_scores = val_scores[~val_labels]
    args = (val_scores,)
  try:
    return fn(*args, **params)
  except TypeError as e:
    raise ConfigError(f"threshold method {name!r}: {e}") from None

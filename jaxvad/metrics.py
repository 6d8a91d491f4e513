"""Frame-level metrics (scikit-learn) and score smoothing, on NumPy arrays on the host."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["moving_average", "frame_auroc", "frame_aupr", "frame_metrics"]


def moving_average(scores, *, window: int) -> np.ndarray:
  """Centred moving average of a 1-D score series; edges average over the frames that exist.

  Args:
    scores: float `[T]`.
    window: window length in frames (1 leaves the series unchanged).

  Returns:
    float64 `[T]`.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1:
    raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  if window == 1 or scores.size == 0:
    return scores.copy()
  kernel = np.ones(window)
  right = window // 2  # frames [t - (window-1)//2, t + window//2] are averaged
  padded_sum = np.convolve(scores, kernel, mode="full")[right:right + scores.size]
  counts = np.convolve(np.ones_like(scores), kernel, mode="full")[right:right + scores.size]
  return padded_sum / counts


def _check_labels_scores(labels, scores):
  labels = np.asarray(labels).astype(bool)
  scores = np.asarray(scores, dtype=np.float64)
  if labels.shape != scores.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal 1-D shapes")
  if not np.isfinite(scores).all():
    raise ValueError("scores contain NaN or inf")
  return labels, scores


def frame_auroc(labels, scores) -> float:
  """Area under the ROC curve; labels True = anomalous, higher score = more anomalous.

  Returns NaN when only one class is present (AUROC is undefined there).
  """
  labels, scores = _check_labels_scores(labels, scores)
  if labels.all() or not labels.any():
    return float("nan")
  return float(skm.roc_auc_score(labels, scores))


def frame_aupr(labels, scores) -> float:
  """Area under the precision-recall curve (average precision) for the anomalous class."""
  labels, scores = _check_labels_scores(labels, scores)
  if not labels.any():
    return float("nan")
  return float(skm.average_precision_score(labels, scores))


def frame_metrics(labels, scores) -> dict:
  """AUROC, AUPR and frame counts of one pooled set of frames."""
  labels, scores = _check_labels_scores(labels, scores)
  return {"auroc": frame_auroc(labels, scores), "aupr": frame_aupr(labels, scores),
          "frames": int(labels.size), "anomalous_frames": int(labels.sum())}

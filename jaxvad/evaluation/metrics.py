"""Frame- and event-level metrics (scikit-learn) and score smoothing, on NumPy arrays on the host.

Conventions used throughout:

* labels are bool, True = anomalous frame; scores are anomaly scores, higher = more anomalous
  (flip a normality score such as PSNR before calling, or let `jaxvad.evaluation.protocol` do it);
* a frame is *flagged* at threshold `t` when `score >= t` (the rule scikit-learn's `roc_curve`
  uses for its thresholds, so every ROC vertex is realised by one of its thresholds);
* a metric that is undefined on the given frames (AUROC with one class only, a rate with a zero
  denominator) is `float("nan")`, never an exception; bad input (shape, NaN scores) raises
  `ValueError`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "moving_average", "frame_auroc", "frame_aupr", "frame_metrics", "frame_roc", "frame_eer",
    "confusion_counts", "confusion_rates", "intervals", "event_metrics", "event_roc", "event_auc",
]

_NAN = float("nan")


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


def _one_class(labels: np.ndarray) -> bool:
  return bool(labels.all() or not labels.any())


def frame_auroc(labels, scores) -> float:
  """Area under the ROC curve; labels True = anomalous, higher score = more anomalous.

  Returns NaN when only one class is present (AUROC is undefined there).
  """
  labels, scores = _check_labels_scores(labels, scores)
  if _one_class(labels):
    return _NAN
  return float(skm.roc_auc_score(labels, scores))


def frame_aupr(labels, scores) -> float:
  """Area under the precision-recall curve (average precision) for the anomalous class.

  Note: ano_pred's `precision_recall_auc` instead integrates the curve of the *normal* class
  (`pos_label=0`) with the trapezoid rule, so its numbers are not comparable with these.
  """
  labels, scores = _check_labels_scores(labels, scores)
  if not labels.any():
    return _NAN
  return float(skm.average_precision_score(labels, scores))


def frame_metrics(labels, scores) -> dict:
  """AUROC, AUPR and frame counts of one pooled set of frames."""
  labels, scores = _check_labels_scores(labels, scores)
  return {"auroc": frame_auroc(labels, scores), "aupr": frame_aupr(labels, scores),
          "frames": int(labels.size), "anomalous_frames": int(labels.sum())}


def frame_roc(labels, scores) -> dict:
  """The frame-level ROC curve, every vertex kept (for plots and threshold read-off).

  Args:
    labels: bool `[N]`, True = anomalous.
    scores: float `[N]` anomaly scores.

  Returns:
    {"fpr", "tpr", "thresholds"}: float64 arrays of equal length; flagging `score >= thresholds[i]`
    gives `(fpr[i], tpr[i])`. `thresholds[0]` is `+inf` (nothing flagged, the point (0, 0)); the
    last threshold is the lowest score (everything flagged, the point (1, 1)).

  Raises:
    ValueError: bad shapes or scores, or only one class present (no ROC curve exists).
  """
  labels, scores = _check_labels_scores(labels, scores)
  if _one_class(labels):
    raise ValueError("the ROC curve needs both normal and anomalous frames")
  fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
  return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds.astype(np.float64)}


def frame_eer(labels, scores, *, method: str = "interpolate") -> tuple[float, float]:
  """Equal error rate: where the false positive rate equals the miss rate FNR = 1 - TPR.

  `method="interpolate"` (default): the ROC polygon (every vertex of scikit-learn's `roc_curve`)
  is followed from (0, 0) to (1, 1); FPR - FNR rises from -1 to +1 along it, and the EER is the
  FPR at the point where it crosses 0, linearly interpolated between the two vertices around the
  crossing (so it is exact whenever a vertex lies on FPR = FNR).

  `method="ano_pred"`: the EER as ano_pred (Liu et al. 2018, `Codes/evaluate.py`, `cal_eer`)
  computes it, and as the FFP EERs quoted in paper 004 were computed: no interpolation, the ROC
  of the *normal* class (`roc_curve(..., pos_label=0)` on the regularity score) is searched for
  the vertex nearest FPR + TPR = 1 and that vertex's FPR (= the anomalous class's miss rate) is
  returned. The two methods agree when a vertex lies on the crossing.

  Args:
    labels: bool `[N]`, True = anomalous.
    scores: float `[N]` anomaly scores.
    method: "interpolate" or "ano_pred".

  Returns:
    `(eer, threshold)`. `threshold` realises the ROC vertex nearest the crossing (smallest
    |FPR - FNR|, ties to the higher threshold) under the rule `score >= threshold`; for
    "ano_pred", the vertex that method picks. Both are NaN when only one class is present.

  Raises:
    ValueError: bad shapes, non-finite scores, or an unknown method.
  """
  if method not in ("interpolate", "ano_pred"):
    raise ValueError(f"method must be 'interpolate' or 'ano_pred', got {method!r}")
  labels, scores = _check_labels_scores(labels, scores)
  if _one_class(labels):
    return _NAN, _NAN
  if method == "ano_pred":
    # Normal class positive, score = regularity = -anomaly score (any increasing map of it gives
    # the same ROC). sklearn flags "normal" when -score >= r, i.e. anomalous when score > -r.
    fpr_n, tpr_n, thr_n = skm.roc_curve(~labels, -scores)
    i = int(np.nanargmin(np.abs(fpr_n + tpr_n - 1)))
    above = np.unique(scores)
    j = np.searchsorted(above, -thr_n[i], side="right")  # first score > -r
    threshold = float(above[j]) if j < above.size else float("inf")
    return float(fpr_n[i]), threshold
  fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
  gap = fpr + tpr - 1.0  # FPR - FNR: -1 at (0, 0), +1 at (1, 1), non-decreasing
  j = int(np.argmax(gap >= 0))
  if gap[j] == 0:
    eer = float(fpr[j])
  else:
    i = j - 1
    a = -gap[i] / (gap[j] - gap[i])
    eer = float(fpr[i] + a * (fpr[j] - fpr[i]))
  nearest = int(np.argmin(np.abs(gap)))  # first minimiser = the higher threshold
  return eer, float(thresholds[nearest])


def _check_threshold(threshold) -> float:
  threshold = float(threshold)
  if np.isnan(threshold):
    raise ValueError("threshold is NaN")
  return threshold


def confusion_counts(labels, scores, threshold: float) -> dict:
  """Frame confusion counts at one threshold, as paper 000's Tables 4.2-4.7 report them.

  A frame is flagged anomalous when `score >= threshold` (so `-inf` flags every frame and
  `+inf` none).

  Args:
    labels: bool `[N]`, True = anomalous.
    scores: float `[N]` anomaly scores.
    threshold: the decision threshold (a float, ±inf allowed).

  Returns:
    {"TP", "FN", "FP", "TN"} as ints: TP = anomalous and flagged, FN = anomalous and not
    flagged, FP = normal and flagged, TN = normal and not flagged.

  Raises:
    ValueError: bad shapes, non-finite scores or a NaN threshold.
  """
  labels, scores = _check_labels_scores(labels, scores)
  flags = scores >= _check_threshold(threshold)
  tp = int(np.count_nonzero(flags & labels))
  fp = int(np.count_nonzero(flags & ~labels))
  positives = int(np.count_nonzero(labels))
  return {"TP": tp, "FN": positives - tp, "FP": fp, "TN": labels.size - positives - fp}


def _ratio(num: float, den: float) -> float:
  return float(num / den) if den else _NAN


def confusion_rates(counts: dict) -> dict:
  """Rates from `confusion_counts`; NaN where the denominator is zero.

  Args:
    counts: {"TP", "FN", "FP", "TN"}.

  Returns:
    {"tpr" (recall), "fnr", "fpr", "tnr", "precision", "f1", "accuracy", "balanced_accuracy"}.
    F1 is 2TP / (2TP + FP + FN), so it is 0 (not NaN) when nothing is flagged but anomalies exist.
  """
  try:
    tp, fn, fp, tn = (int(counts[k]) for k in ("TP", "FN", "FP", "TN"))
  except KeyError as e:
    raise ValueError(f"counts needs keys TP, FN, FP, TN; missing {e}") from None
  if min(tp, fn, fp, tn) < 0:
    raise ValueError(f"counts must be >= 0, got {counts}")
  tpr, fpr = _ratio(tp, tp + fn), _ratio(fp, fp + tn)
  return {"tpr": tpr, "fnr": _ratio(fn, tp + fn), "fpr": fpr, "tnr": _ratio(tn, fp + tn),
          "precision": _ratio(tp, tp + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
          "accuracy": _ratio(tp + tn, tp + fn + fp + tn),
          "balanced_accuracy": (tpr + 1.0 - fpr) / 2.0}


def intervals(mask) -> list[tuple[int, int]]:
  """Maximal runs of True in a 1-D bool mask, as half-open `(start, end)` frame ranges.

  Example: `intervals([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]`.
  """
  mask = np.asarray(mask).astype(bool)
  if mask.ndim != 1:
    raise ValueError(f"mask must be 1-D, got shape {mask.shape}")
  padded = np.concatenate([[False], mask, [False]])
  edges = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _runs(labels: np.ndarray, video_ids) -> tuple[np.ndarray, np.ndarray]:
  """Start index and length of every maximal same-label run, never crossing a video boundary."""
  n = labels.size
  if video_ids is None:
    boundary = np.zeros(n, dtype=bool)
  else:
    video_ids = np.asarray(video_ids)
    if video_ids.shape != labels.shape:
      raise ValueError(f"video_ids {video_ids.shape} must match labels {labels.shape}")
    boundary = np.concatenate([[False], video_ids[1:] != video_ids[:-1]])
    if n and np.count_nonzero(boundary) + 1 != np.unique(video_ids).size:
      raise ValueError("each video's frames must be contiguous in the pooled arrays")
  change = np.concatenate([[True], labels[1:] != labels[:-1]]) | boundary if n else boundary
  starts = np.flatnonzero(change)
  return starts, np.diff(np.append(starts, n))


def event_metrics(labels, flags, *, video_ids=None, details: bool = False) -> dict:
  """Event-level ("case-by-case", paper 001 §4.1) detection counts at one set of flags.

  Every maximal run of anomalous frames is one anomalous event, *detected* if any of its frames
  is flagged; every maximal run of normal frames is one normal interval, a *false alarm* if any
  of its frames is flagged. Runs never span a video boundary.

  Args:
    labels: bool `[N]`, True = anomalous, videos concatenated.
    flags: bool `[N]`, True = flagged anomalous (e.g. `scores >= threshold`).
    video_ids: optional `[N]` video id per frame (each video's frames contiguous); None = one
      video.
    details: also list every interval.

  Returns:
    {"anomalous_events", "detected_events", "missed_events", "event_tpr", "normal_intervals",
    "false_alarm_intervals", "event_fpr"} (rates NaN when there is no interval of that kind),
    plus, with `details`, "intervals": [{"video", "start", "end", "anomalous", "flagged"}] with
    `start`/`end` half-open frame indices within the video (`video` is None without video_ids).

  Raises:
    ValueError: shapes differ or a video's frames are not contiguous.
  """
  labels = np.asarray(labels).astype(bool)
  flags = np.asarray(flags).astype(bool)
  if labels.ndim != 1 or labels.shape != flags.shape:
    raise ValueError(f"labels {labels.shape} and flags {flags.shape} must be equal 1-D shapes")
  starts, lengths = _runs(labels, video_ids)
  if starts.size:
    kind = labels[starts]
    hit = np.logical_or.reduceat(flags, starts)
  else:
    kind = hit = np.zeros(0, dtype=bool)
  n_anom, n_norm = int(kind.sum()), int((~kind).sum())
  detected, alarms = int((hit & kind).sum()), int((hit & ~kind).sum())
  out = {"anomalous_events": n_anom, "detected_events": detected,
         "missed_events": n_anom - detected, "event_tpr": _ratio(detected, n_anom),
         "normal_intervals": n_norm, "false_alarm_intervals": alarms,
         "event_fpr": _ratio(alarms, n_norm)}
  if details:
    if video_ids is None:
      vids, offsets = [None] * starts.size, np.zeros(starts.size, dtype=int)
    else:
      video_ids = np.asarray(video_ids)
      first = np.concatenate([[True], video_ids[1:] != video_ids[:-1]])
      video_start = np.maximum.accumulate(np.where(first, np.arange(labels.size), 0))
      vids = [v.item() if hasattr(v, "item") else v for v in video_ids[starts]]
      offsets = video_start[starts]
    out["intervals"] = [
        {"video": v, "start": int(s - o), "end": int(s - o + n), "anomalous": bool(k),
         "flagged": bool(h)}
        for v, s, o, n, k, h in zip(vids, starts, offsets, lengths, kind, hit)]
  return out


def _event_cases(labels_per_video: Sequence, scores_per_video: Sequence):
  if len(labels_per_video) != len(scores_per_video):
    raise ValueError(f"{len(labels_per_video)} label arrays but {len(scores_per_video)} score "
                     "arrays")
  kinds, peaks = [], []
  for i, (labels, scores) in enumerate(zip(labels_per_video, scores_per_video)):
    try:
      labels, scores = _check_labels_scores(labels, scores)
    except ValueError as e:
      raise ValueError(f"video {i}: {e}") from None
    starts, _ = _runs(labels, None)
    if starts.size:
      kinds.append(labels[starts])
      peaks.append(np.maximum.reduceat(scores, starts))
  if not kinds:
    return np.zeros(0, dtype=bool), np.zeros(0)
  return np.concatenate(kinds), np.concatenate(peaks)


def event_roc(labels_per_video: Sequence, scores_per_video: Sequence) -> dict:
  """Event-level ("case-by-case", paper 001 §4.1, Fig. 4.7b) ROC over all thresholds.

  One threshold sweep is shared by both kinds of interval: at threshold t an anomalous event
  is detected, and a normal interval is a false alarm, when any of its frames has
  `score >= t`, i.e. when its peak score is >= t. So the event ROC is the ordinary ROC of one
  "case" per interval scored by its peak, event TPR = detected / anomalous events and event
  FPR = false-alarm intervals / normal intervals (both non-increasing in t).

  Args:
    labels_per_video: sequence of bool `[T_v]` (True = anomalous), one per video.
    scores_per_video: sequence of float `[T_v]` anomaly scores, same lengths.

  Returns:
    {"fpr", "tpr", "thresholds", "auc", "anomalous_events", "normal_intervals"}: the curve starts
    at (0, 0) (threshold +inf) and ends at (1, 1) (threshold = the lowest peak); "auc" is its
    trapezoid area (equal to the Mann-Whitney AUROC of the peaks, ties counted 1/2). Without
    both an anomalous event and a normal interval the arrays are empty and "auc" is NaN.

  Raises:
    ValueError: mismatched lengths or non-finite scores.
  """
  kinds, peaks = _event_cases(labels_per_video, scores_per_video)
  out = {"anomalous_events": int(kinds.sum()), "normal_intervals": int((~kinds).sum())}
  if _one_class(kinds):
    empty = np.zeros(0)
    return {"fpr": empty, "tpr": empty, "thresholds": empty, "auc": _NAN, **out}
  fpr, tpr, thresholds = skm.roc_curve(kinds, peaks, drop_intermediate=False)
  return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds.astype(np.float64),
          "auc": float(skm.auc(fpr, tpr)), **out}


def event_auc(labels_per_video: Sequence, scores_per_video: Sequence) -> float:
  """Area under `event_roc`'s curve (NaN without both kinds of interval)."""
  return event_roc(labels_per_video, scores_per_video)["auc"]

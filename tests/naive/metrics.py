"""Slow, loop-by-loop references for jaxvad.evaluation.metrics, jaxvad.evaluation.protocol and the ano_pred/MNAD code.

Every function here restates a definition with plain Python loops (no sorting tricks, no
scikit-learn), except `ano_pred_auc_eer`/`mnad_auc`, which transcribe the reference projects'
evaluation code step by step.
"""

import math

import numpy as np
from sklearn import metrics as skm


def confusion_counts(labels, scores, threshold):
  """TP, FN, FP, TN counted one frame at a time (flag = score >= threshold)."""
  out = {"TP": 0, "FN": 0, "FP": 0, "TN": 0}
  for y, s in zip(labels, scores):
    flagged = s >= threshold
    key = ("TP" if flagged else "FN") if y else ("FP" if flagged else "TN")
    out[key] += 1
  return out


def roc_points(labels, scores):
  """(threshold, FPR, TPR) for +inf and every distinct score, highest threshold first."""
  labels = [bool(y) for y in labels]
  pos, neg = sum(labels), len(labels) - sum(labels)
  points = []
  for t in [math.inf] + sorted(set(float(s) for s in scores), reverse=True):
    c = confusion_counts(labels, scores, t)
    points.append((t, c["FP"] / neg, c["TP"] / pos))
  return points


def eer(labels, scores):
  """EER by brute force: intersect every ROC segment with the line FPR = 1 - TPR."""
  pts = roc_points(labels, scores)
  for (_, f0, t0), (_, f1, t1) in zip(pts, pts[1:]):
    g0, g1 = f0 - (1 - t0), f1 - (1 - t1)
    if g0 == 0:
      return f0
    if g0 < 0 <= g1:
      return f0 + (f1 - f0) * (-g0) / (g1 - g0)
  return pts[-1][1]


def intervals(mask):
  """Half-open runs of True, found one frame at a time."""
  runs, start = [], None
  for i, m in enumerate(list(mask) + [False]):
    if m and start is None:
      start = i
    elif not m and start is not None:
      runs.append((start, i))
      start = None
  return runs


def interval_cases(labels, values):
  """(is_anomalous, [values of its frames]) for each maximal same-label run of one video."""
  cases, i = [], 0
  while i < len(labels):
    j = i
    while j < len(labels) and labels[j] == labels[i]:
      j += 1
    cases.append((bool(labels[i]), list(values[i:j])))
    i = j
  return cases


def event_metrics(labels_per_video, flags_per_video):
  """Detected events and false-alarm intervals, video by video, run by run."""
  n_anom = n_norm = detected = alarms = 0
  for labels, flags in zip(labels_per_video, flags_per_video):
    for anomalous, run_flags in interval_cases(list(labels), list(flags)):
      hit = any(run_flags)
      if anomalous:
        n_anom += 1
        detected += hit
      else:
        n_norm += 1
        alarms += hit
  return {"anomalous_events": n_anom, "detected_events": detected, "normal_intervals": n_norm,
          "false_alarm_intervals": alarms}


def event_roc(labels_per_video, scores_per_video):
  """Event (FPR, TPR) at +inf and every distinct score, and the trapezoid area under them."""
  all_scores = sorted({float(s) for scores in scores_per_video for s in scores}, reverse=True)
  points = []
  for t in [math.inf] + all_scores:
    flags = [[s >= t for s in scores] for scores in scores_per_video]
    m = event_metrics(labels_per_video, flags)
    points.append((m["false_alarm_intervals"] / m["normal_intervals"],
                   m["detected_events"] / m["anomalous_events"]))
  area = 0.0
  for (f0, t0), (f1, t1) in zip(points, points[1:]):
    area += (f1 - f0) * (t0 + t1) / 2
  return points, area


def protocol_scores(scores, *, drop_first, higher_is_anomalous, window, minmax):
  """One video through drop -> orient -> smooth -> normalise, with loops."""
  x = [float(v) for v in scores[drop_first:]]
  if not higher_is_anomalous:
    x = [-v for v in x]
  left, right = (window - 1) // 2, window // 2
  x = [sum(x[max(0, t - left):t + right + 1]) / len(x[max(0, t - left):t + right + 1])
       for t in range(len(x))]
  if minmax:
    lo, hi = min(x), max(x)
    x = [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in x]
  return np.array(x)


def ano_pred_auc_eer(psnr_records, gt, num_his=4):
  """ano_pred (StevenLiuWen/ano_pred_cvpr2018) transcribed: inference.py pads the first
  `num_his` PSNRs with frame num_his's; evaluate.py min-max normalises each video (NORMALIZE),
  drops DECIDABLE_IDX = 4 frames, pools, and computes roc_curve(pos_label=0) -> auc and cal_eer.
  """
  scores, labels = np.array([], np.float64), np.array([], np.int8)
  for psnr, g in zip(psnr_records, gt):
    distance = np.array(psnr, np.float64)
    distance[0:num_his] = distance[num_his]
    distance -= distance.min()
    distance /= distance.max()
    scores = np.concatenate((scores, distance[4:]), axis=0)
    labels = np.concatenate((labels, np.asarray(g, np.int8)[4:]), axis=0)
  fpr, tpr, _ = skm.roc_curve(labels, scores, pos_label=0)
  auc = skm.auc(fpr, tpr)
  eer_value = fpr[np.nanargmin(np.absolute(fpr + tpr - 1))]
  return auc, eer_value


def mnad_auc(psnr_lists, gt):
  """MNAD (cvlab-yonsei/MNAD) transcribed, PSNR term only (alpha = 1): frames from index 4 are
  scored, each video's PSNR list is min-max normalised (anomaly_score_list), pooled, and
  roc_auc_score is taken against 1 - labels."""
  total, labels_list = [], []
  for psnr, g in zip(psnr_lists, gt):
    psnr = list(psnr[4:])
    total += [(p - min(psnr)) / (max(psnr) - min(psnr)) for p in psnr]
    labels_list += list(np.asarray(g)[4:])
  return skm.roc_auc_score(1 - np.asarray(labels_list, int), np.asarray(total))


def average_precision(labels, scores):
  """Average precision, threshold by threshold: sum of (recall step) x precision."""
  pos = sum(bool(y) for y in labels)
  total, last_recall = 0.0, 0.0
  for t in sorted(set(float(s) for s in scores), reverse=True):
    c = confusion_counts(labels, scores, t)
    recall = c["TP"] / pos
    total += (recall - last_recall) * c["TP"] / (c["TP"] + c["FP"])
    last_recall = recall
  return total


def _wins(labels, scores):
  """AUROC as the share of (anomalous, normal) frame pairs the anomalous frame wins, ties 1/2."""
  pos = [s for y, s in zip(labels, scores) if y]
  neg = [s for y, s in zip(labels, scores) if not y]
  wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
  return wins / (len(pos) * len(neg))


def clip_metrics(labels, scores):
  """(AUROC, AUPR, EER) of one set of frames, or None when it holds one class only."""
  labels = [bool(y) for y in labels]
  if all(labels) or not any(labels):
    return None
  return _wins(labels, scores), average_precision(labels, scores), eer(labels, scores)


def bootstrap_intervals(labels_per_clip, scores_per_clip, *, average="micro", resamples=1000,
                        seed=0, level=0.95):
  """The clip bootstrap one resample at a time: draw the clips (the same draws as
  `default_rng(seed).integers(0, clips, (resamples, clips))`), concatenate them (micro) or
  average their two-class clips' metrics (macro), skip resamples where that is undefined, take
  percentiles."""
  n = len(labels_per_clip)
  draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
  values, skipped = [], 0
  for row in draws:
    if average == "micro":
      labels = [y for i in row for y in labels_per_clip[i]]
      scores = [s for i in row for s in scores_per_clip[i]]
      m = clip_metrics(labels, scores)
    else:
      per = [clip_metrics(labels_per_clip[i], scores_per_clip[i]) for i in row]
      per = [p for p in per if p is not None]
      m = tuple(sum(p[k] for p in per) / len(per) for k in range(3)) if per else None
    if m is None:
      skipped += 1
    else:
      values.append(m)
  tail = 50 * (1 - level)
  out = {name: list(np.percentile([v[k] for v in values], [tail, 100 - tail]))
         for k, name in enumerate(("auroc", "aupr", "eer"))}
  out["skipped"] = skipped
  return out


def regions(mask):
  """8-connected components of a 2-D mask by flood fill: a list of sets of (row, col)."""
  mask = np.asarray(mask).astype(bool)
  seen, found = set(), []
  for start in zip(*np.nonzero(mask)):
    start = (int(start[0]), int(start[1]))
    if start in seen:
      continue
    region, stack = set(), [start]
    seen.add(start)
    while stack:
      r, c = stack.pop()
      region.add((r, c))
      for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
          q = (r + dr, c + dc)
          if (0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q]
              and q not in seen):
            seen.add(q)
            stack.append(q)
    found.append(region)
  return found


def pro_points(masks, maps):
  """(threshold, FPR, PRO) at +inf and every distinct map value, highest threshold first:
  each region's flagged fraction and the flagged normal pixels counted threshold by threshold."""
  maps = [np.asarray(a, np.float64) for a in maps]
  all_regions = [(i, region) for i, mask in enumerate(masks) for region in regions(mask)]
  normal = [(i, r, c) for i, mask in enumerate(masks)
            for r in range(mask.shape[0]) for c in range(mask.shape[1]) if not mask[r, c]]
  points = []
  for t in [math.inf] + sorted({float(v) for a in maps for v in a.ravel()}, reverse=True):
    overlaps = [sum(maps[i][p] >= t for p in region) / len(region) for i, region in all_regions]
    fp = sum(maps[i][r, c] >= t for i, r, c in normal)
    points.append((t, fp / len(normal), sum(overlaps) / len(overlaps)))
  return points


def pro_auc(masks, maps, max_fpr):
  """Trapezoid area under the PRO curve for FPR in [0, max_fpr], segment by segment (the one
  crossing max_fpr cut there by linear interpolation), divided by max_fpr."""
  pts = [(f, p) for _, f, p in pro_points(masks, maps)]
  area = 0.0
  for (f0, p0), (f1, p1) in zip(pts, pts[1:]):
    if f0 >= max_fpr:
      break
    if f1 > max_fpr:
      p1 = p0 + (p1 - p0) * (max_fpr - f0) / (f1 - f0)
      f1 = max_fpr
    area += (f1 - f0) * (p0 + p1) / 2
  return area / max_fpr


def pixel_bootstrap_intervals(masks_per_clip, maps_per_clip, *, resamples, seed=0, max_fpr=0.3,
                              level=0.95):
  """The pixel bootstrap one resample at a time, without bins: draw the clips (the draws of
  `default_rng(seed).integers(0, clips, (resamples, clips))`), list the drawn clips' frames (a
  clip drawn twice twice), and take pixel AUROC (pair by pair) and AU-PRO (threshold by
  threshold) of them; resamples where a metric is undefined are left out of its percentiles."""
  n = len(masks_per_clip)
  draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
  values = {"pixel_auroc": [], "pro": []}
  for row in draws:
    masks = [np.asarray(f, bool) for i in row for f in masks_per_clip[i]]
    maps = [np.asarray(f, np.float64) for i in row for f in maps_per_clip[i]]
    labels = np.concatenate([m.ravel() for m in masks])
    scores = np.concatenate([a.ravel() for a in maps])
    if labels.any() and not labels.all():
      values["pixel_auroc"].append(_wins(labels, scores))
      values["pro"].append(pro_auc(masks, maps, max_fpr))   # a pixel labelled: a region exists
  tail = 50 * (1 - level)
  out = {k: list(np.percentile(v, [tail, 100 - tail])) if v else [math.nan, math.nan]
         for k, v in values.items()}
  out["skipped"] = {k: resamples - len(v) for k, v in values.items()}
  return out

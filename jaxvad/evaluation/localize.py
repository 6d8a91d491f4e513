"""Boxes around anomalous regions, and open-set classification by softmax thresholding (paper 002).

Paper 002 turns an anomaly map (an Eigen-CAM / anomaly-probability map in [0, 1]) into boxes by
a grid search: "Create different thresholds from 0.1 to 0.9, step size is 0.05. Evaluate the
number of anomaly regions detected for each threshold. Choose the threshold that gives the
maximum number and accuracy of anomaly detections without too many false positives", then
draws "a bounding box around the areas where the anomaly scores are higher than the threshold".
The paper leaves "detected" and "too many false positives" informal; this module pins them
down so the choice is reproducible and reportable:

* **Regions and boxes.** A box is the bounding box of one 8-connected component of
  `map >= threshold` (`boxes_from_map`); ground-truth regions are the 8-connected components of
  the mask, as in MVTec AD's PRO (`jaxvad.evaluation.metrics.pro_curve`), so a defect drawn as a
  diagonal line is one region. Boxes are `(x0, y0, x1, y1)` in pixels, half-open (the box covers
  columns x0 .. x1-1 and rows y0 .. y1-1), so width = x1 - x0 and boxes slice as
  `image[y0:y1, x0:x1]`.
* **Detection rule** (`box_matches`). A ground-truth region is *detected* when some predicted
  box has IoU >= `min_iou` with the region's bounding box; a predicted box is a *false box* when
  its IoU with every region's bounding box is below `min_iou`. Matching is not one-to-one: two
  boxes on one defect both count as correct, and one box can detect two nearby defects. The
  default `min_iou = 0.1` is deliberately loose: CAM maps come from coarse feature maps (a 7 x 7
  map upsampled to 224 x 224 gives blobs of ~32 pixels), so their boxes are much larger than
  small defects (scratches, pin holes); at the detection-style 0.5 almost no small defect would
  count as found, and the threshold search would measure CAM resolution, not detection. 0.1 still
  rejects a box covering the whole frame unless the defect fills at least a tenth of it.
* **Objective** (`select_box_threshold`). "Maximum number of detections without too many false
  positives" is read as the F1 of region recall (detected / regions) and box precision
  (correct boxes / boxes), summed over the validation images; ties go to the higher threshold
  (fewer, tighter boxes), as `jaxvad.evaluation.thresholds.grid_search` does.

Softmax thresholding (paper 002) assigns a sample to a known class only when the classifier is
confident: predict the arg-max class when its softmax probability is >= T, else "unknown".
`select_softmax_threshold` picks T on validation data where samples of types outside the known
classes are correct only when predicted "unknown"; ties go to the lower threshold (the fewest
rejections that reach the best accuracy).

Calibrate on validation maps and samples only, never on test data. Everything here runs on the
host on NumPy arrays.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import cv2
import numpy as np

__all__ = ["BOX_THRESHOLDS", "SOFTMAX_THRESHOLDS", "UNKNOWN", "boxes_from_map", "box_iou",
           "box_matches", "select_box_threshold", "softmax_predict", "select_softmax_threshold"]

# 0.10, 0.15, ..., 0.90 (17 values): rounded, since 0.05 * k drifts (0.05 * 3 = 0.15000000000000002,
# which would miss a map value of exactly 0.15).
BOX_THRESHOLDS = tuple(np.round(np.arange(2, 19) * 0.05, 2).tolist())
# 0.05, 0.10, ..., 0.95 (19 values).
SOFTMAX_THRESHOLDS = tuple(np.round(np.arange(1, 20) * 0.05, 2).tolist())
# The name `softmax_predict` gives a sample it does not assign to a known class.
UNKNOWN = "unknown"

_NAN = float("nan")
# Maps may overshoot [0, 1] by float rounding (e.g. after a bilinear resize of a min-maxed map).
_MAP_SLACK = 1e-6
# How far a row of softmax probabilities may sum from 1 (float16 / float32 softmax outputs).
_SUM_TOL = 1e-3


def _unit(value, name: str) -> float:
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
  if not 0.0 <= value <= 1.0:   # NaN fails too
    raise ValueError(f"{name} must be in [0, 1], got {value!r}")
  return value


def _thresholds(thresholds) -> np.ndarray:
  grid = np.asarray(thresholds, dtype=np.float64)
  if grid.ndim != 1 or grid.size == 0:
    raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {grid.shape}")
  if not ((grid >= 0.0) & (grid <= 1.0)).all():
    raise ValueError(f"thresholds must lie in [0, 1], got {grid.tolist()}")
  return np.unique(grid)


def _positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return int(value)


def _min_iou(min_iou) -> float:
  min_iou = float(min_iou)
  if not 0.0 < min_iou <= 1.0:
    raise ValueError(f"min_iou must be in (0, 1] (0 would match every box to every region), "
                     f"got {min_iou!r}")
  return min_iou


def _check_map(amap, name: str = "amap") -> np.ndarray:
  amap = np.asarray(amap, dtype=np.float64)
  if amap.ndim != 2 or 0 in amap.shape:
    raise ValueError(f"{name} must be a non-empty 2-D [H, W] map, got shape {amap.shape}")
  if not np.isfinite(amap).all():
    raise ValueError(f"{name} contains NaN or inf")
  if amap.min() < -_MAP_SLACK or amap.max() > 1.0 + _MAP_SLACK:
    raise ValueError(f"{name} must lie in [0, 1] (got [{amap.min():.4g}, {amap.max():.4g}]); "
                     "min-max normalise it first (jaxvad.cam maps already are)")
  return amap


def _check_mask(mask, shape=None) -> np.ndarray:
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
  if shape is not None and mask.shape != shape:
    raise ValueError(f"mask {mask.shape} and map {shape} must have equal shapes")
  return mask.astype(bool)


def _check_boxes(boxes) -> np.ndarray:
  boxes = np.asarray(boxes, dtype=np.float64)
  if boxes.ndim == 1 and boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"boxes must be [K, 4] (x0, y0, x1, y1), got shape {boxes.shape}")
  if not np.isfinite(boxes).all():
    raise ValueError("boxes contain NaN or inf")
  if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
    raise ValueError("every box needs x1 > x0 and y1 > y0 (half-open, non-empty)")
  return boxes


def _component_boxes(binary: np.ndarray, min_area: int) -> np.ndarray:
  """Bounding boxes of the 8-connected components of a bool image with >= min_area pixels,
  largest first (ties: top-most, then left-most; OpenCV's label order is not relied on)."""
  _, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
  stats = stats[1:].astype(np.int64)       # row 0 is the background
  stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_area]
  x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
  w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
  order = np.lexsort((x, y, -stats[:, cv2.CC_STAT_AREA]))
  return np.stack([x, y, x + w, y + h], axis=1)[order].reshape(-1, 4)


def boxes_from_map(amap, threshold: float, *, min_area: int = 1) -> np.ndarray:
  """Boxes around the areas of an anomaly map at or above a threshold (paper 002).

  Args:
    amap: float `[H, W]` anomaly map in [0, 1] (a slack of 1e-6 is allowed for rounding).
    threshold: in [0, 1]; a pixel is anomalous when `amap >= threshold`.
    min_area: components with fewer pixels than this are dropped (specks); the count is of
      component pixels, not of box area.

  Returns:
    int64 `[K, 4]` boxes `(x0, y0, x1, y1)`, half-open (`amap[y0:y1, x0:x1]` is the box), one
    per 8-connected component (diagonal neighbours join), largest component first (ties: the
    top-most, then the left-most); `[0, 4]` when nothing is anomalous.

  Raises:
    ValueError: the map is not a finite 2-D map in [0, 1], the threshold lies outside [0, 1], or
      `min_area` is not a positive integer.
  """
  amap = _check_map(amap)
  threshold = _unit(threshold, "threshold")
  return _component_boxes(amap >= threshold, _positive_int(min_area, "min_area"))


def box_iou(boxes_a, boxes_b) -> np.ndarray:
  """Intersection over union of every pair of half-open `(x0, y0, x1, y1)` boxes.

  Args:
    boxes_a: `[A, 4]` boxes.
    boxes_b: `[B, 4]` boxes.

  Returns:
    float64 `[A, B]`: `iou[i, j]` = area(a_i and b_j) / area(a_i or b_j), in [0, 1].

  Raises:
    ValueError: a box array is not `[K, 4]`, or holds an empty or non-finite box.
  """
  a, b = _check_boxes(boxes_a), _check_boxes(boxes_b)
  w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
  h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
  inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  return inter / (area_a[:, None] + area_b[None, :] - inter)


def _match_counts(boxes: np.ndarray, regions: np.ndarray, min_iou: float) -> dict:
  hit = box_iou(boxes, regions) >= min_iou           # [boxes, regions]
  return {"regions": int(regions.shape[0]), "detected": int(hit.any(axis=0).sum()),
          "boxes": int(boxes.shape[0]), "false_boxes": int((~hit.any(axis=1)).sum())}


def box_matches(boxes, mask, *, min_iou: float = 0.1) -> dict:
  """Detected ground-truth regions and false boxes of one image (the module's detection rule).

  A ground-truth region (8-connected component of `mask`) is detected when some box has IoU >=
  `min_iou` with the region's bounding box; a box is false when no region's bounding box
  reaches `min_iou` with it. Matching is many-to-many (see the module docstring for why and for
  the choice of the default).

  Args:
    boxes: `[K, 4]` half-open `(x0, y0, x1, y1)` boxes, e.g. from `boxes_from_map`.
    mask: `[H, W]` ground truth, nonzero = anomalous pixel.
    min_iou: the IoU a box and a region's bounding box need to match, in (0, 1].

  Returns:
    {"regions", "detected", "boxes", "false_boxes"} as ints.

  Raises:
    ValueError: bad boxes, a mask that is not 2-D, or `min_iou` outside (0, 1].
  """
  boxes = _check_boxes(boxes)
  mask = _check_mask(mask)
  return _match_counts(boxes, _component_boxes(mask, 1), _min_iou(min_iou))


def _box_f1(detected: int, regions: int, correct: int, boxes: int) -> Fraction:
  """F1 of recall detected / regions and precision correct / boxes, exact; 0 without a hit
  (correct boxes exist exactly when some region is detected)."""
  if not detected:
    return Fraction(0)
  return Fraction(2 * detected * correct, detected * boxes + correct * regions)


def select_box_threshold(maps: Sequence, masks: Sequence, *, thresholds=BOX_THRESHOLDS,
                         min_iou: float = 0.1, min_area: int = 1) -> tuple[float, list[dict]]:
  """Paper 002's grid search for the box threshold, on labelled validation maps.

  For every threshold, `boxes_from_map` boxes every map and `box_matches` counts against its
  mask; the counts are summed over the images and the threshold with the best F1 of region
  recall (detected / regions) and box precision ((boxes - false_boxes) / boxes) is kept: it
  rewards finding more defects and penalises false boxes, the paper's "maximum number ... of
  anomaly detections without too many false positives". Ties go to the higher threshold
  (fewer, tighter boxes). Defect-free validation images count too: their boxes are false.

  Args:
    maps: sequence of float `[H, W]` maps in [0, 1] (or one `[N, H, W]` array); shapes may
      differ between images.
    masks: sequence of `[H, W]` ground-truth masks of the same shapes, nonzero = anomalous.
    thresholds: candidate thresholds in [0, 1]; default 0.10, 0.15, ..., 0.90 (the paper's).
    min_iou: see `box_matches`.
    min_area: see `boxes_from_map`.

  Returns:
    `(threshold, table)`: the chosen threshold and one dict per candidate, ascending:
    {"threshold", "regions", "detected", "boxes", "false_boxes", "recall", "precision" (NaN
    without boxes), "f1" (0 when nothing is detected)}.

  Raises:
    ValueError: mismatched or bad maps / masks, bad options, or no anomalous region in any
      validation mask (nothing to detect: the objective is undefined).
  """
  if len(maps) != len(masks):
    raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
  grid = _thresholds(thresholds)
  min_iou, min_area = _min_iou(min_iou), _positive_int(min_area, "min_area")
  checked = []
  for i, (amap, mask) in enumerate(zip(maps, masks)):
    try:
      amap = _check_map(amap)
      mask = _check_mask(mask, amap.shape)
    except ValueError as e:
      raise ValueError(f"image {i}: {e}") from None
    checked.append((amap, _component_boxes(mask, 1)))
  if not sum(regions.shape[0] for _, regions in checked):
    raise ValueError("select_box_threshold needs validation masks with at least one anomalous "
                     "region")
  table, scores = [], []
  for t in grid:
    total = {"regions": 0, "detected": 0, "boxes": 0, "false_boxes": 0}
    for amap, regions in checked:
      counts = _match_counts(_component_boxes(amap >= t, min_area), regions, min_iou)
      for k in total:
        total[k] += counts[k]
    correct = total["boxes"] - total["false_boxes"]
    f1 = _box_f1(total["detected"], total["regions"], correct, total["boxes"])
    scores.append(f1)
    table.append({"threshold": float(t), **total,
                  "recall": total["detected"] / total["regions"],
                  "precision": correct / total["boxes"] if total["boxes"] else _NAN,
                  "f1": float(f1)})
  best = max(scores)
  chosen = max(i for i, s in enumerate(scores) if s == best)   # ascending grid: the highest
  return float(grid[chosen]), table


def _check_probs(probs, class_names) -> tuple[np.ndarray, list[str]]:
  probs = np.asarray(probs, dtype=np.float64)
  names = list(class_names)
  if probs.ndim != 2 or probs.shape[1] == 0:
    raise ValueError(f"probs must be [N, K] softmax probabilities, got shape {probs.shape}")
  if probs.shape[1] != len(names):
    raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(names)} class names")
  if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
    raise ValueError(f"class_names must be distinct strings, got {names}")
  if UNKNOWN in names:
    raise ValueError(f"{UNKNOWN!r} is reserved for rejected samples; rename that class")
  if not np.isfinite(probs).all():
    raise ValueError("probs contain NaN or inf")
  sums = probs.sum(axis=1)
  if (probs < 0).any() or (np.abs(sums - 1.0) > _SUM_TOL).any():
    bad = int(np.argmax(np.abs(sums - 1.0) + (probs < 0).any(axis=1)))
    raise ValueError(f"every row of probs must be non-negative and sum to 1 (row {bad} sums to "
                     f"{sums[bad]:.6g}); pass softmax probabilities (jax.nn.softmax(logits)), "
                     "not logits")
  return probs, names


def softmax_predict(probs, class_names: Sequence[str], threshold: float) -> np.ndarray:
  """Softmax thresholding (paper 002): the most probable class if confident enough, else unknown.

  Args:
    probs: float `[N, K]` softmax probabilities (rows non-negative, summing to 1 within 1e-3).
    class_names: the K known class names (distinct strings, not "unknown").
    threshold: T in [0, 1]; a sample gets its arg-max class when that probability is >= T
      (the first class on ties), else `UNKNOWN`. T <= 1/K never rejects.

  Returns:
    object `[N]` array of class names and "unknown".

  Raises:
    ValueError: bad probabilities or names, or a threshold outside [0, 1].
  """
  probs, names = _check_probs(probs, class_names)
  threshold = _unit(threshold, "threshold")
  choice = np.where(probs.max(axis=1) >= threshold, probs.argmax(axis=1), len(names))
  labels = np.empty(len(names) + 1, dtype=object)
  labels[:] = names + [UNKNOWN]
  return labels[choice]


def select_softmax_threshold(probs, true_names: Sequence[str], class_names: Sequence[str], *,
                             thresholds=SOFTMAX_THRESHOLDS) -> tuple[float, list[dict]]:
  """The softmax threshold with the best open-set accuracy on labelled validation samples.

  A sample whose true name is a known class is correct when predicted as that class; a sample
  of any other type (a defect type the classifier never saw) is correct only when predicted
  "unknown". Ties go to the lower threshold: the fewest rejections that reach the best accuracy
  (with no unknown-type sample in validation, that is the lowest threshold at which no known
  sample's correct prediction is rejected).

  Args:
    probs: float `[N, K]` softmax probabilities of validation samples.
    true_names: N true names; names outside `class_names` are unknown types.
    class_names: the K known class names, in the column order of `probs`.
    thresholds: candidate thresholds in [0, 1]; default 0.05, 0.10, ..., 0.95.

  Returns:
    `(threshold, table)`: the chosen threshold and one dict per candidate, ascending:
    {"threshold", "accuracy", "known_accuracy" (over known-class samples; NaN if none),
    "unknown_recall" (unknown-type samples predicted unknown; NaN if none),
    "predicted_unknown" (count)}.

  Raises:
    ValueError: bad probabilities, names or thresholds, a length mismatch, or no sample.
  """
  probs, names = _check_probs(probs, class_names)
  true_names = list(true_names)
  if len(true_names) != probs.shape[0]:
    raise ValueError(f"{len(true_names)} true names but {probs.shape[0]} rows of probs")
  if not true_names:
    raise ValueError("select_softmax_threshold needs at least one validation sample")
  grid = _thresholds(thresholds)
  index = {n: i for i, n in enumerate(names)}
  truth = np.array([index.get(n, -1) for n in true_names])
  known = truth >= 0
  confidence, top = probs.max(axis=1), probs.argmax(axis=1)
  n_known, n_unknown = int(known.sum()), int((~known).sum())
  table, correct_counts = [], []
  for t in grid:
    accepted = confidence >= t
    right_known = int((known & accepted & (top == truth)).sum())
    right_unknown = int((~known & ~accepted).sum())
    correct_counts.append(right_known + right_unknown)
    table.append({"threshold": float(t),
                  "accuracy": (right_known + right_unknown) / truth.size,
                  "known_accuracy": right_known / n_known if n_known else _NAN,
                  "unknown_recall": right_unknown / n_unknown if n_unknown else _NAN,
                  "predicted_unknown": int((~accepted).sum())})
  chosen = correct_counts.index(max(correct_counts))   # ascending grid: the lowest
  return float(grid[chosen]), table

"""jaxvad.evaluation.localize: boxes, the region detection rule, threshold selection and softmax
thresholding on hand-made maps, masks and probabilities, plus a flood-fill cross-check."""

import math

import numpy as np
import pytest

from jaxvad.evaluation import localize
from tests.naive import metrics as naive_metrics


def _map():
  """8 x 10 map: a 3 x 4 blob at 0.8 (12 px), two diagonal pixels at 0.5 (one 8-connected
  component, 2 px) and a 1 px speck at 0.3 in the top-right corner; background 0."""
  amap = np.zeros((8, 10))
  amap[1:4, 1:5] = 0.8
  amap[5, 6] = amap[6, 7] = 0.5
  amap[0, 9] = 0.3
  return amap


def test_thresholds_grid():
  assert len(localize.BOX_THRESHOLDS) == 17
  assert localize.BOX_THRESHOLDS[0] == 0.1 and localize.BOX_THRESHOLDS[-1] == 0.9
  assert 0.15 in localize.BOX_THRESHOLDS and 0.6 in localize.BOX_THRESHOLDS  # no float drift
  np.testing.assert_allclose(np.diff(localize.BOX_THRESHOLDS), 0.05)
  assert len(localize.SOFTMAX_THRESHOLDS) == 19
  assert (localize.SOFTMAX_THRESHOLDS[0], localize.SOFTMAX_THRESHOLDS[-1]) == (0.05, 0.95)


def test_boxes_from_map_hand():
  amap = _map()
  # Half-open (x0, y0, x1, y1), largest component first; diagonal pixels form one box.
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.3),
                                [[1, 1, 5, 4], [6, 5, 8, 7], [9, 0, 10, 1]])
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.5), [[1, 1, 5, 4], [6, 5, 8, 7]])
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.8), [[1, 1, 5, 4]])  # >= t
  empty = localize.boxes_from_map(amap, 0.9)
  assert empty.shape == (0, 4) and empty.dtype == np.int64
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.0), [[0, 0, 10, 8]])
  # min_area counts component pixels: the diagonal pair has 2, its box 4.
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.3, min_area=2),
                                [[1, 1, 5, 4], [6, 5, 8, 7]])
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.3, min_area=3), [[1, 1, 5, 4]])
  assert localize.boxes_from_map(amap, 0.3, min_area=13).shape == (0, 4)
  # The box slices exactly the blob.
  x0, y0, x1, y1 = localize.boxes_from_map(amap, 0.8)[0]
  assert (amap[y0:y1, x0:x1] == 0.8).all() and (amap == 0.8).sum() == (x1 - x0) * (y1 - y0)


def test_boxes_tie_order():
  amap = np.zeros((6, 6))
  amap[4, 0] = amap[0, 4] = amap[0, 1] = 1.0      # three 1 px components: top-most, left-most
  np.testing.assert_array_equal(localize.boxes_from_map(amap, 0.5),
                                [[1, 0, 2, 1], [4, 0, 5, 1], [0, 4, 1, 5]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_against_flood_fill(seed):
  amap = np.round(np.random.default_rng(seed).random((12, 15)), 1)
  for t in (0.5, 0.7, 0.9):
    want = []
    for region in naive_metrics.regions(amap >= t):
      rows, cols = [r for r, _ in region], [c for _, c in region]
      want.append((-len(region), min(rows), min(cols),
                   [min(cols), min(rows), max(cols) + 1, max(rows) + 1]))
    want = [box for *_, box in sorted(want)]
    np.testing.assert_array_equal(localize.boxes_from_map(amap, t).reshape(-1, 4),
                                  np.array(want).reshape(-1, 4))


def test_boxes_from_map_errors():
  amap = _map()
  for bad in (-0.1, 1.5, float("nan"), "high"):
    with pytest.raises(ValueError, match="threshold"):
      localize.boxes_from_map(amap, bad)
  with pytest.raises(ValueError, match=r"\[0, 1\].*normalise"):
    localize.boxes_from_map(amap * 2, 0.5)
  localize.boxes_from_map(amap + 1e-7, 0.5)          # rounding slack is fine
  with pytest.raises(ValueError, match="2-D"):
    localize.boxes_from_map(amap[None], 0.5)
  with pytest.raises(ValueError, match="NaN"):
    localize.boxes_from_map(np.full((2, 2), np.nan), 0.5)
  for bad in (0, 1.5, True):
    with pytest.raises(ValueError, match="min_area"):
      localize.boxes_from_map(amap, 0.5, min_area=bad)


def test_box_iou_hand():
  iou = localize.box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 6, 6]])
  # Overlap 1 px of 4 + 4 - 1; identical; sharing an edge (half-open: no pixel); disjoint.
  np.testing.assert_allclose(iou, [[1 / 7, 1, 0, 0]])
  assert localize.box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
  with pytest.raises(ValueError, match=r"\[K, 4\]"):
    localize.box_iou([[0, 0, 1]], [[0, 0, 1, 1]])
  with pytest.raises(ValueError, match="x1 > x0"):
    localize.box_iou([[2, 0, 1, 1]], [[0, 0, 1, 1]])


def _mask():
  """10 x 10 mask: a 2 x 2 region (box (1, 1, 3, 3)) and a diagonal pair (box (6, 6, 8, 8))."""
  mask = np.zeros((10, 10), bool)
  mask[1:3, 1:3] = True
  mask[6, 6] = mask[7, 7] = True
  return mask


def test_box_matches_hand():
  mask = _mask()
  # (0, 0, 4, 4) holds the 2 x 2 region: IoU 4 / 16 = 0.25; (5, 0, 9, 3) touches nothing.
  boxes = [[0, 0, 4, 4], [5, 0, 9, 3]]
  assert localize.box_matches(boxes, mask) == {"regions": 2, "detected": 1, "boxes": 2,
                                               "false_boxes": 1}
  assert localize.box_matches(boxes, mask, min_iou=0.25)["detected"] == 1   # >= min_iou
  assert localize.box_matches(boxes, mask, min_iou=0.26) == {"regions": 2, "detected": 0,
                                                             "boxes": 2, "false_boxes": 2}
  # One frame-sized box: IoU 4 / 100 with either region, below 0.1 -> false, nothing detected.
  assert localize.box_matches([[0, 0, 10, 10]], mask) == {"regions": 2, "detected": 0,
                                                          "boxes": 1, "false_boxes": 1}
  # Many-to-many: two boxes on one region both count; exact boxes detect both regions.
  assert localize.box_matches([[1, 1, 3, 3], [1, 1, 3, 4], [6, 6, 8, 8]], mask) == {
      "regions": 2, "detected": 2, "boxes": 3, "false_boxes": 0}
  assert localize.box_matches(np.zeros((0, 4)), mask)["detected"] == 0
  assert localize.box_matches([[0, 0, 2, 2]], np.zeros((4, 4)))["false_boxes"] == 1
  for bad in (0.0, 1.1):
    with pytest.raises(ValueError, match="min_iou"):
      localize.box_matches(boxes, mask, min_iou=bad)
  with pytest.raises(ValueError, match="2-D"):
    localize.box_matches(boxes, mask[None])


def _validation_set():
  """Image 0: defect at 0.7; image 1: a faint defect at 0.45; image 2: defect-free with a
  0.4 noise blob; background 0.05. Masks mark the defects exactly."""
  maps, masks = [np.full((12, 12), 0.05) for _ in range(3)], [np.zeros((12, 12), bool)
                                                               for _ in range(3)]
  maps[0][2:5, 3:6], masks[0][2:5, 3:6] = 0.7, True
  maps[1][7:9, 1:4], masks[1][7:9, 1:4] = 0.45, True
  maps[2][5:7, 5:7] = 0.4
  return maps, masks


def test_select_box_threshold_picks_the_obvious():
  maps, masks = _validation_set()
  threshold, table = localize.select_box_threshold(maps, masks)
  # t <= 0.4: both defects found, the noise blob is a false box (F1 of 1 and 2/3 = 0.8);
  # t = 0.45: both found, no false box (F1 1); 0.5-0.7: one of two found (2/3); above: 0.
  assert threshold == 0.45
  assert [row["threshold"] for row in table] == list(localize.BOX_THRESHOLDS)
  rows = {row["threshold"]: row for row in table}
  assert rows[0.4] == {"threshold": 0.4, "regions": 2, "detected": 2, "boxes": 3,
                       "false_boxes": 1, "recall": 1.0, "precision": 2 / 3,
                       "f1": pytest.approx(0.8)}
  assert rows[0.45]["f1"] == 1.0
  assert rows[0.7]["f1"] == pytest.approx(2 / 3)
  assert rows[0.75]["f1"] == 0.0 and math.isnan(rows[0.75]["precision"])


def test_select_box_threshold_ties_go_higher():
  maps, masks = _validation_set()
  maps[1][7:9, 1:4] = 0.7          # both defects at 0.7: F1 = 1 for every t in 0.45 .. 0.7
  threshold, table = localize.select_box_threshold(maps, masks)
  assert threshold == 0.7
  assert [r["threshold"] for r in table if r["f1"] == 1.0] == [0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
  # A custom grid (unsorted, duplicated) is sorted and de-duplicated.
  threshold, table = localize.select_box_threshold(maps, masks, thresholds=[0.5, 0.2, 0.5])
  assert threshold == 0.5 and [r["threshold"] for r in table] == [0.2, 0.5]
  # Stacked arrays work like lists.
  assert localize.select_box_threshold(np.stack(maps), np.stack(masks))[0] == 0.7


def test_select_box_threshold_errors():
  maps, masks = _validation_set()
  with pytest.raises(ValueError, match="at least one anomalous region"):
    localize.select_box_threshold(maps[2:], masks[2:])
  with pytest.raises(ValueError, match="3 maps but 2 masks"):
    localize.select_box_threshold(maps, masks[:2])
  with pytest.raises(ValueError, match="image 1: mask"):
    localize.select_box_threshold(maps, [masks[0], masks[1][:5], masks[2]])
  with pytest.raises(ValueError, match="image 0: amap"):
    localize.select_box_threshold([maps[0] * 3] + maps[1:], masks)
  for bad in ([], [0.5, 1.2], [[0.5]]):
    with pytest.raises(ValueError, match="thresholds"):
      localize.select_box_threshold(maps, masks, thresholds=bad)
  with pytest.raises(ValueError, match="min_iou"):
    localize.select_box_threshold(maps, masks, min_iou=0)


NAMES = ["scratch", "dent", "stain"]
PROBS = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])


def test_softmax_predict_hand():
  got = localize.softmax_predict(PROBS, NAMES, 0.5)
  assert got.dtype == object and got.tolist() == ["scratch", "unknown", "stain"]
  assert localize.softmax_predict(PROBS, NAMES, 0.4).tolist() == ["scratch", "scratch", "stain"]
  assert localize.softmax_predict(PROBS, NAMES, 0.0).tolist() == ["scratch", "scratch", "stain"]
  assert localize.softmax_predict(PROBS, NAMES, 1.0).tolist() == ["unknown"] * 3
  assert localize.softmax_predict(PROBS, tuple(NAMES), 0.8).tolist() == [
      "unknown", "unknown", "stain"]


def test_select_softmax_threshold_hand():
  probs = np.array([
      [0.9, 0.05, 0.05],    # scratch, confident
      [0.1, 0.85, 0.05],    # dent, confident
      [0.05, 0.15, 0.8],    # stain, confident
      [0.5, 0.3, 0.2],      # crack: unknown type
      [0.3, 0.45, 0.25],    # hole: unknown type
      [0.6, 0.3, 0.1],      # dent, misclassified: wrong whether accepted or rejected
  ])
  truth = ["scratch", "dent", "stain", "crack", "hole", "dent"]
  threshold, table = localize.select_softmax_threshold(probs, truth, NAMES)
  # Correct: known samples with max prob >= t (0.9, 0.85, 0.8) + unknown types with < t (0.5,
  # 0.45): 3 up to 0.45, 4 at 0.5, 5 from 0.55 to 0.8, 4 at 0.85 -> the lowest of the 5s.
  assert threshold == 0.55
  rows = {row["threshold"]: row for row in table}
  assert [row["threshold"] for row in table] == list(localize.SOFTMAX_THRESHOLDS)
  assert rows[0.55] == {"threshold": 0.55, "accuracy": pytest.approx(5 / 6),
                        "known_accuracy": 0.75, "unknown_recall": 1.0, "predicted_unknown": 2}
  assert rows[0.65]["predicted_unknown"] == 3 and rows[0.65]["accuracy"] == pytest.approx(5 / 6)
  assert rows[0.45]["accuracy"] == pytest.approx(0.5) and rows[0.85]["accuracy"] == pytest.approx(
      4 / 6)
  # The table's accuracy is softmax_predict's, threshold by threshold.
  for row in table:
    pred = localize.softmax_predict(probs, NAMES, row["threshold"])
    want = [p == (t if t in NAMES else "unknown") for p, t in zip(pred, truth)]
    assert row["accuracy"] == pytest.approx(np.mean(want))


def test_select_softmax_threshold_without_unknown_types():
  probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.6, 0.2]])
  threshold, table = localize.select_softmax_threshold(probs, ["scratch", "dent"], NAMES)
  assert threshold == 0.05                      # every t <= 0.6 ties: the lowest
  assert all(math.isnan(row["unknown_recall"]) for row in table)
  threshold, _ = localize.select_softmax_threshold(probs, ["x", "y"], NAMES,
                                                   thresholds=[0.5, 0.95])
  assert threshold == 0.95                      # only unknown types: reject both


def test_softmax_errors():
  with pytest.raises(ValueError, match="sum to 1.*not logits"):
    localize.softmax_predict(np.log(PROBS), NAMES, 0.5)
  with pytest.raises(ValueError, match="sum to 1"):
    localize.softmax_predict(PROBS * 0.9, NAMES, 0.5)
  with pytest.raises(ValueError, match="non-negative"):
    localize.softmax_predict([[1.2, -0.2, 0.0]], NAMES, 0.5)
  localize.softmax_predict(PROBS + 1e-4 / 3, NAMES, 0.5)      # float rounding is fine
  with pytest.raises(ValueError, match="3 columns but there are 2"):
    localize.softmax_predict(PROBS, NAMES[:2], 0.5)
  with pytest.raises(ValueError, match=r"\[N, K\]"):
    localize.softmax_predict(PROBS[0], NAMES, 0.5)
  with pytest.raises(ValueError, match="NaN"):
    localize.softmax_predict([[np.nan, 0.5, 0.5]], NAMES, 0.5)
  with pytest.raises(ValueError, match="distinct"):
    localize.softmax_predict(PROBS, ["a", "a", "b"], 0.5)
  with pytest.raises(ValueError, match="reserved"):
    localize.softmax_predict(PROBS, ["a", "unknown", "b"], 0.5)
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="threshold"):
      localize.softmax_predict(PROBS, NAMES, bad)
  with pytest.raises(ValueError, match="2 true names but 3 rows"):
    localize.select_softmax_threshold(PROBS, ["a", "b"], NAMES)
  with pytest.raises(ValueError, match="thresholds"):
    localize.select_softmax_threshold(PROBS, ["a", "b", "c"], NAMES, thresholds=[0.5, 2.0])
  with pytest.raises(ValueError, match="at least one"):
    localize.select_softmax_threshold(np.zeros((0, 3)), [], NAMES)

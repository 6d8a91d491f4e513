"""jaxvad.evaluation.metrics: hand-computed examples, scikit-learn cross-checks and slow references."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from jaxvad.evaluation import metrics
from tests import naive
from tests.naive import metrics as naive_metrics

# Six frames, sorted by score: 0.9 A, 0.8 A, 0.4 N, 0.35 A, 0.2 N, 0.1 N (A = anomalous).
LABELS = np.array([0, 0, 1, 1, 0, 1], bool)
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])


def _random(seed, n=200, p=0.3, ties=False):
  rng = np.random.default_rng(seed)
  labels = rng.random(n) < p
  scores = rng.normal(size=n) + labels
  if ties:
    scores = np.round(scores, 1)
  return labels, scores


def test_frame_roc_hand():
  roc = metrics.frame_roc(LABELS, SCORES)
  # Lowering the threshold through 0.9, 0.8, 0.4, 0.35, 0.2, 0.1 (3 anomalous, 3 normal frames):
  # A A N A N N -> TPR steps by 1/3 on A, FPR by 1/3 on N.
  np.testing.assert_allclose(roc["fpr"], [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
  np.testing.assert_allclose(roc["tpr"], [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
  assert roc["thresholds"][0] == np.inf
  np.testing.assert_allclose(roc["thresholds"][1:], [0.9, 0.8, 0.4, 0.35, 0.2, 0.1])
  for t, f, p in zip(roc["thresholds"], roc["fpr"], roc["tpr"]):
    c = metrics.confusion_counts(LABELS, SCORES, t)  # every vertex is realised by score >= t
    assert (c["FP"] / 3, c["TP"] / 3) == pytest.approx((f, p))
  with pytest.raises(ValueError, match="both"):
    metrics.frame_roc(np.zeros(3, bool), [1.0, 2.0, 3.0])


def test_frame_eer_hand_vertex():
  # At threshold 0.4 (vertex (1/3, 2/3)): FPR = 1/3 and FNR = 1 - 2/3 = 1/3, so EER = 1/3 there.
  assert metrics.frame_eer(LABELS, SCORES) == pytest.approx((1 / 3, 0.4))
  assert metrics.frame_eer(LABELS, SCORES, method="ano_pred") == pytest.approx((1 / 3, 0.4))


def test_frame_eer_hand_interpolated():
  # Scores 5..1 for A N A N N; thresholds inf, 5, 4, 3, 2, 1 give vertices (FPR, TPR) =
  # (0,0) (0,1/2) (1/3,1/2) (1/3,1) (2/3,1) (1,1); FPR - FNR: -1, -1/2, -1/6, +1/3, ...: the
  # crossing lies on the vertical segment FPR = 1/3 from (1/3, 1/2) to (1/3, 1), where FNR falls
  # from 1/2 to 0 and meets 1/3: EER = 1/3. The nearest vertex is (1/3, 1/2) (|gap| 1/6), at
  # threshold 4; ano_pred's cal_eer returns that vertex's miss rate, 1/2, without interpolating.
  labels, scores = np.array([1, 0, 1, 0, 0], bool), np.array([5.0, 4, 3, 2, 1])
  assert metrics.frame_eer(labels, scores) == pytest.approx((1 / 3, 4.0))
  assert metrics.frame_eer(labels, scores, method="ano_pred") == pytest.approx((0.5, 4.0))
  assert metrics.frame_eer(labels, scores)[0] == pytest.approx(naive_metrics.eer(labels, scores))
  # Two tied frames, one of each class: the ROC is the diagonal, EER = 1/2 (midway).
  assert metrics.frame_eer([True, False], [1.0, 1.0])[0] == pytest.approx(0.5)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_frame_eer_against_brute_force_and_ano_pred(seed, ties):
  labels, scores = _random(seed, n=120, ties=ties)
  eer, threshold = metrics.frame_eer(labels, scores)
  assert eer == pytest.approx(naive_metrics.eer(labels, scores), abs=1e-12)
  c = metrics.confusion_counts(labels, scores, threshold)
  fpr, fnr = c["FP"] / (~labels).sum(), c["FN"] / labels.sum()
  # The threshold's vertex is the nearest to the crossing: no other vertex is closer.
  gaps = [abs(f - (1 - t)) for _, f, t in naive_metrics.roc_points(labels, scores)]
  assert abs(fpr - fnr) == pytest.approx(min(gaps), abs=1e-12)
  # ano_pred's cal_eer on its regularity score (any increasing map of -score) and pos_label=0.
  fpr_n, tpr_n, _ = skm.roc_curve(labels.astype(int), -scores, pos_label=0)
  expected = fpr_n[np.nanargmin(np.abs(fpr_n + tpr_n - 1))]
  assert metrics.frame_eer(labels, scores, method="ano_pred")[0] == pytest.approx(expected)


def test_frame_eer_single_class_and_errors():
  assert all(math.isnan(v) for v in metrics.frame_eer(np.ones(4, bool), np.arange(4.0)))
  with pytest.raises(ValueError, match="method"):
    metrics.frame_eer(LABELS, SCORES, method="nearest")
  with pytest.raises(ValueError, match="NaN"):
    metrics.frame_eer(LABELS, np.full(6, np.nan))


def test_auroc_aupr_against_sklearn_and_naive():
  labels, scores = _random(4, ties=True)
  assert metrics.frame_auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
  assert metrics.frame_auroc(labels, scores) == pytest.approx(naive.auroc(labels, scores))
  assert metrics.frame_aupr(labels, scores) == pytest.approx(
      skm.average_precision_score(labels, scores))
  # Hand: 9 anomalous-normal pairs, anomalous wins all but 0.35 < 0.4: AUROC = 8/9.
  assert metrics.frame_auroc(LABELS, SCORES) == pytest.approx(8 / 9)
  # AP: precision at each anomalous hit in rank order: 1/1, 2/2, 3/4 -> mean 11/12.
  assert metrics.frame_aupr(LABELS, SCORES) == pytest.approx(11 / 12)


def test_confusion_counts_hand():
  # Flag >= 0.35: 0.4 (N), 0.35 (A), 0.8 (A), 0.9 (A) -> TP 3, FP 1; unflagged 0.1, 0.2 -> TN 2.
  assert metrics.confusion_counts(LABELS, SCORES, 0.35) == {"TP": 3, "FN": 0, "FP": 1, "TN": 2}
  # Flag >= 0.85: only 0.9 (A).
  assert metrics.confusion_counts(LABELS, SCORES, 0.85) == {"TP": 1, "FN": 2, "FP": 0, "TN": 3}
  assert metrics.confusion_counts(LABELS, SCORES, -np.inf) == {"TP": 3, "FN": 0, "FP": 3, "TN": 0}
  assert metrics.confusion_counts(LABELS, SCORES, np.inf) == {"TP": 0, "FN": 3, "FP": 0, "TN": 3}
  with pytest.raises(ValueError, match="NaN"):
    metrics.confusion_counts(LABELS, SCORES, float("nan"))
  with pytest.raises(ValueError, match="shapes"):
    metrics.confusion_counts(LABELS, SCORES[:-1], 0.5)


@pytest.mark.parametrize("seed", [5, 6])
def test_confusion_counts_against_sklearn(seed):
  labels, scores = _random(seed, ties=True)
  for t in np.quantile(scores, [0.1, 0.5, 0.9]):
    c = metrics.confusion_counts(labels, scores, t)
    tn, fp, fn, tp = skm.confusion_matrix(labels, scores >= t, labels=[False, True]).ravel()
    assert c == {"TP": tp, "FN": fn, "FP": fp, "TN": tn}
    assert c == naive_metrics.confusion_counts(labels, scores, t)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=1, max_size=40),
       st.integers(-6, 6))
def test_confusion_counts_sum_to_n(frames, threshold):
  labels = np.array([f[0] for f in frames])
  scores = np.array([f[1] for f in frames], float)
  c = metrics.confusion_counts(labels, scores, threshold)
  assert sum(c.values()) == len(frames)
  assert c["TP"] + c["FN"] == labels.sum()
  assert c == naive_metrics.confusion_counts(labels, scores, threshold)


def test_confusion_rates_hand():
  r = metrics.confusion_rates({"TP": 3, "FN": 1, "FP": 2, "TN": 4})
  # TPR 3/4, FPR 2/6, precision 3/5, F1 = 6/(6+2+1), accuracy 7/10, balanced (3/4 + 4/6)/2.
  assert r["tpr"] == pytest.approx(0.75) and r["fnr"] == pytest.approx(0.25)
  assert r["fpr"] == pytest.approx(1 / 3) and r["tnr"] == pytest.approx(2 / 3)
  assert r["precision"] == pytest.approx(0.6) and r["f1"] == pytest.approx(6 / 9)
  assert r["accuracy"] == pytest.approx(0.7)
  assert r["balanced_accuracy"] == pytest.approx((0.75 + 2 / 3) / 2)
  empty = metrics.confusion_rates({"TP": 0, "FN": 2, "FP": 0, "TN": 0})
  assert math.isnan(empty["fpr"]) and math.isnan(empty["precision"]) and empty["f1"] == 0.0
  with pytest.raises(ValueError, match="keys"):
    metrics.confusion_rates({"TP": 1})


def test_intervals_hand_and_naive():
  assert metrics.intervals([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
  assert metrics.intervals([]) == [] and metrics.intervals([1, 1]) == [(0, 2)]
  rng = np.random.default_rng(7)
  for _ in range(20):
    mask = rng.random(rng.integers(0, 30)) < 0.5
    assert metrics.intervals(mask) == naive_metrics.intervals(mask)
  with pytest.raises(ValueError, match="1-D"):
    metrics.intervals(np.zeros((2, 2)))


def test_event_metrics_hand():
  # Video 0: N N A | video 1: A N A. Flags at score >= 0.5: only 0.8 and 0.9 (video 1, frames 0, 2).
  # Anomalous events: v0 [2,3) missed, v1 [0,1) and [2,3) detected -> 2/3.
  # Normal intervals: v0 [0,2), v1 [1,2): no flag -> 0/2.
  vids = [0, 0, 0, 1, 1, 1]
  m = metrics.event_metrics(LABELS, SCORES >= 0.5, video_ids=vids, details=True)
  assert (m["anomalous_events"], m["detected_events"], m["missed_events"]) == (3, 2, 1)
  assert (m["normal_intervals"], m["false_alarm_intervals"]) == (2, 0)
  assert m["event_tpr"] == pytest.approx(2 / 3) and m["event_fpr"] == 0.0
  assert m["intervals"][1] == {"video": 0, "start": 2, "end": 3, "anomalous": True,
                               "flagged": False}
  assert m["intervals"][2] == {"video": 1, "start": 0, "end": 1, "anomalous": True,
                               "flagged": True}
  # Without video ids, frames 2-3 (A A) merge into one event across the boundary: 2 events.
  assert metrics.event_metrics(LABELS, SCORES >= 0.5)["anomalous_events"] == 2
  # One flag in a long normal run makes the whole run one false alarm.
  m = metrics.event_metrics([0, 0, 0, 0, 1], [0, 0, 1, 0, 0])
  assert (m["false_alarm_intervals"], m["normal_intervals"], m["detected_events"]) == (1, 1, 0)
  assert math.isnan(metrics.event_metrics([0, 0], [1, 0])["event_tpr"])


def test_event_metrics_errors():
  with pytest.raises(ValueError, match="contiguous"):
    metrics.event_metrics([0, 1, 0], [0, 0, 0], video_ids=["a", "b", "a"])
  with pytest.raises(ValueError, match="shapes"):
    metrics.event_metrics([0, 1], [0])
  with pytest.raises(ValueError, match="video_ids"):
    metrics.event_metrics([0, 1], [0, 1], video_ids=[0])


def test_event_metrics_against_loops():
  rng = np.random.default_rng(8)
  lengths = [17, 1, 30, 9]
  labels = [rng.random(n) < 0.4 for n in lengths]
  flags = [rng.random(n) < 0.2 for n in lengths]
  ids = np.repeat(np.arange(4), lengths)
  got = metrics.event_metrics(np.concatenate(labels), np.concatenate(flags), video_ids=ids)
  want = naive_metrics.event_metrics(labels, flags)
  assert {k: got[k] for k in want} == want


def test_event_roc_hand():
  # Cases (peak score per run): v0 N[0,2) 0.4, A[2,3) 0.35; v1 A 0.8, N 0.2, A 0.9.
  # Mann-Whitney over 3 x 2 pairs: 0.35 loses to 0.4, all others win -> AUC 5/6.
  roc = metrics.event_roc([LABELS[:3], LABELS[3:]], [SCORES[:3], SCORES[3:]])
  assert roc["auc"] == pytest.approx(5 / 6)
  assert (roc["anomalous_events"], roc["normal_intervals"]) == (3, 2)
  assert (roc["fpr"][0], roc["tpr"][0]) == (0, 0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1, 1)
  np.testing.assert_allclose(roc["tpr"], [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
  np.testing.assert_allclose(roc["fpr"], [0, 0, 0, 0.5, 0.5, 1])
  assert metrics.event_auc([LABELS[:3], LABELS[3:]], [SCORES[:3], SCORES[3:]]) == roc["auc"]
  single = metrics.event_roc([np.ones(3, bool)], [np.arange(3.0)])
  assert math.isnan(single["auc"]) and single["fpr"].size == 0
  with pytest.raises(ValueError, match="label arrays"):
    metrics.event_roc([LABELS], [SCORES, SCORES])
  with pytest.raises(ValueError, match="video 0"):
    metrics.event_roc([LABELS], [SCORES[:2]])


@pytest.mark.parametrize("seed", [9, 10])
def test_event_roc_against_threshold_sweep(seed):
  rng = np.random.default_rng(seed)
  labels = [rng.random(n) < 0.3 for n in (25, 40, 12)]
  scores = [np.round(rng.normal(size=len(l)) + l, 1) for l in labels]
  roc = metrics.event_roc(labels, scores)
  points, area = naive_metrics.event_roc(labels, scores)
  assert roc["auc"] == pytest.approx(area, abs=1e-12)
  assert set(zip(roc["fpr"].round(12), roc["tpr"].round(12))) == {
      (round(f, 12), round(t, 12)) for f, t in points}
  # The event AUC is the AUROC (ties 1/2) of one case per interval scored by its peak.
  cases = [c for l, s in zip(labels, scores)
           for c in naive_metrics.interval_cases(list(l), list(s))]
  kinds, peaks = [k for k, _ in cases], [max(v) for _, v in cases]
  assert roc["auc"] == pytest.approx(naive.auroc(kinds, peaks), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=30),
       st.integers(0, 6), st.integers(0, 6))
def test_event_rates_monotone_in_threshold(frames, t1, t2):
  labels = np.array([f[0] for f in frames])
  scores = np.array([f[1] for f in frames], float)
  lo, hi = sorted((t1, t2))
  at_lo = metrics.event_metrics(labels, scores >= lo)
  at_hi = metrics.event_metrics(labels, scores >= hi)
  assert at_hi["detected_events"] <= at_lo["detected_events"]
  assert at_hi["false_alarm_intervals"] <= at_lo["false_alarm_intervals"]


# --------------------------------------------------------------------------- pixel level


def _pixel_case(seed, shapes=((6, 7), (5, 9), (8, 8), (4, 5)), p=0.25):
  """Random masks (many small 8-connected regions, the last image defect-free) and maps with
  ties (rounded), defect pixels scoring higher on average."""
  rng = np.random.default_rng(seed)
  masks = [rng.random(s) < p for s in shapes]
  masks[-1][:] = False
  maps = [np.round(rng.normal(size=m.shape) + 1.5 * m, 1) for m in masks]
  return masks, maps


def test_pixel_auroc_against_pairs_and_sklearn():
  masks, maps = _pixel_case(20)
  labels = np.concatenate([m.ravel() for m in masks])
  scores = np.concatenate([a.ravel() for a in maps])
  got = metrics.pixel_auroc(masks, maps)
  assert got == pytest.approx(naive.auroc(labels, scores), abs=1e-12)
  # A stacked [N, H, W] array pools the same pixels as the list of its images.
  stacked_masks, stacked_maps = np.stack([m[:4, :5] for m in masks]), np.stack(
      [a[:4, :5] for a in maps])
  assert metrics.pixel_auroc(stacked_masks, stacked_maps) == pytest.approx(
      naive.auroc(stacked_masks.ravel(), stacked_maps.ravel()), abs=1e-12)
  # MVTec's 0/255 masks: nonzero = anomalous.
  assert metrics.pixel_auroc([m.astype(np.uint8) * 255 for m in masks], maps) == got


def test_pixel_auroc_one_class_and_errors():
  assert math.isnan(metrics.pixel_auroc([np.zeros((3, 3), bool)], [np.ones((3, 3))]))
  assert math.isnan(metrics.pixel_auroc([np.ones((3, 3), bool)], [np.ones((3, 3))]))
  assert metrics.pixel_auroc([[[True, False]]], [[[0.9, 0.1]]]) == 1.0
  with pytest.raises(ValueError, match="equal shapes"):
    metrics.pixel_auroc([np.zeros((3, 3), bool)], [np.zeros((3, 4))])
  with pytest.raises(ValueError, match="1 masks but 2 maps"):
    metrics.pixel_auroc([np.zeros((3, 3), bool)], [np.zeros((3, 3))] * 2)
  with pytest.raises(ValueError, match="NaN"):
    metrics.pixel_auroc([np.eye(2, dtype=bool)], [np.array([[0.0, np.nan], [0, 1]])])
  with pytest.raises(ValueError, match="at least one image"):
    metrics.pixel_auroc([], [])


def test_pro_curve_hand():
  # One row: regions A = pixels {0, 1} and B = {5}; normal pixels {2, 3, 4}.
  mask = np.array([[1, 1, 0, 0, 0, 1]], bool)
  amap = np.array([[0.9, 0.5, 0.8, 0.1, 0.2, 0.7]])
  # Lowering t through 0.9 (half of A), 0.8 (a normal pixel), 0.7 (all of B), 0.5 (all of A),
  # 0.2, 0.1 (normal pixels): PRO = mean(A, B) fractions, FPR = flagged normal / 3.
  curve = metrics.pro_curve([mask], [amap])
  np.testing.assert_allclose(curve["fpr"], [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
  np.testing.assert_allclose(curve["pro"], [0, 0.25, 0.25, 0.75, 1, 1, 1])
  np.testing.assert_allclose(curve["thresholds"], [np.inf, 0.9, 0.8, 0.7, 0.5, 0.2, 0.1])
  assert (curve["regions"], curve["normal_pixels"]) == (2, 3)
  # Areas: [0, 1/3] at PRO 0.25, then 1 -> 1/12 + (x - 1/3) up to x.
  assert metrics.pro_auc([mask], [amap], max_fpr=1.0) == pytest.approx(0.75)
  assert metrics.pro_auc([mask], [amap], max_fpr=0.5) == pytest.approx((1 / 12 + 1 / 6) / 0.5)
  assert metrics.pro_auc([mask], [amap]) == pytest.approx(0.25)   # 0.3 x 0.25 / 0.3


def test_pro_regions_are_8_connected():
  # Diagonal neighbours (0, 0) and (1, 1) are one region (MVTec: 3 x 3 all-ones structure),
  # (3, 3) another. Flagging (0, 0) alone: 8-connected -> PRO (1/2 + 0) / 2 = 1/4 (4-connected
  # would give three regions and (1 + 0 + 0) / 3).
  mask = np.zeros((4, 4), bool)
  mask[0, 0] = mask[1, 1] = mask[3, 3] = True
  amap = np.zeros((4, 4))
  amap[0, 0] = 1.0
  curve = metrics.pro_curve(mask[None], amap[None])
  assert curve["regions"] == 2
  assert curve["pro"][1] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_pro_against_threshold_loop(seed):
  masks, maps = _pixel_case(seed)
  curve = metrics.pro_curve(masks, maps)
  points = naive_metrics.pro_points(masks, maps)
  assert curve["regions"] == sum(len(naive_metrics.regions(m)) for m in masks)
  np.testing.assert_allclose(curve["thresholds"], [t for t, _, _ in points])
  np.testing.assert_allclose(curve["fpr"], [f for _, f, _ in points], atol=1e-12)
  np.testing.assert_allclose(curve["pro"], [p for _, _, p in points], atol=1e-12)
  for max_fpr in (0.3, 0.05, 1.0, 1 / 3):
    assert metrics.pro_auc(masks, maps, max_fpr=max_fpr) == pytest.approx(
        naive_metrics.pro_auc(masks, maps, max_fpr), abs=1e-12)


def test_pro_auc_analytic_cases():
  masks, _ = _pixel_case(24)
  perfect = [m.astype(float) for m in masks]
  assert metrics.pro_auc(masks, perfect) == pytest.approx(1.0)
  assert metrics.pro_auc(masks, [1.0 - p for p in perfect]) == pytest.approx(0.0, abs=1e-12)
  # A constant map flags nothing or everything: the curve is the line (0, 0) - (1, 1).
  constant = [np.full(m.shape, 0.5) for m in masks]
  assert metrics.pro_auc(masks, constant) == pytest.approx(0.15)
  assert metrics.pro_auc(masks, constant, max_fpr=1.0) == pytest.approx(0.5)
  # Undefined: no anomalous region, or no normal pixel -> NaN (pro_curve raises).
  normal_only = [np.zeros((3, 3), bool)]
  assert math.isnan(metrics.pro_auc(normal_only, [np.ones((3, 3))]))
  assert math.isnan(metrics.pro_auc([np.ones((3, 3), bool)], [np.ones((3, 3))]))
  with pytest.raises(ValueError, match="at least one anomalous region"):
    metrics.pro_curve(normal_only, [np.ones((3, 3))])


def test_pro_errors():
  mask, amap = np.eye(3, dtype=bool), np.eye(3)
  for bad in (0.0, -0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="max_fpr"):
      metrics.pro_auc([mask], [amap], max_fpr=bad)
  with pytest.raises(ValueError, match=r"\[N, H, W\]"):
    metrics.pro_auc(mask, amap)          # one [H, W] image needs [None]
  with pytest.raises(ValueError, match="2-D"):
    metrics.pro_curve([mask.ravel()], [amap.ravel()])
  with pytest.raises(ValueError, match="image 1"):
    metrics.pro_auc([mask, mask], [amap, amap[:2]])


# --------------------------------------------------------------------------- pixel bootstrap


def _pixel_clips(seed, shapes=((3, 6, 7), (2, 5, 9), (4, 8, 8), (1, 4, 5)), p=0.25,
                 round_to=1):
  """Random clips `[T, H, W]` (the last defect-free), as `_pixel_case`'s images; `round_to=None`
  leaves the maps continuous (every pixel value distinct)."""
  rng = np.random.default_rng(seed)
  masks = [rng.random(s) < p for s in shapes]
  masks[-1][:] = False
  maps = [rng.normal(size=m.shape) + 1.5 * m for m in masks]
  if round_to is not None:
    maps = [np.round(a, round_to) for a in maps]
  return masks, maps


def _frames(per_clip, copies=None):
  """The frames of the clips, clip i repeated copies[i] times (default once)."""
  copies = [1] * len(per_clip) if copies is None else copies
  return [f for clip, c in zip(per_clip, copies) for _ in range(int(c)) for f in clip]


def _binned(masks, maps, multiplicities, *, bins, max_fpr=0.3):
  stats = metrics._pixel_bin_stats(metrics._pixel_clips(masks, maps), bins)
  return metrics._binned_pixel_metrics(stats, multiplicities, max_fpr=max_fpr)


@pytest.mark.parametrize("seed,round_to", [(30, 1), (31, 1), (32, None), (33, None), (34, 0)])
def test_binned_pixel_metrics_are_exact_with_a_bin_per_value(seed, round_to):
  # At most `bins` distinct values: every value has its own bin, every threshold of the exact
  # curves is a bin edge, and binned = exact up to float rounding, at any multiplicities.
  masks, maps = _pixel_clips(seed, round_to=round_to)
  rng = np.random.default_rng(seed)
  rows = np.concatenate([np.ones((1, 4)), rng.integers(0, 3, size=(5, 4))]).astype(float)
  rows[-1] = [2, 0, 1, 1]
  for max_fpr in (0.3, 0.05, 1.0):
    got = _binned(masks, maps, rows, bins=10_000, max_fpr=max_fpr)
    for r, copies in enumerate(rows):
      fm, fa = _frames(masks, copies), _frames(maps, copies)
      auroc = metrics.pixel_auroc(fm, fa)
      pro = metrics.pro_auc(fm, fa, max_fpr=max_fpr)
      if math.isnan(auroc):
        assert math.isnan(got["pixel_auroc"][r]) and math.isnan(got["pro"][r])
        continue
      assert got["pixel_auroc"][r] == pytest.approx(auroc, abs=1e-12)
      assert got["pro"][r] == pytest.approx(pro, abs=1e-12)


@pytest.mark.parametrize("seed", [35, 36, 37])
def test_binned_pixel_metrics_close_to_exact_with_fewer_bins(seed):
  # Continuous maps, 4444 pixels in 256 bins (17 or 18 a bin): the binned curves are chords
  # through a subset of the exact vertices, close to them.
  shapes = ((4, 16, 20), (3, 24, 12), (5, 10, 30), (2, 20, 20))
  masks, maps = _pixel_clips(seed, shapes=shapes, p=0.1, round_to=None)
  got = _binned(masks, maps, np.ones(4), bins=256)
  assert got["pixel_auroc"][0] == pytest.approx(metrics.pixel_auroc(_frames(masks),
                                                                    _frames(maps)), abs=1e-3)
  assert got["pro"][0] == pytest.approx(metrics.pro_auc(_frames(masks), _frames(maps)),
                                        abs=2e-3)
  stats = metrics._pixel_bin_stats(metrics._pixel_clips(masks, maps), 256)
  assert stats["edges"].size == 256
  counts = stats["pos"].sum(axis=0) + stats["neg"].sum(axis=0)    # equally populated bins
  assert (counts.min(), counts.max()) == (4444 // 256, 4444 // 256 + 1)


def test_pixel_bootstrap_matches_the_one_resample_at_a_time_reference():
  masks, maps = _pixel_clips(40, shapes=((2, 5, 6), (1, 4, 7), (2, 6, 5), (1, 5, 5)))
  masks.append(np.ones((1, 3, 3), bool))                # defect only: regions, no normal pixel
  maps.append(np.round(np.random.default_rng(41).normal(size=(1, 3, 3)), 1))
  fast = metrics.pixel_bootstrap_intervals(masks, maps, resamples=40, seed=3, max_fpr=0.2)
  slow = naive_metrics.pixel_bootstrap_intervals(masks, maps, resamples=40, seed=3, max_fpr=0.2)
  assert fast["bins"] < 1024                            # rounded maps: a bin per value, exact
  for name in ("pixel_auroc", "pro"):
    np.testing.assert_allclose(fast[name], slow[name], atol=1e-12)
  assert fast["skipped"] == slow["skipped"]
  assert fast["regions"] == sum(len(naive_metrics.regions(f)) for f in _frames(masks))


def test_pixel_bootstrap_draws_the_clips_bootstrap_intervals_draws():
  # Clips of 1 x 1 frames: pixel AUROC is frame AUROC, so with the same seed the pixel bootstrap
  # must give bootstrap_intervals' micro AUROC interval (same resamples, same skips).
  rng = np.random.default_rng(42)
  labels = [rng.random(20) < 0.3 for _ in range(7)]
  labels[0][:] = False
  scores = [np.round(rng.normal(size=20) + y, 1) for y in labels]
  frame = metrics.bootstrap_intervals(labels, scores, resamples=300, seed=11)
  pixel = metrics.pixel_bootstrap_intervals([y[:, None, None] for y in labels],
                                            [s[:, None, None] for s in scores],
                                            resamples=300, seed=11)
  np.testing.assert_allclose(pixel["pixel_auroc"], frame["auroc"], atol=1e-12)
  assert pixel["skipped"]["pixel_auroc"] == frame["method"]["skipped"]


def test_pixel_bootstrap_contains_the_estimate_and_is_seeded():
  shapes = [(3, 12, 16)] * 10
  masks, maps = _pixel_clips(43, shapes=shapes, p=0.1, round_to=None)
  masks[-1] = np.random.default_rng(44).random((3, 12, 16)) < 0.1   # defects in every clip
  maps[-1] = np.random.default_rng(45).normal(size=(3, 12, 16)) + masks[-1]
  ci = metrics.pixel_bootstrap_intervals(masks, maps, resamples=300, seed=5, bins=128)
  auroc, pro = metrics.pixel_auroc(_frames(masks), _frames(maps)), metrics.pro_auc(
      _frames(masks), _frames(maps))
  assert ci["pixel_auroc"][0] < auroc < ci["pixel_auroc"][1]
  assert ci["pro"][0] < pro < ci["pro"][1]
  assert ci["pixel_auroc"][1] - ci["pixel_auroc"][0] < 0.1
  assert ci["skipped"] == {"pixel_auroc": 0, "pro": 0}
  assert (ci["bins"], ci["resamples"], ci["clips"], ci["level"]) == (128, 300, 10, 0.95)
  assert metrics.pixel_bootstrap_intervals(masks, maps, resamples=300, seed=5, bins=128) == ci
  other = metrics.pixel_bootstrap_intervals(masks, maps, resamples=300, seed=6, bins=128)
  assert other["pixel_auroc"] != ci["pixel_auroc"]
  wider = metrics.pixel_bootstrap_intervals(masks, maps, resamples=300, seed=5, bins=128,
                                            level=0.99)
  assert wider["pro"][0] <= ci["pro"][0] and wider["pro"][1] >= ci["pro"][1]


def test_pixel_bootstrap_perfect_and_undefined():
  masks, _ = _pixel_clips(46)
  perfect = [m.astype(np.float32) for m in masks]
  ci = metrics.pixel_bootstrap_intervals(masks, perfect, resamples=200)
  np.testing.assert_allclose(ci["pixel_auroc"], [1.0, 1.0])
  np.testing.assert_allclose(ci["pro"], [1.0, 1.0])
  assert ci["bins"] == 2
  # No defect anywhere: both metrics undefined on every resample.
  normal = metrics.pixel_bootstrap_intervals([np.zeros((2, 3, 3), bool)], [np.ones((2, 3, 3))],
                                             resamples=20)
  assert all(math.isnan(v) for v in normal["pixel_auroc"] + normal["pro"])
  assert normal["skipped"] == {"pixel_auroc": 20, "pro": 20}
  # One defect clip among four: the resamples that miss it are skipped, the others count.
  some = metrics.pixel_bootstrap_intervals(masks[-1:] * 3 + masks[:1],
                                           perfect[-1:] * 3 + perfect[:1], resamples=200, seed=1)
  assert 0 < some["skipped"]["pro"] == some["skipped"]["pixel_auroc"] < 200
  np.testing.assert_allclose(some["pro"], [1.0, 1.0])


def test_pixel_bootstrap_still_images_of_different_sizes():
  # Still images are clips of one frame; sizes differ between them.
  from scipy import ndimage
  rng = np.random.default_rng(47)
  shapes = [(1, 20, 24), (1, 16, 16), (1, 30, 10), (1, 12, 40), (1, 18, 18), (1, 24, 20)]
  masks = [ndimage.binary_dilation(rng.random(s) < 0.02, structure=np.ones((1, 3, 3)))
           for s in shapes]
  maps = [rng.normal(size=s) + 2.0 * m for s, m in zip(shapes, masks)]
  frames_m, frames_a = _frames(masks), _frames(maps)
  ci = metrics.pixel_bootstrap_intervals(masks, maps, resamples=200, seed=2)
  assert ci["regions"] == metrics.pro_curve(frames_m, frames_a)["regions"]
  assert ci["pixel_auroc"][0] <= metrics.pixel_auroc(frames_m, frames_a) <= ci["pixel_auroc"][1]
  assert ci["pro"][0] <= metrics.pro_auc(frames_m, frames_a) <= ci["pro"][1]
  got = _binned(masks, maps, np.ones(len(masks)), bins=1024)
  assert got["pixel_auroc"][0] == pytest.approx(metrics.pixel_auroc(frames_m, frames_a), abs=1e-3)
  assert got["pro"][0] == pytest.approx(metrics.pro_auc(frames_m, frames_a), abs=2e-3)


def test_pixel_bootstrap_regions_are_per_frame_and_8_connected():
  # A defect on the same pixels in two frames is two regions; diagonal neighbours are one.
  mask = np.zeros((2, 4, 4), bool)
  mask[:, 0, 0] = mask[:, 1, 1] = True
  amap = np.zeros((2, 4, 4))
  ci = metrics.pixel_bootstrap_intervals([mask], [amap], resamples=5)
  assert ci["regions"] == 2


def test_pixel_bootstrap_errors():
  mask, amap = np.eye(3, dtype=bool)[None], np.eye(3)[None]
  call = metrics.pixel_bootstrap_intervals
  with pytest.raises(ValueError, match="at least one clip"):
    call([], [])
  with pytest.raises(ValueError, match="1 mask clips but 2 map clips"):
    call([mask], [amap, amap])
  with pytest.raises(ValueError, match="clip 1: .*equal shapes"):
    call([mask, mask], [amap, amap[:, :2]])
  with pytest.raises(ValueError, match=r"\[T, H, W\]"):
    call([mask[0]], [amap[0]])
  with pytest.raises(ValueError, match="sequences"):
    call(mask, amap)
  with pytest.raises(ValueError, match="no pixel"):
    call([mask[:0]], [amap[:0]])
  with pytest.raises(ValueError, match="NaN"):
    call([mask], [np.full((1, 3, 3), np.nan)])
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="resamples"):
      call([mask], [amap], resamples=bad)
    with pytest.raises(ValueError, match="bins"):
      call([mask], [amap], bins=bad)
  for bad in (0.0, 1.5, float("nan")):
    with pytest.raises(ValueError, match="max_fpr"):
      call([mask], [amap], max_fpr=bad)
  with pytest.raises(ValueError, match="level"):
    call([mask], [amap], level=1.0)

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

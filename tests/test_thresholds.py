"""jaxvad.evaluation.thresholds: hand-computed thresholds, validation false-alarm rates, grid search."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from jaxvad.evaluation import metrics, thresholds
from jaxvad.errors import ConfigError


def test_mean_k_std_hand_and_paper_mapping():
  # [1, 2, 3, 4]: mean 2.5, population variance (2.25 + .25 + .25 + 2.25) / 4 = 1.25.
  t = thresholds.mean_k_std([1, 2, 3, 4], k=2)
  assert t.value == pytest.approx(2.5 + 2 * math.sqrt(1.25))
  assert (t.method, t.params) == ("mean_k_std", {"k": 2.0})
  assert t.stats["frames"] == 4 and t.stats["flag_rate"] == 0.0
  # Paper 001: flag PSNR below mean_P - k std_P. On s = -PSNR the threshold is its negation and
  # flags the same frames (up to equality).
  psnr = np.random.default_rng(0).normal(30, 2, 500)
  t = thresholds.mean_k_std(-psnr, k=1.5)
  assert t.value == pytest.approx(-(psnr.mean() - 1.5 * psnr.std()))
  test_psnr = np.random.default_rng(1).normal(29, 3, 500)
  np.testing.assert_array_equal(t.flag(-test_psnr), test_psnr < psnr.mean() - 1.5 * psnr.std())


def test_margin_from_worst_hand():
  # Worst (highest) validation anomaly score 3, margin 0.5 -> 3.5: nothing in validation flagged.
  t = thresholds.margin_from_worst([1, 3, 2], margin=0.5)
  assert t.value == 3.5 and t.stats["flag_rate"] == 0.0
  # As 001 §3.4 on PSNR: "2 dB below the worst validation PSNR" = -(min PSNR - 2) on -PSNR.
  psnr = np.array([31.0, 28.5, 30.2])
  assert thresholds.margin_from_worst(-psnr, margin=2).value == pytest.approx(-(28.5 - 2))
  # margin 0: the threshold is the worst score itself, which score >= threshold flags.
  worst = thresholds.margin_from_worst([1, 3, 2], margin=0)
  assert worst.value == 3 and worst.stats["flag_rate"] == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match="margin"):
    thresholds.margin_from_worst([1, 2], margin=-1)


def test_target_false_alarm_rate_hand():
  s = [1, 2, 2, 3, 4]  # N = 5
  # rate .2 -> at most 1 flagged: cut at the 2nd largest (3), threshold 4 flags {4}.
  assert thresholds.target_false_alarm_rate(s, rate=0.2).value == 4
  # rate .4 -> at most 2: the 3rd largest (2) must stay unflagged, threshold 3 flags {3, 4}.
  assert thresholds.target_false_alarm_rate(s, rate=0.4).value == 3
  # rate .6 -> at most 3, but the 3rd and 4th largest tie at 2: flagging one flags both (4 > 3),
  # so threshold 3 again, flagging 2 of 5.
  t = thresholds.target_false_alarm_rate(s, rate=0.6)
  assert t.value == 3 and t.stats["flag_rate"] == pytest.approx(0.4)
  # rate 0: just above the maximum, nothing flagged; rate 1: the minimum, everything flagged.
  t0 = thresholds.target_false_alarm_rate(s, rate=0)
  assert 4 < t0.value < 4 + 1e-12 and t0.stats["flag_rate"] == 0.0
  assert thresholds.target_false_alarm_rate(s, rate=1).value == 1
  # rate * N just below an integer by rounding (0.29 * 100 = 28.999...): 29 frames allowed.
  t = thresholds.target_false_alarm_rate(np.arange(100.0), rate=0.29)
  assert t.value == 71 and t.stats["flag_rate"] == pytest.approx(0.29)
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="rate"):
      thresholds.target_false_alarm_rate(s, rate=bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=60), st.floats(0, 1))
def test_target_rate_is_respected_and_tight(values, rate):
  scores = np.array(values, float)
  t = thresholds.target_false_alarm_rate(scores, rate=rate)
  allowed = math.floor(rate * scores.size + 1e-9)
  flagged = int(np.sum(scores >= t.value))
  assert flagged <= allowed
  # Tight: any lower validation score as threshold would flag more than allowed.
  lower = scores[scores < t.value]
  if lower.size:
    assert np.sum(scores >= lower.max()) > allowed


@pytest.mark.parametrize("method,params", [
    ("mean_k_std", {"k": 3}), ("margin_from_worst", {"margin": 0.1}),
    ("target_false_alarm_rate", {"rate": 0.05})])
def test_methods_flag_few_validation_frames(method, params):
  val = np.random.default_rng(2).normal(size=2000)
  t = thresholds.calibrate(method, val, **params)
  assert t.stats["flag_rate"] == pytest.approx(np.mean(val >= t.value))
  assert t.stats["flag_rate"] <= 0.05
  assert t.to_dict()["rule"] == "score >= value" and t.to_dict()["method"] == method


def test_grid_search_hand():
  # Anomalous 0.8, 0.6; normal 0.1, 0.3, 0.7. Paper 002's grid 0.1 .. 0.9 step 0.05.
  labels = np.array([1, 1, 0, 0, 0], bool)
  scores = np.array([0.8, 0.6, 0.1, 0.3, 0.7])
  grid = np.round(np.arange(0.1, 0.9 + 1e-9, 0.05), 2)  # unrounded, "0.6" is 0.6000000000000001
  # F1 = 2TP / (2TP + FP + FN): t in (0.3, 0.6] -> TP 2, FP 1: 4/5 (the best); t in (0.7, 0.8]
  # -> TP 1, FP 0, FN 1: 2/3. Ties go to the highest threshold: 0.6.
  t = thresholds.grid_search(labels, scores, metric="f1", grid=grid)
  assert t.value == pytest.approx(0.6) and t.stats["f1"] == pytest.approx(0.8)
  # Balanced accuracy: t in (0.3, 0.6] -> (1 + 2/3) / 2 = 5/6; (0.7, 0.8] -> (1/2 + 1) / 2 = 3/4.
  t = thresholds.grid_search(labels, scores, metric="balanced_accuracy", grid=grid)
  assert t.value == pytest.approx(0.6) and t.stats["balanced_accuracy"] == pytest.approx(5 / 6)
  # Accuracy: (0.3, 0.6] -> 4/5; (0.7, 0.8] -> 4/5 too: the tie goes to 0.8 (fewer alarms).
  t = thresholds.grid_search(labels, scores, metric="accuracy", grid=grid)
  assert t.value == pytest.approx(0.8) and t.stats["accuracy"] == pytest.approx(0.8)


@pytest.mark.parametrize("metric,sk", [("f1", skm.f1_score),
                                       ("balanced_accuracy", skm.balanced_accuracy_score),
                                       ("accuracy", skm.accuracy_score)])
def test_grid_search_against_sklearn(metric, sk):
  rng = np.random.default_rng(3)
  labels = rng.random(300) < 0.2
  scores = rng.normal(size=300) + 1.5 * labels
  t = thresholds.grid_search(labels, scores, metric=metric, num=41)
  grid = np.linspace(scores.min(), scores.max(), 41)
  values = [sk(labels, scores >= g) for g in grid]
  best = max(values)
  assert t.stats[metric] == pytest.approx(best)
  assert t.value == pytest.approx(max(g for g, v in zip(grid, values) if v == pytest.approx(best)))
  c = metrics.confusion_counts(labels, scores, t.value)
  assert metrics.confusion_rates(c)[metric] == pytest.approx(best)


def test_grid_search_errors():
  with pytest.raises(ValueError, match="both classes"):
    thresholds.grid_search(np.zeros(4, bool), np.arange(4.0))
  with pytest.raises(ValueError, match="metric"):
    thresholds.grid_search([0, 1], [0.0, 1.0], metric="auroc")
  with pytest.raises(ValueError, match="num"):
    thresholds.grid_search([0, 1], [0.0, 1.0], num=1)
  with pytest.raises(ValueError, match="grid"):
    thresholds.grid_search([0, 1], [0.0, 1.0], grid=[])


def test_calibrate_dispatch():
  val = np.array([0.1, 0.2, 0.3, 5.0])
  labels = np.array([0, 0, 0, 1], bool)
  # With labels, normal-only methods see only the normal frames: worst normal 0.3.
  t = thresholds.calibrate("margin_from_worst", val, val_labels=labels, margin=0.1)
  assert t.value == pytest.approx(0.4) and t.stats["frames"] == 3
  assert thresholds.calibrate("margin_from_worst", val, margin=0.1).value == pytest.approx(5.1)
  g = thresholds.calibrate("grid_search", val, val_labels=labels, metric="f1", num=11)
  assert g.method == "grid_search" and g.stats["tpr"] == 1.0
  with pytest.raises(ConfigError, match="unknown threshold method"):
    thresholds.calibrate("otsu", val)
  with pytest.raises(ConfigError, match="mean_k_std"):
    thresholds.calibrate("mean_k_std", val, rate=0.1)
  with pytest.raises(ValueError, match="val_labels"):
    thresholds.calibrate("grid_search", val)
  with pytest.raises(ValueError, match="shape"):
    thresholds.calibrate("mean_k_std", val, val_labels=labels[:2], k=1)


def test_bad_validation_scores():
  for bad in ([], [[1.0, 2.0]], [1.0, np.nan]):
    with pytest.raises(ValueError, match="val_scores"):
      thresholds.mean_k_std(bad, k=1)
  with pytest.raises(ValueError, match="k"):
    thresholds.mean_k_std([1.0, 2.0], k=float("inf"))

"""The bootstrap over test clips behind every AUROC / AUPR / EER interval
(`metrics.bootstrap_intervals`): against a one-resample-at-a-time reference, coverage and width
sanity, skipped resamples, speed, and the intervals reaching metrics.json and report.html."""

import json
import math

import numpy as np
import pytest

from jaxvad.evaluation import evaluate, metrics, protocol, report
from tests.naive import metrics as naive_metrics

TRUE_AUROC = 0.5 * (1 + math.erf(0.5))   # Phi(1 / sqrt 2): N(1, 1) anomalous vs N(0, 1) normal


def _clips(seed, n, frames=60, run=15, round_to=None):
  """`n` clips, each with one anomalous run; anomalous frames score N(1, 1), normal N(0, 1)."""
  rng = np.random.default_rng(seed)
  labels, scores = [], []
  for _ in range(n):
    y = np.zeros(frames, bool)
    start = rng.integers(0, frames - run)
    y[start:start + run] = True
    s = rng.normal(size=frames) + y
    labels.append(y)
    scores.append(s if round_to is None else np.round(s, round_to))
  return labels, scores


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_matches_the_one_resample_at_a_time_reference(average):
  labels, scores = _clips(0, 6, frames=12, run=4, round_to=1)   # ties within and across clips
  labels.append(np.zeros(5, bool))                               # single-class clips
  scores.append(np.array([0.3, 0.1, 2.0, 0.0, -1.0]))
  labels.append(np.ones(3, bool))
  scores.append(np.array([0.5, 1.5, 0.5]))
  fast = metrics.bootstrap_intervals(labels, scores, average=average, resamples=150, seed=7)
  slow = naive_metrics.bootstrap_intervals(labels, scores, average=average, resamples=150,
                                           seed=7)
  for name in ("auroc", "aupr", "eer"):
    np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-12, err_msg=name)
  assert fast["method"] == {"unit": "clips", "interval": "percentile", "average": average,
                            "resamples": 150, "seed": 7, "level": 0.95, "clips": 8,
                            "used": 150 - slow["skipped"], "skipped": slow["skipped"]}


def test_a_resample_is_the_metric_of_the_concatenated_clips():
  labels, scores = _clips(1, 5, frames=20, run=6, round_to=1)
  out = metrics.bootstrap_intervals(labels, scores, resamples=1, seed=3, level=0.5)
  (row,) = np.random.default_rng(3).integers(0, 5, size=(1, 5))
  y = np.concatenate([labels[i] for i in row])
  s = np.concatenate([scores[i] for i in row])
  for name, value in (("auroc", metrics.frame_auroc(y, s)), ("aupr", metrics.frame_aupr(y, s)),
                      ("eer", metrics.frame_eer(y, s)[0])):
    assert out[name] == pytest.approx([value, value], abs=1e-12), name


def test_seeded_and_level():
  labels, scores = _clips(2, 12)
  a = metrics.bootstrap_intervals(labels, scores, resamples=300, seed=5)
  assert metrics.bootstrap_intervals(labels, scores, resamples=300, seed=5) == a
  assert metrics.bootstrap_intervals(labels, scores, resamples=300, seed=6) != a
  narrow = metrics.bootstrap_intervals(labels, scores, resamples=300, seed=5, level=0.5)
  assert a["auroc"][0] < narrow["auroc"][0] < narrow["auroc"][1] < a["auroc"][1]


def test_known_auroc_is_covered_and_more_clips_narrow_the_interval():
  covered = 0
  for seed in range(40):
    labels, scores = _clips(seed, 20)
    lo, hi = metrics.bootstrap_intervals(labels, scores, resamples=400)["auroc"]
    covered += lo <= TRUE_AUROC <= hi
  assert covered >= 32          # nominal 95 %; percentile intervals on 20 clips run a bit low
  width = {}
  for n in (10, 40, 160):
    lo, hi = metrics.bootstrap_intervals(*_clips(100 + n, n))["auroc"]
    assert lo <= TRUE_AUROC <= hi, n
    width[n] = hi - lo
  assert width[160] < 0.75 * width[40] < 0.75 ** 2 * width[10]   # ~ 1 / sqrt(clips)


def test_single_class_resamples_are_skipped_and_counted():
  # Only clip 0 has anomalous frames: every resample that misses it is skipped.
  labels = [np.array([0, 1, 1, 0], bool), np.zeros(4, bool), np.zeros(3, bool)]
  scores = [np.array([0.1, 0.9, 0.8, 0.2]), np.array([0.3, 0.5, 0.0, 0.4]),
            np.array([0.95, 0.1, 0.2])]
  draws = np.random.default_rng(0).integers(0, 3, size=(200, 3))
  missing = int((~(draws == 0).any(axis=1)).sum())
  for average in ("micro", "macro"):
    out = metrics.bootstrap_intervals(labels, scores, average=average, resamples=200)
    assert out["method"]["skipped"] == missing > 0
    assert out["method"]["used"] == 200 - missing
  none = metrics.bootstrap_intervals([np.zeros(3, bool)], [np.arange(3.0)], resamples=10)
  assert all(math.isnan(x) for x in none["auroc"] + none["aupr"] + none["eer"])
  assert none["method"]["skipped"] == 10


def test_bad_input():
  y, s = [np.array([0, 1], bool)], [np.array([0.0, 1.0])]
  with pytest.raises(ValueError, match="average"):
    metrics.bootstrap_intervals(y, s, average="weighted")
  with pytest.raises(ValueError, match="resamples"):
    metrics.bootstrap_intervals(y, s, resamples=0)
  with pytest.raises(ValueError, match="level"):
    metrics.bootstrap_intervals(y, s, level=95)
  with pytest.raises(ValueError, match="2 score arrays"):
    metrics.bootstrap_intervals(y, s * 2)
  with pytest.raises(ValueError, match="clip 0: scores contain NaN"):
    metrics.bootstrap_intervals(y, [np.array([0.0, np.nan])])
  with pytest.raises(ValueError, match="at least one clip"):
    metrics.bootstrap_intervals([], [])


def test_event_auc_interval_matches_the_one_resample_at_a_time_reference():
  """Event AUC's interval: each resample's event AUC recomputed by the naive event ROC (a
  threshold sweep over the drawn clips, concatenated), then the percentiles."""
  labels, scores = _clips(2, 7, frames=14, run=4, round_to=1)
  labels.append(np.zeros(6, bool))                    # a clip of one normal interval
  scores.append(np.array([0.2, 1.1, 0.0, 0.4, 0.3, 0.1]))
  got = metrics.event_auc_interval(labels, scores, resamples=120, seed=3)
  draws = np.random.default_rng(3).integers(0, len(labels), size=(120, len(labels)))
  values = []
  for row in draws:
    drawn_labels, drawn_scores = [labels[i] for i in row], [scores[i] for i in row]
    if any(y.any() for y in drawn_labels):   # else no anomalous event: skipped
      values.append(naive_metrics.event_roc(drawn_labels, drawn_scores)[1])
  np.testing.assert_allclose(got["auc"], np.percentile(values, [2.5, 97.5]), atol=1e-12)
  assert got["method"]["used"] == len(values) and got["method"]["unit"] == "clips"
  assert got["auc"][0] < metrics.event_auc(labels, scores) < got["auc"][1]


def test_intervals_reach_metrics_json_and_report(tmp_path):
  labels, scores = _clips(4, 6, frames=30, run=8)
  kinds = ["arm", "arm", "part", "arm", "part", None]
  test = []
  for i, (y, s, kind) in enumerate(zip(labels, scores, kinds)):
    types = None if kind is None else np.where(y, kind, "")
    test.append(evaluate.Scored(f"c{i}", -s, y, has_distractors=i % 2 == 1, types=types))
  result = evaluate.evaluate_scores(test, protocol=protocol.PROTOCOLS["jaxvad"])
  report.write_report(tmp_path, result)
  saved = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
  for group in ("all", "no_distractors", "with_distractors"):
    m = saved[group]
    for name in ("auroc", "aupr", "eer"):
      lo, hi = m[f"{name}_ci"]
      assert 0 <= lo <= hi <= 1
    assert m["bootstrap"]["unit"] == "clips" and m["bootstrap"]["resamples"] == 1000
    assert m["bootstrap"]["seed"] == 0 and m["bootstrap"]["level"] == 0.95
    lo, hi = m["events"]["auc_ci"]
    assert 0 <= lo <= m["events"]["auc"] <= hi <= 1
  assert set(saved["all"]["per_type"]) == {"arm", "part"}
  arm = saved["all"]["per_type"]["arm"]
  assert arm["anomalous_frames"] == 3 * 8 and arm["normal_frames"] == 6 * 22
  assert arm["videos_with_type"] == 3 and len(arm["auroc_ci"]) == 2
  assert saved["all"]["untyped_anomalous_frames"] == 8
  assert "against all normal frames" in saved["all"]["per_type_definition"]
  page = (tmp_path / "report.html").read_text()
  lo, hi = saved["all"]["auroc_ci"]
  assert f"[{lo:.3f}, {hi:.3f}]" in page
  assert "AUROC per anomaly type" in page and "part" in page
  table = report.format_table(result["metrics"])
  assert f"[{lo:.3f}, {hi:.3f}]" in table and "arm" in table

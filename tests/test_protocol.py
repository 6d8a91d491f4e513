"""jaxvad.evaluation.protocol: presets, order of operations, ano_pred/MNAD equivalence, micro/macro,
bootstrap intervals and per-anomaly-type metrics."""

import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from jaxvad.evaluation import evaluate, metrics, protocol, thresholds
from jaxvad.errors import ConfigError
from tests.naive import metrics as naive_metrics


def _videos(seed=0, lengths=(40, 55, 30), psnr=True):
  """PSNR-like videos: anomalous frames (a run in the middle) score about 3 dB lower."""
  rng = np.random.default_rng(seed)
  out = []
  for i, n in enumerate(lengths):
    labels = np.zeros(n, bool)
    start = rng.integers(5, n // 2)
    labels[start:start + rng.integers(3, n // 3)] = True
    scores = rng.normal(30 + 2 * i, 1.5, n) - 3 * labels
    out.append(protocol.Video(f"v{i}", scores if psnr else -scores, labels))
  return out


def test_presets_validate_and_round_trip():
  for name, p in protocol.PROTOCOLS.items():
    assert p.name == name and p.validate() is p and p.description
    d = p.to_dict()
    assert d["order"] == ["drop", "orient", "smooth", "normalise"]
    json.dumps(d)
    assert protocol.Protocol.from_dict(d) == p
  ano = protocol.PROTOCOLS["ano_pred"]
  assert (ano.normalisation, ano.drop_first, ano.auroc, ano.higher_is_anomalous) == (
      "per_video_minmax", 4, "micro", False)
  assert protocol.PROTOCOLS["macro"].auroc == "macro"
  assert protocol.get("jaxvad", smoothing=10).smoothing == 10


@pytest.mark.parametrize("field,value", [
    ("normalisation", "zscore"), ("drop_first", -1), ("drop_first", 1.5), ("smoothing", 0),
    ("auroc", "weighted"), ("macro_single_class", "pad"), ("higher_is_anomalous", "yes"),
    ("name", ""),
])
def test_validate_rejects(field, value):
  with pytest.raises(ConfigError, match=field):
    dataclasses.replace(protocol.PROTOCOLS["jaxvad"], **{field: value}).validate()


def test_from_dict_and_get_errors():
  d = protocol.PROTOCOLS["jaxvad"].to_dict()
  with pytest.raises(ConfigError, match="unknown protocol keys"):
    protocol.Protocol.from_dict({**d, "window": 3})
  with pytest.raises(ConfigError, match="order"):
    protocol.Protocol.from_dict({**d, "order": ["smooth", "drop", "orient", "normalise"]})
  with pytest.raises(ConfigError, match="unknown protocol"):
    protocol.get("mnad")
  with pytest.raises(ConfigError, match="smoothing"):
    protocol.get("jaxvad", smoothing=0)
  with pytest.raises(ConfigError, match="jaxvad"):
    protocol.get("jaxvad", windw=3)


def test_order_drop_orient_smooth_normalise_hand():
  # PSNR [100, 100, 1, 2, 3, 4], drop 2 -> [1, 2, 3, 4]; negate -> [-1, -2, -3, -4];
  # centred window 3 (edges average what exists) -> [-1.5, -2, -3, -3.5];
  # min-max (min -3.5, max -1.5) -> [1, 0.75, 0.25, 0].
  p = protocol.Protocol(name="t", normalisation="per_video_minmax", drop_first=2, smoothing=3)
  (v,) = protocol.apply_protocol(p, [("a", [100, 100, 1, 2, 3, 4], [0, 0, 0, 1, 1, 0])])
  np.testing.assert_allclose(v.scores, [1, 0.75, 0.25, 0])
  np.testing.assert_array_equal(v.labels, [False, True, True, False])
  # Smoothing before dropping would leak the dropped 100s into frame 2: a different answer.
  leaky = metrics.moving_average(-np.array([100, 100, 1, 2, 3, 4.0]), window=3)[2:]
  assert not np.allclose((leaky - leaky.min()) / np.ptp(leaky), v.scores)
  # Normalising before smoothing would not end in exactly [0, 1]... it gives [.83, .67, .33, .17].
  raw = -np.array([1, 2, 3, 4.0])
  pre = metrics.moving_average((raw - raw.min()) / np.ptp(raw), window=3)
  np.testing.assert_allclose(pre, [5 / 6, 2 / 3, 1 / 3, 1 / 6])


@pytest.mark.parametrize("drop,higher,window,minmax", [
    (0, True, 1, False), (4, False, 5, True), (2, False, 4, False), (1, True, 3, True)])
def test_apply_protocol_against_loops(drop, higher, window, minmax):
  p = protocol.Protocol(name="t", higher_is_anomalous=higher, drop_first=drop, smoothing=window,
                        normalisation="per_video_minmax" if minmax else "none")
  videos = _videos(1)
  for v, out in zip(videos, protocol.apply_protocol(p, videos)):
    want = naive_metrics.protocol_scores(v.scores, drop_first=drop, higher_is_anomalous=higher,
                                         window=window, minmax=minmax)
    np.testing.assert_allclose(out.scores, want, atol=1e-12)
    np.testing.assert_array_equal(out.labels, v.labels[drop:])


def test_ano_pred_preset_matches_ano_pred_and_mnad_code():
  videos = _videos(2, lengths=(60, 45, 80, 33))
  # The raw first 4 PSNRs are arbitrary (e.g. a reconstructor's): ano_pred replaces them by
  # frame 4's, MNAD never computes them; dropping them first reproduces both.
  for v in videos:
    v.scores[:4] = [10, 50, 20, 40]
  result = protocol.evaluate(protocol.PROTOCOLS["ano_pred"], videos)
  auc, eer = naive_metrics.ano_pred_auc_eer([v.scores for v in videos],
                                            [v.labels for v in videos])
  assert result["auroc"] == pytest.approx(auc, abs=1e-12)
  assert result["auroc"] == pytest.approx(
      naive_metrics.mnad_auc([v.scores for v in videos], [v.labels for v in videos]), abs=1e-12)
  processed = protocol.apply_protocol(protocol.PROTOCOLS["ano_pred"], videos)
  labels = np.concatenate([v.labels for v in processed])
  scores = np.concatenate([v.scores for v in processed])
  assert metrics.frame_eer(labels, scores, method="ano_pred")[0] == pytest.approx(eer)
  assert result["frames"] == sum(len(v.scores) - 4 for v in videos)


def test_jaxvad_preset_is_the_legacy_pooled_convention():
  videos = _videos(3)
  p = protocol.get("jaxvad", smoothing=5)
  result = protocol.evaluate(p, videos)
  legacy = metrics.frame_metrics(
      np.concatenate([v.labels for v in videos]),
      np.concatenate([metrics.moving_average(-v.scores, window=5) for v in videos]))
  assert result["auroc"] == pytest.approx(legacy["auroc"])
  assert result["aupr"] == pytest.approx(legacy["aupr"])
  # An anomaly score passed with higher_is_anomalous=True gives the same numbers.
  flipped = protocol.evaluate(dataclasses.replace(p, higher_is_anomalous=True, score="-PSNR"),
                              _videos(3, psnr=False))
  assert flipped["auroc"] == pytest.approx(result["auroc"])


def test_micro_hand():
  # Two videos, anomaly scores (higher_is_anomalous): v0 N 1, A 3; v1 N 2, A 2.5.
  # Pooled: A {3, 2.5} vs N {1, 2}: all 4 pairs won -> micro AUROC 1.
  p = protocol.Protocol(name="t", higher_is_anomalous=True)
  vids = [("v0", [1, 3], [0, 1]), ("v1", [2, 2.5], [0, 1])]
  assert protocol.evaluate(p, vids)["auroc"] == 1.0
  # v1 A = 1.5 instead: pairs (3>1, 3>2, 1.5>1, 1.5<2) -> 3/4.
  vids[1] = ("v1", [2, 1.5], [0, 1])
  r = protocol.evaluate(p, vids)
  assert r["auroc"] == pytest.approx(0.75)
  # Macro: v0 AUROC 1, v1 AUROC 0 -> 0.5.
  assert protocol.evaluate(dataclasses.replace(p, auroc="macro"), vids)["auroc"] == 0.5


def test_macro_skips_single_class_videos():
  videos = _videos(4)
  videos.append(protocol.Video("all_normal", np.full(20, 31.0) + np.arange(20) * 0.01,
                               np.zeros(20, bool)))
  videos.append(protocol.Video("all_anomalous", np.full(10, 25.0), np.ones(10, bool)))
  result = protocol.evaluate(protocol.PROTOCOLS["macro"], videos)
  per = [skm.roc_auc_score(v.labels, -v.scores) for v in videos[:3]]
  assert result["auroc"] == pytest.approx(np.mean(per))
  assert result["macro"] == {"videos_used": 3, "skipped": [
      {"name": "all_normal", "reason": "all normal"},
      {"name": "all_anomalous", "reason": "all anomalous"}]}
  assert math.isnan(result["per_video"][3]["auroc"]) and result["notes"]
  assert math.isnan(result["eer_threshold"])
  strict = protocol.get("macro", macro_single_class="error")
  with pytest.raises(ValueError, match="all_normal"):
    protocol.evaluate(strict, videos)
  only_single = protocol.evaluate(protocol.PROTOCOLS["macro"], videos[3:])
  assert math.isnan(only_single["auroc"]) and only_single["macro"]["videos_used"] == 0


def test_evaluate_with_threshold_and_json():
  videos = _videos(5)
  p = protocol.get("jaxvad", smoothing=3)
  val = protocol.apply_protocol(p, [("val", np.random.default_rng(0).normal(31, 1.5, 300))])
  thr = thresholds.mean_k_std(val[0].scores, k=2)
  result = protocol.evaluate(p, videos, threshold=thr)
  processed = protocol.apply_protocol(p, videos)
  labels = np.concatenate([v.labels for v in processed])
  scores = np.concatenate([v.scores for v in processed])
  tn, fp, fn, tp = skm.confusion_matrix(labels, scores >= thr.value).ravel()
  assert {k: result["confusion"][k] for k in ("TP", "FN", "FP", "TN")} == {
      "TP": tp, "FN": fn, "FP": fp, "TN": tn}
  assert result["threshold"]["method"] == "mean_k_std" and result["threshold"]["params"] == {"k": 2}
  ev = naive_metrics.event_metrics([v.labels for v in processed],
                                   [v.scores >= thr.value for v in processed])
  assert {k: result["events_at_threshold"][k] for k in ev} == ev
  assert result["events"]["auc"] == pytest.approx(metrics.event_auc(
      [v.labels for v in processed], [v.scores for v in processed]))
  text = json.dumps(protocol.json_safe(result), allow_nan=False)
  assert json.loads(text)["protocol"]["smoothing"] == 3
  given = protocol.evaluate(p, videos, threshold=float(thr.value))
  assert given["threshold"]["method"] == "given" and given["confusion"] == result["confusion"]
  assert not given["notes"]
  assert protocol.evaluate(protocol.PROTOCOLS["ano_pred"], videos, threshold=0.5)["notes"]


def test_json_safe():
  out = protocol.json_safe({"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": np.arange(2),
                            "d": (np.int64(3), "x")})
  assert out == {"a": None, "b": [1.5, None], "c": [0, 1], "d": [3, "x"]}


def test_constant_and_short_videos():
  p = protocol.PROTOCOLS["ano_pred"]
  (v,) = protocol.apply_protocol(p, [("flat", np.full(8, 30.0), None)])
  np.testing.assert_array_equal(v.scores, np.zeros(4))
  assert v.labels is None
  with pytest.raises(ValueError, match="drops the first 4"):
    protocol.apply_protocol(p, [("short", np.ones(4), np.zeros(4))])
  with pytest.raises(ValueError, match="no labels"):
    protocol.evaluate(protocol.PROTOCOLS["jaxvad"], [("val", np.ones(5))])
  with pytest.raises(ValueError, match="shape"):
    protocol.apply_protocol(p, [("bad", np.ones(6), np.zeros(5))])
  with pytest.raises(ValueError, match="NaN"):
    protocol.apply_protocol(p, [{"name": "nan", "scores": [1, 2, 3, 4, np.nan, 5]}])
  # Frames the protocol drops may be unscored (a 4 + 1 frame predictor's first 4).
  (v,) = protocol.apply_protocol(p, [("head", [np.nan] * 4 + [1.0, 3.0], None)])
  np.testing.assert_array_equal(v.scores, [1.0, 0.0])
  with pytest.raises(ValueError, match="no videos"):
    protocol.evaluate(p, [])


def _typed_clips():
  """Anomaly scores (higher = anomalous); "arm" and "drop" anomalies, one clip untyped.

  a (no distractors): N 0.1 0.2 0.3, arm 0.9 0.8
  b (distractors):    N 0.5 0.4, drop 0.7, arm 0.15
  c (no distractors): N 0.05, one anomalous frame of unknown type 0.95
  """
  return [
      evaluate.Scored("a", np.array([0.1, 0.2, 0.9, 0.8, 0.3]), np.array([0, 0, 1, 1, 0], bool),
                      types=np.array(["", "", "arm", "arm", ""])),
      evaluate.Scored("b", np.array([0.5, 0.4, 0.7, 0.15]), np.array([0, 0, 1, 1], bool),
                      has_distractors=True, types=np.array(["", "", "drop", "arm"])),
      evaluate.Scored("c", np.array([0.05, 0.95]), np.array([0, 1], bool))]


def test_per_type_metrics_hand():
  p = protocol.Protocol(name="t", higher_is_anomalous=True)
  result = evaluate.evaluate_scores(_typed_clips(), protocol=p, bootstrap=200)
  m = result["metrics"]
  # all: normals {0.05, 0.1, 0.2, 0.3, 0.4, 0.5}; arm {0.9, 0.8, 0.15} wins 6 + 6 + 2 of 18
  # pairs; drop {0.7} wins 6 of 6. The untyped 0.95 is left out of both.
  arm, drop = m["all"]["per_type"]["arm"], m["all"]["per_type"]["drop"]
  assert arm["auroc"] == pytest.approx(14 / 18) and drop["auroc"] == 1.0
  # arm, descending: A .9, A .8, N .5 .4 .3 .2, A .15, N .1 .05: AP = (1 + 1 + 3/7) / 3.
  assert arm["aupr"] == pytest.approx((2 + 3 / 7) / 3)
  assert (arm["anomalous_frames"], arm["normal_frames"], arm["videos_with_type"]) == (3, 6, 2)
  assert (drop["anomalous_frames"], drop["normal_frames"], drop["videos_with_type"]) == (1, 6, 1)
  assert m["all"]["untyped_anomalous_frames"] == 1
  assert m["all"]["per_type_definition"] == protocol.PER_TYPE_DEFINITION
  # no distractors (a, c): arm {0.9, 0.8} above every normal {0.05, 0.1, 0.2, 0.3}.
  assert set(m["no_distractors"]["per_type"]) == {"arm"}
  assert m["no_distractors"]["per_type"]["arm"]["auroc"] == 1.0
  # with distractors (b): arm 0.15 below both normals {0.4, 0.5}; drop 0.7 above both.
  assert m["with_distractors"]["per_type"]["arm"]["auroc"] == 0.0
  assert m["with_distractors"]["per_type"]["drop"]["auroc"] == 1.0
  # The group metrics themselves are unchanged: all anomalous frames {.9 .8 .7 .15 .95} vs
  # the 6 normals win 6 + 6 + 6 + 2 + 6 of 30 pairs.
  assert m["all"]["auroc"] == pytest.approx(26 / 30)
  for rec in (m["all"], arm, drop):
    lo, hi = rec["auroc_ci"]
    assert 0 <= lo <= hi <= 1 and rec["bootstrap"]["resamples"] == 200
  # Macro: the mean over the clips holding the type and normal frames: arm a 1, b 0 -> 0.5.
  macro = evaluate.evaluate_scores(_typed_clips(), protocol=dataclasses.replace(p, auroc="macro"),
                                   bootstrap=0)["metrics"]["all"]
  assert macro["per_type"]["arm"]["auroc"] == 0.5 and macro["per_type"]["drop"]["auroc"] == 1.0
  assert macro["bootstrap"] is None and all(math.isnan(x) for x in macro["auroc_ci"])


def test_per_type_needs_types_of_the_right_shape():
  p = protocol.Protocol(name="t", higher_is_anomalous=True, drop_first=1)
  videos = [("a", [0.1, 0.2, 0.9], [0, 0, 1])]
  result = protocol.evaluate(p, videos, types=[np.array(["", "", "arm"])], bootstrap=0)
  assert result["per_type"]["arm"]["auroc"] == 1.0
  assert "per_type" not in protocol.evaluate(p, videos, types=[None], bootstrap=0)
  with pytest.raises(ValueError, match="frame types have shape"):
    protocol.evaluate(p, videos, types=[np.array(["", "arm"])])
  with pytest.raises(ValueError, match="1 type arrays for 2 videos"):
    protocol.evaluate(p, videos * 2, types=[None])


def test_group_intervals_under_micro_and_macro():
  videos = _videos(6, lengths=(40, 55, 30, 45, 50))
  for name in ("jaxvad", "macro"):
    result = protocol.evaluate(protocol.PROTOCOLS[name], videos, bootstrap=300, bootstrap_seed=2)
    processed = protocol.apply_protocol(protocol.PROTOCOLS[name], videos)
    want = metrics.bootstrap_intervals([v.labels for v in processed],
                                       [v.scores for v in processed],
                                       average=protocol.PROTOCOLS[name].auroc, resamples=300,
                                       seed=2)
    assert [result["auroc_ci"], result["aupr_ci"], result["eer_ci"]] == [
        want["auroc"], want["aupr"], want["eer"]]
    assert result["bootstrap"] == want["method"]
    assert result["auroc_ci"][0] <= result["auroc"] <= result["auroc_ci"][1]

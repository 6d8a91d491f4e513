import jax
import numpy as np
import pytest

from jaxvad import metrics, scoring
from tests import naive


@pytest.mark.parametrize("use_jit", [False, True])
def test_psnr_matches_reference(use_jit):
  rng = np.random.default_rng(0)
  a = rng.random((6, 9, 7, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
  b[2] = a[2]  # identical frame: capped by eps, finite
  fn = jax.jit(scoring.psnr) if use_jit else scoring.psnr
  got = np.asarray(fn(a, b))
  np.testing.assert_allclose(got, naive.psnr(a, b), rtol=1e-5)
  assert np.isfinite(got).all()


def test_psnr_batched_time_axis_and_max_val():
  rng = np.random.default_rng(1)
  a = rng.random((2, 3, 8, 8, 1)).astype(np.float32) * 255
  b = rng.random((2, 3, 8, 8, 1)).astype(np.float32) * 255
  got = np.asarray(scoring.psnr(a, b, max_val=255.0))
  ref = naive.psnr(a.reshape(6, 8, 8, 1), b.reshape(6, 8, 8, 1), max_val=255.0).reshape(2, 3)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_psnr_rejects_bad_shapes():
  with pytest.raises(ValueError, match="shapes differ"):
    scoring.psnr(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3)))
  with pytest.raises(ValueError, match="H, W, C"):
    scoring.psnr(np.zeros((4, 4)), np.zeros((4, 4)))


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7, 50])
def test_moving_average_matches_reference(window):
  x = np.random.default_rng(window).normal(size=23)
  np.testing.assert_allclose(metrics.moving_average(x, window=window),
                             naive.moving_average(x, window), rtol=1e-12)


def test_auroc_aupr_against_reference_and_sklearn_edge_cases():
  rng = np.random.default_rng(2)
  labels = rng.random(200) < 0.3
  scores = rng.normal(size=200) + labels * 0.8
  scores[:20] = np.round(scores[:20])  # some ties
  assert metrics.frame_auroc(labels, scores) == pytest.approx(naive.auroc(labels, scores), abs=1e-12)
  # AUPR (average precision) by its definition, on untied scores: the mean over anomalous
  # frames of the precision among the frames scored at least as high.
  untied = rng.normal(size=200) + labels * 0.8
  hits = labels[np.argsort(-untied)]
  precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
  assert metrics.frame_aupr(labels, untied) == pytest.approx(precision_at_hits.mean(), abs=1e-12)
  assert np.isnan(metrics.frame_auroc(np.zeros(5, bool), np.arange(5.0)))
  with pytest.raises(ValueError, match="NaN"):
    metrics.frame_auroc(labels, np.full(200, np.nan))

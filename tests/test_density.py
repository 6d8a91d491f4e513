"""jaxvad.density: the fitted Gaussian vs scikit-learn and a NumPy inverse, Mahalanobis scores,
jit, pytree round trip and bad inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from jaxvad import density

N, D = 200, 16


def _features(n=N, d=D, *, seed=0, shift=0.0):
  """L2-normalised correlated features [n, d] (float32), as CutPaste's pooled embeddings."""
  rng = np.random.default_rng(seed)
  mix = np.random.default_rng(100).normal(size=(d, d)) / np.sqrt(d)
  x = rng.normal(size=(n, d)) @ mix + 1.0
  x[:, :d // 2] += shift   # an anomaly: a different direction on the sphere
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


SCORE = jax.jit(density.mahalanobis)
SQUARED = jax.jit(functools.partial(density.mahalanobis, squared=True))


def test_l2_normalize_matches_numpy_and_keeps_zero_rows():
  x = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
  x[1, 2] = 0.0
  got = np.asarray(jax.jit(density.l2_normalize)(x))
  assert got.dtype == np.float32 and got.shape == x.shape
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  np.testing.assert_allclose(got, x / np.maximum(norms, 1e-12), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got[1, 2], 0.0)
  np.testing.assert_allclose(np.linalg.norm(np.delete(got.reshape(-1, 5), 6, 0), axis=-1), 1.0,
                             rtol=1e-6)
  by_axis = np.asarray(density.l2_normalize(x, axis=0))
  np.testing.assert_allclose(by_axis, x / np.linalg.norm(x, axis=0, keepdims=True), rtol=1e-6)


def test_ledoit_wolf_fit_and_scores_match_sklearn():
  train, test = _features(), _features(50, seed=2, shift=0.3)
  fitted = density.fit_gaussian(train)
  assert fitted.mean.dtype == jnp.float32 and fitted.precision.dtype == jnp.float32
  assert fitted.mean.shape == (D,) and fitted.precision.shape == (D, D)
  reference = LedoitWolf().fit(train.astype(np.float64))
  np.testing.assert_allclose(fitted.mean, reference.location_, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(fitted.precision, reference.precision_, rtol=1e-5,
                             atol=1e-5 * np.abs(reference.precision_).max())
  want = reference.mahalanobis(test.astype(np.float64))   # sklearn: the squared distance
  np.testing.assert_allclose(SQUARED(fitted, test), want, rtol=1e-4)
  np.testing.assert_allclose(SCORE(fitted, test), np.sqrt(want), rtol=1e-4)
  # The training features themselves, closer to the mean: the hardest case for float32.
  np.testing.assert_allclose(SCORE(fitted, train), np.sqrt(reference.mahalanobis(train)),
                             rtol=1e-4)


def test_empirical_fit_matches_a_numpy_inverse():
  train, test = _features(), _features(50, seed=3, shift=0.3)
  fitted = density.fit_gaussian(jnp.asarray(train), shrinkage="empirical")  # a JAX input too
  x = train.astype(np.float64)
  mean = x.mean(axis=0)
  precision = np.linalg.inv((x - mean).T @ (x - mean) / len(x))   # biased, as sklearn
  np.testing.assert_allclose(fitted.mean, mean, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(fitted.precision, precision, rtol=1e-4,
                             atol=1e-5 * np.abs(precision).max())
  diff = test.astype(np.float64) - mean
  want = np.sqrt(np.array([row @ precision @ row for row in diff]))
  np.testing.assert_allclose(SCORE(fitted, test), want, rtol=1e-4)
  np.testing.assert_allclose(
      SQUARED(fitted, test), EmpiricalCovariance().fit(x).mahalanobis(test), rtol=1e-4)


def test_leading_axes_and_no_jit():
  fitted = density.fit_gaussian(_features())
  test = _features(24, seed=4).reshape(2, 3, 4, D)
  got = np.asarray(SCORE(fitted, test))
  assert got.shape == (2, 3, 4) and got.dtype == np.float32
  np.testing.assert_allclose(got.reshape(-1), SCORE(fitted, test.reshape(-1, D)), rtol=1e-6)
  np.testing.assert_allclose(density.mahalanobis(fitted, test), got, rtol=1e-6)
  assert SCORE(fitted, test[0, 0, 0]).shape == ()
  # At the mean the distance is exactly 0 (and its square is clamped at 0, never NaN).
  assert float(SCORE(fitted, fitted.mean)) == 0.0


def test_anomalies_score_higher():
  fitted = density.fit_gaussian(_features())
  normal = np.asarray(SCORE(fitted, _features(100, seed=5)))
  anomalous = np.asarray(SCORE(fitted, _features(100, seed=6, shift=2.0)))
  assert np.median(anomalous) > np.quantile(normal, 0.95)


def test_pytree_round_trip():
  fitted = density.fit_gaussian(_features())
  leaves, treedef = jax.tree_util.tree_flatten(fitted)
  assert len(leaves) == 2
  rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
  assert isinstance(rebuilt, density.GaussianDensity)
  np.testing.assert_array_equal(rebuilt.mean, fitted.mean)
  np.testing.assert_array_equal(rebuilt.precision, fitted.precision)
  doubled = jax.tree_util.tree_map(lambda v: 2 * v, fitted)
  np.testing.assert_allclose(doubled.precision, 2 * np.asarray(fitted.precision))
  test = _features(5, seed=7)
  np.testing.assert_allclose(SCORE(rebuilt, test), SCORE(fitted, test), rtol=1e-7)


def test_bad_inputs():
  good = _features(10)
  with pytest.raises(ValueError, match="shrinkage"):
    density.fit_gaussian(good, shrinkage="oas")
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    density.fit_gaussian(good[0])
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    density.fit_gaussian(good[None])
  with pytest.raises(ValueError, match="N >= 2"):
    density.fit_gaussian(good[:1])
  with pytest.raises(ValueError, match="N >= 2"):
    density.fit_gaussian(np.ones((5, 0)))
  bad = good.copy()
  bad[3, 2], bad[4, 1] = np.nan, np.inf
  with pytest.raises(ValueError, match="finite; 2 values"):
    density.fit_gaussian(bad)
  with pytest.raises(TypeError, match="real"):
    density.fit_gaussian(np.array([["a", "b"], ["c", "d"]]))
  fitted = density.fit_gaussian(good)
  with pytest.raises(ValueError, match="D = 16"):
    density.mahalanobis(fitted, np.ones((3, D + 1)))
  with pytest.raises(ValueError, match="D = 16"):
    density.mahalanobis(fitted, np.float32(1.0))
  with pytest.raises(TypeError, match="GaussianDensity"):
    density.mahalanobis((fitted.mean, fitted.precision), good)
  with pytest.raises(ValueError, match=r"precision \[D, D\]"):
    density.mahalanobis(density.GaussianDensity(mean=fitted.mean, precision=fitted.mean), good)
  with pytest.raises(TypeError, match="squared"):
    density.mahalanobis(fitted, good, squared="yes")
  with pytest.raises(ValueError, match="axis"):
    density.l2_normalize(good, axis=2)
  with pytest.raises(ValueError, match="scalar"):
    density.l2_normalize(1.0)
  with pytest.raises(ValueError, match="eps"):
    density.l2_normalize(good, eps=0)
  with pytest.raises(TypeError, match="real"):
    density.l2_normalize(np.ones(3, complex))

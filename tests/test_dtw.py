"""DTW kernels against the full-matrix reference, dtaidistance and tslearn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxvad_kernels import dtw
from tests.naive import dtw as naive

WINDOWS = [None, 0, 1, 2, 5]


def _pair(rng, n, m, d):
  shape = (lambda k: (k,)) if d == 0 else (lambda k: (k, d))
  return rng.standard_normal(shape(n)), rng.standard_normal(shape(m))


def _check_path(path, n, m):
  """The four constraints of paper 000 §2.3 plus the allowed steps."""
  assert path.dtype == np.int64 and path.ndim == 2 and path.shape[1] == 2
  assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
  steps = {tuple(s) for s in np.diff(path, axis=0)}
  assert steps <= {(1, 0), (0, 1), (1, 1)}
  assert set(path[:, 0]) == set(range(n)) and set(path[:, 1]) == set(range(m))


def _path_cost(x, y, path):
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  return np.sqrt(sum(((x[i] - y[j]) ** 2).sum() for i, j in path))


@pytest.mark.parametrize("d", [0, 1, 3])  # 0 = 1-D sequences
@pytest.mark.parametrize("window", WINDOWS)
def test_matches_naive(d, window):
  rng = np.random.default_rng(d * 10 + (window or 0))
  for n, m in [(1, 1), (1, 6), (7, 1), (9, 9), (8, 13), (14, 6)]:
    x, y = _pair(rng, n, m, d)
    want_d, want_path = naive.path(x, y, window)
    got_d, got_path = dtw.dtw_path(x, y, window=window)
    assert got_d == pytest.approx(want_d, rel=1e-12)
    np.testing.assert_array_equal(got_path, want_path)
    assert dtw.dtw_distance(x, y, window=window) == pytest.approx(want_d, rel=1e-12)
    _check_path(got_path, n, m)


@pytest.mark.parametrize("window", [None, 2])
def test_open_end_matches_naive(window):
  rng = np.random.default_rng(3)
  for n, m in [(1, 5), (6, 6), (5, 12), (9, 20)]:
    x, y = _pair(rng, n, m, 0)
    want_d, want_path = naive.path(x, y, window, open_end=True)
    got_d, got_path = dtw.dtw_path(x, y, window=window, open_end=True)
    assert got_d == pytest.approx(want_d, rel=1e-12)
    np.testing.assert_array_equal(got_path, want_path)
    assert dtw.dtw_distance(x, y, window=window, open_end=True) == pytest.approx(want_d,
                                                                                  rel=1e-12)


def test_identical_sequences_give_zero_and_the_diagonal():
  x = np.random.default_rng(0).standard_normal((12, 2))
  d, path = dtw.dtw_path(x, x)
  assert d == 0.0 and dtw.dtw_distance(x, x) == 0.0
  np.testing.assert_array_equal(path, np.stack([np.arange(12)] * 2, axis=1))


def test_constant_and_length_one_sequences():
  d, path = dtw.dtw_path(np.full(5, 2.0), np.full(3, 2.0))
  assert d == 0.0
  _check_path(path, 5, 3)
  d, path = dtw.dtw_path([1.0], [4.0, 5.0, 1.0])
  assert d == pytest.approx(np.sqrt(9 + 16 + 0))
  np.testing.assert_array_equal(path, [[0, 0], [0, 1], [0, 2]])
  # ints are accepted and cast to float64.
  assert dtw.dtw_distance(np.array([0, 3], np.uint8), np.array([0, 3], np.int64)) == 0.0


def test_tie_break_prefers_the_diagonal_then_up():
  # x = y = 0: every path costs 0, so the tie rule alone picks it. Ties are broken walking
  # back from the end, so the diagonal steps come last.
  _, path = dtw.dtw_path(np.zeros(3), np.zeros(5))
  np.testing.assert_array_equal(path, [[0, 0], [0, 1], [0, 2], [1, 3], [2, 4]])
  _, path = dtw.dtw_path(np.zeros(5), np.zeros(3))
  np.testing.assert_array_equal(path, [[0, 0], [1, 0], [2, 0], [3, 1], [4, 2]])


@pytest.mark.parametrize("d", [0, 2])
@pytest.mark.parametrize("window", [None, 1, 3])
def test_matches_dtaidistance(d, window):
  dtai = pytest.importorskip("dtaidistance.dtw")
  dtai_nd = pytest.importorskip("dtaidistance.dtw_ndim")
  rng = np.random.default_rng(7)
  for n, m in [(10, 10), (12, 7), (6, 15)]:
    x, y = _pair(rng, n, m, d)
    got_d, got_path = dtw.dtw_path(x, y, window=window)
    if d == 0:
      want = dtai.distance_fast(x, y, window=window, use_pruning=False)
      assert dtai.distance(x, y, window=window) == pytest.approx(got_d, rel=1e-12)
      want_path = dtai.warping_path(x, y, window=window, use_c=True)
    else:
      want = dtai_nd.distance_fast(x, y, window=window, use_pruning=False)
      want_path = dtai_nd.warping_path(x, y, window=window)
    assert got_d == pytest.approx(want, rel=1e-12)
    np.testing.assert_array_equal(got_path, np.array(want_path))


@pytest.mark.slow  # tslearn compiles its numba kernels on first use (~7 s), uncached
@pytest.mark.parametrize("d", [0, 2])
def test_matches_tslearn(d):
  metrics = pytest.importorskip("tslearn.metrics")
  rng = np.random.default_rng(11)
  for n, m in [(10, 10), (13, 8)]:
    x, y = _pair(rng, n, m, d)
    got_d, got_path = dtw.dtw_path(x, y)
    assert metrics.dtw(x, y) == pytest.approx(got_d, rel=1e-12)
    want_path, want_d = metrics.dtw_path(x, y)
    assert want_d == pytest.approx(got_d, rel=1e-12)
    # tslearn breaks ties its own way: compare the path's cost, not the path.
    assert _path_cost(x, y, want_path) == pytest.approx(_path_cost(x, y, got_path), rel=1e-12)


_seqs = hnp.arrays(np.float64, st.integers(1, 12),
                   elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(x=_seqs, y=_seqs, window=st.sampled_from(WINDOWS))
def test_path_obeys_the_constraints_and_costs_the_distance(x, y, window):
  d, path = dtw.dtw_path(x, y, window=window)
  _check_path(path, len(x), len(y))
  assert _path_cost(x, y, path) == pytest.approx(d, rel=1e-9, abs=1e-9)
  assert dtw.dtw_distance(x, y, window=window) == pytest.approx(d, rel=1e-12, abs=1e-12)
  if window:  # every cell of the path inside dtaidistance's band
    assert all(naive.in_band(i, j, len(x), len(y), window) for i, j in path)


@pytest.mark.parametrize("d", [0, 2])
@pytest.mark.parametrize("window", [None, 3])
def test_batch_equals_one_by_one(d, window):
  rng = np.random.default_rng(5)
  template = _pair(rng, 9, 1, d)[0]
  seqs = [_pair(rng, n, 1, d)[0] for n in (1, 4, 9, 15, 7)]
  dists, paths = dtw.dtw_align_batch(seqs, template, window=window)
  assert dists.shape == (5,) and dists.dtype == np.float64
  for seq, got_d, got_path in zip(seqs, dists, paths):
    want_d, want_path = dtw.dtw_path(seq, template, window=window)
    assert got_d == want_d
    np.testing.assert_array_equal(got_path, want_path)
  # A stacked array is a batch along its first axis.
  stack = np.stack([_pair(rng, 6, 1, d)[0] for _ in range(3)])
  dists, paths = dtw.dtw_align_batch(stack, template, window=window)
  for seq, got_d, got_path in zip(stack, dists, paths):
    want_d, want_path = dtw.dtw_path(seq, template, window=window)
    assert got_d == want_d
    np.testing.assert_array_equal(got_path, want_path)


def test_path_to_index_takes_the_middle_of_each_run():
  path = np.array([[0, 0], [0, 1], [0, 2], [1, 3], [2, 3], [3, 4], [3, 5]])
  np.testing.assert_array_equal(dtw.path_to_index(path, 4), [1, 3, 3, 4])
  with pytest.raises(ValueError, match="0 to n - 1"):
    dtw.path_to_index(path, 5)
  with pytest.raises(ValueError, match=r"\[K, 2\]"):
    dtw.path_to_index(path[:, 0], 4)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.zeros((2, 2, 2)), np.zeros(3)), {}, ValueError, "x must be 1-D"),
    ((np.zeros(0), np.zeros(3)), {}, ValueError, "x is empty"),
    ((np.zeros(3), np.array([1.0, np.nan])), {}, ValueError, "y contains NaN"),
    ((np.zeros(3), np.array([1.0, np.inf])), {}, ValueError, "y contains NaN or inf"),
    ((np.zeros((3, 2)), np.zeros((3, 3))), {}, ValueError, "same number of features"),
    ((np.zeros(3), np.zeros((3, 0))), {}, ValueError, "y has no features"),
    ((np.array(["a"]), np.zeros(3)), {}, TypeError, "x must be a real numeric"),
    ((np.zeros(3), np.zeros(3)), {"window": -1}, ValueError, "window must be None or >= 0"),
    ((np.zeros(3), np.zeros(3)), {"window": 1.5}, TypeError, "window must be None or a non"),
])
def test_bad_input(args, kwargs, error, match):
  with pytest.raises(error, match=match):
    dtw.dtw_distance(*args, **kwargs)
  with pytest.raises(error, match=match):
    dtw.dtw_path(*args, **kwargs)


def test_batch_bad_input():
  with pytest.raises(ValueError, match="sequences is empty"):
    dtw.dtw_align_batch([], np.zeros(3))
  with pytest.raises(ValueError, match=r"sequences\[1\] and template must have the same"):
    dtw.dtw_align_batch([np.zeros(3), np.zeros((3, 2))], np.zeros(3))
  with pytest.raises(ValueError, match=r"\[N, n\]"):
    dtw.dtw_align_batch(np.zeros(4), np.zeros(3))

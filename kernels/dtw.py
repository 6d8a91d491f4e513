"""Dynamic time warping (paper 000 §2.3): distance, optimal warping path, batched alignment.

Conventions (the same as dtaidistance and tslearn):
  * local cost of matching x[i] with y[j] is the squared Euclidean distance between the two
    points (over features for multivariate [n, d] sequences);
  * the accumulated cost is D(i, j) = cost(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1)),
    and the distance is sqrt(D(n-1, m-1));
  * `window` is dtaidistance's Sakoe-Chiba band: cell (i, j) is allowed when
    -(window + max(0, n - m)) < j - i < window + max(0, m - n). The band is widened by the
    length difference on the side the longer sequence needs, so the end (n-1, m-1) is always
    reachable; window=1 on equal lengths is the Euclidean distance; window=None or 0 means no
    band.

The kernels sweep the cost matrix by anti-diagonals (cells with equal i + j). Cells of one
anti-diagonal depend only on the two previous ones, so the inner loop has no loop-carried
dependency and vectorises; a row-by-row sweep is bound by the latency of the left neighbour.
The distance keeps three anti-diagonals (O(n) memory). The path keeps one byte per
band cell (which predecessor won), never a float64 cost matrix, and backtracks through it.

Tie-break: each cell records its cheapest predecessor, and among equal ones the diagonal
(i-1, j-1) wins, then (i-1, j), then (i, j-1) -- dtaidistance's `best_path` order. The path is
read backwards from the end, so among equal-cost paths the diagonal steps come as late as
possible (dtw_path(zeros(3), zeros(5)) is (0,0) (0,1) (0,2) (1,3) (2,4)).
"""

from __future__ import annotations

import numbers

import numpy as np

from jaxvad_kernels._jit import njit, parallel_njit, prange

__all__ = ["dtw_distance", "dtw_path", "dtw_align_batch", "path_to_index"]

_DIAG, _UP, _LEFT = 0, 1, 2  # direction codes stored per band cell


# --------------------------------------------------------------------------- validation


def _as_sequence(x, name: str) -> np.ndarray:
  """Validates one sequence and returns it as float64 [d, n] (features first, contiguous)."""
  arr = np.asarray(x)
  if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                 or np.issubdtype(arr.dtype, np.integer)):
    raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
  if arr.ndim not in (1, 2):
    raise ValueError(f"{name} must be 1-D [n] or 2-D [n, d], got shape {arr.shape}")
  if arr.shape[0] == 0:
    raise ValueError(f"{name} is empty (shape {arr.shape}): DTW needs at least one point")
  if arr.ndim == 2 and arr.shape[1] == 0:
    raise ValueError(f"{name} has no features (shape {arr.shape})")
  arr = arr.astype(np.float64, copy=False)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} contains NaN or inf")
  return np.ascontiguousarray(arr.reshape(arr.shape[0], -1).T)


def _check_dims(xt: np.ndarray, yt: np.ndarray, x_name: str, y_name: str) -> None:
  if xt.shape[0] != yt.shape[0]:
    raise ValueError(f"{x_name} and {y_name} must have the same number of features, got "
                     f"{xt.shape[0]} and {yt.shape[0]}")


def _check_window(window) -> int:
  """Returns the window as an int, 0 meaning no band."""
  if window is None:
    return 0
  if isinstance(window, bool) or not isinstance(window, numbers.Integral):
    raise TypeError(f"window must be None or a non-negative int, got {window!r}")
  if window < 0:
    raise ValueError(f"window must be None or >= 0 (0 = no band), got {window}")
  return int(window)


def _band(n: int, m: int, window: int) -> tuple[int, int]:
  """Allowed offsets lo <= j - i <= hi of dtaidistance's band (see the module docstring)."""
  if window == 0:
    return -(n - 1), m - 1
  lo = -(window - 1 + max(0, n - m))
  hi = window - 1 + max(0, m - n)
  return max(lo, -(n - 1)), min(hi, m - 1)


# --------------------------------------------------------------------------- kernels


@njit(inline="always")
def _diag_range(k, n, m, lo, hi):
  """Rows i of anti-diagonal k (j = k - i) inside the matrix and the band; may be empty."""
  ilo = max(0, k - m + 1, -((hi - k) // 2))  # -((hi - k) // 2) == ceil((k - hi) / 2)
  ihi = min(n - 1, k, (k - lo) // 2)
  return ilo, ihi


@njit
def _band_offsets(n, m, lo, hi):
  """Start of each anti-diagonal's cells in the flat direction array; last entry = total."""
  off = np.empty(n + m, np.int64)
  total = 0
  for k in range(n + m - 1):
    off[k] = total
    ilo, ihi = _diag_range(k, n, m, lo, hi)
    if ihi >= ilo:
      total += ihi - ilo + 1
  off[n + m - 1] = total
  return off


@njit
def _sweep(xt, yrt, lo, hi, open_end, dirs, off):
  """Anti-diagonal DTW sweep.

  Buffers hold D(i, k - i) at index i + 1 (index 0 is row -1). After each diagonal the two
  slots just outside its range are set to inf: they are exactly the out-of-range cells the next
  two diagonals read (ranges grow by at most one row per diagonal), so stale values from older
  diagonals never leak in.

  Returns the accumulated squared cost at the end cell and the end column (m - 1, or with
  open_end the column of the cheapest cell of the last row, smallest on ties). Fills `dirs`
  (one code per band cell, laid out by `off`) when `dirs` is non-empty.
  """
  d, n = xt.shape
  m = yrt.shape[1]
  inf = np.inf
  keep = dirs.shape[0] > 0
  a = np.full(n + 2, inf)
  b = np.full(n + 2, inf)
  c = np.empty(n + 2)
  cost = np.empty(n + 1)
  a[0] = 0.0  # D(-1, -1): the virtual start before (0, 0)
  prev2, prev1, cur = a, b, c
  best_end, end_j = inf, m - 1
  for k in range(n + m - 1):
    ilo, ihi = _diag_range(k, n, m, lo, hi)
    cnt = ihi - ilo + 1
    if cnt > 0:
      ybase = m - 1 - k  # yrt[:, ybase + i] == y[:, k - i]
      if d == 1:
        for q in range(cnt):
          diff = xt[0, ilo + q] - yrt[0, ybase + ilo + q]
          cost[q] = diff * diff
      else:
        cost[:cnt] = 0.0
        for f in range(d):
          for q in range(cnt):
            diff = xt[f, ilo + q] - yrt[f, ybase + ilo + q]
            cost[q] += diff * diff
      if keep:
        base = off[k]
        for q in range(cnt):
          i = ilo + q
          best = prev2[i]
          code = 0
          up = prev1[i]
          if up < best:
            best = up
            code = 1
          left = prev1[i + 1]
          if left < best:
            best = left
            code = 2
          cur[i + 1] = cost[q] + best
          dirs[base + q] = code
      else:
        for q in range(cnt):
          i = ilo + q
          best = min(prev2[i], prev1[i], prev1[i + 1])
          cur[i + 1] = cost[q] + best
      if open_end and ihi == n - 1 and cur[n] < best_end:
        best_end = cur[n]
        end_j = k - (n - 1)
    cur[ilo] = inf
    cur[ihi + 2] = inf
    prev2, prev1, cur = prev1, cur, prev2
  if not open_end:
    # The end cell lies on the last diagonal, now in prev1.
    best_end = prev1[n]
  return best_end, end_j


@njit
def _backtrack(dirs, off, n, m, lo, hi, end_j, path):
  """Writes the path ending at (n-1, end_j) into path[:K] in forward order; returns K."""
  i, j = n - 1, end_j
  length = 0
  while True:
    path[length, 0] = i
    path[length, 1] = j
    length += 1
    if i == 0 and j == 0:
      break
    if i == 0:  # guards only matter if costs overflowed to inf
      j -= 1
      continue
    if j == 0:
      i -= 1
      continue
    k = i + j
    ilo, _ = _diag_range(k, n, m, lo, hi)
    code = dirs[off[k] + i - ilo]
    if code == 0:
      i -= 1
      j -= 1
    elif code == 1:
      i -= 1
    else:
      j -= 1
  for q in range(length // 2):
    r = length - 1 - q
    ti, tj = path[q, 0], path[q, 1]
    path[q, 0], path[q, 1] = path[r, 0], path[r, 1]
    path[r, 0], path[r, 1] = ti, tj
  return length


@njit
def _distance(xt, yrt, lo, hi, open_end):
  dirs = np.empty(0, np.uint8)
  off = np.empty(0, np.int64)
  total, _ = _sweep(xt, yrt, lo, hi, open_end, dirs, off)
  return np.sqrt(total)


@njit
def _path(xt, yrt, lo, hi, open_end, path):
  n, m = xt.shape[1], yrt.shape[1]
  off = _band_offsets(n, m, lo, hi)
  dirs = np.empty(off[n + m - 1], np.uint8)
  total, end_j = _sweep(xt, yrt, lo, hi, open_end, dirs, off)
  length = _backtrack(dirs, off, n, m, lo, hi, end_j, path)
  return np.sqrt(total), length


@parallel_njit
def _align_batch(xt_all, starts, yrt, window, dists, paths, path_starts, lengths):
  """One DTW per sequence; sequence s writes only dists[s], lengths[s] and its own path rows."""
  m = yrt.shape[1]
  for s in prange(starts.shape[0] - 1):
    xt = xt_all[:, starts[s]:starts[s + 1]]
    n = xt.shape[1]
    if window == 0:
      lo, hi = -(n - 1), m - 1
    else:
      lo = max(-(window - 1 + max(0, n - m)), -(n - 1))
      hi = min(window - 1 + max(0, m - n), m - 1)
    d, length = _path(np.ascontiguousarray(xt), yrt, lo, hi, False,
                      paths[path_starts[s]:path_starts[s + 1]])
    dists[s] = d
    lengths[s] = length


# --------------------------------------------------------------------------- public API


def dtw_distance(x, y, *, window: int | None = None, open_end: bool = False) -> float:
  """DTW distance between two sequences, in O(n) memory.

  Args:
    x: first sequence, [n] or [n, d] (any real dtype; computed in float64).
    y: second sequence, [m] or [m, d] with the same d.
    window: dtaidistance's Sakoe-Chiba band (see the module docstring); None or 0 = no band.
    open_end: let the path end at any column of the last row (x aligned to the best prefix
      of y), as in `dtw_path`.

  Returns:
    sqrt of the minimal accumulated squared Euclidean cost over warping paths.

  Raises:
    TypeError: non-numeric input or a non-integer window.
    ValueError: wrong rank, empty input, NaN/inf, mismatched feature counts, negative window.
  """
  xt, yt = _as_sequence(x, "x"), _as_sequence(y, "y")
  _check_dims(xt, yt, "x", "y")
  lo, hi = _band(xt.shape[1], yt.shape[1], _check_window(window))
  return float(_distance(xt, np.ascontiguousarray(yt[:, ::-1]), lo, hi, bool(open_end)))


def dtw_path(x, y, *, window: int | None = None,
             open_end: bool = False) -> tuple[float, np.ndarray]:
  """DTW distance and optimal warping path.

  The path obeys the constraints of paper 000 §2.3: it starts at (0, 0), ends at (n-1, m-1),
  matches every index of both sequences, and moves by (1, 1), (1, 0) or (0, 1). Walking back
  from the end, among equal predecessors the diagonal step wins, then (i-1, j), then
  (i, j-1). Memory is one byte per cell of the band (n * m without a window).

  Args:
    x: first sequence, [n] or [n, d] (any real dtype; computed in float64).
    y: second sequence, [m] or [m, d] with the same d.
    window: dtaidistance's Sakoe-Chiba band (see the module docstring); None or 0 = no band.
    open_end: let the path end at any column of the last row (the cheapest one, smallest
      column on ties) instead of (n-1, m-1): x is aligned to a prefix of y. The end and
      every-index constraints then hold for x and for y[:end + 1].

  Returns:
    (distance, path): distance = sqrt(sum of squared costs along the path); path int64
    [K, 2] of (i, j) pairs in increasing order.

  Raises:
    TypeError: non-numeric input or a non-integer window.
    ValueError: wrong rank, empty input, NaN/inf, mismatched feature counts, negative window.
  """
  xt, yt = _as_sequence(x, "x"), _as_sequence(y, "y")
  _check_dims(xt, yt, "x", "y")
  n, m = xt.shape[1], yt.shape[1]
  lo, hi = _band(n, m, _check_window(window))
  path = np.empty((n + m - 1, 2), np.int64)
  dist, length = _path(xt, np.ascontiguousarray(yt[:, ::-1]), lo, hi, bool(open_end), path)
  return float(dist), path[:length].copy()


def dtw_align_batch(sequences, template, *,
                    window: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
  """Aligns many sequences to one template in parallel (one thread per sequence).

  Sequences are packed into one [d, sum(n_s)] buffer with start offsets; sequence s writes its
  path into rows [sum_{r<s} (n_r + m - 1), ...) of one preallocated int64 buffer (n_s + m - 1
  rows is the longest path possible), so no two threads write to the same memory.

  Args:
    sequences: a list of [n_s] / [n_s, d] arrays (lengths may differ), or an array whose first
      axis is the batch: [N, n] for 1-D sequences, [N, n, d] for multivariate ones.
    template: [m] or [m, d], the same d as the sequences.
    window: dtaidistance's Sakoe-Chiba band (see the module docstring); None or 0 = no band.

  Returns:
    (distances float64 [N], paths): paths[s] is the int64 [K_s, 2] path of `dtw_path`.

  Raises:
    TypeError: non-numeric input or a non-integer window.
    ValueError: no sequences, wrong rank, empty input, NaN/inf, mismatched feature counts,
      negative window.
  """
  yt = _as_sequence(template, "template")
  win = _check_window(window)
  if isinstance(sequences, np.ndarray):
    if sequences.ndim != np.asarray(template).ndim + 1:
      raise ValueError(f"sequences as an array must be [N, n] (1-D template) or [N, n, d] "
                       f"(2-D template), got shape {sequences.shape} for a template of shape "
                       f"{np.shape(template)}")
    sequences = list(sequences)
  else:
    sequences = list(sequences)
  if not sequences:
    raise ValueError("sequences is empty: nothing to align")
  parts = []
  for s, seq in enumerate(sequences):
    xt = _as_sequence(seq, f"sequences[{s}]")
    _check_dims(xt, yt, f"sequences[{s}]", "template")
    parts.append(xt)
  m = yt.shape[1]
  lens = np.array([p.shape[1] for p in parts], np.int64)
  starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
  path_starts = np.concatenate([[0], np.cumsum(lens + m - 1)]).astype(np.int64)
  xt_all = np.ascontiguousarray(np.concatenate(parts, axis=1))
  dists = np.empty(len(parts))
  lengths = np.empty(len(parts), np.int64)
  paths = np.empty((path_starts[-1], 2), np.int64)
  _align_batch(xt_all, starts, np.ascontiguousarray(yt[:, ::-1]), win, dists, paths,
               path_starts, lengths)
  return dists, [paths[path_starts[s]:path_starts[s] + lengths[s]].copy()
                 for s in range(len(parts))]


def path_to_index(path, n: int) -> np.ndarray:
  """One matched index of the second sequence for each index of the first.

  Rule: x[i] is matched to a contiguous run y[jmin..jmax] (the path is monotone); the index
  returned is the middle of that run, (jmin + jmax) // 2 (the lower middle for an even run).

  Args:
    path: int [K, 2] warping path with path[:, 0] covering 0..n-1 in non-decreasing order (as
      returned by `dtw_path`).
    n: length of the first sequence.

  Returns:
    int64 [n].

  Raises:
    ValueError: a path that is not [K, 2], or whose first column does not cover 0..n-1 in
      non-decreasing steps of 0 or 1.
  """
  path = np.asarray(path)
  if path.ndim != 2 or path.shape[1] != 2 or not np.issubdtype(path.dtype, np.integer):
    raise ValueError(f"path must be an int array [K, 2], got shape {path.shape} and dtype "
                     f"{path.dtype}")
  n = int(n)
  rows = path[:, 0]
  if (n < 1 or len(rows) == 0 or rows[0] != 0 or rows[-1] != n - 1
      or np.any((np.diff(rows) != 0) & (np.diff(rows) != 1))):
    raise ValueError(f"path[:, 0] must run from 0 to n - 1 = {n - 1} in steps of 0 or 1")
  first = np.searchsorted(rows, np.arange(n), side="left")
  last = np.searchsorted(rows, np.arange(n), side="right") - 1
  return ((path[first, 1] + path[last, 1]) // 2).astype(np.int64)

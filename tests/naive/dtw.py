"""Slow DTW references: the full (n+1) x (m+1) accumulated-cost matrix, filled cell by cell."""

import math

import numpy as np


def _points(x):
  x = np.asarray(x, np.float64)
  return x.reshape(len(x), -1)


def in_band(i, j, n, m, window):
  """dtaidistance's band: -(w + max(0, n-m)) < j - i < w + max(0, m-n); None/0 = no band."""
  if not window:
    return True
  return -(window + max(0, n - m)) < j - i < window + max(0, m - n)


def cost_matrix(x, y, window=None):
  """Accumulated squared-Euclidean cost D, with D[0, 0] = 0 and row/column 0 at inf.

  D[i + 1, j + 1] is the cheapest path from (0, 0) to (i, j); cells outside the band are inf.
  """
  x, y = _points(x), _points(y)
  n, m = len(x), len(y)
  acc = np.full((n + 1, m + 1), np.inf)
  acc[0, 0] = 0.0
  for i in range(n):
    for j in range(m):
      if not in_band(i, j, n, m, window):
        continue
      cost = 0.0
      for f in range(x.shape[1]):
        cost += (x[i, f] - y[j, f]) ** 2
      acc[i + 1, j + 1] = cost + min(acc[i, j], acc[i, j + 1], acc[i + 1, j])
  return acc


def distance(x, y, window=None):
  return math.sqrt(cost_matrix(x, y, window)[-1, -1])


def path(x, y, window=None, open_end=False):
  """(distance, path) by backtracking on the full matrix; ties: diagonal, then up, then left."""
  acc = cost_matrix(x, y, window)
  n, m = acc.shape[0] - 1, acc.shape[1] - 1
  i, j = n, m
  if open_end:
    j = int(np.argmin(acc[n, 1:])) + 1  # first minimum = smallest column
  total = acc[i, j]
  steps = [(i - 1, j - 1)]
  while (i, j) != (1, 1):
    options = [acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]]
    best = options.index(min(options))
    if best == 0:
      i, j = i - 1, j - 1
    elif best == 1:
      i -= 1
    else:
      j -= 1
    steps.append((i - 1, j - 1))
  return math.sqrt(total), np.array(steps[::-1], np.int64)

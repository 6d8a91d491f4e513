"""Slow, obviously correct NumPy references that the fast code is tested against."""

import numpy as np


def psnr(a, b, max_val=1.0):
  """PSNR of every frame of [N, H, W, C] arrays, one frame at a time."""
  out = []
  for x, y in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
    err = 0.0
    for v in (x - y).ravel():
      err += v * v
    err /= x.size
    out.append(10 * np.log10(max_val**2 / max(err, 1e-10)))
  return np.array(out)


def moving_average(x, window):
  """Centred mean over the frames that exist in [t - (w-1)//2, t + w//2]."""
  x = np.asarray(x, np.float64)
  left, right = (window - 1) // 2, window // 2
  return np.array([x[max(0, t - left):t + right + 1].mean() for t in range(len(x))])


def auroc(labels, scores):
  """Probability that a random anomalous frame outscores a random normal one (ties count 1/2)."""
  labels = np.asarray(labels, bool)
  pos, neg = np.asarray(scores)[labels], np.asarray(scores)[~labels]
  wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
  return wins / (len(pos) * len(neg))

"""Slow NumPy references for jaxvad.losses: explicit loops over frames and pixels, float64."""

import numpy as np


def intensity_loss(pred, target, p=2):
  """Mean of |pred - target|**p, element by element."""
  pred, target = np.asarray(pred, np.float64).ravel(), np.asarray(target, np.float64).ravel()
  return sum(abs(u - v) ** p for u, v in zip(pred, target)) / pred.size


def gradient_loss(pred, target, alpha=1):
  """FFP gradient difference loss over [N, H, W, C] frames, one neighbour pair at a time."""
  pred = np.asarray(pred, np.float64).reshape((-1,) + np.shape(pred)[-3:])
  target = np.asarray(target, np.float64).reshape(pred.shape)
  n, h, w, c = pred.shape
  sum_x = sum_y = 0.0
  for f in range(n):
    for i in range(h):
      for j in range(w):
        for k in range(c):
          if j + 1 < w:  # horizontal neighbours (x)
            gp = abs(pred[f, i, j + 1, k] - pred[f, i, j, k])
            gt = abs(target[f, i, j + 1, k] - target[f, i, j, k])
            sum_x += abs(gp - gt) ** alpha
          if i + 1 < h:  # vertical neighbours (y)
            gp = abs(pred[f, i + 1, j, k] - pred[f, i, j, k])
            gt = abs(target[f, i + 1, j, k] - target[f, i, j, k])
            sum_y += abs(gp - gt) ** alpha
  return sum_x / (n * h * (w - 1) * c) + sum_y / (n * (h - 1) * w * c)


def soft_label_cross_entropy(logits, labels):
  """Mean over rows of -sum_k labels[k] log softmax(logits)[k], with an explicit log-sum-exp."""
  logits = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
  labels = np.asarray(labels, np.float64).reshape(logits.shape)
  total = 0.0
  for z, q in zip(logits, labels):
    top = max(z)
    log_norm = top + np.log(sum(np.exp(v - top) for v in z))
    total -= sum(qk * (zk - log_norm) for zk, qk in zip(z, q))
  return total / len(logits)

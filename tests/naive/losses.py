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


def horn_schunck(frame1, frame2, alpha=1.0, iterations=20):
  """Horn & Schunck (1981) pixel by pixel: one [H, W, C] pair, edges replicated."""
  e1, e2 = np.asarray(frame1, float).mean(-1), np.asarray(frame2, float).mean(-1)
  h, w = e1.shape

  def at(e, y, x):
    return e[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]

  ex, ey, et = (np.zeros((h, w)) for _ in range(3))
  for y in range(h):
    for x in range(w):
      ex[y, x] = sum(at(e, y, x + 1) - at(e, y, x) + at(e, y + 1, x + 1) - at(e, y + 1, x)
                     for e in (e1, e2)) / 4
      ey[y, x] = sum(at(e, y + 1, x) - at(e, y, x) + at(e, y + 1, x + 1) - at(e, y, x + 1)
                     for e in (e1, e2)) / 4
      et[y, x] = sum(at(e2, y + dy, x + dx) - at(e1, y + dy, x + dx)
                     for dy in (0, 1) for dx in (0, 1)) / 4
  u, v = np.zeros((h, w)), np.zeros((h, w))
  for _ in range(iterations):
    u_new, v_new = np.zeros((h, w)), np.zeros((h, w))
    for y in range(h):
      for x in range(w):
        def average(f):
          return ((at(f, y - 1, x) + at(f, y + 1, x) + at(f, y, x - 1) + at(f, y, x + 1)) / 6
                  + (at(f, y - 1, x - 1) + at(f, y - 1, x + 1) + at(f, y + 1, x - 1)
                     + at(f, y + 1, x + 1)) / 12)
        ub, vb = average(u), average(v)
        common = (ex[y, x] * ub + ey[y, x] * vb + et[y, x]) / (alpha ** 2 + ex[y, x] ** 2
                                                                + ey[y, x] ** 2)
        u_new[y, x], v_new[y, x] = ub - ex[y, x] * common, vb - ey[y, x] * common
    u, v = u_new, v_new
  return np.stack([u, v], axis=-1)


def triplet_loss(anchor, positive, negative, margin=0.2, axis=-1):
  """Mean hinge of torch's PairwiseDistance(p=2) triplets over `axis` of [N, H, W, C] maps,
  one feature vector at a time."""
  a, p, n = (np.moveaxis(np.asarray(x, np.float64), axis, -1) for x in (anchor, positive,
                                                                         negative))
  lead = a.shape[:-1]
  total = 0.0
  for idx in np.ndindex(*lead):
    d_pos = np.sqrt(sum((u - v + 1e-6) ** 2 for u, v in zip(a[idx], p[idx])))
    d_neg = np.sqrt(sum((u - v + 1e-6) ** 2 for u, v in zip(a[idx], n[idx])))
    total += max(d_pos - d_neg + margin, 0.0)
  return total / int(np.prod(lead))


def destroyer_loss(output, prediction, patch_ssim, grid, lam):
  """Paper 004's Destroyer loss, patch by patch: mean over images of the sum over patches of
  d·mean((-1 - D)²) + (1 - d)·mean((A - D)²), d = min(lam (1 - SSIM), 1); `patch_ssim`
  [N, grid, grid] the SSIM of each noisy patch against the frame."""
  output, prediction = np.asarray(output, np.float64), np.asarray(prediction, np.float64)
  n, h, w, _ = output.shape
  ph, pw = h // grid, w // grid
  total = 0.0
  for i in range(n):
    for r in range(grid):
      for c in range(grid):
        rows, cols = slice(r * ph, (r + 1) * ph), slice(c * pw, (c + 1) * pw)
        d = min(lam * (1 - float(patch_ssim[i, r, c])), 1.0)
        out = output[i, rows, cols]
        total += d * np.mean((-1 - out) ** 2) + (1 - d) * np.mean((prediction[i, rows, cols]
                                                                   - out) ** 2)
  return total / n

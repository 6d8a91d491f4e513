"""Slow references for the partition-order labels, written straight from the equations."""

import math

import numpy as np


def frame_signal(frames):
  """Mean over pixels of the channel-wise Euclidean distance to frame 0, one pixel at a time."""
  frames = np.asarray(frames, np.float64)
  if frames.ndim == 3:
    frames = frames[..., None]
  t_len, h, w, c = frames.shape
  out = np.zeros(t_len)
  for t in range(t_len):
    total = 0.0
    for y in range(h):
      for x in range(w):
        sq = 0.0
        for ch in range(c):
          sq += (frames[t, y, x, ch] - frames[0, y, x, ch]) ** 2
        total += math.sqrt(sq)
    out[t] = total / (h * w)
  return out


def partition_labels(phase, num_classes):
  """Eq. 3.2.2 with t in [0, T_period): k = t / (T_period / C), the class is floor(k)."""
  return np.array([min(int(math.floor(p * num_classes)), num_classes - 1) for p in phase],
                  np.int64)


def _trapezoid(u, start, stop, h):
  """Eq. 3.2.3 (consistent reading) for a class on [start, stop): 0 / rise / 1 / fall / 0."""
  if h == 0:
    return 1.0 if start <= u < stop else 0.0
  if u < start - h or u >= stop + h:
    return 0.0
  if u < start + h:
    return (u - start + h) / (2 * h)
  if u < stop - h:
    return 1.0
  return (stop + h - u) / (2 * h)


def smoothed_labels(phase, num_classes, transition, period):
  """Every class's trapezoid, summed over the previous, this and the next cycle (cyclic)."""
  h = transition // 2
  width = period / num_classes
  out = np.zeros((len(phase), num_classes))
  for t, p in enumerate(phase):
    u = p * period
    for c in range(num_classes):
      out[t, c] = sum(_trapezoid(u + s * period, c * width, (c + 1) * width, h)
                      for s in (-1, 0, 1))
  return out


def true_phase(cycle_starts, num_frames):
  """Ground-truth phase: (t - start of t's cycle) / length of that cycle (last: to the end)."""
  bounds = list(cycle_starts) + [num_frames]
  phase = np.zeros(num_frames)
  for a, b in zip(bounds[:-1], bounds[1:]):
    for t in range(a, b):
      phase[t] = (t - a) / (b - a)
  return phase

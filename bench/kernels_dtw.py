"""DTW and partition-label timings: jaxvad_kernels vs dtaidistance (C) and tslearn.

    python bench/kernels.py --only dtw [--quick] [--repeats 5]

Inputs are random float64 series (standard normal, seed 0), the same arrays for every
implementation. `run()` returns rows for bench/kernels.py's table.
"""

from __future__ import annotations

import numpy as np

from jaxvad_kernels import dtw, partition
from timing import median_ms


def _peers():
  """(dtaidistance.dtw with its C library, tslearn.metrics), each None when unavailable."""
  try:
    from dtaidistance import dtw as dtai
    if not dtai.try_import_c():
      dtai = None
  except ImportError:
    dtai = None
  try:
    from tslearn import metrics as tsl
  except ImportError:
    tsl = None
  return dtai, tsl


def _dtw_rows(n: int, repeats: int) -> list[dict]:
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal(n), rng.standard_normal(n)
  dtai, tsl = _peers()
  dist_task, path_task = f"DTW distance n={n}", f"DTW distance+path n={n}"
  impls_dist = {"jaxvad_kernels": lambda: dtw.dtw_distance(x, y)}
  impls_path = {"jaxvad_kernels": lambda: dtw.dtw_path(x, y)}
  if dtai is not None:
    impls_dist["dtaidistance (C)"] = lambda: dtai.distance_fast(x, y)
    impls_path["dtaidistance (C)"] = lambda: dtai.warping_path_fast(x, y, include_distance=True)
  if tsl is not None:
    impls_dist["tslearn"] = lambda: tsl.dtw(x, y)
    impls_path["tslearn"] = lambda: tsl.dtw_path(x, y)
  # The same answer first: a timing of a wrong result is worthless.
  ref = dtw.dtw_distance(x, y)
  for name, fn in impls_dist.items():
    got = float(fn())
    if not np.isclose(got, ref, rtol=1e-9):
      raise AssertionError(f"{dist_task}: {name} gives {got}, jaxvad_kernels {ref}")
  baseline = "dtaidistance (C)" if dtai is not None else "jaxvad_kernels"
  rows = []
  for task, impls in ((dist_task, impls_dist), (path_task, impls_path)):
    # The O(n^2) peers get fewer repeats at the largest size; a median of 3 is still a median.
    reps = repeats if n <= 2000 else max(3, repeats // 2)
    for name, fn in impls.items():
      rows.append({"task": task, "impl": name, "median_ms": median_ms(fn, repeats=reps),
                   "baseline": baseline})
  return rows


def _batch_rows(repeats: int, quick: bool) -> list[dict]:
  """64 sequences of ~300 frames aligned to a 400-sample template, band 50."""
  rng = np.random.default_rng(1)
  n_seq, length, m, window = (8, 100, 120, 20) if quick else (64, 300, 400, 50)
  seqs = [rng.standard_normal(length + int(rng.integers(-20, 20))) for _ in range(n_seq)]
  template = rng.standard_normal(m)
  task = f"DTW align {n_seq} seqs to a template (band {window})"
  rows = [{"task": task, "impl": "jaxvad_kernels dtw_align_batch (prange)",
           "median_ms": median_ms(lambda: dtw.dtw_align_batch(seqs, template, window=window),
                                  repeats=repeats),
           "baseline": "jaxvad_kernels dtw_path loop"},
          {"task": task, "impl": "jaxvad_kernels dtw_path loop",
           "median_ms": median_ms(lambda: [dtw.dtw_path(s, template, window=window)
                                           for s in seqs], repeats=repeats),
           "baseline": "jaxvad_kernels dtw_path loop"}]
  dtai, _ = _peers()
  if dtai is not None:
    rows.append({"task": task, "impl": "dtaidistance (C) warping_path_fast loop",
                 "median_ms": median_ms(lambda: [dtai.warping_path_fast(s, template,
                                                                        window=window)
                                                 for s in seqs], repeats=repeats),
                 "baseline": "jaxvad_kernels dtw_path loop"})
  return rows


def _cyclic_clip(num_frames: int, size: int, rng) -> np.ndarray:
  """uint8 [T, size, size, 3]: a block moving along a jittered cyclic trajectory, plus noise."""
  frames = rng.integers(0, 20, (num_frames, size, size, 3), dtype=np.uint8)
  t, phase = 0, 0.0
  while t < num_frames:
    period = int(rng.integers(20, 41))
    for k in range(min(period, num_frames - t)):
      phase = k / period
      pos = int((size - 16) * (0.5 - 0.5 * np.cos(2 * np.pi * phase)))
      frames[t + k, size // 2 - 8:size // 2 + 8, pos:pos + 16] = 200
    t += period
  return frames


def _label_rows(repeats: int, quick: bool) -> list[dict]:
  """Partition-order labels end to end: signal, period, template, DTW phase, smoothed labels."""
  rng = np.random.default_rng(2)
  num_frames, size = (1000, 64) if quick else (10_000, 128)
  frames = _cyclic_clip(num_frames, size, rng)

  def signal_only():
    return partition.frame_signal(frames)

  def end_to_end():
    signal = partition.frame_signal(frames)
    return partition.partition_order_labels([signal], num_classes=8, transition=2)

  task = f"partition labels, {num_frames} frames {size}×{size}×3"
  labels = end_to_end()
  if not 20 <= labels.period <= 40:
    raise AssertionError(f"{task}: estimated period {labels.period}, cycles are 20-40 frames")
  return [{"task": task, "impl": "jaxvad_kernels frame_signal only",
           "median_ms": median_ms(signal_only, repeats=repeats), "baseline": ""},
          {"task": task, "impl": "jaxvad_kernels end to end",
           "median_ms": median_ms(end_to_end, repeats=repeats), "baseline": ""}]


def run(*, quick: bool = False, repeats: int = 5) -> list[dict]:
  """All DTW and label-construction rows: {"task", "impl", "median_ms", "baseline"}."""
  rows = []
  for n in ((200, 500) if quick else (500, 2000, 5000)):
    rows += _dtw_rows(n, repeats)
  rows += _batch_rows(repeats, quick)
  rows += _label_rows(repeats, quick)
  return rows


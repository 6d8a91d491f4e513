"""Timing shared by the bench/ scripts."""

from __future__ import annotations

import platform
import statistics
import time


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), or what `platform` knows where that is missing."""
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def median_ms(fn, *, repeats: int, warmup: int = 1, settle_s: float = 1.0) -> float:
  """Median wall time of fn() in ms, after `warmup` untimed calls (compilation).

  A result with `block_until_ready` (a JAX array) is waited for inside the timing. The first
  `settle_s` seconds are idle: the thread pools of the previous implementation (OpenMP under
  torch, XLA's) spin-wait a while after their last call and would share the 2 cores.
  """
  time.sleep(settle_s)
  def call():
    out = fn()
    if hasattr(out, "block_until_ready"):
      out.block_until_ready()
    return out

  for _ in range(warmup):
    call()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)

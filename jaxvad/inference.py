"""Running a method's per-window step over whole clips: the windows, the batches, the padding.

Every consumer of a trained model (evaluation, `jaxvad score`, masks, the reproductions) goes
through `WindowRunner`, so the tiling below is the one place that decides which window's
output a frame gets.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from jaxvad import exported, sharding
from jaxvad.data import pipeline

__all__ = ["WindowRunner"]


class WindowRunner:
  """A jitted per-window step and how to tile a clip with its windows.

  Reconstructors (`last_only=False`) tile each clip with non-overlapping windows (plus one
  aligned to its end), so every frame's output comes from exactly one window that saw it. Frame
  predictors (`last_only=True`) slide windows with stride 1 and get an output for each window's
  last frame; the first `window - 1` frames get NaN.

  Args:
    step: pure `(state, {"frames": uint8 [B, window, H, W, C]}) -> dict` of per-frame outputs
      `[B, window, ...]` (`[B, 1, ...]` when `last_only`).
    window: frames per window (the model's training window).
    batch_size: windows per call; rounded up to a multiple of the device count.
    last_only: the step returns outputs for each window's last frame only.
    mesh: the mesh to split window batches over (default: all devices).
  """

  def __init__(self, step: Callable, *, window: int, batch_size: int, last_only: bool = False,
               mesh=None):
    self.mesh = mesh if mesh is not None else sharding.make_mesh()
    self.fn = sharding.jit_window_step(step, self.mesh)
    self.window = int(window)
    per_device = -(-int(batch_size) // self.mesh.size)
    self.batch_size = per_device * self.mesh.size
    self.last_only = bool(last_only)

  def run_windows(self, state, frames: np.ndarray, starts: np.ndarray,
                  keys: Sequence[str], inputs: Mapping[str, np.ndarray] | None = None
                  ) -> dict[str, np.ndarray]:
    """Outputs `keys` of the windows starting at `starts`, one row per start. The last batch is
    padded so only one shape is compiled. `inputs`: the method's per-frame inputs of the clip
    (`Method.frame_inputs`, `[T, ...]` each), windowed with the frames into every batch."""
    out = {k: [] for k in keys}
    arrays = {"frames": frames, **(inputs or {})}
    for i in range(0, len(starts), self.batch_size):
      chunk = starts[i:i + self.batch_size]
      rows = chunk[:, None] + np.arange(self.window)
      pad = self.batch_size - len(chunk)
      if pad:
        rows = np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)])
      result = self.fn(state, {name: a[rows] for name, a in arrays.items()})
      for k in keys:
        out[k].append(np.asarray(result[k])[:len(chunk)])
    return {k: np.concatenate(v) for k, v in out.items()}

  def clip_outputs(self, state, frames: np.ndarray, keys: Sequence[str],
                   inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-frame outputs `keys` of every frame of a clip.

    Args:
      state: the trained state.
      frames: uint8 `[T, H, W, C]`, T >= window.
      keys: which outputs to collect.
      inputs: the method's per-frame inputs of the clip (`run_windows`).

    Returns:
      {key: `[T, ...]`}, frame t's output; NaN for frames no window predicts.
    """
    starts, owner = pipeline.eval_windows(len(frames), window=self.window,
                                          last_only=self.last_only)
    out = self.run_windows(state, frames, starts, keys, inputs)
    return {k: exported.frame_values(v, owner) for k, v in out.items()}

  def frame_outputs(self, state, frames: np.ndarray, frame_idx: Sequence[int],
                    keys: Sequence[str], inputs: Mapping[str, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
    """Outputs `keys` of chosen frames only, from the same windows `clip_outputs` uses.

    Raises:
      ValueError: a frame no window predicts (before a frame predictor's first full window).
    """
    starts, owner = pipeline.eval_windows(len(frames), window=self.window,
                                          last_only=self.last_only)
    rows = owner[np.asarray(frame_idx, np.int64)]
    if (rows[:, 0] < 0).any():
      raise ValueError(f"frames {list(np.asarray(frame_idx)[rows[:, 0] < 0])} come before the "
                       f"first full window of {self.window} frames: the model does not predict "
                       "them")
    out = self.run_windows(state, frames, starts[rows[:, 0]], keys, inputs)
    return {k: v[np.arange(len(rows)), rows[:, 1]] for k, v in out.items()}


"""Grain input pipeline: sliding windows over in-memory clips, and the tiling used for scoring.

Training batches come from `train_dataset`, an infinite random-access `grain.MapDataset`
whose item k is the batch of training step k, a pure function of (seed, k). A killed run
therefore resumes exactly with `prefetch(ds, start_step=k)`: no iterator state to save.

How the order is built (grain 0.2.18): `shuffle` maps index i of epoch e = i // N to a
permutation seeded with `seed + e`, and `repeat(None)` just forwards indices past N to it,
so every epoch is a fresh permutation of all N windows. Because grain adds the epoch to the
seed, user seed s in epoch 1 would equal seed s + 1 in epoch 0; the user seed is hashed to
32 bits first so that neighbouring seeds give unrelated orders.

Frames stay uint8 throughout; the model casts on device, so the host ships 4x fewer bytes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence

import grain
import jax
import numpy as np

from jaxvad import exported
from jaxvad.errors import ConfigError, DataError

__all__ = [
    "window_starts", "window_index", "WindowSource", "train_dataset", "prefetch", "eval_windows",
]


def _check_window(window: int, stride: int | None = None) -> None:
  if int(window) != window or window < 1:
    raise ConfigError(f"data.window = {window!r} must be an integer >= 1")
  if stride is not None and (int(stride) != stride or stride < 1):
    raise ConfigError(f"data.stride = {stride!r} must be an integer >= 1")


def window_starts(num_frames: int, *, window: int, stride: int) -> np.ndarray:
  """First frames of all windows `[s, s + window)` that fit in a clip, every `stride` frames.

  Args:
    num_frames: frames in the clip.
    window: frames per window.
    stride: step between window starts.

  Returns:
    int64 `[n]`: `0, stride, 2 * stride, ... <= num_frames - window` (empty if the clip is
    shorter than the window).
  """
  _check_window(window, stride)
  return np.arange(0, max(num_frames - window + 1, 0), stride, dtype=np.int64)


def window_index(clip_lengths: Sequence[int], *, window: int, stride: int) -> np.ndarray:
  """All training windows of a set of clips.

  Args:
    clip_lengths: frames per clip.
    window: frames per window.
    stride: step between window starts within a clip.

  Returns:
    int64 `[N, 2]` rows `(clip_idx, start)`, clip by clip; clips shorter than the window
    contribute nothing.

  Raises:
    DataError: no clip is long enough for a single window.
  """
  parts = [np.zeros((0, 2), np.int64)]
  for c, n in enumerate(clip_lengths):
    starts = window_starts(int(n), window=window, stride=stride)
    parts.append(np.stack([np.full(len(starts), c, np.int64), starts], axis=1))
  index = np.concatenate(parts)
  if not len(index):
    longest = max(clip_lengths, default=0)
    raise DataError(f"no training windows: data.window = {window} but the longest of the "
                    f"{len(clip_lengths)} clips has {longest} frames; lower data.window or add "
                    f"longer clips")
  return index


class WindowSource:
  """Grain random-access source: item i is the i-th window of `window_index` over the clips.

  Items are `{"frames": uint8 [window, H, W, C], **targets}`, views into the clips (no copy);
  batching stacks them into fresh arrays.
  """

  def __init__(self, clips: Sequence[np.ndarray], *, window: int, stride: int,
               per_frame: dict[str, Sequence[np.ndarray]] | None = None):
    """Indexes the windows of in-memory clips.

    Args:
      clips: uint8 arrays `[T_i, H, W, C]` that share H, W and C.
      window: frames per window.
      stride: step between window starts within a clip.
      per_frame: optional per-frame training targets, name -> one array `[T_i, ...]` per clip
        (e.g. the soft partition labels of paper 000 §3.2); each item carries the same window
        of them under that name.

    Raises:
      DataError: no clips, a clip that is not uint8 `[T, H, W, C]`, clips of different
        frame shapes, no clip as long as the window, or targets whose lengths differ from
        their clips'.
    """
    if not len(clips):
      raise DataError("no training clips: the training split is empty")
    clips = list(clips)
    for i, clip in enumerate(clips):
      if not isinstance(clip, np.ndarray) or clip.dtype != np.uint8 or clip.ndim != 4:
        raise DataError(f"clip {i} must be a uint8 array [T, H, W, C], got "
                        f"{getattr(clip, 'dtype', type(clip).__name__)} "
                        f"{getattr(clip, 'shape', '')}")
      if clip.shape[1:] != clips[0].shape[1:]:
        raise DataError(f"clip {i} has frames of shape {clip.shape[1:]} (H, W, C) but clip 0 "
                        f"has {clips[0].shape[1:]}; read every clip with the same data.size and "
                        f"data.grayscale")
    self._clips = clips
    self._per_frame = {}
    for name, arrays in (per_frame or {}).items():
      arrays = [np.asarray(a) for a in arrays]
      if len(arrays) != len(clips) or any(len(a) != len(c) for a, c in zip(arrays, clips)):
        raise DataError(f"per-frame target {name!r} must hold one array per clip with one row "
                        f"per frame: clips have {[len(c) for c in clips]} frames, the target "
                        f"{[len(a) for a in arrays]} rows")
      self._per_frame[name] = arrays
    self._window = int(window)
    self._index = window_index([len(c) for c in clips], window=window, stride=stride)

  @property
  def index(self) -> np.ndarray:
    """int64 `[N, 2]` rows `(clip_idx, start)`: item i is `index[i]`."""
    return self._index

  @property
  def frame_shape(self) -> tuple[int, int, int]:
    """`(H, W, C)` shared by all clips."""
    return self._clips[0].shape[1:]

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, i: int) -> np.ndarray:
    i = operator.index(i)
    if not -len(self._index) <= i < len(self._index):
      raise IndexError(f"window {i} out of range for {len(self._index)} windows")
    clip, start = self._index[i]
    span = slice(start, start + self._window)
    return {"frames": self._clips[clip][span],
            **{name: arrays[clip][span] for name, arrays in self._per_frame.items()}}

  def __repr__(self) -> str:
    return (f"WindowSource({len(self._clips)} clips, {len(self)} windows of {self._window} "
            f"frames {self.frame_shape})")


_TRANSFORM_SALT = 0x686F7374   # "host": the transforms' stream differs from the shuffle's


def _shuffle_seed(seed: int) -> int:
  # Grain seeds epoch e with seed + e, so raw neighbouring seeds share epochs; hashing
  # through SeedSequence makes them unrelated while staying deterministic.
  return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def train_dataset(clips: Sequence[np.ndarray], *, window: int, stride: int,
                  global_batch_size: int, seed: int, shuffle: bool = True,
                  per_frame: dict[str, Sequence[np.ndarray]] | None = None,
                  transform: Callable[[dict, np.random.Generator], dict] | None = None,
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.MapDataset:
  """Infinite random-access dataset of training batches: item k is the batch of step k.

  The windows form an endless stream, each epoch a fresh permutation of all windows
  (sequential order if `shuffle=False`); global batch k is stream elements
  `[k * B, (k + 1) * B)`. Process p of P gets the contiguous block `[p * b, (p + 1) * b)` of
  every global batch (b = B // P), so the processes' batches are disjoint and, concatenated in
  process order, are the global batch: the rows its devices hold in a process-major mesh
  (`jaxvad.sharding.local_batch_block`), so a step sees the batch a single process would.

  Args:
    clips: uint8 arrays `[T_i, H, W, C]` that share H, W and C.
    window: frames per window.
    stride: step between window starts within a clip.
    global_batch_size: windows per step over all processes (B).
    seed: data-order seed (>= 0).
    shuffle: shuffle the windows (per epoch); False keeps clip order.
    per_frame: per-frame targets windowed with the frames (see `WindowSource`).
    transform: `(item, numpy Generator) -> item`, a random host transform of every window
      (`Method.host_transform`); stream element j gets a generator seeded by (seed, j), so
      the same window is transformed afresh in every epoch and a resumed run repeats it.
    process_index: this process (p); defaults to `jax.process_index()`.
    process_count: number of processes (P); defaults to `jax.process_count()`.

  Returns:
    A `grain.MapDataset` of `{"frames": uint8 [B // P, window, H, W, C], **targets
    [B // P, window, ...]}` whose length is effectively infinite (`sys.maxsize // (B // P)`).

  Raises:
    ConfigError: bad window/stride/batch size/seed or process numbers.
    DataError: bad clips (see `WindowSource`).
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ConfigError(f"process_index = {process_index} must be in [0, {process_count})")
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ConfigError(f"train.batch_size = {global_batch_size} must be a positive multiple of "
                      f"the number of processes ({process_count})")
  if shuffle and (int(seed) != seed or seed < 0):
    raise ConfigError(f"train.seed = {seed!r} must be an integer >= 0")
  ds = grain.MapDataset.source(WindowSource(clips, window=window, stride=stride,
                                            per_frame=per_frame))
  if shuffle:
    ds = ds.shuffle(seed=_shuffle_seed(int(seed)))
  # repeat() only lifts the length; indices past one epoch reach shuffle, which reseeds
  # with the epoch number (reseed_each_epoch=True is grain's default).
  ds = ds.repeat(None)
  if transform is not None:   # before the process split: element j's draw is global
    ds = ds.random_map(transform, seed=_shuffle_seed(int(seed) ^ _TRANSFORM_SALT))
  # Blocks of b consecutive stream elements; global batch k is blocks kP .. kP + P - 1, and
  # process p reads only its own block of each (never the others' windows).
  ds = ds.batch(global_batch_size // process_count, drop_remainder=True)
  return ds[process_index::process_count] if process_count > 1 else ds


def prefetch(ds: grain.MapDataset, *, start_step: int = 0, num_threads: int = 2,
             buffer_size: int = 4) -> Iterator[dict]:
  """Iterates `ds[start_step:]` with background threads, so batching overlaps device steps.

  Args:
    ds: from `train_dataset` (or any MapDataset).
    start_step: first item yielded (the step to resume from).
    num_threads: reader threads (0 reads on the calling thread).
    buffer_size: items read ahead.

  Returns:
    An iterator of `ds[start_step]`, `ds[start_step + 1]`, ...
  """
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=buffer_size)
  return iter(ds[start_step:].to_iter_dataset(options))


def eval_windows(num_frames: int, *, window: int,
                 last_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Tiles a clip with windows so that each frame is predicted by exactly one of them:
  `jaxvad.exported.window_tiling` (the one definition, which exported scorers use too), with
  a jaxvad error for a short clip.

  Args:
    num_frames: frames in the clip (>= window).
    window: frames per window.
    last_only: the model's output per window is its last frame only (`[B, 1, ...]`).

  Returns:
    `(starts, owner)` as `window_tiling` returns them.

  Raises:
    DataError: the clip is shorter than the window.
  """
  _check_window(window)
  if num_frames < window:
    raise DataError(f"the clip has {num_frames} frames but windows are {window} frames long; "
                    f"it needs at least {window} frames (or a smaller data.window)")
  return exported.window_tiling(num_frames, window=window, last_only=last_only)

"""Exported scorers: a trained detector's window step as serialized StableHLO, usable with jax
and numpy only.

`jaxvad export` writes one file: a zip holding `scorer.stablehlo` (`jax.export`, the batch
dimension symbolic, the trained weights inside) and `metadata.json`, the input contract
(dtype, layout, window, frame size, how frames were resized and cropped, the per-frame inputs
a method needs beside the frames), the score's terms and orientation, and, when the run had
normal validation clips, the live threshold (`jaxvad score --stream`).

This module imports nothing from jaxvad, flax or the model code: copy this one file beside a
scorer to use it on a machine with only `jax` and `numpy`:

    scorer = load_scorer("scorer.bin")
    raw = scorer(frames)                # uint8 [T, H, W, C] -> float64 [T], as `jaxvad score`
    anomaly = scorer.anomaly_scores(raw)   # oriented: higher = more anomalous

The window tiling (`window_tiling`) and the combination of several score terms
(`combine_terms`) are defined here, and jaxvad's own scorers call them, so an exported scorer
cannot drift from `jaxvad score`.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Mapping, Sequence

import numpy as np

__all__ = ["FORMAT", "VERSION", "ExportedScorer", "load_scorer", "read_metadata",
           "window_tiling", "frame_values", "combine_terms", "serialize"]

FORMAT = "jaxvad-scorer"
VERSION = 1
METADATA_FILE = "metadata.json"
PROGRAM_FILE = "scorer.stablehlo"


# --------------------------------------------------------------------------- windows and terms


def window_tiling(num_frames: int, *, window: int,
                  last_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Tiles a clip with windows so that each frame is predicted by exactly one of them.

  Non-overlapping windows start at 0, window, 2 * window, ...; if frames remain, one more
  window ends at the last frame and owns just those frames (it overlaps the one before).
  For a model that predicts only each window's last frame (`last_only`, e.g. a 4 + 1 frame
  predictor), windows slide with stride 1 and frame t is owned by the window ending at it.

  Args:
    num_frames: frames in the clip (>= window).
    window: frames per window (>= 1).
    last_only: the model's output per window is its last frame only (`[B, 1, ...]`).

  Returns:
    `(starts, owner)`: int64 `[M]` window starts, and int64 `[num_frames, 2]` rows
    `(window_idx, offset)` so that frame t is `starts[window_idx] + offset` (`last_only`:
    offset is the index in the window's output, 0; frames before `window - 1` have no
    window and get the row (-1, -1)).

  Raises:
    ValueError: a window below 1, or a clip shorter than the window.
  """
  if isinstance(window, bool) or int(window) != window or window < 1:
    raise ValueError(f"window must be an integer >= 1, got {window!r}")
  if num_frames < window:
    raise ValueError(f"the clip has {num_frames} frames but windows are {window} frames long; "
                     f"it needs at least {window} frames")
  t = np.arange(num_frames, dtype=np.int64)
  if last_only:
    starts = np.arange(num_frames - window + 1, dtype=np.int64)
    owner = np.stack([t - (window - 1), np.zeros_like(t)], axis=1)
    owner[:window - 1] = -1
    return starts, owner
  full = num_frames // window
  starts = np.arange(full, dtype=np.int64) * window
  owner = np.stack([t // window, t % window], axis=1)
  if num_frames % window:
    last = num_frames - window
    starts = np.append(starts, last)
    tail = t >= full * window
    owner[tail] = np.stack([np.full(tail.sum(), full), t[tail] - last], axis=1)
  return starts, owner


def frame_values(window_values: np.ndarray, owner: np.ndarray) -> np.ndarray:
  """Each frame's value from the window that owns it.

  Args:
    window_values: per-window outputs `[M, T_w, ...]` (windows in `window_tiling` order).
    owner: `window_tiling`'s owner rows `[T, 2]`.

  Returns:
    `[T, ...]`; NaN (float) for frames no window predicts.
  """
  values = window_values[owner[:, 0], owner[:, 1]]
  missing = owner[:, 0] < 0
  if missing.any():
    values = values.astype(np.promote_types(values.dtype, np.float32))
    values[missing] = np.nan
  return values


def combine_terms(terms: Sequence[Mapping], values: Mapping[str, np.ndarray], *,
                  stats: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
  """One clip's raw score from its per-term scores.

  One term is the raw score as it is. Several are each oriented (higher = anomalous),
  standardised and summed with their weights: by the clip's own scored frames (as
  `jaxvad score` and evaluation do: paper 004's per-video z-scores), or by fixed `stats`
  (live scoring, where the rest of the video is not known yet).

  Args:
    terms: `[{"name", "higher_is_anomalous", "weight"}]`, the score's terms.
    values: {term name: float `[T]`} (NaN on unscored frames).
    stats: {term name: (mean, std)} of the oriented term; None: the clip's own.

  Returns:
    float64 `[T]`, NaN where any term is NaN.
  """
  if len(terms) == 1:
    return np.asarray(values[terms[0]["name"]], np.float64)
  total = 0.0
  for term in terms:
    x = np.asarray(values[term["name"]], np.float64)
    x = x if term["higher_is_anomalous"] else -x
    if stats is None:
      finite = np.isfinite(x)
      mean = x[finite].mean() if finite.any() else 0.0
      std = x[finite].std() if finite.any() else 0.0
    else:
      mean, std = stats[term["name"]]
    total = total + term["weight"] * (x - mean) / (std if std > 0 else 1.0)
  return total


# --------------------------------------------------------------------------- loading


def read_metadata(path) -> dict:
  """The metadata of a scorer file written by `jaxvad export` (without deserializing it).

  Args:
    path: the scorer file.

  Returns:
    The metadata dict (`format`, `version`, `input`, `output`, `score`, `live`, `source`).

  Raises:
    ValueError: the file is not a jaxvad scorer (or of a newer format).
  """
  with _open(path) as z:
    return _metadata(z, path)


def _open(path) -> zipfile.ZipFile:
  try:
    return zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    raise ValueError(f"{path} is not a jaxvad scorer (not a zip file): write one with "
                     f"`jaxvad export --workdir RUN --out {path}`") from None


def _metadata(z: zipfile.ZipFile, path) -> dict:
  try:
    meta = json.loads(z.read(METADATA_FILE))
  except (KeyError, ValueError):
    raise ValueError(f"{path} is not a jaxvad scorer: no readable {METADATA_FILE}") from None
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path} is not a jaxvad scorer (format {meta.get('format')!r})")
  if meta.get("version", 0) > VERSION:
    raise ValueError(f"{path} is a version {meta['version']} scorer; this loader reads version "
                     f"{VERSION}: update jaxvad (or this file)")
  return meta


def load_scorer(path) -> "ExportedScorer":
  """Loads a scorer written by `jaxvad export`.

  Args:
    path: the scorer file.

  Returns:
    An `ExportedScorer`: call it on a clip's uint8 frames for the raw score per frame.

  Raises:
    ValueError: not a jaxvad scorer, or one not exported for this machine's platform.
  """
  import jax   # here, so reading metadata needs numpy only

  with _open(path) as z:
    meta = _metadata(z, path)
    program = z.read(PROGRAM_FILE)
  exported = jax.export.deserialize(bytearray(program))
  platform = jax.default_backend()
  if platform not in exported.platforms:
    raise ValueError(f"{path} was exported for {', '.join(exported.platforms)}, not {platform}: "
                     f"export it again with `jaxvad export --platforms {platform}`")
  return ExportedScorer(meta, exported)


class ExportedScorer:
  """A deserialized scorer (`load_scorer`).

  Attributes:
    metadata: the file's metadata: `input` (the contract), `score` (terms, orientation),
      `live` (threshold and term statistics, or None), `source` (run, method, step).
    window, last_only, frame_shape, batch_size: the input contract's essentials.
  """

  def __init__(self, metadata: dict, exported):
    self.metadata = metadata
    contract = metadata["input"]
    self.window = int(contract["window"])
    self.last_only = bool(contract["last_only"])
    self.frame_shape = tuple(contract["frame_shape"])
    self.batch_size = int(contract["batch_size"])
    self.inputs = dict(contract["inputs"])
    self.terms_spec = list(metadata["score"]["terms"])
    self._exported = exported

  @property
  def higher_is_anomalous(self) -> bool:
    return bool(self.metadata["score"]["higher_is_anomalous"])

  def _check(self, frames: np.ndarray, inputs: Mapping[str, np.ndarray]) -> None:
    if frames.dtype != np.uint8 or frames.shape[-3:] != self.frame_shape:
      raise ValueError(f"frames must be uint8 [..., {', '.join(map(str, self.frame_shape))}] "
                       f"(resized as metadata['input'] says), got {frames.dtype} "
                       f"{list(frames.shape)}")
    missing = sorted(set(self.inputs) - set(inputs))
    if missing:
      raise ValueError(f"this scorer needs the per-frame inputs {missing} beside the frames "
                       f"(metadata['input']['inputs'] says what each is)")

  def window_outputs(self, frames: np.ndarray, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The score terms of a batch of windows, as the exported step computes them.

    Args:
      frames: uint8 `[B, window, H, W, C]`, any B.
      **inputs: the per-frame inputs the contract names, `[B, window, ...]` each.

    Returns:
      {term: float32 `[B, window]`} (`[B, 1]` for a frame predictor: each window's last frame).
    """
    frames = np.asarray(frames)
    self._check(frames, inputs)
    batch = {"frames": frames, **{k: np.asarray(inputs[k], self.inputs[k]["dtype"])
                                  for k in self.inputs}}
    return {k: np.asarray(v) for k, v in self._exported.call(batch).items()}

  def terms(self, frames: np.ndarray, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """{term: float `[T]`} of every frame of a clip (NaN on frames no window predicts).

    Args:
      frames: uint8 `[T, H, W, C]`, T >= window.
      **inputs: the per-frame inputs the contract names, `[T, ...]` each.
    """
    frames = np.asarray(frames)
    self._check(frames, inputs)
    starts, owner = window_tiling(len(frames), window=self.window, last_only=self.last_only)
    arrays = {"frames": frames, **{k: np.asarray(inputs[k]) for k in self.inputs}}
    out: dict[str, list] = {t["name"]: [] for t in self.terms_spec}
    for i in range(0, len(starts), self.batch_size):
      chunk = starts[i:i + self.batch_size]
      rows = chunk[:, None] + np.arange(self.window)
      # Padded to a power of two (at most batch_size): few shapes compile, short clips
      # do not pay for a full batch.
      pad = min(self.batch_size, 1 << (len(chunk) - 1).bit_length()) - len(chunk)
      if pad:
        rows = np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)])
      result = self.window_outputs(**{k: a[rows] for k, a in arrays.items()})
      for k in out:
        out[k].append(result[k][:len(chunk)])
    return {k: frame_values(np.concatenate(v), owner) for k, v in out.items()}

  def __call__(self, frames: np.ndarray, **inputs: np.ndarray) -> np.ndarray:
    """float64 `[T]` raw score of every frame of a clip, as `jaxvad score`'s raw column (NaN
    on unscored frames); several terms are combined over this clip (`combine_terms`)."""
    return combine_terms(self.terms_spec, self.terms(frames, **inputs))

  def anomaly_scores(self, raw: np.ndarray) -> np.ndarray:
    """Raw scores oriented so that higher = more anomalous."""
    raw = np.asarray(raw, np.float64)
    return raw if self.higher_is_anomalous else -raw


def serialize(metadata: dict, program: bytes) -> bytes:
  """A scorer file's bytes.

  Args:
    metadata: the contract (`jaxvad.export.export_scorer` writes it); format and version added.
    program: `jax.export.Exported.serialize()`'s bytes.

  Returns:
    The zip's bytes.
  """
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr(METADATA_FILE, json.dumps({"format": FORMAT, "version": VERSION, **metadata},
                                         indent=1))
    z.writestr(PROGRAM_FILE, bytes(program))
  return buffer.getvalue()

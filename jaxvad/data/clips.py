"""Clips in memory, and the reader of jaxvad's synthetic benchmark on disk.

`Clip` is what every loader returns (`jaxvad.data.public` for the public layouts,
`load_synthetic` here); `read_meta`, `read_labels`, `read_classes` and `resize_nearest` are
shared with the `synth` entries of `public.load_dataset`. `jaxvad.data.datasets` picks the
loader from a config.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from jaxvad.data import synth, video
from jaxvad.errors import DataError

__all__ = ["Clip", "load_synthetic", "read_meta", "read_labels", "read_classes",
           "resize_nearest"]


@dataclasses.dataclass
class Clip:
  """One clip in memory with whatever ground truth is known."""
  name: str
  frames: np.ndarray                  # uint8 [T, H, W, C]
  labels: np.ndarray | None           # bool [T], True = anomalous; None when unknown
  distractors: np.ndarray | None      # bool [T, K]
  workspace_mask: np.ndarray | None   # bool [T, H, W]
  meta: dict                          # its benchmark.json entry (cycle_starts, anomaly_type...)
  frame_types: np.ndarray | None = None   # str [T]: the anomaly type of each anomalous frame,
                                          # "" on normal frames; None when unknown
  classes: np.ndarray | None = None   # uint8 [T, H, W]: per-pixel ids into synth.SEMANTIC_CLASSES
                                      # (the synthetic benchmark's rendered maps); else None


def rerender_hint(root: pathlib.Path) -> str:
  scene = root.name if root.name in synth.SCENES else "<scene>"
  return (f"delete {root} and render it again with `jaxvad synth --scene {scene} "
          f"--out {root.parent}`")


def read_meta(root: pathlib.Path) -> dict:
  path = root / "benchmark.json"
  if not path.is_file():
    scene = root.name if root.name in synth.SCENES else "<scene>"
    raise DataError(f"no synthetic benchmark at {root} ({path.name} is missing): run "
                    f"`jaxvad synth --scene {scene} --out {root.parent}` first")
  try:
    meta = synth._read_json(path)
  except OSError:
    meta = None
  if meta is None or not isinstance(meta.get("clips"), list):
    raise DataError(f"{path} is not a {synth.FORMAT} benchmark file (corrupt or from another "
                    f"version): {rerender_hint(root)}")
  return meta


def resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of [T, H, W] maps of any dtype, sampling at pixel centres."""
  _, h, w = maps.shape
  rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
  return maps[:, rows][:, :, cols]


def read_labels(path: pathlib.Path, root: pathlib.Path) -> dict:
  if not path.is_file():
    raise DataError(f"labels file {path} is missing: {rerender_hint(root)}")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in ("anomaly", "anomaly_type_index", "distractors",
                                    "workspace_mask_bits", "workspace_mask_shape",
                                    "cycle_starts", "classes")}
    shape = tuple(int(s) for s in arrays["workspace_mask_shape"])
    bits = np.unpackbits(arrays["workspace_mask_bits"], count=int(np.prod(shape)))
    arrays["workspace_mask"] = bits.astype(bool).reshape(shape)
  except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
    raise DataError(f"labels file {path} is corrupt or truncated ({type(e).__name__}: {e}): "
                    f"{rerender_hint(root)}") from None
  return arrays


def read_classes(arrays: dict, num_frames: int, path: pathlib.Path, root: pathlib.Path,
                 size: tuple[int, int] | None) -> np.ndarray:
  """The checked class maps of a labels file (`read_labels`), resized to `size` if given."""
  classes, n = arrays["classes"], len(synth.SEMANTIC_CLASSES)
  want = (num_frames, *arrays["workspace_mask"].shape[1:])
  top = int(classes.max(initial=0)) if classes.dtype == np.uint8 else "?"
  if classes.dtype != np.uint8 or classes.shape != want or top >= n:
    raise DataError(f"{path}: its classes are {classes.dtype} {list(classes.shape)} with ids up "
                    f"to {top}, not uint8 {list(want)} (its {num_frames} frames) with ids below "
                    f"{n}: {rerender_hint(root)}")
  if size is not None and tuple(size) != classes.shape[1:]:
    classes = resize_nearest(classes, tuple(size))
  return classes


def _frame_types(index: np.ndarray, anomaly: np.ndarray, meta: dict, path: pathlib.Path,
                 root: pathlib.Path) -> np.ndarray:
  """str [T] from the labels file's int8 `anomaly_type_index` (-1 = normal)."""
  types = list(meta.get("anomaly_types") or [])
  index = np.asarray(index)
  if (index.shape != anomaly.shape or index.min(initial=-1) < -1
      or index.max(initial=-1) >= len(types) or not np.array_equal(index >= 0, anomaly)):
    raise DataError(f"{path}: its anomaly_type_index does not match its anomaly labels or the "
                    f"{len(types)} anomaly_types of benchmark.json: {rerender_hint(root)}")
  return np.array([""] + types)[index.astype(np.int64) + 1]


def load_synthetic(root, split: str, *, size: tuple[int, int] | None = None,
                   grayscale: bool = False) -> list[Clip]:
  """Loads one split of a benchmark written by `synth.write_benchmark`.

  Args:
    root: the benchmark folder, `<out_dir>/<scene>`.
    split: `train`, `val` or `test`.
    size: (H, W) to resize frames (area/linear), workspace masks and class maps (nearest) to;
      None keeps the stored size.
    grayscale: return 1-channel frames instead of RGB.

  Returns:
    The split's clips in benchmark.json order, with labels, per-frame anomaly types
    (`frame_types`), distractor flags, workspace masks, semantic class maps (`classes`) and
    the clip's benchmark.json entry as `meta`.

  Raises:
    DataError: no benchmark.json, unknown split, a missing clip folder or labels file, a
      corrupt labels file, or labels that do not match the frames. Messages name the path.
  """
  root = pathlib.Path(root)
  meta = read_meta(root)
  if split not in synth.SPLITS:
    raise DataError(f"unknown split {split!r} for {root}: choose one of {', '.join(synth.SPLITS)}")
  num_names = len(meta.get("distractor_names", synth.DISTRACTORS))
  clips = []
  for entry in meta["clips"]:
    if entry.get("split") != split:
      continue
    name = entry["name"]
    folder = root / split / name
    if not folder.is_dir():
      raise DataError(f"clip folder {folder} is missing: {rerender_hint(root)}")
    frames = video.read_frames(folder, size=size, grayscale=grayscale)
    labels_path = root / split / f"{name}.labels.npz"
    arrays = read_labels(labels_path, root)
    t = len(frames)
    anomaly, flags, mask = arrays["anomaly"], arrays["distractors"], arrays["workspace_mask"]
    if (anomaly.shape != (t,) or flags.shape != (t, num_names) or mask.ndim != 3
        or len(mask) != t or t != entry.get("num_frames", t)):
      raise DataError(f"{labels_path} does not match {folder}: {t} frames on disk but labels "
                      f"for {anomaly.shape[0] if anomaly.ndim else '?'} (distractors "
                      f"{flags.shape}, mask {mask.shape}, benchmark.json says "
                      f"{entry.get('num_frames')}): {rerender_hint(root)}")
    frame_types = _frame_types(arrays["anomaly_type_index"], anomaly, meta, labels_path, root)
    if size is not None and tuple(size) != mask.shape[1:]:
      mask = resize_nearest(mask, tuple(size))
    classes = read_classes(arrays, t, labels_path, root, size)
    clips.append(Clip(name=name, frames=frames, labels=anomaly.astype(bool),
                      distractors=flags.astype(bool), workspace_mask=mask, meta=dict(entry),
                      frame_types=frame_types, classes=classes))
  return clips

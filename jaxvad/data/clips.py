"""Clips in memory, and the reader of jaxvad's synthetic benchmark on disk.

`Clip` is what every loader returns (`jaxvad.data.public` for the public layouts,
`load_synthetic` here); `read_meta`, `read_labels`, `read_classes`, `resize_nearest` and
`synth_pixel_masks` are shared with the `synth` entries of `public.load_dataset`. `crop_clip`
cuts every per-pixel array of a clip to one region (`data.roi`). `jaxvad.data.datasets` picks
the loader from a config.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from jaxvad.data import synth, video
from jaxvad.errors import DataError

__all__ = ["Clip", "MOVING_PART_CLASSES", "load_synthetic", "read_meta", "read_labels",
           "read_classes", "resize_nearest", "synth_pixel_masks", "synth_scene", "crop_clip"]

# The synthetic scenes' moving parts (names from synth.SEMANTIC_CLASSES): every anomaly of a
# scene happens to (or is the absence of) these objects, so their pixels in the anomalous
# frames stand in for the ground-truth anomaly masks the renderer does not draw
# (`synth_pixel_masks`).
MOVING_PART_CLASSES: dict[str, tuple[str, ...]] = {
    "pickplace": ("arm", "block"),
    "conveyor": ("box",),
}


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
  pixel_masks: np.ndarray | None = None   # bool [T, H, W] ground-truth anomaly masks, True =
                                          # anomalous pixel (all False on normal frames); None
                                          # when unknown. Synthetic: derived, see
                                          # `synth_pixel_masks`


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


def synth_pixel_masks(classes: np.ndarray, labels: np.ndarray, scene: str) -> np.ndarray:
  """Approximate anomaly masks of a synthetic clip, from its class maps and frame labels.

  The renderer draws no anomaly masks, but every anomaly of a scene concerns its moving parts
  (`MOVING_PART_CLASSES`: the arm and block of `pickplace`, the box of `conveyor`). So the mask
  of an anomalous frame is the pixels of those classes, and a normal frame's is all False.

  This is an approximation, good enough to score where a localiser looks but not a pixel-exact
  ground truth: it marks the whole objects involved, not the defective part (for `dropped` the
  arm and the fallen block, not only the block; for `stall` the frozen arm and block), and it
  cannot mark what is not there: for `missing` the box is absent, so the mask is empty although
  the frame is anomalous.

  Args:
    classes: uint8 [T, H, W] ids into `synth.SEMANTIC_CLASSES` (`Clip.classes`).
    labels: bool [T], True = anomalous frame.
    scene: a `synth.SCENES` name.

  Returns:
    bool [T, H, W].

  Raises:
    DataError: an unknown scene (naming the known ones).
  """
  if scene not in MOVING_PART_CLASSES:
    raise DataError(f"no moving parts known for synthetic scene {scene!r}: choose one of "
                    f"{', '.join(MOVING_PART_CLASSES)} (clips.MOVING_PART_CLASSES)")
  ids = [synth.SEMANTIC_CLASSES.index(name) for name in MOVING_PART_CLASSES[scene]]
  labels = np.asarray(labels, bool)
  return np.isin(classes, ids) & labels[:, None, None]


def synth_scene(meta: dict, root: pathlib.Path) -> str:
  """A benchmark's scene: benchmark.json's `scene`, else the folder's name (`<out>/<scene>`)."""
  scene = meta.get("scene")
  return scene if isinstance(scene, str) and scene else root.name


def crop_clip(clip: Clip, roi) -> Clip:
  """The clip cut to one region: frames, workspace masks, class maps and pixel masks alike.

  Every per-pixel array is cut the same way, so they stay aligned. The results are copies, not
  views, so the uncropped arrays can be freed.

  Args:
    clip: the clip.
    roi: (x, y, w, h) in pixels of the clip's frames (column, row, width, height).

  Returns:
    A new `Clip` whose per-pixel arrays are [T, h, w, ...], with `meta["roi"] = [x, y, w, h]`
    (so side files of the uncropped frames, e.g. per-clip class maps, can be cut alike); labels
    and the rest shared.

  Raises:
    DataError: the region does not fit inside the frames (naming the clip and both sizes).
  """
  x, y, w, h = (int(v) for v in roi)
  height, width = clip.frames.shape[1:3]
  if min(x, y) < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
    raise DataError(f"roi [x={x}, y={y}, w={w}, h={h}] does not fit inside the {width}x{height} "
                    f"(WxH) frames of clip {clip.name}: choose x + w <= {width} and "
                    f"y + h <= {height}")

  def cut(array):
    return None if array is None else np.ascontiguousarray(array[:, y:y + h, x:x + w])

  return dataclasses.replace(clip, frames=cut(clip.frames),
                             workspace_mask=cut(clip.workspace_mask), classes=cut(clip.classes),
                             pixel_masks=cut(clip.pixel_masks),
                             meta={**(clip.meta or {}), "roi": [x, y, w, h]})


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
    (`frame_types`), distractor flags, workspace masks, semantic class maps (`classes`),
    approximate anomaly masks derived from the class maps (`pixel_masks`, see
    `synth_pixel_masks`: the scene's moving parts in anomalous frames) and the clip's
    benchmark.json entry as `meta`.

  Raises:
    DataError: no benchmark.json, unknown split, a missing clip folder or labels file, a
      corrupt labels file, or labels that do not match the frames. Messages name the path.
  """
  root = pathlib.Path(root)
  meta = read_meta(root)
  if split not in synth.SPLITS:
    raise DataError(f"unknown split {split!r} for {root}: choose one of {', '.join(synth.SPLITS)}")
  num_names = len(meta.get("distractor_names", synth.DISTRACTORS))
  scene = synth_scene(meta, root)
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
    labels = anomaly.astype(bool)
    clips.append(Clip(name=name, frames=frames, labels=labels,
                      distractors=flags.astype(bool), workspace_mask=mask, meta=dict(entry),
                      frame_types=frame_types, classes=classes,
                      pixel_masks=synth_pixel_masks(classes, labels, scene)))
  return clips

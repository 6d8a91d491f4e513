"""Per-frame semantic class maps of any clip (the label input of paper 004's F2LM generator).

Two sources (`SOURCES`, a config's `model.label_source`):

  rendered  `Clip.classes`: the maps jaxvad's synthetic benchmark renders with its frames, ids
            into `synth.SEMANTIC_CLASSES` (`RENDERED_NUM_CLASSES` of them).
  npz       one file per clip in a folder (`model.label_dir`), made with any segmenter (e.g.
            the per-pixel argmax of DeepLabv3's logits):

              <label_dir>/<clip name>.npz             or, when the folder <label_dir>/<split>/
              <label_dir>/<split>/<clip name>.npz     exists, there (train and test clips of
                                                      Avenue and the ano_pred/MNAD frames layout
                                                      share names such as `01`)

            `<split>` is the clip's `meta["split"]` (`train` for clips `data.val_from_train`
            holds out); a `/` in a clip name becomes `__`, so every file is directly in its
            folder. Each file holds one array under the key `classes`: integer class ids,
            shape [T, H0, W0] with T the clip's frame count (one map per frame, in order) and
            any H0, W0, values in [0, model.num_classes). Write it with
            `np.savez_compressed(path, classes=ids.astype(np.uint8))`.

Both are resized to the model's input size by nearest neighbour at pixel centres (as the
workspace masks are), and returned as uint8 (so at most 256 classes).
"""

from __future__ import annotations

import pathlib
import zipfile
import zlib

import numpy as np

from jaxvad.data import clips, synth
from jaxvad.errors import ConfigError, DataError

__all__ = ["SOURCES", "RENDERED_NUM_CLASSES", "class_maps", "npz_path"]

SOURCES: tuple[str, ...] = ("rendered", "npz")
RENDERED_NUM_CLASSES = len(synth.SEMANTIC_CLASSES)

_FORMAT = ("key 'classes', integer class ids [T, H, W], one map per frame; e.g. "
           "np.savez_compressed(path, classes=ids.astype(np.uint8))")


def npz_path(clip: clips.Clip, directory) -> pathlib.Path:
  """Where the `npz` source looks for a clip's class maps (module docstring).

  Args:
    clip: the clip (its name and `meta["split"]` / `meta["val_from_train"]` are used).
    directory: the folder of .npz files (`model.label_dir`).

  Returns:
    `<directory>/<split>/<name>.npz` if the folder `<directory>/<split>` exists, else
    `<directory>/<name>.npz`; a `/` in the name becomes `__`.
  """
  folder = pathlib.Path(directory)
  split = "train" if clip.meta.get("val_from_train") else clip.meta.get("split")
  if split and (folder / split).is_dir():
    folder = folder / split
  return folder / f"{clip.name.replace('/', '__')}.npz"


def _read_npz(path: pathlib.Path, clip: clips.Clip, num_classes: int) -> np.ndarray:
  """The checked integer [T, H0, W0] class maps in `path` (any integer dtype)."""
  if not path.is_file():
    raise DataError(f"no class maps for clip {clip.name}: {path} is missing; write one .npz per "
                    f"clip there ({_FORMAT}) or point model.label_dir at their folder")
  try:
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
      raise ValueError("a single .npy array, not an .npz archive")
    with npz:
      keys = npz.files
      maps = npz["classes"] if "classes" in keys else None
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
    raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}): write it "
                    f"again ({_FORMAT})") from None
  if maps is None:
    raise DataError(f"{path} has no 'classes' array (it holds {', '.join(keys) or 'nothing'}): "
                    f"save the class maps under that key ({_FORMAT})")
  t = len(clip.frames)
  if not np.issubdtype(maps.dtype, np.integer):
    raise DataError(f"{path}: 'classes' is {maps.dtype}, not integer class ids: save the "
                    f"segmenter's per-pixel argmax (e.g. .astype(np.uint8))")
  if maps.ndim != 3:
    raise DataError(f"{path}: 'classes' has shape {list(maps.shape)}, not [T, H, W] (one class "
                    f"map per frame): save one 2-D map per frame, stacked")
  if len(maps) != t:
    raise DataError(f"{path}: 'classes' holds {len(maps)} maps but clip {clip.name} has {t} "
                    f"frames: write one map per frame")
  lo, hi = (int(maps.min(initial=0)), int(maps.max(initial=0)))
  if lo < 0 or hi >= num_classes:
    raise DataError(f"{path}: 'classes' holds ids from {lo} to {hi} but model.num_classes = "
                    f"{num_classes} allows [0, {num_classes}): raise model.num_classes to at "
                    f"least {hi + 1} or remap the ids")
  return maps


def class_maps(clip: clips.Clip, *, source: str, directory=None, size: tuple[int, int],
               num_classes: int) -> np.ndarray:
  """uint8 [T, H, W] class ids of every frame of `clip` (a clips.Clip) at `size`.

  Args:
    clip: the clip (its name, frame count, `classes` and `meta["split"]` are used).
    source: `rendered` (`clip.classes`) or `npz` (a file per clip in `directory`); see the
      module docstring.
    directory: the folder of .npz files (`model.label_dir`); `npz` only.
    size: (H, W) to resize the maps to (nearest neighbour at pixel centres).
    num_classes: the model's class count (`model.num_classes`); ids must lie below it.

  Returns:
    uint8 [T, H, W] class ids, T = the clip's frame count.

  Raises:
    ConfigError: unknown source, `num_classes` outside [1, 256], `rendered` for a clip without
      rendered maps, or `num_classes` below `RENDERED_NUM_CLASSES` for rendered maps.
    DataError: `npz` with `directory` unset, or a missing, unreadable or malformed file (no key
      `classes`, non-integer ids, not [T, H, W], another frame count, ids out of range).
      Messages name the file and the fix.
  """
  size, num_classes = (int(size[0]), int(size[1])), int(num_classes)
  if not 1 <= num_classes <= 256:
    raise ConfigError(f"model.num_classes must be in [1, 256] (class maps are uint8), got "
                      f"{num_classes}")
  if source == "rendered":
    maps = clip.classes
    if maps is None:
      raise ConfigError(f"clip {clip.name} has no rendered class maps (model.label_source = "
                        f"'rendered'): only jaxvad's synthetic benchmark renders them; for another "
                        f"data set set model.label_source = 'npz' and model.label_dir to a folder "
                        f"of per-clip <clip name>.npz files ({_FORMAT})")
    if num_classes < RENDERED_NUM_CLASSES or maps.max(initial=0) >= num_classes:
      raise ConfigError(f"clip {clip.name} has rendered class maps (ids up to "
                        f"{int(maps.max(initial=0))} of the {RENDERED_NUM_CLASSES} "
                        f"synth.SEMANTIC_CLASSES) but model.num_classes = {num_classes}: set "
                        f"model.num_classes to at least {RENDERED_NUM_CLASSES}")
  elif source == "npz":
    if directory is None or str(directory) == "":
      raise DataError(f"model.label_dir is unset, so the class maps of clip {clip.name} cannot "
                      f"be found: set it to a folder of per-clip <clip name>.npz files "
                      f"({_FORMAT})")
    if clip.meta.get("roi"):
      raise ConfigError(f"clip {clip.name} is cropped to data.roi = {list(clip.meta['roi'])} but "
                        f".npz class maps are not: write them for the cropped frames and leave "
                        f"data.roi empty, or crop the video first")
    maps = _read_npz(npz_path(clip, directory), clip, num_classes)
  else:
    raise ConfigError(f"unknown class map source {source!r} (model.label_source): choose one "
                      f"of {', '.join(SOURCES)}")
  if maps.shape[1:] != size:
    maps = clips.resize_nearest(maps, size)
  return maps.astype(np.uint8, copy=False)

"""Reading benchmarks into memory as `Clip`s.

`load_synthetic` reads the on-disk layout written by `jaxvad.data.synth.write_benchmark` (see
that module's docstring for the contract). `ensure_benchmark`, `stored_size` and `load_split`
do the same from a config's `data` section, rendering (and caching) the benchmark on first use.

Public layouts without a validation split (all but `intervals` with a `val/` folder) get one
carved from their normal training videos with `data.val_from_train`: `val_from_train_names`
says which videos, `load_split` serves them as `val` and leaves them out of `train`.

`data.roi` crops every clip `load_split` returns after resizing to `data.size`, so the region
is given in the pixels of the frames the model sees (one coordinate system, whatever the
dataset's stored size), and every per-pixel array (frames, workspace masks, class maps, pixel
masks) is cut alike. `frame_size` is the (H, W) that results.
"""

from __future__ import annotations

import math
import pathlib
import warnings

import numpy as np

from jaxvad.data import clips as clips_lib
from jaxvad.data import public, synth
from jaxvad.data.clips import Clip, load_synthetic
from jaxvad.errors import ConfigError, DataError

__all__ = ["Clip", "load_synthetic", "ensure_benchmark", "stored_size", "frame_size",
           "load_split", "has_val_split", "val_from_train_names"]

_VAL_SALT = 0x76616C    # "val": the carved split's random stream differs from any other use


# --------------------------------------------------------------------------- from a config


def _synth_root(data_cfg) -> pathlib.Path:
  if data_cfg.dataset != "synth":
    raise ConfigError(f"data.dataset = {data_cfg.dataset!r} is not the synthetic benchmark")
  if data_cfg.scene not in synth.SCENES:
    raise ConfigError(f"data.scene = {data_cfg.scene!r} is unknown: choose one of "
                      f"{', '.join(synth.SCENES)}")
  if data_cfg.preset not in synth.PRESETS:
    raise ConfigError(f"data.preset = {data_cfg.preset!r} is unknown: choose one of "
                      f"{', '.join(synth.PRESETS)}")
  return pathlib.Path(data_cfg.root) / data_cfg.scene


def ensure_benchmark(data_cfg, *, progress: bool = True) -> pathlib.Path:
  """Renders the benchmark a `DataConfig` names unless the same one is already on disk.

  A benchmark of the same scene, preset and seed rendered at another size (`jaxvad synth
  --size`) counts as the same; `data.size` resizes when loading. A complete benchmark with
  other settings in the same folder is never overwritten: that is an error naming the fix.

  Args:
    data_cfg: a `jaxvad.config.DataConfig` (dataset, scene, preset, root, seed).
    progress: show the renderer's progress bar.

  A benchmark rendered by another jaxvad version (format or renderer version,
  `synth.stale_benchmark`) is never reused: it is rendered again, with a warning saying so.

  Returns:
    The benchmark folder `<root>/<scene>`; for a public dataset, `data.root` unchanged (they
    are read in place, never written).
  """
  if data_cfg.dataset != "synth":
    return pathlib.Path(data_cfg.root)
  root = _synth_root(data_cfg)
  stale = synth.stale_benchmark(root)
  if stale is not None:
    warnings.warn(f"{root} holds a benchmark rendered by another jaxvad version ({stale}); "
                  f"rendering it again", stacklevel=2)
  if synth.benchmark_matches(root, scene=data_cfg.scene, preset=data_cfg.preset,
                             seed=data_cfg.seed):
    return root
  if synth.benchmark_is_complete(root):
    meta = synth._read_json(root / "benchmark.json")
    raise DataError(
        f"{root} holds another benchmark (preset {meta.get('preset')!r}, seed {meta.get('seed')}, "
        f"renderer {meta.get('renderer_version')}) than the config asks for (preset "
        f"{data_cfg.preset!r}, seed {data_cfg.seed}): set data.root to another folder, or "
        f"re-render it with `jaxvad synth --scene {data_cfg.scene} --preset {data_cfg.preset} "
        f"--seed {data_cfg.seed} --out {data_cfg.root} --force`")
  synth.write_benchmark(data_cfg.root, scene=data_cfg.scene, preset=data_cfg.preset,
                        seed=data_cfg.seed, progress=progress)
  return root


def stored_size(data_cfg) -> tuple[int, int]:
  """(H, W) of the stored frames: the rendered benchmark's, else the size it will be rendered at.

  Public datasets have no single stored size: their configs must set `data.size`. This is the
  size before the `data.roi` crop; `frame_size` is the size after it.
  """
  if data_cfg.size:
    return tuple(data_cfg.size)
  root = _synth_root(data_cfg)
  if synth.benchmark_matches(root, scene=data_cfg.scene, preset=data_cfg.preset,
                             seed=data_cfg.seed):
    h, w = synth._read_json(root / "benchmark.json")["size"]
    return int(h), int(w)
  return synth.PRESETS[data_cfg.preset].size


def frame_size(data_cfg) -> tuple[int, int]:
  """(H, W) of the frames `load_split` returns: `data.roi`'s (h, w) when set, else `stored_size`.

  What a model's input shape comes from: `stored_size` is the size before the `data.roi` crop.
  """
  if data_cfg.roi:
    return int(data_cfg.roi[3]), int(data_cfg.roi[2])
  return stored_size(data_cfg)


def _check_roi_fits(data_cfg, size: tuple[int, int], where) -> None:
  """`data.roi` inside (H, W) frames, else a DataError naming the key, both sizes and the fix."""
  if not data_cfg.roi:
    return
  h, w = size
  x, y, rw, rh = data_cfg.roi
  if x + rw > w or y + rh > h:
    source = "data.size" if data_cfg.size else "their stored size"
    raise DataError(f"data.roi = {list(data_cfg.roi)} does not fit inside the {w}x{h} (WxH) "
                    f"frames of {where} ({source}): choose x + w <= {w} and y + h <= {h}, or "
                    f"set data.size to frames that hold it")


def _crop(data_cfg, clips: list[Clip], where) -> list[Clip]:
  """`clips` cut to `data.roi`, in place (each uncropped clip can be freed once replaced)."""
  for i, clip in enumerate(clips if data_cfg.roi else ()):
    _check_roi_fits(data_cfg, clip.frames.shape[1:3], f"clip {clip.name} of {where}")
    clips[i] = clips_lib.crop_clip(clip, data_cfg.roi)
  return clips


def _public_layout(data_cfg) -> tuple[pathlib.Path, str]:
  root = pathlib.Path(data_cfg.root)
  if data_cfg.dataset == "auto":
    return root, public.detect_layout(root)
  return root, data_cfg.dataset


def has_val_split(root, layout: str) -> bool:
  """Whether a dataset of `layout` at `root` has its own validation split on disk.

  Only the synthetic benchmark and an `intervals` dataset with a `val/` folder do; UCSD,
  Avenue, ShanghaiTech, the ano_pred/MNAD frames layout and MVTec AD (whose "videos" are single
  images) have train and test only.
  """
  if layout == "synth":
    return True
  return layout == "intervals" and (pathlib.Path(root) / "val").is_dir()


def val_from_train_names(data_cfg, names=None) -> list[str]:
  """The normal training videos `data.val_from_train` holds out as the validation split.

  A pure function of the set of names, `data.val_from_train` and `data.seed`: the names are
  sorted, permuted with `np.random.default_rng([data.seed, _VAL_SALT])`, and the first N of
  the permutation are taken (N = the int, or round(fraction x count), at least 1).

  Args:
    data_cfg: a `jaxvad.config.DataConfig`.
    names: the training videos' names; None indexes `data.root`'s train split (no decoding).

  Returns:
    The held-out names in the order of `names`; [] when `data.val_from_train` is 0.

  Raises:
    ConfigError: the count would leave no video for training.
    DataError: duplicate names, or (names=None) as `public.index_dataset`.
  """
  amount = data_cfg.val_from_train
  if not amount:
    return []
  if names is None:
    root, layout = _public_layout(data_cfg)
    names = [e.name for e in public.index_dataset(root, layout=layout, split="train")]
  names = [str(n) for n in names]
  if len(set(names)) != len(names):
    raise DataError(f"the training videos' names are not unique ({names}): cannot carve a "
                    f"validation split from them by name")
  if isinstance(amount, float):
    count = max(1, int(math.floor(amount * len(names) + 0.5)))
  else:
    count = int(amount)
  if count >= len(names):
    raise ConfigError(f"data.val_from_train = {amount!r} would hold out {count} of the "
                      f"{len(names)} training video(s) of {data_cfg.root}; leave at least one "
                      f"for training (a smaller count or fraction)")
  order = np.random.default_rng([int(data_cfg.seed), _VAL_SALT]).permutation(len(names))
  chosen = {sorted(names)[i] for i in order[:count]}
  return [n for n in names if n in chosen]


def load_split(data_cfg, split: str) -> list[Clip]:
  """Loads a split of the benchmark a `DataConfig` names (rendering it first if needed).

  With `data.val_from_train` set (public layouts without a val split), `val` is the training
  videos `val_from_train_names` picks (their `meta` says `"split": "val"` and
  `"val_from_train": true`) and `train` is the rest.

  With `data.roi` set, every clip is cropped to it after resizing (module docstring); a region
  that does not fit the frames is refused before anything is decoded where the size is known.

  Args:
    data_cfg: a `jaxvad.config.DataConfig`; `size` (empty = stored size), `roi` and
      `grayscale` apply to the frames.
    split: `train`, `val` or `test`.

  Returns:
    The clips, as from `load_synthetic` (or `public.load_dataset` for a public layout), with
    frames of `frame_size(data_cfg)`.

  Raises:
    ConfigError: `data.val_from_train` set for a dataset with its own val split, or taking
      every training video.
    DataError: `val` asked of a layout without one while `data.val_from_train` is 0;
      `data.roi` outside the frames; as `load_synthetic` / `public.load_dataset` otherwise.
  """
  size = tuple(data_cfg.size) if data_cfg.size else None
  if data_cfg.dataset != "synth":
    root, layout = _public_layout(data_cfg)
    if size is not None:
      _check_roi_fits(data_cfg, size, root)
    return _crop(data_cfg, _load_public(data_cfg, root, layout, split, size), root)
  root = ensure_benchmark(data_cfg)
  _check_roi_fits(data_cfg, stored_size(data_cfg), root)
  return _crop(data_cfg, load_synthetic(root, split, size=size, grayscale=data_cfg.grayscale),
               root)


def _load_public(data_cfg, root: pathlib.Path, layout: str, split: str,
                 size: tuple[int, int] | None) -> list[Clip]:
  """`load_split` of a public layout, before the `data.roi` crop."""
  carve = bool(data_cfg.val_from_train)
  if carve and has_val_split(root, layout):
    raise ConfigError(f"data.val_from_train = {data_cfg.val_from_train!r}, but the {layout} "
                      f"dataset at {root} has its own val split: set data.val_from_train = 0")
  if carve and split in ("train", "val"):
    entries = public.index_dataset(root, layout=layout, split="train")
    held_out = set(val_from_train_names(data_cfg, [e.name for e in entries]))
    clips = [public.load_clip(e, size=size, grayscale=data_cfg.grayscale)
             for e in entries if (e.name in held_out) == (split == "val")]
    if split == "val":
      for clip in clips:
        clip.meta = {**clip.meta, "split": "val", "val_from_train": True}
    return clips
  if split == "val" and not has_val_split(root, layout):
    raise DataError(f"the {layout} dataset at {root} has no val split: set "
                    f"data.val_from_train to a number of training videos (e.g. 2) or a "
                    f"fraction (e.g. 0.1) to hold out as one")
  return public.load_dataset(root, layout=layout, split=split, size=size,
                             grayscale=data_cfg.grayscale)

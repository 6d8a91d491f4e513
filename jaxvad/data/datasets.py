"""Reading benchmarks into memory as `Clip`s.

`load_synthetic` reads the on-disk layout written by `jaxvad.data.synth.write_benchmark` (see
that module's docstring for the contract). `ensure_benchmark`, `stored_size` and `load_split`
do the same from a config's `data` section, rendering (and caching) the benchmark on first use.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from jaxvad.data import synth, video
from jaxvad.errors import ConfigError, DataError

__all__ = ["Clip", "load_synthetic", "ensure_benchmark", "stored_size", "load_split"]


@dataclasses.dataclass
class Clip:
  """One clip in memory with whatever ground truth is known."""
  name: str
  frames: np.ndarray                  # uint8 [T, H, W, C]
  labels: np.ndarray | None           # bool [T], True = anomalous; None when unknown
  distractors: np.ndarray | None      # bool [T, K]
  workspace_mask: np.ndarray | None   # bool [T, H, W]
  meta: dict                          # its benchmark.json entry (cycle_starts, anomaly_type...)


def _rerender_hint(root: pathlib.Path) -> str:
  scene = root.name if root.name in synth.SCENES else "<scene>"
  return (f"delete {root} and render it again with `jaxvad synth --scene {scene} "
          f"--out {root.parent}`")


def _read_meta(root: pathlib.Path) -> dict:
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
                    f"version): {_rerender_hint(root)}")
  return meta


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of bool [T, H, W] masks, sampling at pixel centres."""
  _, h, w = masks.shape
  rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
  return masks[:, rows][:, :, cols]


def _read_labels(path: pathlib.Path, root: pathlib.Path) -> dict:
  if not path.is_file():
    raise DataError(f"labels file {path} is missing: {_rerender_hint(root)}")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in ("anomaly", "distractors", "workspace_mask_bits",
                                    "workspace_mask_shape", "cycle_starts")}
    shape = tuple(int(s) for s in arrays["workspace_mask_shape"])
    bits = np.unpackbits(arrays["workspace_mask_bits"], count=int(np.prod(shape)))
    arrays["workspace_mask"] = bits.astype(bool).reshape(shape)
  except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
    raise DataError(f"labels file {path} is corrupt or truncated ({type(e).__name__}: {e}): "
                    f"{_rerender_hint(root)}") from None
  return arrays


def load_synthetic(root, split: str, *, size: tuple[int, int] | None = None,
                   grayscale: bool = False) -> list[Clip]:
  """Loads one split of a benchmark written by `synth.write_benchmark`.

  Args:
    root: the benchmark folder, `<out_dir>/<scene>`.
    split: `train`, `val` or `test`.
    size: (H, W) to resize frames (area/linear) and workspace masks (nearest) to; None keeps
      the stored size.
    grayscale: return 1-channel frames instead of RGB.

  Returns:
    The split's clips in benchmark.json order, with labels, distractor flags, workspace masks
    and the clip's benchmark.json entry as `meta`.

  Raises:
    DataError: no benchmark.json, unknown split, a missing clip folder or labels file, a
      corrupt labels file, or labels that do not match the frames. Messages name the path.
  """
  root = pathlib.Path(root)
  meta = _read_meta(root)
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
      raise DataError(f"clip folder {folder} is missing: {_rerender_hint(root)}")
    frames = video.read_frames(folder, size=size, grayscale=grayscale)
    labels_path = root / split / f"{name}.labels.npz"
    arrays = _read_labels(labels_path, root)
    t = len(frames)
    anomaly, flags, mask = arrays["anomaly"], arrays["distractors"], arrays["workspace_mask"]
    if (anomaly.shape != (t,) or flags.shape != (t, num_names) or mask.ndim != 3
        or len(mask) != t or t != entry.get("num_frames", t)):
      raise DataError(f"{labels_path} does not match {folder}: {t} frames on disk but labels "
                      f"for {anomaly.shape[0] if anomaly.ndim else '?'} (distractors "
                      f"{flags.shape}, mask {mask.shape}, benchmark.json says "
                      f"{entry.get('num_frames')}): {_rerender_hint(root)}")
    if size is not None and tuple(size) != mask.shape[1:]:
      mask = _resize_masks(mask, tuple(size))
    clips.append(Clip(name=name, frames=frames, labels=anomaly.astype(bool),
                      distractors=flags.astype(bool), workspace_mask=mask, meta=dict(entry)))
  return clips


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

  Returns:
    The benchmark folder `<root>/<scene>`; for a public dataset, `data.root` unchanged (they
    are read in place, never written).
  """
  if data_cfg.dataset != "synth":
    return pathlib.Path(data_cfg.root)
  root = _synth_root(data_cfg)
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

  Public datasets have no single stored size: their configs must set `data.size`.
  """
  if data_cfg.size:
    return tuple(data_cfg.size)
  root = _synth_root(data_cfg)
  if synth.benchmark_matches(root, scene=data_cfg.scene, preset=data_cfg.preset,
                             seed=data_cfg.seed):
    h, w = synth._read_json(root / "benchmark.json")["size"]
    return int(h), int(w)
  return synth.PRESETS[data_cfg.preset].size


def load_split(data_cfg, split: str) -> list[Clip]:
  """Loads a split of the benchmark a `DataConfig` names (rendering it first if needed).

  Args:
    data_cfg: a `jaxvad.config.DataConfig`; `size` (empty = stored size) and `grayscale`
      apply to the frames.
    split: `train`, `val` or `test`.

  Returns:
    The clips, as from `load_synthetic` (or `public.load_dataset` for a public layout).
  """
  size = tuple(data_cfg.size) if data_cfg.size else None
  if data_cfg.dataset != "synth":
    from jaxvad.data import public  # noqa: PLC0415  (imports datasets itself)
    layout = None if data_cfg.dataset == "auto" else data_cfg.dataset
    return public.load_dataset(data_cfg.root, layout=layout, split=split, size=size,
                               grayscale=data_cfg.grayscale)
  root = ensure_benchmark(data_cfg)
  return load_synthetic(root, split, size=size, grayscale=data_cfg.grayscale)

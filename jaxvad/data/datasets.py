"""Reading benchmarks into memory as `Clip`s.

`load_synthetic` reads the on-disk layout written by `jaxvad.data.synth.write_benchmark` (see
that module's docstring for the contract). `ensure_benchmark`, `stored_size` and `load_split`
do the same from a config's `data` section, rendering (and caching) the benchmark on first use.
"""

from __future__ import annotations

import pathlib

from jaxvad.data import public, synth
from jaxvad.data.clips import Clip, load_synthetic
from jaxvad.errors import ConfigError, DataError

__all__ = ["Clip", "load_synthetic", "ensure_benchmark", "stored_size", "load_split"]


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
    layout = None if data_cfg.dataset == "auto" else data_cfg.dataset
    return public.load_dataset(data_cfg.root, layout=layout, split=split, size=size,
                               grayscale=data_cfg.grayscale)
  root = ensure_benchmark(data_cfg)
  return load_synthetic(root, split, size=size, grayscale=data_cfg.grayscale)

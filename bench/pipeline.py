"""Is training input-bound? Frames/s the input pipeline delivers against the step's appetite.

    python bench/pipeline.py --config predictive_ae_demo
    python bench/pipeline.py --config convlstm_ae_demo --batches 200
    python bench/pipeline.py --config f2lm_demo

Measures, on the config's synthetic benchmark (rendered on first use): decoding the training
clips from their video files (`datasets.load_split`), then the grain pipeline the trainer
uses (`pipeline.train_dataset` + `pipeline.prefetch`: windows, shuffling, batching, 2 reader
threads), and the host version of the paper-001 augmentation per window for reference
(jaxvad runs augmentation inside the step). The step's appetite comes from
`bench/train_step.py` on the same config, every training phase the method declares
(`Method.phases`); `--no-step` skips it.

A method with per-frame inputs beside the frames (`Method.frame_inputs`, e.g. f2lm's optical
flow and class maps, cutpaste's object boxes) also gets what the trainer adds for them: (a) the host computation of
those inputs, once per clip before training, in frames/s on one training clip, for each flow
method the config's `model.motion` can take (OpenCV DIS, Farneback; `none`: the rest, e.g. the
class maps) and in seconds for the whole training split at the config's own setting; (b) the
grain pipeline with them attached to every window (`per_frame`, as `jaxvad.train` builds it),
and with the method's host transform if it has one (`Method.host_transform`: cutpaste's
CutPaste / CropLiq views).
The verdict then compares (b) with the step's appetite, steps/s x batch size, in windows/s.

Every throughput is the median of `--repeats` measurements. The first line names the CPU:
the host stages share its cores with the training step.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import statistics
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import train_step as jax_bench  # noqa: E402
from bench.timing import cpu_model  # noqa: E402
from jaxvad import augment  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402
from jaxvad import methods  # noqa: E402
from jaxvad.data import datasets, pipeline  # noqa: E402

# The flow methods of a config whose `model.motion` picks one (f2lm), timed on the host.
FLOW_MOTIONS = ("dis", "farneback")


def median_rate(count: float, fn, *, repeats: int) -> float:
  """Median of `count / seconds` over `repeats` calls of `fn()`."""
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    rates.append(count / (time.perf_counter() - start))
  return statistics.median(rates)


def grain_rate(clips, *, config, batches: int, repeats: int, per_frame=None,
               transform=None) -> float:
  """Median windows/s the trainer's grain pipeline delivers (2 reader threads), over `repeats`
  runs of `batches` batches each, with `per_frame` arrays windowed with the frames and the
  method's host `transform` of every window."""
  b, t = config.train.batch_size, config.data.window
  ds = pipeline.train_dataset(clips, window=t, stride=config.data.stride, global_batch_size=b,
                              seed=0, per_frame=per_frame, transform=transform)
  it = pipeline.prefetch(ds)
  next(it)  # thread start-up

  def read():
    for _ in range(batches):
      next(it)
  return median_rate(batches * b, read, repeats=repeats)


def frame_input_rows(config, method, clip, *, config_args, repeats: int) -> list:
  """(label, frames/s) of `method.frame_inputs` on one clip: for each flow method the config's
  `model.motion` can take, plus `none` (the other inputs alone), or the config as it is.

  Args:
    config_args: `(config name or path, overrides)` the config was loaded from; each variant
      is that config with `model.motion` overridden last.
  """
  variants = [None]
  if hasattr(config.model, "motion"):
    variants = [*FLOW_MOTIONS, "none"]
  rows = []
  for motion in variants:
    cfg = config if motion is None else config_lib.load_config(
        config_args[0], [*config_args[1], f"model.motion={motion}"])
    fps = median_rate(len(clip.frames), lambda c=cfg: method.frame_inputs(c, clip.frames, clip),
                      repeats=repeats)
    label = "as configured" if motion is None else f"model.motion = {motion}"
    if motion == "none":   # what is left without flow, e.g. f2lm's class maps
      label += f": {', '.join(method.frame_inputs(cfg, clip.frames, clip)) or 'nothing'} only"
    rows.append((f"frame inputs on the host ({label}; 1 clip, {len(clip.frames)} frames)", fps))
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="convlstm_ae_demo")
  parser.add_argument("--batches", type=int, default=100, help="batches read from grain per run")
  parser.add_argument("--repeats", type=int, default=3,
                      help="measurements of each stage (the median is reported)")
  parser.add_argument("--no-step", action="store_true", help="skip timing the training step")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  method = methods.get(config.method)
  datasets.ensure_benchmark(config.data, progress=False)
  repeats = max(1, args.repeats)

  loaded = []

  def decode():
    loaded[:] = datasets.load_split(config.data, "train")
  decode()   # the clips, and the files in the page cache, as for every later run
  decoded = sum(len(c.frames) for c in loaded)
  decode_fps = median_rate(decoded, decode, repeats=repeats)
  clips = [c.frames for c in loaded]

  b, t = config.train.batch_size, config.data.window
  rows = [("decode train clips (OpenCV)", decode_fps, None)]
  windows = grain_rate(clips, config=config, batches=args.batches, repeats=repeats)
  rows.append(("grain windows + batches (2 threads)", windows * t, windows))
  delivered, delivered_label = windows, "grain"

  per_frame_s = None
  if method.frame_inputs is not None:
    for name, fps in frame_input_rows(config, method, loaded[0], repeats=repeats,
                                      config_args=(args.config, args.overrides)):
      rows.append((name, fps, None))
    # What the trainer computes once before training: every training clip's inputs.
    start = time.perf_counter()
    whole = [method.frame_inputs(config, c.frames, c) for c in loaded]
    per_frame_s = time.perf_counter() - start
    per_frame = {k: [w[k] for w in whole] for k in whole[0]}
    transform = (functools.partial(method.host_transform, config)
                 if method.host_transform else None)
    extra = f"per-frame {', '.join(per_frame)}" + (" + host transform" if transform else "")
    windows = grain_rate(clips, config=config, batches=args.batches, repeats=repeats,
                         per_frame=per_frame, transform=transform)
    rows.append((f"grain windows + batches + {extra} (2 threads)", windows * t, windows))
    delivered, delivered_label = windows, f"grain with {extra}"

  rng = np.random.default_rng(0)
  window = clips[0][:t]
  reps = 50
  aug_fps = median_rate(reps * t, lambda: [augment.augment_window(window, rng, kind="general")
                                           for _ in range(reps)], repeats=repeats)
  rows.append(("host `general` augmentation, 1 thread", aug_fps, None))

  steps = [] if args.no_step else jax_bench.bench_phases(config, repeats=5)
  for s in steps:
    rows.append((f"training step consumes ({s['phase']})", s["train_frames_per_s"],
                 s["train_steps_per_s"] * b))

  h, w, c = clips[0].shape[1:]
  print(f"{cpu_model()} ({os.cpu_count()} cores); OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads)")
  print(f"{config.name}: batch [{b}, {t}, {h}, {w}, {c}], {decoded} training frames in "
        f"{len(clips)} clips; medians of {repeats}")
  print("| stage | frames/s | windows/s |\n|---|---|---|")
  for name, fps, wps in rows:
    print(f"| {name} | {fps:,.0f} | {'' if wps is None else f'{wps:,.1f}'} |")
  if per_frame_s is not None:
    print(f"frame inputs of the {decoded} training frames: {per_frame_s:.2f} s, once before "
          f"training ({', '.join(f'{k} = {v}' for k, v in _input_settings(config))})")
  for s in steps:
    appetite = s["train_steps_per_s"] * b
    ratio = delivered / appetite
    print(f"input-bound ({s['phase']}): {'yes' if ratio < 1 else 'no'} ({delivered_label} "
          f"delivers {delivered:,.1f} windows/s, the step consumes {appetite:,.1f} = "
          f"{s['train_steps_per_s']} steps/s x {b}: {ratio:.1f}x)")


def _input_settings(config):
  """The config's settings that pick the frame inputs (f2lm: model.motion, label_source)."""
  return [(f"model.{k}", getattr(config.model, k)) for k in ("motion", "label_source")
          if hasattr(config.model, k)] or [("config", config.name)]


if __name__ == "__main__":
  main()

"""Is training input-bound? Frames/s the input pipeline delivers against the step's appetite.

    python bench/pipeline.py --config predictive_ae_demo
    python bench/pipeline.py --config convlstm_ae_demo --batches 200

Measures, on the config's synthetic benchmark (rendered on first use): decoding the training
clips from their video files (`datasets.load_split`), then the grain pipeline the trainer
uses (`pipeline.train_dataset` + `pipeline.prefetch`: windows, shuffling, batching, 2 reader
threads), and the host version of the paper-001 augmentation per window for reference
(jaxvad runs augmentation inside the step). The step's appetite comes from
`bench/train_step.py` on the same config; `--no-step` skips it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import train_step as jax_bench  # noqa: E402
from jaxvad import augment  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402
from jaxvad.data import datasets, pipeline  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="convlstm_ae_demo")
  parser.add_argument("--batches", type=int, default=100, help="batches read from grain")
  parser.add_argument("--no-step", action="store_true", help="skip timing the training step")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  datasets.ensure_benchmark(config.data, progress=False)

  start = time.perf_counter()
  clips = [c.frames for c in datasets.load_split(config.data, "train")]
  decode_s = time.perf_counter() - start
  decoded = sum(len(c) for c in clips)

  b, t = config.train.batch_size, config.data.window
  ds = pipeline.train_dataset(clips, window=t, stride=config.data.stride, global_batch_size=b,
                              seed=0)
  it = pipeline.prefetch(ds)
  next(it)  # thread start-up
  start = time.perf_counter()
  for _ in range(args.batches):
    next(it)
  grain_fps = args.batches * b * t / (time.perf_counter() - start)

  rng = np.random.default_rng(0)
  window = ds[0]["frames"][0]
  start = time.perf_counter()
  reps = 50
  for _ in range(reps):
    augment.augment_window(window, rng, kind="general")
  aug_fps = reps * t / (time.perf_counter() - start)

  rows = [("decode train clips (OpenCV)", decoded / decode_s),
          ("grain windows + batches (2 threads)", grain_fps),
          ("host `general` augmentation, 1 thread", aug_fps)]
  if not args.no_step:
    step = jax_bench.bench(config, repeats=5)
    rows.append(("training step consumes", step["train_frames_per_s"]))
  h, w, c = clips[0].shape[1:]
  print(f"{config.name}: batch [{b}, {t}, {h}, {w}, {c}], {decoded} training frames")
  print("| stage | frames/s |\n|---|---|")
  for name, fps in rows:
    print(f"| {name} | {fps:,.0f} |")
  if not args.no_step:
    bound = grain_fps < step["train_frames_per_s"]
    print(f"input-bound: {'yes' if bound else 'no'} (grain delivers "
          f"{grain_fps / step['train_frames_per_s']:.1f}x what the step consumes)")


if __name__ == "__main__":
  main()

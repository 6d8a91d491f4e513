"""Times a method's jitted training step and scoring step on random frames.

    python bench/train_step.py --config demo
    python bench/train_step.py --config convlstm_ae_pickplace train.compute_dtype=bfloat16

Reports compile time, the median of repeated timed steps (each synchronised with
`block_until_ready`), steps/s and frames/s, as a markdown table and JSON. The PyTorch
comparison and device scaling come with issue 7; this script is the shared timing core.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

from jaxvad import config as config_lib
from jaxvad import methods, train


def time_call(fn, *, repeats: int) -> list[float]:
  """Seconds of each of `repeats` calls of `fn()`, each waited for on the device."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def bench(config: config_lib.Config, *, repeats: int) -> dict:
  method = methods.get(config.method)
  h, w, c = train.frame_shape(config)
  b, t = config.train.batch_size, config.data.window
  frames = np.random.default_rng(0).integers(0, 256, (b, t, h, w, c), dtype=np.uint8)
  mesh = train.make_mesh()
  batch = train.shard_batch({"frames": frames}, mesh)
  state = jax.device_put(method.create_state(config, jax.random.key(0), {"frames": frames}),
                         train.replicated(mesh))

  step = train.jit_train_step(method.train_step, mesh)
  start = time.perf_counter()
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start

  def run_train():
    nonlocal state
    state, metrics = step(state, batch)
    return metrics

  train_times = time_call(run_train, repeats=repeats)
  score = jax.jit(method.score_step)
  jax.block_until_ready(score(state, batch))
  score_times = time_call(lambda: score(state, batch)["psnr"], repeats=repeats)
  train_s, score_s = statistics.median(train_times), statistics.median(score_times)
  return {
      "config": config.name, "method": config.method, "batch": [b, t, h, w, c],
      "dtype": config.train.compute_dtype, "devices": jax.device_count(),
      "compile_s": round(compile_s, 2),
      "train_step_ms": round(1e3 * train_s, 2), "train_steps_per_s": round(1 / train_s, 2),
      "train_frames_per_s": round(b * t / train_s, 1),
      "score_step_ms": round(1e3 * score_s, 2), "score_frames_per_s": round(b * t / score_s, 1),
  }


def machine() -> dict:
  return {"platform": platform.platform(), "processor": platform.processor(),
          "device": str(jax.devices()[0].device_kind), "jax": jax.__version__}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="demo", help="config name or .toml path")
  parser.add_argument("--repeats", type=int, default=20, help="timed steps (median is reported)")
  parser.add_argument("--json", type=pathlib.Path, help="also write the result here")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  result = {"machine": machine(), **bench(config, repeats=args.repeats)}
  print(f"{result['machine']['device']}, {result['devices']} device(s), jax {jax.__version__}")
  print("| config | batch [B,T,H,W,C] | dtype | compile s | train step ms | steps/s "
        "| train frames/s | score frames/s |")
  print("|---|---|---|---|---|---|---|---|")
  print(f"| {result['config']} | {result['batch']} | {result['dtype']} | {result['compile_s']} "
        f"| {result['train_step_ms']} | {result['train_steps_per_s']} "
        f"| {result['train_frames_per_s']} | {result['score_frames_per_s']} |")
  if args.json:
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()

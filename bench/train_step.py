"""Times a method's jitted training step and scoring step on random frames.

    python bench/train_step.py --config demo
    python bench/train_step.py --config convlstm_ae_pickplace train.compute_dtype=bfloat16

Reports compile time, the median of repeated timed steps (each synchronised with
`block_until_ready`), steps/s, frames/s and the step's FLOPs as XLA counts them, as a markdown
table and JSON. `bench/models.py` puts these next to PyTorch; `bench/scaling.py` runs this
over 1..N devices.
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


def random_batch(config: config_lib.Config, *, seed: int = 0) -> dict:
  """A host batch of the config's shapes: uint8 frames, plus random soft partition labels for
  methods that train on per-frame targets (r3d_partition)."""
  h, w, c = train.frame_shape(config)
  b, t = config.train.batch_size, config.data.window
  rng = np.random.default_rng(seed)
  batch = {"frames": rng.integers(0, 256, (b, t, h, w, c), dtype=np.uint8)}
  if config.method == "r3d_partition":
    batch["labels"] = rng.dirichlet(np.ones(config.model.num_classes), (b, t)).astype(np.float32)
  return batch


def step_flops(compiled) -> float:
  """FLOPs XLA counts for one call of a compiled function (NaN where it does not say)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def bench(config: config_lib.Config, *, repeats: int, devices: int | None = None) -> dict:
  method = methods.get(config.method)
  host = random_batch(config)
  b, t, h, w, c = host["frames"].shape
  mesh = train.make_mesh(jax.devices()[:devices] if devices else None)
  batch = train.shard_batch(host, mesh)
  state = jax.device_put(method.create_state(config, jax.random.key(0), host),
                         train.replicated(mesh))

  step = train.jit_train_step(method.train_step, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  state, _ = compiled(state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  flops = step_flops(compiled)
  step = compiled

  def run_train():
    nonlocal state
    state, metrics = step(state, batch)
    return metrics

  train_times = time_call(run_train, repeats=repeats)
  score = jax.jit(method.score_step)
  jax.block_until_ready(score(state, batch))
  score_times = time_call(lambda: score(state, batch), repeats=repeats)
  train_s, score_s = statistics.median(train_times), statistics.median(score_times)
  return {
      "config": config.name, "method": config.method, "batch": [b, t, h, w, c],
      "dtype": config.train.compute_dtype, "devices": int(mesh.size),
      "compile_s": round(compile_s, 2),
      "train_step_ms": round(1e3 * train_s, 2), "train_steps_per_s": round(1 / train_s, 2),
      "train_frames_per_s": round(b * t / train_s, 1),
      "score_step_ms": round(1e3 * score_s, 2), "score_frames_per_s": round(b * t / score_s, 1),
      "train_gflop": round(flops / 1e9, 3), "train_tflop_per_s": round(flops / train_s / 1e12, 4),
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
  parser.add_argument("--devices", type=int, help="use the first N devices (default: all)")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  result = {"machine": machine(), **bench(config, repeats=args.repeats, devices=args.devices)}
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

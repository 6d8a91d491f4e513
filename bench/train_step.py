"""Times a method's jitted training step and scoring step on random frames.

    python bench/train_step.py --config convlstm_ae_demo
    python bench/train_step.py --config convlstm_ae_pickplace train.compute_dtype=bfloat16

Reports compile time, the median of repeated timed steps (each synchronised with
`block_until_ready`), steps/s, frames/s and the step's FLOPs as XLA counts them, as a markdown
table and JSON. `bench/models.py` puts these next to PyTorch; `bench/scaling.py` runs this
over 1..N devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import statistics
import time
from typing import Any

import jax
import numpy as np

from jaxvad import config as config_lib
from jaxvad import methods, sharding, train


def time_call(fn, *, repeats: int) -> list[float]:
  """Seconds of each of `repeats` calls of `fn()`, each waited for on the device."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def random_batch(config: config_lib.Config, *, seed: int = 0) -> dict:
  """A host batch of the config's shapes: uint8 frames, plus random targets of the method's
  shapes for methods that train on per-frame targets (`Method.example_targets`)."""
  h, w, c = train.frame_shape(config)
  b, t = config.train.batch_size, config.data.window
  rng = np.random.default_rng(seed)
  batch = {"frames": rng.integers(0, 256, (b, t, h, w, c), dtype=np.uint8)}
  method = methods.get(config.method)
  if method.example_targets is not None:
    batch.update(method.example_targets(config, (b, t), rng))
  return batch


def inference_step(method):
  """The per-window step a method runs at inference: its score step, or for a model that
  scores no anomalies (a masking model) its first declared step."""
  return method.score_step or next(iter(method.steps.values()))


def step_flops(compiled) -> float:
  """FLOPs XLA counts for one call of a compiled function (NaN where it does not say)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def parse_xla_options(items) -> dict:
  """`["KEY=VALUE", ...]` -> XLA compiler options (`DebugOptions` fields, e.g.
  `xla_cpu_experimental_ynn_fusion_type=` for XLA:CPU's Eigen convolutions instead of YNNPACK)."""
  options = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or not key.startswith("xla_"):
      raise SystemExit(f"--xla-option wants KEY=VALUE with an xla_* key, got {item!r}")
    options[key] = value
  return options


@dataclasses.dataclass
class CompiledSteps:
  """A method's compiled train and score steps, ready to call on `state` and `batch`."""
  train: Any
  score: Any
  state: Any
  batch: dict
  devices: int
  compile_s: float   # train step: compilation + first call
  flops: float       # train step, as XLA counts them


def compile_steps(config: config_lib.Config, *, devices: int | None = None,
                  compiler_options: dict | None = None) -> CompiledSteps:
  """Compiles `config`'s train step (state donated, batch sharded over the first `devices`
  devices) and score step for a random batch, and runs the train step once."""
  options = dict(compiler_options or {})
  method = methods.get(config.method)
  host = random_batch(config)
  mesh = sharding.make_mesh(jax.devices()[:devices] if devices else None)
  batch = sharding.shard_batch(host, mesh)
  state = jax.device_put(method.create_state(config, jax.random.key(0), host),
                         sharding.replicated(mesh))
  start = time.perf_counter()
  step = sharding.jit_train_step(method.train_step, mesh).lower(state, batch).compile(
      compiler_options=options)
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  score = jax.jit(inference_step(method)).lower(state, batch).compile(compiler_options=options)
  return CompiledSteps(train=step, score=score, state=state, batch=batch,
                       devices=int(mesh.size), compile_s=compile_s, flops=step_flops(step))


def bench(config: config_lib.Config, *, repeats: int, devices: int | None = None,
          compiler_options: dict | None = None) -> dict:
  """Compiles and times the train step and score step of `config` on a random batch.

  Args:
    config: the method's config (its batch size and frame size are used).
    repeats: timed calls of each step; the median is reported.
    devices: use the first N devices (default: all), batch sharded over a `data` mesh.
    compiler_options: XLA options for both compilations (`parse_xla_options`).

  Returns:
    A dict of compile time, step times, steps/s, frames/s and XLA-counted FLOPs.
  """
  steps = compile_steps(config, devices=devices, compiler_options=compiler_options)
  b, t, h, w, c = steps.batch["frames"].shape
  step, state, batch = steps.train, steps.state, steps.batch

  def run_train():
    nonlocal state
    state, metrics = step(state, batch)
    return metrics

  train_times = time_call(run_train, repeats=repeats)
  score = steps.score
  jax.block_until_ready(score(state, batch))
  score_times = time_call(lambda: score(state, batch), repeats=repeats)
  train_s, score_s = statistics.median(train_times), statistics.median(score_times)
  return {
      "config": config.name, "method": config.method, "batch": [b, t, h, w, c],
      "dtype": config.train.compute_dtype, "devices": steps.devices,
      "xla_options": dict(compiler_options or {}), "compile_s": round(steps.compile_s, 2),
      "train_step_ms": round(1e3 * train_s, 2), "train_steps_per_s": round(1 / train_s, 2),
      "train_frames_per_s": round(b * t / train_s, 1),
      "score_step_ms": round(1e3 * score_s, 2), "score_frames_per_s": round(b * t / score_s, 1),
      "train_gflop": round(steps.flops / 1e9, 3),
      "train_tflop_per_s": round(steps.flops / train_s / 1e12, 4),
  }


def machine() -> dict:
  return {"platform": platform.platform(), "processor": platform.processor(),
          "device": str(jax.devices()[0].device_kind), "jax": jax.__version__}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="convlstm_ae_demo", help="config name or .toml path")
  parser.add_argument("--repeats", type=int, default=20, help="timed steps (median is reported)")
  parser.add_argument("--json", type=pathlib.Path, help="also write the result here")
  parser.add_argument("--devices", type=int, help="use the first N devices (default: all)")
  parser.add_argument("--xla-option", action="append", metavar="KEY=VALUE",
                      help="XLA compiler option for both steps (repeatable)")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  result = {"machine": machine(), **bench(config, repeats=args.repeats, devices=args.devices,
                                                compiler_options=parse_xla_options(args.xla_option))}
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

"""Times a method's jitted training step and scoring step on random frames.

    python bench/train_step.py --config convlstm_ae_demo
    python bench/train_step.py --config convlstm_ae_pickplace train.compute_dtype=bfloat16

Reports compile time, the median of repeated timed steps (each synchronised with
`block_until_ready`), steps/s, frames/s and the step's FLOPs as XLA counts them, as a markdown
table and JSON. A method with several training phases (`Method.phases`, e.g. f2lm's generator
and Destroyer) is timed at its first phase, or at `--phase NAME`; `bench_phases` times them
all. `bench/models.py` puts these next to PyTorch; `bench/scaling.py` runs this over 1..N
devices.
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
  shapes for methods that train on per-frame targets (`Method.example_targets`), each window
  through the method's host transform if it has one (`Method.host_transform`)."""
  h, w, c = train.frame_shape(config)
  b, t = config.train.batch_size, config.data.window
  rng = np.random.default_rng(seed)
  batch = {"frames": rng.integers(0, 256, (b, t, h, w, c), dtype=np.uint8)}
  method = methods.get(config.method)
  if method.example_targets is not None:
    batch.update(method.example_targets(config, (b, t), rng))
  if method.host_transform is not None:
    items = [method.host_transform(config, {k: v[i] for k, v in batch.items()}, rng)
             for i in range(b)]
    batch = {k: np.stack([item[k] for item in items]) for k in items[0]}
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


def phase_step(method, phase: str | None = None):
  """`(name, train step)` of the method's training phase `phase` (`Method.phases`; None: the
  first, the only one of most methods).

  Raises:
    SystemExit: a phase the method does not declare (names the ones it does).
  """
  if phase is None:
    return method.phases[0].name, method.phases[0].train_step
  for p in method.phases:
    if p.name == phase:
      return p.name, p.train_step
  raise SystemExit(f"method {method.name} has no training phase {phase!r}; it has "
                   f"{', '.join(p.name for p in method.phases)}")


@dataclasses.dataclass
class CompiledSteps:
  """A method's compiled train step (of one phase) and score step, ready to call on `state` and
  `batch`."""
  train: Any
  score: Any
  state: Any
  batch: dict
  devices: int
  compile_s: float   # train step: compilation + first call
  flops: float       # train step, as XLA counts them
  phase: str = ""    # the training phase of `train` (`Method.phases`)
  mesh: Any = None
  options: dict = dataclasses.field(default_factory=dict)


def _compile_train(step_fn, state, batch, mesh, options: dict):
  """`step_fn` compiled for `state` and `batch` (state donated) and run once; returns
  (compiled, new state, seconds for both)."""
  start = time.perf_counter()
  step = sharding.jit_train_step(step_fn, mesh).lower(state, batch).compile(
      compiler_options=options)
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  return step, state, time.perf_counter() - start


def compile_steps(config: config_lib.Config, *, devices: int | None = None,
                  compiler_options: dict | None = None, phase: str | None = None) -> CompiledSteps:
  """Compiles `config`'s train step of `phase` (default: the first phase; state donated, batch
  sharded over the first `devices` devices) and score step for a random batch, and runs the
  train step once."""
  options = dict(compiler_options or {})
  method = methods.get(config.method)
  name, step_fn = phase_step(method, phase)
  host = random_batch(config)
  mesh = sharding.make_mesh(jax.devices()[:devices] if devices else None)
  batch = sharding.shard_batch(host, mesh)
  state = jax.device_put(method.create_state(config, jax.random.key(0), host),
                         sharding.replicated(mesh))
  step, state, compile_s = _compile_train(step_fn, state, batch, mesh, options)
  score = jax.jit(inference_step(method)).lower(state, batch).compile(compiler_options=options)
  return CompiledSteps(train=step, score=score, state=state, batch=batch,
                       devices=int(mesh.size), compile_s=compile_s, flops=step_flops(step),
                       phase=name, mesh=mesh, options=options)


def _time_train(step, state, batch, *, repeats: int):
  """Median seconds of `repeats` calls of a compiled (donating) train step; the last state."""

  def run_train():
    nonlocal state
    state, metrics = step(state, batch)
    return metrics

  times = time_call(run_train, repeats=repeats)
  return statistics.median(times), state


def _row(config, steps: CompiledSteps, *, phase: str, compile_s: float, train_s: float,
         flops: float, score_s: float | None) -> dict:
  b, t, h, w, c = steps.batch["frames"].shape
  row = {
      "config": config.name, "method": config.method, "phase": phase, "batch": [b, t, h, w, c],
      "dtype": config.train.compute_dtype, "devices": steps.devices,
      "xla_options": dict(steps.options), "compile_s": round(compile_s, 2),
      "train_step_ms": round(1e3 * train_s, 2), "train_steps_per_s": round(1 / train_s, 2),
      "train_frames_per_s": round(b * t / train_s, 1),
      "score_step_ms": None, "score_frames_per_s": None, "score_gflop": None,
      "train_gflop": round(flops / 1e9, 3),
      "train_tflop_per_s": round(flops / train_s / 1e12, 4),
  }
  if score_s is not None:
    row.update(score_step_ms=round(1e3 * score_s, 2),
               score_frames_per_s=round(b * t / score_s, 1),
               score_gflop=round(step_flops(steps.score) / 1e9, 3))
  return row


def _time_score(steps: CompiledSteps, state, *, repeats: int) -> float:
  score, batch = steps.score, steps.batch
  jax.block_until_ready(score(state, batch))
  return statistics.median(time_call(lambda: score(state, batch), repeats=repeats))


def bench(config: config_lib.Config, *, repeats: int, devices: int | None = None,
          compiler_options: dict | None = None, phase: str | None = None) -> dict:
  """Compiles and times one phase's train step and the score step of `config` on a random batch.

  Args:
    config: the method's config (its batch size and frame size are used).
    repeats: timed calls of each step; the median is reported.
    devices: use the first N devices (default: all), batch sharded over a `data` mesh.
    compiler_options: XLA options for both compilations (`parse_xla_options`).
    phase: the training phase timed (`Method.phases` name; default the first).

  Returns:
    A dict of the phase, compile time, step times, steps/s, frames/s and XLA-counted FLOPs.
  """
  steps = compile_steps(config, devices=devices, compiler_options=compiler_options, phase=phase)
  train_s, state = _time_train(steps.train, steps.state, steps.batch, repeats=repeats)
  score_s = _time_score(steps, state, repeats=repeats)
  return _row(config, steps, phase=steps.phase, compile_s=steps.compile_s, train_s=train_s,
              flops=steps.flops, score_s=score_s)


def bench_phases(config: config_lib.Config, *, repeats: int, devices: int | None = None,
                 compiler_options: dict | None = None) -> list[dict]:
  """`bench` of every training phase the method declares (`Method.phases`), in order, on one
  state (each phase's step compiled for the state the previous one left).

  The score step is compiled and timed once, with the first phase; its columns are set on
  the first row only (None on the others).

  Returns:
    One `bench` dict per phase.
  """
  method = methods.get(config.method)
  steps = compile_steps(config, devices=devices, compiler_options=compiler_options)
  train_s, state = _time_train(steps.train, steps.state, steps.batch, repeats=repeats)
  score_s = _time_score(steps, state, repeats=repeats)
  rows = [_row(config, steps, phase=steps.phase, compile_s=steps.compile_s, train_s=train_s,
               flops=steps.flops, score_s=score_s)]
  for phase in method.phases[1:]:
    step, state, compile_s = _compile_train(phase.train_step, state, steps.batch, steps.mesh,
                                            steps.options)
    train_s, state = _time_train(step, state, steps.batch, repeats=repeats)
    rows.append(_row(config, steps, phase=phase.name, compile_s=compile_s, train_s=train_s,
                     flops=step_flops(step), score_s=None))
  return rows


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
  parser.add_argument("--phase", help="training phase timed (`Method.phases`; default: the "
                                      "first), e.g. destroyer for f2lm")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  config = config_lib.load_config(args.config, args.overrides)
  result = {"machine": machine(), **bench(config, repeats=args.repeats, devices=args.devices,
                                          compiler_options=parse_xla_options(args.xla_option),
                                          phase=args.phase)}
  print(f"{result['machine']['device']}, {result['devices']} device(s), jax {jax.__version__}")
  print("| config | phase | batch [B,T,H,W,C] | dtype | compile s | train step ms | steps/s "
        "| train frames/s | score frames/s |")
  print("|---|---|---|---|---|---|---|---|---|")
  print(f"| {result['config']} | {result['phase']} | {result['batch']} | {result['dtype']} "
        f"| {result['compile_s']} "
        f"| {result['train_step_ms']} | {result['train_steps_per_s']} "
        f"| {result['train_frames_per_s']} | {result['score_frames_per_s']} |")
  if args.json:
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""jaxvad against PyTorch: training step and scoring throughput of every model.

    python bench/models.py                                   # every bench config, CPU
    python bench/models.py --methods predictive_ae --batch 32 --size 256 256 --bf16
    python bench/models.py --torch-compile --out bench/results

For each method, jaxvad (jitted fp32 step; with `--bf16` also bf16 compute) and its PyTorch
baseline (`bench/torch_baselines`: eager; with `--torch-compile` also `torch.compile`; on a GPU
with `--bf16` also AMP bf16) run on the same random batch of the same shapes: a full training
step (forward, loss, backward, Adam update) and the scoring step, each timed as the median of
`--repeats` calls after warm-up / compilation, waited for with `block_until_ready` /
`torch.cuda.synchronize`. Reports steps/s, frames/s, compile time, the step's FLOPs as XLA
counts them, peak device memory where the backend reports it, and the ratio jaxvad / PyTorch
eager of the same dtype. Writes a markdown table and JSON (with the machine described) under
`--out` (the default, bench/results/, holds the committed tables: a run restricted with
`--methods` overwrites them with its rows only; pass another `--out` for such runs).

A method with several training phases (`Method.phases`) gets one row per phase and framework,
each phase's own step timed (jaxvad: `bench_phases`, every phase compiled for the state the
previous one left; PyTorch: the baseline's `PHASES`); the score step is timed once per
framework and shown on the first phase's row. Per-frame inputs (`Method.frame_inputs`, e.g.
f2lm's flow and class maps) are the method's random ones (`example_targets`), fed to both
sides as part of the batch.

FFP's step trains both of its networks (the U-Net generator and the PatchGAN discriminator,
two Adams) on both sides: jaxvad's one jitted step, the baseline's `train_step`. F2LM's
"generator" phase likewise trains the generator and the PatchGAN (three AdamWs in all), its
"destroyer" phase the Destroyer U-Net under the frozen generator (`torch_baselines/f2lm.py`).

The ConvLSTM baseline uses PyTorch's usual paddings (`torch_padding=True`): same shapes,
parameters and FLOPs as jaxvad's 'SAME'-padded model, without the pad/crop copies an exact
transcription needs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `bench` as a package

from bench import train_step as jax_bench  # noqa: E402
from bench.timing import cpu_model  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402
from jaxvad import methods  # noqa: E402

# Every registered method with a bench config (`Method.bench_config`), in registry order.
CONFIGS = {name: methods.get(name).bench_config for name in methods.names()
           if methods.get(name).bench_config}


# --------------------------------------------------------------------------- machine


def machine() -> dict:
  """CPU model, cores, accelerators and library versions, for the result files."""
  import flax
  import torch
  cpu = cpu_model()
  gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
  return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
          "jax_backend": jax.default_backend(), "jax_devices": jax.device_count(),
          "jax": jax.__version__, "flax": flax.__version__, "torch": torch.__version__,
          "python": platform.python_version(), "platform": platform.platform()}


# --------------------------------------------------------------------------- PyTorch


def torch_phases(baseline, method) -> dict:
  """`{phase name: (losses_fn, step_fn or None)}` of the baseline for the method's phases.

  A baseline's `PHASES` names its phases' own losses and steps (f2lm); otherwise the first
  phase (the only one of single-phase methods) is the baseline's own update (`train_losses`,
  `train_step`: ffp) or, without one, `train_loss` under one Adam (step_fn None). A phase
  missing from the result has no PyTorch counterpart yet.
  """
  phases = dict(getattr(baseline, "PHASES", {}))
  first = method.phases[0].name
  if first not in phases:
    phases[first] = ((baseline.train_losses, baseline.train_step)
                     if hasattr(baseline, "train_step") else (baseline.train_loss, None))
  return phases


def torch_bench(config, *, repeats: int, compile_: bool = False, amp: bool = False) -> list:
  """Times the PyTorch baseline of `config.method` on the batch `jax_bench.random_batch`
  gives the jaxvad step (same shapes, same values): each training phase the method declares
  (`Method.phases`), one row each, and the score step (on the first phase's row).

  Per-frame inputs (`Method.frame_inputs`: f2lm's flow and class maps) reach the baseline's
  losses and score as a dict; r3d_partition's per-frame labels as the tensor."""
  import torch
  from bench import torch_baselines

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch_baselines.configure(device)
  baseline = torch_baselines.get(config.method)
  method = methods.get(config.method)
  kwargs = {"torch_padding": True} if config.method == "convlstm_ae" else {}
  model = baseline.build(config, **kwargs).to(device)
  host = jax_bench.random_batch(config)
  frames = torch.from_numpy(host["frames"]).to(device)
  extras = {k: torch.from_numpy(v).to(device) for k, v in host.items() if k != "frames"}
  targets = extras if method.frame_inputs else extras.get("labels")
  score_args = (targets,) if method.frame_inputs else ()
  phases = torch_phases(baseline, method)
  # Several networks and optimizers (ffp, f2lm): the baseline's own; else one Adam.
  opts = baseline.optimizers(model, config) if hasattr(baseline, "optimizers") else None
  if any(step is None for _, step in phases.values()):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                           lr=config.train.learning_rate)
  score_fn = torch.compile(baseline.score) if compile_ else baseline.score
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

  def timed(fn):
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      sync()
      times.append(time.perf_counter() - start)
    return statistics.median(times)

  def phase_step(loss_fn, step_fn):
    loss_fn = torch.compile(loss_fn) if compile_ else loss_fn

    def losses_fn(*args):   # the forward under autocast, the backward passes outside it
      with autocast:
        return loss_fn(*args)

    def train_step():
      if step_fn is not None:
        step_fn(model, opts, frames, targets, losses_fn=losses_fn)
        return
      opt.zero_grad(set_to_none=True)
      loss = losses_fn(model, frames, targets)
      loss.backward()
      opt.step()
    return train_step

  def score():
    with autocast:
      score_fn(model, frames, *score_args)

  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  b, t = host["frames"].shape[:2]
  framework = "pytorch " + ("compile" if compile_ else "eager")
  dtype = "bf16 amp" if amp else "float32"
  rows = []
  for phase in method.phases:
    if phase.name not in phases:
      rows.append({"framework": framework, "phase": phase.name, "dtype": dtype,
                   "error": f"no PyTorch baseline of phase {phase.name!r} in "
                            f"bench/torch_baselines/{config.method}.py (PHASES)"})
      continue
    train_step = phase_step(*phases[phase.name])
    start = time.perf_counter()
    train_step()
    sync()
    compile_s = time.perf_counter() - start
    train_step()  # warm-up (cudnn.benchmark autotuning, allocator)
    sync()
    train_s = timed(train_step)
    rows.append({"framework": framework, "phase": phase.name, "dtype": dtype,
                 "compile_s": round(compile_s, 2), "train_step_ms": round(1e3 * train_s, 2),
                 "train_steps_per_s": round(1 / train_s, 2),
                 "train_frames_per_s": round(b * t / train_s, 1),
                 "score_step_ms": None, "score_frames_per_s": None})
  # Compiled, a second warm-up: the first call finds the model in train mode and leaves it in
  # eval mode, which fails dynamo's guards once more (a recompilation).
  for _ in range(2 if compile_ else 1):
    score()
    sync()
  score_s = timed(score)
  rows[0].update(score_step_ms=round(1e3 * score_s, 2),
                 score_frames_per_s=round(b * t / score_s, 1))
  peak = (round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None)
  for r in rows:
    r["peak_mem_mb"] = peak
  return rows


# --------------------------------------------------------------------------- jaxvad


def jax_rows(config, *, repeats: int, compiler_options: dict | None = None) -> list:
  """jaxvad's rows of `config`: one per training phase (`jax_bench.bench_phases`), the score
  step on the first."""
  rows = []
  for row in jax_bench.bench_phases(config, repeats=repeats, compiler_options=compiler_options):
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    rows.append({"framework": "jaxvad" + (" +xla-option" if compiler_options else ""),
                 "phase": row["phase"], "dtype": config.train.compute_dtype,
                 "xla_options": row["xla_options"],
                 **{k: row[k] for k in ("compile_s", "train_step_ms", "train_steps_per_s",
                                         "train_frames_per_s", "score_step_ms",
                                         "score_frames_per_s", "train_gflop",
                                         "train_tflop_per_s")},
                 "peak_mem_mb": round(peak / 2**20) if peak else None})
  return rows


def _failed(framework: str, e: Exception) -> dict:
  return {"framework": framework, "phase": "all", "dtype": "float32",
          "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}


def bench_method(method: str, *, overrides, repeats: int, bf16: bool, compile_: bool,
                 xla_options: dict | None = None) -> list:
  config = config_lib.load_config(CONFIGS[method], overrides)
  rows = jax_rows(config, repeats=repeats)
  if xla_options:  # the same steps compiled with the options, timed in the same run
    rows += jax_rows(config, repeats=repeats, compiler_options=xla_options)
  if bf16:
    rows += jax_rows(config_lib.load_config(CONFIGS[method],
                                            [*overrides, "train.compute_dtype=bfloat16"]),
                     repeats=repeats)
  from bench import torch_baselines
  if method not in torch_baselines.METHODS:   # a method without a PyTorch baseline yet
    rows.append({"framework": "pytorch eager", "phase": "all", "dtype": "float32",
                 "error": f"no PyTorch baseline for {method} in bench/torch_baselines/"})
    compile_ = False
  else:
    rows += torch_bench(config, repeats=repeats)
  if compile_:
    try:
      rows += torch_bench(config, repeats=repeats, compile_=True)
    except Exception as e:  # noqa: BLE001 - report, don't abort the whole bench
      rows.append(_failed("pytorch compile", e))
  import torch
  if bf16 and torch.cuda.is_available() and method in torch_baselines.METHODS:
    rows += torch_bench(config, repeats=repeats, amp=True)
  batch = list(jax_bench.random_batch(config)["frames"].shape)
  # Ratios against PyTorch eager of the same dtype (bf16 against AMP) and the same phase.
  eager = {(r["dtype"], r["phase"]): r for r in rows
           if r["framework"] == "pytorch eager" and "train_step_ms" in r}
  for r in rows:
    ref = eager.get(("bf16 amp" if r["dtype"] == "bfloat16" else "float32", r["phase"]),
                    eager.get(("float32", r["phase"])))
    if "train_step_ms" in r and ref:
      r["train_vs_eager"] = round(ref["train_step_ms"] / r["train_step_ms"], 2)
      if r.get("score_step_ms") and ref.get("score_step_ms"):
        r["score_vs_eager"] = round(ref["score_step_ms"] / r["score_step_ms"], 2)
    r.update(method=method, config=config.name, batch=batch)
  return rows


# --------------------------------------------------------------------------- output


COLUMNS = [("method", "model"), ("framework", "framework"), ("phase", "phase"),
           ("dtype", "dtype"), ("batch", "batch [B,T,H,W,C]"), ("compile_s", "compile s"),
           ("train_step_ms", "train ms"), ("train_steps_per_s", "steps/s"),
           ("train_frames_per_s", "train frames/s"), ("score_frames_per_s", "score frames/s"),
           ("train_vs_eager", "train × eager"), ("score_vs_eager", "score × eager"),
           ("train_tflop_per_s", "TFLOP/s"), ("peak_mem_mb", "peak MiB")]


def markdown(rows: list, mach: dict) -> str:
  head = (f"{mach['cpu']} ({mach['cores']} cores)" + (f", {mach['gpu']}" if mach["gpu"] else "")
          + f"; jax {mach['jax']} ({mach['jax_backend']}), flax {mach['flax']}, "
          f"torch {mach['torch']}")
  options = next((r["xla_options"] for r in rows if r.get("xla_options")), None)
  if options:
    head += "; +xla-option: " + ", ".join(f"{k}={v!r}" for k, v in options.items())
  lines = [head, "", "| " + " | ".join(c for _, c in COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['method']} | {r['framework']} | {r['phase']} | {r['dtype']} "
                   f"| failed: {r['error']} |")
      continue
    lines.append("| " + " | ".join("" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS)
                 + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
  parser.add_argument("--batch", type=int, help="batch size (default: each config's)")
  parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                      help="frame size (default: each config's)")
  parser.add_argument("--repeats", type=int, default=10, help="timed calls (median reported)")
  parser.add_argument("--bf16", action="store_true", help="also bf16 compute (AMP on GPU)")
  parser.add_argument("--torch-compile", action="store_true", help="also torch.compile")
  parser.add_argument("--xla-option", action="append", metavar="KEY=VALUE",
                      help="also time jaxvad compiled with this XLA option (repeatable), e.g. "
                           "xla_cpu_experimental_ynn_fusion_type= (Eigen instead of YNNPACK "
                           "convolutions on CPU)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/results"),
                      help="folder for models_<machine>.md / .json (default: bench/results)")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                      help="config overrides applied to every model")
  args = parser.parse_args()
  overrides = list(args.overrides)
  if args.batch:
    overrides.append(f"train.batch_size={args.batch}")
  if args.size:
    overrides.append(f"data.size=[{args.size[0]},{args.size[1]}]")
  mach = machine()
  rows = []
  for method in args.methods:
    new = bench_method(method, overrides=overrides, repeats=args.repeats, bf16=args.bf16,
                       compile_=args.torch_compile,
                       xla_options=jax_bench.parse_xla_options(args.xla_option))
    print("\n".join(markdown(new, mach).splitlines()[4:]), flush=True)
    rows += new
  text = markdown(rows, mach)
  print(text)
  args.out.mkdir(parents=True, exist_ok=True)
  tag = (mach["gpu"] or f"cpu{mach['cores']}").lower().replace(" ", "-")
  (args.out / f"models_{tag}.md").write_text(text + "\n")
  (args.out / f"models_{tag}.json").write_text(
      json.dumps({"machine": mach, "rows": rows}, indent=2) + "\n")
  print(f"wrote {args.out}/models_{tag}.md and .json")


if __name__ == "__main__":
  main()

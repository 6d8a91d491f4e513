"""jaxvad against PyTorch: training step and scoring throughput of every model.

    python bench/models.py                                   # every bench config, CPU
    python bench/models.py --methods predictive_ae --batch 32 --size 256 256 --bf16
    python bench/models.py --torch-compile --out bench/results

For each method, jaxvad (jitted fp32 step; with `--bf16` also bf16 compute) and its PyTorch
baseline (`bench/torch_baselines`) run on the same random batch of the same shapes: a full
training step (forward, loss, backward, Adam update) and the scoring step, each timed as the
median of `--repeats` calls after warm-up / compilation, waited for with `block_until_ready` /
`torch.cuda.synchronize`. Reports steps/s, frames/s, compile time, the step's FLOPs as XLA
counts them, peak device memory where the backend reports it, and the ratio of jaxvad to
PyTorch at its best on this machine.

PyTorch's speed on a CPU depends on the machine's ISA and on the path its kernels take (the
same ConvLSTM step took 115 ms eager, channels-last, on a 2-core AMD EPYC and 3,224 ms on an
AVX-512 / AMX Xeon, where jaxvad took 422 ms), so each baseline runs in several configurations
(`torch_configs`), a row each: `pytorch eager` (NCHW / NCDHW memory), `pytorch eager
channels-last` (model and every conv input channels-last), `pytorch eager no-onednn` (CPU:
`torch.backends.mkldnn.flags(enabled=False)`), `pytorch compile` with `--torch-compile`, and
with `--bf16` `pytorch amp` (`torch.autocast` bf16; `pytorch compile amp` with both). Every
row's ratio `train × best torch` is the fastest configuration's step time over the row's
(float32 rows against float32 configurations, bf16 rows against all); the table names that
configuration, per step, and the machine line gives the CPU's model and ISA flags (avx2,
avx512f, avx512_bf16, amx_tile, ...). Writes a markdown table and JSON (with the machine
described) under `--out` (the default, bench/results/, holds the committed tables: a run
restricted with `--methods` overwrites them with its rows only; pass another `--out` for such
runs).

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
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `bench` as a package

from bench import train_step as jax_bench  # noqa: E402
from bench.timing import cpu_flags, cpu_model, median_ms, write_atomic  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402
from jaxvad import methods  # noqa: E402

# Every registered method with a bench config (`Method.bench_config`), in registry order.
CONFIGS = {name: methods.get(name).bench_config for name in methods.names()
           if methods.get(name).bench_config}


# --------------------------------------------------------------------------- machine


def machine() -> dict:
  """CPU model and ISA flags, cores, accelerators and library versions, for the result files.

  `torch_cpu_capability` is the vector ISA PyTorch's own CPU kernels dispatch to (DEFAULT,
  AVX2, AVX512, ...); `cpu_flags` the extensions oneDNN / MKL / XLA:CPU may use
  (`bench.timing.ISA_FLAGS`: avx512_bf16, amx_tile, ... decide the fast matmul / conv paths).
  """
  import flax
  import torch
  gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
          "cpu_flags": cpu_flags(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
          "onednn": torch.backends.mkldnn.is_available(), "gpu": gpu,
          "jax_backend": jax.default_backend(), "jax_devices": jax.device_count(),
          "jax_device_kind": jax.devices()[0].device_kind,
          "jax": jax.__version__, "flax": flax.__version__, "torch": torch.__version__,
          "python": platform.python_version(), "platform": platform.platform()}


def machine_line(mach: dict) -> str:
  """The machine in one line: CPU (cores; arch: ISA flags; torch's kernels), GPU, versions."""
  flags = " ".join(mach.get("cpu_flags") or []) or "ISA flags n/a"
  return (f"{mach['cpu']} ({mach['cores']} cores; {mach.get('arch', '?')}: {flags}; torch CPU "
          f"kernels {mach.get('torch_cpu_capability', '?')}, oneDNN "
          f"{'on' if mach.get('onednn') else 'off'})"
          + (f", {mach['gpu']}" if mach.get("gpu") else "")
          + f"; jax {mach['jax']} ({mach['jax_backend']}), flax {mach['flax']}, "
          f"torch {mach['torch']}")


# --------------------------------------------------------------------------- PyTorch


@dataclasses.dataclass(frozen=True)
class TorchConfig:
  """One way to run a PyTorch baseline; `name` is its rows' `framework`.

  channels_last: model weights and every conv's input in channels-last memory (`channels_last`,
    `channels_last_3d` for 5-D); False: PyTorch's default contiguous NCHW / NCDHW.
  onednn: False runs under `torch.backends.mkldnn.flags(enabled=False)` (PyTorch's own
    im2col + BLAS convolutions instead of oneDNN's; CPU only).
  compile: `torch.compile` of the losses and the score.
  amp: the forward under `torch.autocast(bfloat16)` (rows' dtype "bf16 amp").
  """
  name: str
  channels_last: bool = True
  onednn: bool = True
  compile: bool = False
  amp: bool = False


EAGER = TorchConfig("pytorch eager", channels_last=False)
CHANNELS_LAST = TorchConfig("pytorch eager channels-last")
NO_ONEDNN = TorchConfig("pytorch eager no-onednn", channels_last=False, onednn=False)
COMPILE = TorchConfig("pytorch compile", compile=True)
AMP = TorchConfig("pytorch amp", amp=True)
COMPILE_AMP = TorchConfig("pytorch compile amp", compile=True, amp=True)
TORCH_CONFIGS = {c.name: c for c in (EAGER, CHANNELS_LAST, NO_ONEDNN, COMPILE, AMP, COMPILE_AMP)}


def torch_configs(device_type: str, *, compile_: bool, amp: bool) -> list[TorchConfig]:
  """The PyTorch configurations timed on `device_type` ("cpu" / "cuda"): eager in NCHW and in
  channels-last memory, on the CPU also eager without oneDNN; with `compile_` also
  `torch.compile`, with `amp` also AMP bf16 (and compiled AMP with both).

  Which is fastest depends on the machine (an AVX-512 / AMX Xeon took 3.2 s per ConvLSTM step
  on one PyTorch path where jaxvad took 0.42 s), so every ratio is taken against the fastest
  (`best_torch`)."""
  configs = [EAGER, CHANNELS_LAST] + ([NO_ONEDNN] if device_type == "cpu" else [])
  configs += [COMPILE] if compile_ else []
  configs += [AMP] + ([COMPILE_AMP] if compile_ else []) if amp else []
  return configs


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


def hold_memory_format(model, *, channels_last: bool) -> None:
  """Every convolution of `model` gets its input in one memory format (a forward pre-hook):
  channels-last (`channels_last_3d` for 5-D), or contiguous NCHW / NCDHW. The baselines'
  inputs are permuted views of channels-last `[B, T, H, W, C]` batches, so without the hook an
  NCHW model would still run channels-last convolutions (PyTorch follows the input's format)."""
  from torch import nn
  import torch

  def hook(module, args):
    x = args[0]
    fmt = ((torch.channels_last if x.dim() == 4 else torch.channels_last_3d) if channels_last
           else torch.contiguous_format)
    return (x.contiguous(memory_format=fmt),) + tuple(args[1:])

  for module in model.modules():
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
      module.register_forward_pre_hook(hook)


def onednn_off():
  """`torch.backends.mkldnn.flags(enabled=False)` keeping oneDNN's other flags as they are (the
  context's defaults would set them, with a warning about TF32)."""
  import inspect

  import torch
  mkldnn = torch.backends.mkldnn
  keep = {k: getattr(mkldnn, k) for k in inspect.signature(mkldnn.flags).parameters
          if k != "enabled" and hasattr(mkldnn, k)}
  return mkldnn.flags(enabled=False, **keep)


def torch_bench(config, *, repeats: int, variant: TorchConfig = EAGER) -> list:
  """Times the PyTorch baseline of `config.method` run as `variant` on the batch
  `jax_bench.random_batch` gives the jaxvad step (same shapes, same values): each training
  phase the method declares (`Method.phases`), one row each, and the score step (on the first
  phase's row).

  Per-frame inputs (`Method.frame_inputs`: f2lm's flow and class maps) reach the baseline's
  losses and score as a dict; r3d_partition's per-frame labels as the tensor. On a GPU float32
  matmuls may use TF32 (`set_float32_matmul_precision("high")`), as XLA's default precision
  does; cuDNN convolutions do by default in both."""
  import contextlib

  import torch
  from bench import torch_baselines

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  if device.type == "cuda":
    torch.set_float32_matmul_precision("high")
  elif not variant.onednn and not torch.backends.mkldnn.is_available():
    raise RuntimeError("this PyTorch build has no oneDNN to turn off")
  torch_baselines.configure(device)
  baseline = torch_baselines.get(config.method)
  method = methods.get(config.method)
  kwargs = {"torch_padding": True} if config.method == "convlstm_ae" else {}
  model = baseline.build(config, channels_last=variant.channels_last, **kwargs).to(device)
  hold_memory_format(model, channels_last=variant.channels_last)
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
  score_fn = torch.compile(baseline.score) if variant.compile else baseline.score
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.amp)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  backend = contextlib.nullcontext if variant.onednn else onednn_off
  settle_s = 0.0 if device.type == "cuda" else 1.0   # other thread pools spin down (CPU)

  def synced(fn):
    def call():
      with backend():
        fn()
      sync()
    return call

  def phase_step(loss_fn, step_fn):
    loss_fn = torch.compile(loss_fn) if variant.compile else loss_fn

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
    return synced(train_step)

  def score_step():
    with autocast:
      score_fn(model, frames, *score_args)

  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  b, t = host["frames"].shape[:2]
  dtype = "bf16 amp" if variant.amp else "float32"
  rows = []
  for phase in method.phases:
    if phase.name not in phases:
      rows.append({"framework": variant.name, "phase": phase.name, "dtype": dtype,
                   "error": f"no PyTorch baseline of phase {phase.name!r} in "
                            f"bench/torch_baselines/{config.method}.py (PHASES)"})
      continue
    train_step = phase_step(*phases[phase.name])
    start = time.perf_counter()
    train_step()
    compile_s = time.perf_counter() - start
    # one more warm-up call (cudnn.benchmark autotuning, allocator), then the timed ones
    train_s = median_ms(train_step, repeats=repeats, settle_s=settle_s) / 1e3
    rows.append({"framework": variant.name, "phase": phase.name, "dtype": dtype,
                 "compile_s": round(compile_s, 2), "train_step_ms": round(1e3 * train_s, 2),
                 "train_steps_per_s": round(1 / train_s, 2),
                 "train_frames_per_s": round(b * t / train_s, 1),
                 "score_step_ms": None, "score_frames_per_s": None})
  # Compiled, a second warm-up: the first call finds the model in train mode and leaves it in
  # eval mode, which fails dynamo's guards once more (a recompilation).
  score_s = median_ms(synced(score_step), repeats=repeats, warmup=2 if variant.compile else 1,
                      settle_s=0.0) / 1e3
  rows[0].update(score_step_ms=round(1e3 * score_s, 2),
                 score_frames_per_s=round(b * t / score_s, 1))
  peak = (round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None)
  for r in rows:
    r["peak_mem_mb"] = peak
  return rows


def best_torch(rows: list, *, phase: str, dtype: str, key: str) -> dict | None:
  """The PyTorch row with the smallest `key` (train_step_ms / score_step_ms) for `phase`: the
  denominator of a jaxvad row of `dtype`'s ratio.

  A float32 row is compared with PyTorch's float32 configurations only (AMP computes in lower
  precision); a bfloat16 row with all of them (AMP, or float32 where that is faster on this
  machine: a PyTorch user picks whichever is). None where no PyTorch row has `key`.
  """
  candidates = [r for r in rows if r.get("framework", "").startswith("pytorch")
                and r.get("phase") == phase and r.get(key)
                and (dtype == "bfloat16" or r.get("dtype") == "float32")]
  return min(candidates, key=lambda r: r[key], default=None)


def add_ratios(rows: list) -> list:
  """Sets each timed row's `train_vs_torch` (best PyTorch step ms / this row's, >1: faster
  than PyTorch's fastest configuration) and `train_torch_ref` (that configuration's name, with
  " (bf16 amp)" for AMP), likewise `score_vs_torch` / `score_torch_ref`; rows of one method.
  PyTorch rows get theirs too (how far each configuration is from the best). Returns `rows`."""
  for r in rows:
    for step in ("train", "score"):
      key = f"{step}_step_ms"
      if not r.get(key):
        continue
      dtype = "bfloat16" if r.get("dtype") in ("bfloat16", "bf16 amp") else "float32"
      ref = best_torch(rows, phase=r["phase"], dtype=dtype, key=key)
      if ref:
        r[f"{step}_vs_torch"] = round(ref[key] / r[key], 2)
        r[f"{step}_torch_ref"] = ref["framework"] + (
            f" ({ref['dtype']})" if ref["dtype"] != "float32" else "")
  return rows


# --------------------------------------------------------------------------- jaxvad


def jax_rows(config, *, repeats: int, compiler_options: dict | None = None,
             devices: int = 1) -> list:
  """jaxvad's rows of `config`: one per training phase (`jax_bench.bench_phases`), the score
  step on the first; on one device by default, as the PyTorch baseline runs."""
  rows = []
  for row in jax_bench.bench_phases(config, repeats=repeats, compiler_options=compiler_options,
                                    devices=devices):
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    rows.append({"framework": "jaxvad" + (" +xla-option" if compiler_options else ""),
                 "phase": row["phase"], "dtype": config.train.compute_dtype,
                 "xla_options": row["xla_options"],
                 **{k: row[k] for k in ("compile_s", "train_step_ms", "train_steps_per_s",
                                         "train_frames_per_s", "score_step_ms",
                                         "score_frames_per_s", "train_gflop",
                                         "train_tflop_per_s", "score_gflop")},
                 "peak_mem_mb": round(peak / 2**20) if peak else None})
  return rows


def failed_row(framework: str, e: Exception, *, dtype: str = "float32") -> dict:
  """The row of a configuration that raised `e` (reported, the bench goes on)."""
  return {"framework": framework, "phase": "all", "dtype": dtype,
          "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}


def size_overrides(batch: int | None = None, size=None) -> list[str]:
  """Overrides for a batch size and a frame size `(H, W)` (either None: the config's). A frame
  size given is the whole frame: `data.roi` (cutpaste's crop of the demo frames) is cleared."""
  overrides = [f"train.batch_size={batch}"] if batch else []
  if size:
    overrides += [f"data.size=[{size[0]},{size[1]}]", "data.roi=[]"]
  return overrides


def method_config(method: str, overrides=(), *, bf16: bool = False):
  """`method`'s bench config (`Method.bench_config`) with `overrides`; bf16 compute with `bf16`."""
  return config_lib.load_config(
      CONFIGS[method], [*overrides, *(["train.compute_dtype=bfloat16"] if bf16 else [])])


def bench_method(method: str, *, overrides, repeats: int, bf16: bool, compile_: bool,
                 xla_options: dict | None = None) -> list:
  """Every row of `method`: jaxvad (float32; with `bf16` also bfloat16; with `xla_options` also
  compiled with them) and each PyTorch configuration of `torch_configs`, ratios against the
  fastest PyTorch one (`add_ratios`)."""
  import torch
  from bench import torch_baselines
  config = method_config(method, overrides)
  rows = jax_rows(config, repeats=repeats)
  if xla_options:  # the same steps compiled with the options, timed in the same run
    rows += jax_rows(config, repeats=repeats, compiler_options=xla_options)
  if bf16:
    rows += jax_rows(method_config(method, overrides, bf16=True), repeats=repeats)
  if method not in torch_baselines.METHODS:   # a method without a PyTorch baseline yet
    rows.append({"framework": EAGER.name, "phase": "all", "dtype": "float32",
                 "error": f"no PyTorch baseline for {method} in bench/torch_baselines/"})
  else:
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    for variant in torch_configs(device_type, compile_=compile_, amp=bf16):
      try:
        rows += torch_bench(config, repeats=repeats, variant=variant)
      except Exception as e:  # noqa: BLE001 - report, don't abort the whole bench
        if variant == EAGER:
          raise
        rows.append(failed_row(variant.name, e, dtype="bf16 amp" if variant.amp else "float32"))
  add_ratios(rows)
  batch = list(jax_bench.random_batch(config)["frames"].shape)
  for r in rows:
    r.update(method=method, config=config.name, batch=batch)
  return rows


# --------------------------------------------------------------------------- output


def short(framework: str | None) -> str | None:
  """A configuration's name without the "pytorch " prefix, for table cells."""
  return framework.removeprefix("pytorch ") if framework else framework


COLUMNS = [("method", "model"), ("framework", "framework"), ("phase", "phase"),
           ("dtype", "dtype"), ("batch", "batch [B,T,H,W,C]"), ("compile_s", "compile s"),
           ("train_step_ms", "train ms"), ("train_steps_per_s", "steps/s"),
           ("train_frames_per_s", "train frames/s"), ("score_frames_per_s", "score frames/s"),
           ("train_vs_torch", "train × best torch"), ("train_torch_ref", "best torch (train)"),
           ("score_vs_torch", "score × best torch"), ("score_torch_ref", "best torch (score)"),
           ("train_tflop_per_s", "TFLOP/s"), ("peak_mem_mb", "peak MiB")]


def cell(row: dict, key: str) -> str:
  """A row's value as a table cell: "" for None, PyTorch configurations without "pytorch "."""
  value = row.get(key)
  if value is None:
    return ""
  return short(value) if key.endswith("_torch_ref") else str(value)


def table(rows: list, columns) -> list[str]:
  """Markdown table lines of `rows` under `columns` (`[(key, header)]`); a row with an `error`
  shows it after its first four columns."""
  lines = ["| " + " | ".join(c for _, c in columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    if "error" in r:
      lines.append("| " + " | ".join(cell(r, k) for k, _ in columns[:4])
                   + f" | failed: {r['error']} |")
      continue
    lines.append("| " + " | ".join(cell(r, k) for k, _ in columns) + " |")
  return lines


def best_lines(rows: list) -> list[str]:
  """One line per method and phase: which PyTorch configuration was fastest (the ratios'
  denominator) for the train step and for the score step, and its time."""
  lines = []
  for r in rows:
    if r.get("framework", "").startswith("jaxvad") and r.get("dtype") == "float32" \
        and r.get("train_torch_ref") and "+xla" not in r["framework"]:
      ref = next(x for x in rows if x["method"] == r["method"] and x["phase"] == r["phase"]
                 and x["framework"] == r["train_torch_ref"] and x["dtype"] == "float32")
      text = (f"- {r['method']} ({r['phase']}): fastest PyTorch float32 train step: "
              f"{r['train_torch_ref']} ({ref['train_step_ms']} ms)")
      if r.get("score_torch_ref"):
        score = next(x for x in rows if x["method"] == r["method"] and x["phase"] == r["phase"]
                     and x["framework"] == r["score_torch_ref"] and x["dtype"] == "float32")
        text += f"; score step: {r['score_torch_ref']} ({score['score_step_ms']} ms)"
      lines.append(text)
  return lines


def markdown(rows: list, mach: dict) -> str:
  """The machine line, the table, and which PyTorch configuration each ratio is against."""
  head = machine_line(mach)
  options = next((r["xla_options"] for r in rows if r.get("xla_options")), None)
  if options:
    head += "; +xla-option: " + ", ".join(f"{k}={v!r}" for k, v in options.items())
  notes = ["", "Ratios: the fastest PyTorch configuration's step time / this row's (> 1: "
           "faster than PyTorch at its best on this machine); float32 rows against float32 "
           "configurations, bf16 rows against all."] + best_lines(rows)
  return "\n".join([head, "", *table(rows, COLUMNS), *notes])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
  parser.add_argument("--batch", type=int, help="batch size (default: each config's)")
  parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                      help="frame size, the whole frame (default: each config's)")
  parser.add_argument("--repeats", type=int, default=10, help="timed calls (median reported)")
  parser.add_argument("--bf16", action="store_true",
                      help="also bf16 compute (jaxvad) and AMP bf16 (PyTorch)")
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
  overrides = [*size_overrides(args.batch, args.size), *args.overrides]
  mach = machine()
  print(machine_line(mach), flush=True)
  rows = []
  for method in args.methods:
    new = bench_method(method, overrides=overrides, repeats=args.repeats, bf16=args.bf16,
                       compile_=args.torch_compile,
                       xla_options=jax_bench.parse_xla_options(args.xla_option))
    print("\n".join(table(new, COLUMNS)[2:]), flush=True)
    rows += new
  text = markdown(rows, mach)
  print(text)
  tag = (mach["gpu"] or f"cpu{mach['cores']}").lower().replace(" ", "-")
  write_atomic(args.out / f"models_{tag}.md", text + "\n")
  write_atomic(args.out / f"models_{tag}.json",
               json.dumps({"machine": mach, "rows": rows}, indent=2) + "\n")
  print(f"wrote {args.out}/models_{tag}.md and .json")


if __name__ == "__main__":
  main()

"""Everything a GPU bench should report, in one command that stays within 8 minutes.

    python bench/gpu_suite.py            # one H100 / H200: every method, 256×256, batch 32
    python bench/gpu_suite.py --methods ffp f2lm --size 128 128 --batch 16
    python bench/gpu_suite.py --smoke    # tiny, every code path, on a CPU

For every registered method with a bench config (`Method.bench_config`, as bench/models.py),
at `--size` (256×256) and `--batch` (32) with the models at `--width` (1.0, the papers' widths,
for methods whose `model` section has `width` / `d_width`):

  * jaxvad's train step (every training phase) and score step in float32 and in bfloat16
    (`train.compute_dtype=bfloat16`), on one device (`bench/models.py`'s `jax_rows`);
  * its PyTorch baseline (`bench/torch_baselines/`) eager (NCHW and channels-last; on a CPU also
    without oneDNN), `torch.compile`, AMP (`torch.autocast` bf16) and compiled AMP
    (`bench/models.py`'s `torch_configs` / `torch_bench`), and every row's ratio against the
    fastest PyTorch configuration (`add_ratios`);
  * each step's FLOPs as XLA's cost analysis counts them (`compiled.cost_analysis()`; PyTorch
    rows are given jaxvad's count of the same model) over the step time, as TFLOP/s and as a
    fraction of the device's dense bf16 peak (`PEAK_BF16_TFLOPS`; "n/a" on other devices, or
    `--peak-tflops`);
  * scoring frames/s;
  * data-parallel scaling of the float32 train step over 1, 2, 4, ..., N devices with the global
    batch = `--scaling-batch` (default `--batch`) × devices (bench/train_step.py's `bench`;
    on one device just the 1-device row).

Every item (one method in one configuration) runs in a worker process, in order of
importance: jaxvad float32, PyTorch's likely-fastest eager, jaxvad bf16, AMP, the other eager
layouts, the first method's scaling, `torch.compile`, the other methods' scaling. An item gets
at most `--item-s` seconds and none starts with less than `--min-item-s` of the `--budget`
left; an item that overruns is killed with its worker (the next item starts a new one), and
everything not run is listed with the reason. The default budget (450 s, plus start-up and
writing) bounds the whole suite under 8 minutes on one GPU by construction (not yet run on a
GPU: which items fit is unmeasured). The files are rewritten after every item, so an
interrupted run keeps what finished (`"complete": false`).

Writes `--out` (bench/results/gpu_suite) `.md` and `.json` (atomically), and prints the
machine (GPU / CPU model and ISA flags, jax / torch versions) and each item as it finishes.
On a GPU, jaxvad's memory is capped at 45 % (`XLA_PYTHON_CLIENT_MEM_FRACTION`, allocated on
demand) so the PyTorch baseline in the same worker has the rest; float32 matmuls may use TF32
on both sides (XLA's default precision; `torch.set_float32_matmul_precision("high")`).

`--smoke`: 32×32 frames, batch 8, tiny widths (`SMOKE_MODEL`), 2 repeats, XLA's LLVM
optimisations off (`SMOKE_XLA_FLAGS`: 3× faster CPU compiles); `torch.compile` (float32; AMP
is timed eager) and the scaling curve (1 and all devices, 2 frames per device) of the first
method only: every path end to end on a CPU (with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` the scaling runs over 1 and 8 forced
devices). Its numbers measure nothing; it takes ~5 min on 2 idle CPU cores (10 on busy ones),
most of it XLA compiling 6 methods × 2 dtypes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import pathlib
import sys
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `bench` as a package

# Before jax is imported anywhere (the workers inherit the environment): GPU memory allocated on
# demand, at most 45 % of it for XLA, the rest for PyTorch in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

from bench import models  # noqa: E402  (imports jax, never initialises a backend)
from bench.timing import write_atomic  # noqa: E402
from jaxvad import methods  # noqa: E402

# Dense bf16 tensor-core / MXU peak per device in TFLOP/s (without 2:4 sparsity), matched by
# substrings of jax's `device_kind` (lower-case; all of a key's substrings, first match wins).
PEAK_BF16_TFLOPS = (
    (("h100", "pcie"), 756.0), (("h100", "nvl"), 835.0), (("h100",), 989.0),
    (("h200", "nvl"), 835.0), (("h200",), 989.0),            # also GH200
    (("a100",), 312.0), (("l40s",), 362.0), (("l4",), 121.0),
    (("tpu v4",), 275.0), (("tpu v5 lite",), 197.0), (("tpu v5e",), 197.0),
    (("tpu v5p",), 459.0), (("tpu v5",), 459.0), (("tpu v6 lite",), 918.0),
    (("tpu v6e",), 918.0),
)
PEAK_SOURCE = ("vendor datasheets, dense bf16 without sparsity: NVIDIA H100 SXM 989, PCIe 756, "
               "NVL 835; H200 / GH200 989 (H200 NVL 835); A100 312; L40S 362; L4 121; Google "
               "Cloud TPU v4 275, v5e 197, v5p 459, v6e 918. The SXM figures assume the full "
               "boost clock; sustained clocks are lower, so a fraction near 1 is not reachable")

# `--smoke` compiles with XLA's LLVM optimisations off: XLA:CPU compiles of the train steps
# took 12 s instead of 34 s on 2 busy cores (the steps run slower; smoke numbers mean nothing).
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# `--smoke`'s model sizes, set for each method whose `model` section has the field.
SMOKE_MODEL = {"width": 0.0625, "d_width": 0.0625, "features": [4, 8], "lstm_features": 8,
               "embed_dim": 16, "head_layers": [16], "patch_grid": 4}


def peak_bf16_tflops(device_kind: str) -> float | None:
  """The dense bf16 peak of one device of `device_kind` (jax's `Device.device_kind`), TFLOP/s;
  None for a device `PEAK_BF16_TFLOPS` does not know (CPUs among them)."""
  kind = device_kind.lower()
  return next((peak for keys, peak in PEAK_BF16_TFLOPS if all(k in kind for k in keys)), None)


def model_overrides(method: str, values: dict) -> list[str]:
  """`model.KEY=VALUE` overrides of `values` for the fields `method`'s model config has."""
  fields = {f.name for f in dataclasses.fields(methods.get(method).model_config)}
  return [f"model.{k}={json.dumps(v)}" for k, v in values.items() if k in fields]


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class Item:
  """One unit of work for a worker: jaxvad (`kind` "jax", float32 or `bf16`), a PyTorch
  configuration (`kind` "torch", `variant` a `models.TORCH_CONFIGS` name) or one point of the
  scaling curve (`kind` "scaling" on `devices` devices) of `method`."""
  kind: str
  method: str
  bf16: bool = False
  variant: str = ""
  devices: int = 1

  @property
  def label(self) -> str:
    """e.g. "jaxvad ffp bfloat16", "pytorch compile ffp", "scaling ffp 4 devices"."""
    if self.kind == "jax":
      return f"jaxvad {self.method} {'bfloat16' if self.bf16 else 'float32'}"
    if self.kind == "torch":
      return f"{self.variant} {self.method}"
    return f"scaling {self.method} {self.devices} device{'s' * (self.devices > 1)}"


def device_counts(n: int) -> list[int]:
  """1, 2, 4, ... below `n`, and `n`: the scaling curve's device counts."""
  counts, k = [], 1
  while k < n:
    counts.append(k)
    k *= 2
  return counts + [n]


def plan(method_names, *, device_type: str, torch_methods, devices, compile_methods,
         scaling_methods, compile_amp: bool = True) -> list[Item]:
  """Every item in order of importance (the budget cuts from the end): jaxvad float32, the
  eager PyTorch configuration likeliest to be fastest (channels-last on a GPU, NCHW on a CPU),
  jaxvad bf16, AMP, the other eager ones, the first scaling method's curve over `devices`
  (device counts; none for `[1]`: the float32 rows are that point), `torch.compile` (float32,
  then AMP unless not `compile_amp`) of `compile_methods`, the other methods' curves."""
  configs = [c.name for c in models.torch_configs(device_type, compile_=True, amp=True)]
  first = models.CHANNELS_LAST.name if device_type == "cuda" else models.EAGER.name
  eager = [c for c in configs if not models.TORCH_CONFIGS[c].compile
           and not models.TORCH_CONFIGS[c].amp and c != first]
  compiled = [c for c in configs if models.TORCH_CONFIGS[c].compile
              and (compile_amp or not models.TORCH_CONFIGS[c].amp)]
  torch_ms = [m for m in method_names if m in torch_methods]

  def torch_items(names, ms=torch_ms):
    return [Item("torch", m, variant=v) for v in names for m in ms]

  def scaling(ms):
    return [Item("scaling", m, devices=n) for m in ms for n in devices] if len(devices) > 1 \
        else []

  scaling_methods = [m for m in scaling_methods if m in method_names]
  return ([Item("jax", m) for m in method_names] + torch_items([first])
          + [Item("jax", m, bf16=True) for m in method_names]
          + torch_items([models.AMP.name]) + torch_items(eager)
          + scaling(scaling_methods[:1])
          + torch_items(compiled, [m for m in torch_ms if m in compile_methods])
          + scaling(scaling_methods[1:]))


# --------------------------------------------------------------------------- the worker


def _method_overrides(setup: dict, method: str) -> list[str]:
  return [*model_overrides(method, setup["model"]), *setup["overrides"]]


def run_item(item: Item, setup: dict) -> list[dict]:
  """The rows of one item, in the worker. jaxvad and PyTorch rows are `bench/models.py`'s
  (`jax_rows` on one device, `torch_bench`), scaling rows bench/train_step.py's `bench`."""
  from bench import train_step as jax_bench
  overrides = _method_overrides(setup, item.method)
  repeats = setup["repeats"]
  if item.kind == "jax":
    config = models.method_config(item.method, overrides, bf16=item.bf16)
    rows = models.jax_rows(config, repeats=repeats)
  elif item.kind == "torch":
    config = models.method_config(item.method, overrides)
    rows = models.torch_bench(config, repeats=repeats,
                              variant=models.TORCH_CONFIGS[item.variant])
  else:
    batch = setup["scaling_batch"] * item.devices
    config = models.method_config(item.method, [*overrides, f"train.batch_size={batch}"])
    r = jax_bench.bench(config, repeats=repeats, devices=item.devices)
    rows = [{k: r[k] for k in ("phase", "devices", "batch", "dtype", "compile_s",
                               "train_step_ms", "train_frames_per_s", "train_gflop",
                               "train_tflop_per_s")}]
  batch = list(jax_bench.random_batch(config)["frames"].shape) if item.kind != "scaling" else None
  for r in rows:
    r["method"] = item.method
    if batch:
      r["batch"] = batch
  return rows


def _hello() -> dict:
  """What the parent needs from a worker: the machine, the methods, the devices."""
  import jax
  import torch
  from bench import torch_baselines
  mach = models.machine()
  return {"machine": mach, "methods": list(models.CONFIGS),
          "torch_methods": list(torch_baselines.METHODS),
          "device_type": "cuda" if torch.cuda.is_available() else "cpu",
          "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind}


def _worker(conn, setup: dict) -> None:
  """A worker process: says hello, then runs the items the parent sends until None."""
  import gc
  try:
    conn.send(("hello", _hello()))
  except Exception as e:  # noqa: BLE001 - the parent reports it
    conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"))
    return
  while True:
    item = conn.recv()
    if item is None:
      return
    try:
      conn.send(("ok", run_item(item, setup)))
    except Exception as e:  # noqa: BLE001 - one failed item does not end the suite
      first = str(e).splitlines()[0][:300] if str(e) else ""
      conn.send(("error", f"{type(e).__name__}: {first}"))
    gc.collect()
    try:
      import torch
      if torch.cuda.is_available():
        torch.cuda.empty_cache()
    except ImportError:
      pass


class Worker:
  """A worker process that runs items with a time limit each; killed when one overruns."""

  def __init__(self, setup: dict, *, timeout: float):
    ctx = multiprocessing.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_worker, args=(child, setup), daemon=True)
    self.process.start()
    child.close()
    status, self.hello = self._receive(timeout)
    if status != "hello":
      self.close()
      raise RuntimeError(f"worker failed to start: {self.hello}")

  def _receive(self, timeout: float):
    if not self.conn.poll(max(timeout, 0.0)):
      self.close()
      raise TimeoutError
    try:
      return self.conn.recv()
    except EOFError:
      code = self.process.exitcode
      self.close()
      raise RuntimeError(f"worker died (exit code {code})") from None

  def run(self, item: Item, timeout: float):
    """`("ok", rows)` or `("error", message)`; raises TimeoutError (worker killed) or
    RuntimeError (worker died)."""
    self.conn.send(item)
    return self._receive(timeout)

  def close(self) -> None:
    """Stops the worker: asked, then terminated, then killed."""
    if self.process.is_alive():
      try:
        self.conn.send(None)
      except (OSError, ValueError):
        pass
      self.process.join(2)
    if self.process.is_alive():
      self.process.terminate()
      self.process.join(5)
    if self.process.is_alive():
      self.process.kill()
      self.process.join()


# --------------------------------------------------------------------------- results


def add_peak(rows: list, peak: float | None, scaling: list) -> None:
  """TFLOP/s and fraction of the bf16 peak of every row.

  jaxvad rows carry XLA's FLOP count of their step; PyTorch rows get jaxvad float32's count of
  the same method and phase (the same model). The fraction is `TFLOP/s / (peak × devices)`,
  None where the peak is unknown."""
  flops = {(r["method"], r["phase"]): (r.get("train_gflop"), r.get("score_gflop"))
           for r in rows if r["framework"] == "jaxvad" and r["dtype"] == "float32"}
  for r in rows + scaling:
    train_gflop, score_gflop = flops.get((r["method"], r["phase"]), (None, None))
    if r.get("train_gflop") is None:
      r["train_gflop"] = train_gflop
    if r.get("train_gflop") and r.get("train_step_ms"):
      r["train_tflop_per_s"] = round(r["train_gflop"] / r["train_step_ms"], 4)
    if "score_step_ms" in r:
      if r.get("score_gflop") is None:
        r["score_gflop"] = score_gflop
      if r.get("score_gflop") and r.get("score_step_ms"):
        r["score_tflop_per_s"] = round(r["score_gflop"] / r["score_step_ms"], 4)
    for step in ("train", "score"):
      tflops = r.get(f"{step}_tflop_per_s")
      r[f"{step}_peak_fraction"] = (round(tflops / (peak * r.get("devices", 1)), 4)
                                    if peak and tflops else None)


def scaling_rows(rows: list, scaling: list, *, one_device: bool) -> list:
  """The scaling curves: per-device frames/s and the efficiency (per-device throughput over
  the 1-device point's); with `one_device` (a single device) each method's jaxvad float32
  first phase."""
  if one_device:
    scaling = [{**{k: r[k] for k in ("method", "phase", "batch", "dtype", "train_step_ms",
                                    "train_frames_per_s", "train_gflop", "train_tflop_per_s",
                                    "train_peak_fraction") if k in r}, "devices": 1}
               for r in rows if r["framework"] == "jaxvad" and r["dtype"] == "float32"
               and r["phase"] == rows_first_phase(rows, r["method"])]
  base = {}
  for r in scaling:
    per_device = r["train_frames_per_s"] / r["devices"]
    base.setdefault(r["method"], per_device if r["devices"] == 1 else None)
    r["per_device_frames_per_s"] = round(per_device, 1)
    r["efficiency"] = round(per_device / base[r["method"]], 3) if base[r["method"]] else None
  return scaling


def rows_first_phase(rows: list, method: str) -> str:
  """The first phase of `method` among `rows` (the one its score step is timed with)."""
  return next(r["phase"] for r in rows if r["method"] == method)


def pct(value) -> str | None:
  """A fraction as a percentage cell ("12.3 %"), None where unknown."""
  return None if value is None else f"{100 * value:.1f} %"


SUITE_COLUMNS = [
    ("method", "model"), ("phase", "phase"), ("framework", "framework"), ("dtype", "dtype"),
    ("batch", "batch [B,T,H,W,C]"), ("compile_s", "compile s"), ("train_step_ms", "train ms"),
    ("train_frames_per_s", "train frames/s"), ("score_step_ms", "score ms"),
    ("score_frames_per_s", "score frames/s"), ("train_gflop", "train GFLOP (XLA)"),
    ("train_tflop_per_s", "train TFLOP/s"), ("train_peak_pct", "train % bf16 peak"),
    ("score_peak_pct", "score % bf16 peak"), ("train_vs_torch", "train × best torch"),
    ("train_torch_ref", "best torch (train)"), ("score_vs_torch", "score × best torch"),
    ("score_torch_ref", "best torch (score)"), ("peak_mem_mb", "peak MiB")]
SCALING_COLUMNS = [
    ("method", "model"), ("devices", "devices"), ("batch", "global batch [B,T,H,W,C]"),
    ("train_step_ms", "train ms"), ("train_frames_per_s", "frames/s"),
    ("per_device_frames_per_s", "frames/s per device"), ("efficiency", "efficiency"),
    ("train_peak_pct", "% bf16 peak")]


def markdown(result: dict) -> str:
  """The suite's report: machine, settings, the steps table, the scaling table, what did not
  run."""
  def shown(rows):
    return [{**r, "train_peak_pct": pct(r.get("train_peak_fraction")),
             "score_peak_pct": pct(r.get("score_peak_fraction"))} for r in rows]

  s, peak = result["settings"], result["peak_bf16_tflops"]
  lines = [
      "# jaxvad GPU suite", "", models.machine_line(result["machine"]) + ".",
      f"JAX devices: {result['devices']} × {result['device_kind']}; dense bf16 peak "
      + (f"{peak:g} TFLOP/s per device ({result['peak_source']})." if peak
         else "unknown for this device: fractions n/a."),
      f"Settings: {s['size'][0]}×{s['size'][1]} frames, batch {s['batch']}, model "
      f"{s['model'] or 'as the bench configs'}, {s['repeats']} timed repeats (median), budget "
      f"{s['budget_s']:g} s, at most {s['item_s']:g} s an item; wall {result['wall_s']:.0f} s"
      + (" (smoke)" if s["smoke"] else "")
      + ("" if result.get("complete", True) else "; incomplete: items still to run") + ".",
      "", "## Train and score steps", "",
      *models.table(shown(result["rows"]), SUITE_COLUMNS), "",
      "Ratios: the fastest PyTorch configuration's step time / this row's (> 1: faster than "
      "PyTorch at its best); float32 rows against float32 configurations, bf16 rows against "
      "all. GFLOP: XLA's cost analysis of jaxvad's step (PyTorch rows: jaxvad float32's count of "
      "the same model). Peak MiB: PyTorch's peak of its item; jaxvad's process peak so far.",
      "", f"## Data-parallel scaling (global batch = {s['scaling_batch']} × devices)", "",
      *models.table(shown(result["scaling"]), SCALING_COLUMNS)]
  if result.get("warnings"):
    lines[3:3] = [f"**Warning: {w}.**" for w in result["warnings"]]
  if result["skipped"]:
    lines += ["", "## Not run", ""] + [f"- {x['item']}: {x['reason']}" for x in result["skipped"]]
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
  """The command line; `--smoke` fills in the tiny defaults of whatever was not given."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--methods", nargs="+", choices=list(models.CONFIGS),
                      help="default: every method with a bench config")
  parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                      help="frame size (default 256 256; smoke 32 32)")
  parser.add_argument("--batch", type=int, help="batch size (default 32; smoke 8)")
  parser.add_argument("--width", type=float,
                      help="model.width / model.d_width where a method has them (default 1.0; "
                           "0: the bench configs' own; smoke: SMOKE_MODEL)")
  parser.add_argument("--repeats", type=int, help="timed calls, median (default 5; smoke 2)")
  parser.add_argument("--budget", type=float, help="seconds for all items (default 450; "
                                                    "smoke 1200)")
  parser.add_argument("--item-s", type=float, help="seconds at most per item (default 150; "
                                                    "smoke 400)")
  parser.add_argument("--min-item-s", type=float,
                      help="no item starts with less budget left (default 20; smoke 5)")
  parser.add_argument("--scaling-batch", type=int,
                      help="per-device batch of the scaling curve (default --batch; smoke 2)")
  parser.add_argument("--scaling-methods", nargs="*", choices=list(models.CONFIGS),
                      help="methods with a scaling curve (default all; smoke the first)")
  parser.add_argument("--scaling-devices", type=int, nargs="+",
                      help="device counts of the scaling curve (default 1, 2, 4, ..., all; "
                           "smoke 1 and all)")
  parser.add_argument("--compile-methods", nargs="*", choices=list(models.CONFIGS),
                      help="methods timed with torch.compile (default all; smoke the first)")
  parser.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile")
  parser.add_argument("--peak-tflops", type=float,
                      help="bf16 peak per device for a device PEAK_BF16_TFLOPS does not know")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes, every code path")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/results/gpu_suite"),
                      help="writes OUT.md and OUT.json (default bench/results/gpu_suite)")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                      help="config overrides applied to every model")
  args = parser.parse_args(argv)
  smoke = args.smoke
  defaults = {"size": [32, 32] if smoke else [256, 256], "batch": 8 if smoke else 32,
              "width": None if smoke else 1.0, "repeats": 2 if smoke else 5,
              "budget": 1200.0 if smoke else 450.0, "item_s": 400.0 if smoke else 150.0,
              "min_item_s": 5.0 if smoke else 20.0}
  for key, value in defaults.items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  args.methods = args.methods or list(models.CONFIGS)
  if args.scaling_batch is None:
    args.scaling_batch = 2 if smoke else args.batch
  if args.scaling_methods is None:
    args.scaling_methods = args.methods[:1] if smoke else list(args.methods)
  if args.compile_methods is None:
    args.compile_methods = args.methods[:1] if smoke else list(args.methods)
  if args.no_torch_compile:
    args.compile_methods = []
  return args


def main(argv=None) -> dict:
  """Runs the suite; returns the result written to `--out` .json."""
  start = time.monotonic()
  args = parse_args(argv)
  if args.width is None:
    model = dict(SMOKE_MODEL)
  else:
    model = {"width": args.width, "d_width": args.width} if args.width else {}
  setup = {"repeats": args.repeats, "model": model, "scaling_batch": args.scaling_batch,
           "overrides": [*models.size_overrides(args.batch, args.size), *args.overrides]}
  if args.smoke:   # the workers inherit it; this process never initialises a jax backend
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SMOKE_XLA_FLAGS}".strip()
  deadline = start + args.budget
  worker, hello, items, counts = None, None, None, []
  rows, scaling, skipped, warnings = [], [], [], []

  def skip(label: str, reason: str) -> None:
    skipped.append({"item": label, "reason": reason})
    print(f"[{time.monotonic() - start:5.0f} s] {label}: not run ({reason})", flush=True)

  def start_worker():
    nonlocal worker, hello
    worker = Worker(setup, timeout=min(max(deadline - time.monotonic(), 1.0), 300.0))
    if hello is None:
      hello = worker.hello
      mach = hello["machine"]
      print(models.machine_line(mach), flush=True)
      print(f"JAX devices: {hello['devices']} × {hello['device_kind']}", flush=True)

  try:
    start_worker()
    if hello["device_type"] == "cuda" and hello["machine"]["jax_backend"] == "cpu":
      warnings.append("PyTorch sees a GPU but jax runs on the CPU (jax without CUDA support?): "
                      "the ratios compare a CPU with a GPU")
      print("WARNING: " + warnings[-1], flush=True)
    n = hello["devices"]
    counts = args.scaling_devices or ([1, n] if args.smoke and n > 1 else device_counts(n))
    bad = [c for c in counts if not 1 <= c <= n]
    if bad:
      raise SystemExit(f"--scaling-devices {bad}: this machine has {n} JAX device(s)")
    items = plan(args.methods, device_type=hello["device_type"],
                 torch_methods=hello["torch_methods"], devices=sorted(set(counts)),
                 compile_methods=args.compile_methods, scaling_methods=args.scaling_methods,
                 compile_amp=not args.smoke)
    for m in args.methods:
      if m not in hello["torch_methods"]:
        skip(f"pytorch {m}", "no PyTorch baseline in bench/torch_baselines/")
    for item in items:
      left = deadline - time.monotonic()
      if left < args.min_item_s:
        skip(item.label, f"budget: {max(left, 0):.0f} s of {args.budget:g} s left")
        continue
      t0 = time.monotonic()
      try:
        if worker is None:
          start_worker()
        status, payload = worker.run(item, min(args.item_s, deadline - time.monotonic()))
      except TimeoutError:
        worker = None
        skip(item.label, f"killed after {time.monotonic() - t0:.0f} s (limit: "
                         f"{args.item_s:g} s an item, {args.budget:g} s in all)")
        continue
      except RuntimeError as e:
        worker = None
        skip(item.label, str(e))
        continue
      took = time.monotonic() - t0
      if status != "ok":
        skip(item.label, f"failed: {payload}")
        continue
      for r in payload:
        r["item_s"] = round(took, 1)
      (scaling if item.kind == "scaling" else rows).extend(payload)
      summary = ", ".join(f"{r['phase']} " + (f"{r['train_step_ms']} ms" if "error" not in r
                                               else f"failed: {r['error']}") for r in payload)
      print(f"[{time.monotonic() - start:5.0f} s] {item.label}: {summary} ({took:.0f} s)",
            flush=True)
      write(args, hello, rows, scaling, skipped, warnings, model=model, counts=counts,
            wall_s=time.monotonic() - start, complete=False)
  finally:
    if worker is not None:
      worker.close()
  if hello is None:
    raise SystemExit("no worker started")
  result = write(args, hello, rows, scaling, skipped, warnings, model=model, counts=counts,
                 wall_s=time.monotonic() - start, complete=True)
  print(markdown(result))
  print(f"wrote {args.out}.md and .json ({result['wall_s']:.0f} s)")
  return result


def write(args, hello: dict, rows: list, scaling: list, skipped: list, warnings: list, *,
          model: dict, counts: list, wall_s: float, complete: bool) -> dict:
  """The result of the rows so far (sorted, ratios, peak fractions, scaling), written to
  `--out` .json and .md atomically; `complete` False while items are still to come (the files
  of an interrupted run keep what finished)."""
  order = ["jaxvad float32", "jaxvad bfloat16", *models.TORCH_CONFIGS]
  rows.sort(key=lambda r: (args.methods.index(r["method"]), order.index(
      f"jaxvad {r['dtype']}" if r["framework"] == "jaxvad" else r["framework"])))
  for m in args.methods:   # ratios within each method, in the models.py way
    models.add_ratios([r for r in rows if r["method"] == m])
  peak = args.peak_tflops or peak_bf16_tflops(hello["device_kind"])
  scaling = scaling_rows(rows, scaling, one_device=len(counts) <= 1)
  add_peak(rows, peak, scaling)
  result = {
      "machine": hello["machine"], "devices": hello["devices"],
      "device_kind": hello["device_kind"], "peak_bf16_tflops": peak,
      "peak_source": ("--peak-tflops" if args.peak_tflops else PEAK_SOURCE) if peak else None,
      "settings": {"size": args.size, "batch": args.batch, "model": model,
                   "repeats": args.repeats, "budget_s": args.budget, "item_s": args.item_s,
                   "scaling_batch": args.scaling_batch, "overrides": args.overrides,
                   "scaling_devices": counts, "compile_methods": args.compile_methods,
                   "smoke": args.smoke},
      "rows": rows, "scaling": scaling, "skipped": skipped, "warnings": warnings,
      "complete": complete, "wall_s": round(wall_s, 1)}
  write_atomic(f"{args.out}.json", json.dumps(result, indent=2) + "\n")
  write_atomic(f"{args.out}.md", markdown(result))
  return result

if __name__ == "__main__":
  main()

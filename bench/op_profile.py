"""Where a jaxvad step spends its time: a per-op profile of the compiled train or score step.

    python bench/op_profile.py --method convlstm_ae
    python bench/op_profile.py --method predictive_ae --step score --top 20
    python bench/op_profile.py --method r3d_partition --xla-option xla_cpu_experimental_ynn_fusion_type=

Compiles the step exactly as `bench/models.py` times it (the method's demo config, a random
batch, state donated), traces `--steps` calls with the JAX profiler and reads the trace back
(`jax.profiler.ProfileData`): the step's wall time, how busy the backend's threads were, the
time per op kind (the HLO fusion / thunk name without its number: `ynn_fusion`,
`transpose_copy_fusion`, `conv_general_dilated`, ...), per model layer (forward and backward,
from XLA's op metadata; weight-gradient convolutions XLA derives carry none and are listed
apart) and the slowest single ops with the jaxvad source op (e.g. `decoder/up1/transpose`).
On the CPU the ops are read from XLA's thread pool and summed over its threads (an Eigen op's
own worker shards are not timed apart, so "busy" counts it once); on a GPU from the device's
"XLA Ops" line (not yet run on one: no GPU was lent to the session that wrote this).

Use it when a ratio in `bench/models.py` is below 1: the table says whether the time goes to
convolutions, to layout copies (`transpose_copy_fusion`) or to elementwise fusions, and which
layer causes them.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys
import tempfile
import time

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `bench` as a package

from bench import train_step as jax_bench  # noqa: E402
from bench.models import CONFIGS  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402

_CPU_POOL_PREFIX = "tf_XLAEigen"        # XLA:CPU's intra-op thread pool
_CPU_EXECUTOR = "ThunkExecutor::Execute"


def op_events(planes) -> tuple[dict, int]:
  """(op name -> [total ns, calls], threads or streams seen) from a trace's planes."""
  totals = collections.defaultdict(lambda: [0, 0])
  planes = list(planes)   # ProfileData yields them once
  device = [p for p in planes if re.match(r"/device:(GPU|TPU)", p.name)]
  if device:
    lines = [ln for p in device for ln in p.lines if ln.name == "XLA Ops"]
  else:
    lines = [ln for p in planes for ln in p.lines if ln.name.startswith(_CPU_POOL_PREFIX)]
  for line in lines:
    for event in line.events:
      if event.name.startswith(_CPU_EXECUTOR):
        continue
      totals[event.name][0] += event.duration_ns
      totals[event.name][1] += 1
  return dict(totals), len(lines)


def source_ops(hlo_text: str) -> dict:
  """HLO instruction name -> the `op_name` XLA recorded for it (the jaxvad layer and op).

  A fusion without metadata of its own gets the last op_name inside the computation it calls
  (the op nearest its output); where there is none (weight-gradient convolutions XLA derives),
  the root op of that computation with its shape and window, in brackets.
  """
  op_name = r'metadata=\{op_name="([^"]+)"'
  last_in_computation, current = {}, None
  for line in hlo_text.splitlines():
    header = re.match(r"%?([\w.\-]+) .*\{$", line)
    if header and not line.startswith(" "):
      current = header.group(1)
    elif current and (m := re.search(op_name, line)):
      last_in_computation[current] = m.group(1)
    elif current and (m := re.match(r"\s*ROOT %[\w.\-]+ = (\S+) (\w+)\(", line)):
      window = re.search(r"window=\{([^}]*)\}", line)
      last_in_computation.setdefault(
          current, f"[{m.group(2)} -> {m.group(1).split('{')[0]}"
          + (f", window {window.group(1)}]" if window else "]"))
  found = {}
  for name, rest in re.findall(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$", hlo_text, re.M):
    own, calls = re.search(op_name, rest), re.search(r"calls=%([\w.\-]+)", rest)
    source = own.group(1) if own else last_in_computation.get(calls.group(1)) if calls else None
    if source:
      found.setdefault(name, re.sub(r"^jit\([^)]*\)/", "", source))
  return found


def layer_of(source: str) -> tuple[str, str]:
  """`transpose(jvp(R3D18))/layer1_1/conv2/conv/conv_general_dilated` -> ("layer1_1/conv2/conv",
  "backward"): the module path of an op, and whether it is in the backward pass (XLA's
  `transpose(...)` of the forward). ("", "") for ops without a source."""
  if not source or source.startswith(("[", "(")):
    return "", ""
  direction = "backward" if source.startswith("transpose(") else "forward"
  parts = [p for p in source.split("/")[1:-1] if not p.startswith(("jit(", "closed_call"))]
  return "/".join(parts) or "(top level)", direction


def op_kind(name: str) -> str:
  """`transpose_copy_fusion.24` -> `transpose_copy_fusion`."""
  return re.sub(r"\.\d+$", "", name)


def profile(config: config_lib.Config, *, step: str = "train", steps: int = 5,
            compiler_options: dict | None = None) -> dict:
  """Traces `steps` calls of the compiled train or score step of `config`.

  Args:
    config: the method's config.
    step: "train" or "score".
    steps: traced calls (after two untraced warm-up calls).
    compiler_options: XLA options for the compilation.

  Returns:
    wall ms per step, the number of threads/streams with op events, per op kind and per op
    the ms per step (summed over threads) and calls per step, and each op's source op.
  """
  compiled = jax_bench.compile_steps(config, compiler_options=compiler_options)
  state, batch = compiled.state, compiled.batch
  fn = compiled.train if step == "train" else compiled.score

  def call():
    nonlocal state
    if step == "train":
      state, out = fn(state, batch)
    else:
      out = fn(state, batch)
    jax.block_until_ready(out)

  for _ in range(2):
    call()
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    start = time.perf_counter()
    for _ in range(steps):
      call()
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    (trace,) = pathlib.Path(trace_dir).rglob("*.xplane.pb")
    totals, threads = op_events(jax.profiler.ProfileData.from_file(str(trace)).planes)
  sources = source_ops(fn.as_text())
  kinds = collections.defaultdict(lambda: [0, 0])
  for name, (ns, calls) in totals.items():
    kinds[op_kind(name)][0] += ns
    kinds[op_kind(name)][1] += calls

  def per_step(table):
    rows = [{"name": k, "ms": ns / 1e6 / steps, "calls": calls / steps}
            for k, (ns, calls) in table.items()]
    return sorted(rows, key=lambda r: -r["ms"])

  ops = per_step(totals)
  layers = collections.defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
  for row in ops:
    row["source"] = sources.get(row["name"], "")
    layer, direction = layer_of(row["source"])
    layers[layer or "(no source: XLA-derived ops)"][direction or "backward"] += row["ms"]
  layer_rows = sorted(({"layer": k, **v, "ms": v["forward"] + v["backward"]}
                       for k, v in layers.items()), key=lambda r: -r["ms"])
  return {"method": config.method, "config": config.name, "step": step,
          "batch": list(batch["frames"].shape), "backend": jax.default_backend(),
          "xla_options": dict(compiler_options or {}), "wall_ms": 1e3 * wall / steps,
          "threads": threads, "op_ms": sum(r["ms"] for r in ops),
          "kinds": per_step(kinds), "layers": layer_rows, "ops": ops}


def markdown(result: dict, *, top: int) -> str:
  busy = result["op_ms"] / result["wall_ms"]
  lines = [f"{result['method']} {result['step']} step, batch {result['batch']}, "
           f"{result['backend']}: {result['wall_ms']:.1f} ms/step; ops {result['op_ms']:.1f} ms "
           f"summed over {result['threads']} thread(s)/stream(s) = {busy:.2f} busy on average",
           "", "| op kind | ms/step | share | calls/step |", "|---|---|---|---|"]
  for r in result["kinds"][:top]:
    lines.append(f"| {r['name']} | {r['ms']:.1f} | {r['ms'] / result['op_ms']:.0%} "
                 f"| {r['calls']:g} |")
  lines += ["", "| layer | ms/step | forward | backward |", "|---|---|---|---|"]
  for r in result["layers"][:top]:
    lines.append(f"| {r['layer']} | {r['ms']:.1f} | {r['forward']:.1f} | {r['backward']:.1f} |")
  lines += ["", "| op | ms/step | source op |", "|---|---|---|"]
  for r in result["ops"][:top]:
    source = r["source"] if len(r["source"]) <= 110 else r["source"][:107] + "..."
    lines.append(f"| {r['name']} | {r['ms']:.1f} | {source} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", default="convlstm_ae", choices=list(CONFIGS))
  parser.add_argument("--step", default="train", choices=["train", "score"])
  parser.add_argument("--steps", type=int, default=5, help="traced calls")
  parser.add_argument("--top", type=int, default=15, help="rows of each table")
  parser.add_argument("--xla-option", action="append", metavar="KEY=VALUE",
                      help="XLA compiler option (repeatable)")
  parser.add_argument("--json", type=pathlib.Path, help="also write the full result here")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                      help="config overrides (e.g. train.batch_size=32)")
  args = parser.parse_args()
  if args.steps < 1:
    parser.error("--steps must be >= 1")
  config = config_lib.load_config(CONFIGS[args.method], args.overrides)
  result = profile(config, step=args.step, steps=args.steps,
                   compiler_options=jax_bench.parse_xla_options(args.xla_option))
  print(markdown(result, top=args.top))
  if args.json:
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()

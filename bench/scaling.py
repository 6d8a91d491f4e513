"""Data-parallel scaling of a training step over 1, 2, 4, ... devices.

    python bench/scaling.py --config convlstm_ae_demo                      # CPU: 1/2/4/8 forced devices
    python bench/scaling.py --config predictive_ae_pickplace --devices 1 2 4 8   # GPUs

Each device count runs `bench/train_step.py --devices N` in a fresh process with the global
batch = `--per-device-batch` × N (weak scaling), so every device gets the same work. Reports
the step time, frames/s, frames/s per device and the efficiency (per-device throughput
relative to one device). On a CPU the devices are forced with
`XLA_FLAGS=--xla_force_host_platform_device_count` and share the same cores: the curve checks
the sharded path end to end and shows the partitioning overhead, it is not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def run(config: str, devices: int, *, per_device_batch: int, repeats: int, cpu_devices: int,
        overrides) -> dict:
  """One `train_step.py` run on `devices` devices; its JSON result."""
  env = dict(os.environ)
  if env.get("JAX_PLATFORMS", "cpu") == "cpu" and cpu_devices:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={cpu_devices}").strip()
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "result.json"
    cmd = [sys.executable, str(HERE / "train_step.py"), "--config", config, "--devices",
           str(devices), "--repeats", str(repeats), "--json", str(out),
           f"train.batch_size={per_device_batch * devices}", *overrides]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="convlstm_ae_demo")
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
  parser.add_argument("--per-device-batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--gpu", action="store_true",
                      help="use the real accelerators (default: forced CPU devices)")
  parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
  parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = parser.parse_args()
  cpu_devices = 0 if args.gpu else max(args.devices)
  if not args.gpu:
    os.environ["JAX_PLATFORMS"] = "cpu"
  rows = []
  print("| devices | global batch | train ms | frames/s | frames/s per device | efficiency |")
  print("|---|---|---|---|---|---|")
  for n in args.devices:
    r = run(args.config, n, per_device_batch=args.per_device_batch, repeats=args.repeats,
            cpu_devices=cpu_devices, overrides=args.overrides)
    per_device = r["train_frames_per_s"] / n
    base = rows[0]["per_device"] if rows else per_device
    rows.append({"devices": n, "batch": r["batch"], "train_step_ms": r["train_step_ms"],
                 "frames_per_s": r["train_frames_per_s"], "per_device": round(per_device, 1),
                 "efficiency": round(per_device / base, 3), "machine": r["machine"]})
    print(f"| {n} | {r['batch'][0]} | {r['train_step_ms']} | {r['train_frames_per_s']} "
          f"| {per_device:.1f} | {per_device / base:.2f} |", flush=True)
  if args.json:
    args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""Throughput of the paper 001 window augmentation (jaxvad.augment): host vs device.

    python bench/augment.py            # windows 5 x 224 x 224 x 3, device batch 32
    python bench/augment.py --quick    # small sizes, a smoke test
    python bench/augment.py --json out.json

Rows, for kind = general and lighting:

- host, 1 thread: `augment_window` (cv2.warpAffine + NumPy colour) on one uint8 window
  `[5, 224, 224, 3]`, OpenCV and OpenBLAS limited to one thread; the median of repeated calls.
- host, grain 2 threads: `augment_window` as a `random_map` over a `grain.MapDataset` of
  windows read with `grain.ReadOptions(num_threads=2)`; the median over repeated passes of the
  wall time per window (what the training input pipeline could feed).
- device, jit: `jax.jit(augment_batch)` on a float32 batch `[32, 5, 224, 224, 3]` already on
  the device, after compilation; median of repeated calls, each waited for
  (`block_until_ready`, bench/timing.py).
- device, in-step cost: the same on the uint8 batch as a training step receives it, cast to
  float32 / 255 and augmented in one jit, next to the cast alone; the difference is what the
  augmentation adds to a step (XLA fuses the lighting gain into the cast).

frames/s counts every frame of a window (5 per window). Only the augmentation is timed: not
the decode, the uint8 -> float conversion nor the training step it would sit in.
"""

from __future__ import annotations

import os

# Single-threaded host numbers: NumPy's BLAS (the luma dot product) must not fan out.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import grain  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from timing import cpu_model, median_ms  # noqa: E402  (bench/ is a folder of scripts)

from jaxvad import augment  # noqa: E402

KINDS = ("general", "lighting")


def _windows(n: int, t: int, size: int) -> list[np.ndarray]:
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8) for _ in range(n)]


def bench_host(window: np.ndarray, *, kind: str, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  ms = median_ms(lambda: augment.augment_window(window, rng, kind=kind), repeats=repeats,
                 warmup=2, settle_s=0.2)
  return {"impl": "host, 1 thread (cv2 + NumPy)", "kind": kind,
          "input": f"window {list(window.shape)} uint8", "median_ms": ms,
          "frames_per_s": window.shape[0] / (ms / 1e3)}


def bench_grain(windows: list[np.ndarray], *, kind: str, threads: int, passes: int) -> dict:
  ds = grain.MapDataset.source(windows).random_map(
      lambda w, rng: augment.augment_window(w, rng, kind=kind), seed=0)
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
  per_window = []
  for _ in range(passes + 1):  # the first pass warms the threads up
    start = time.perf_counter()
    for _ in ds.to_iter_dataset(options):
      pass
    per_window.append((time.perf_counter() - start) / len(windows))
  ms = 1e3 * statistics.median(per_window[1:])
  return {"impl": f"host, grain {threads} threads", "kind": kind,
          "input": f"{len(windows)} windows {list(windows[0].shape)} uint8",
          "median_ms": ms, "frames_per_s": windows[0].shape[0] / (ms / 1e3)}


def bench_device(frames: jax.Array, *, kind: str, repeats: int) -> dict:
  fn = jax.jit(functools.partial(augment.augment_batch, kind=kind))
  key = jax.random.key(0)
  ms = median_ms(lambda: fn(frames, key), repeats=repeats, warmup=1)
  b, t = frames.shape[:2]
  return {"impl": f"device, jax.jit ({jax.devices()[0].platform})", "kind": kind,
          "input": f"batch {list(frames.shape)} float32", "median_ms": ms,
          "frames_per_s": b * t / (ms / 1e3)}


def bench_device_in_step(frames_u8: jax.Array, *, kinds, repeats: int) -> list[dict]:
  def cast(u):
    return u.astype(jnp.float32) / 255

  key = jax.random.key(0)
  fns = {"cast uint8 -> float32 only": (jax.jit(cast), "—")}
  for kind in kinds:
    fns[f"cast + {kind}"] = (jax.jit(lambda u, k, kind=kind: augment.augment_batch(
        cast(u), k, kind=kind)), kind)
  b, t = frames_u8.shape[:2]
  rows = []
  for name, (fn, kind) in fns.items():
    call = (lambda fn=fn: fn(frames_u8)) if kind == "—" else (lambda fn=fn: fn(frames_u8, key))
    ms = median_ms(call, repeats=repeats, warmup=1)
    rows.append({"impl": f"device, jax.jit: {name}", "kind": kind,
                 "input": f"batch {list(frames_u8.shape)} uint8", "median_ms": ms,
                 "frames_per_s": b * t / (ms / 1e3)})
  return rows


def machine() -> dict:
  cpu = cpu_model()
  return {"cpu": cpu, "cores": os.cpu_count(), "device": str(jax.devices()[0].device_kind),
          "jax": jax.__version__, "opencv": cv2.__version__, "numpy": np.__version__}


def format_table(rows: list[dict]) -> str:
  lines = ["| implementation | kind | input | median ms | frames/s |", "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['impl']} | {r['kind']} | {r['input']} | {r['median_ms']:.3g} "
                 f"| {r['frames_per_s']:.0f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed calls per row (default 30 host / 10 device; 3 with --quick)")
  parser.add_argument("--threads", type=int, default=2, help="grain reader threads (0: skip)")
  parser.add_argument("--json", type=pathlib.Path, help="also write rows and machine here")
  args = parser.parse_args()
  size, batch, window, n_grain = (64, 4, 5, 8) if args.quick else (224, 32, 5, 64)
  host_repeats = args.repeats or (3 if args.quick else 30)
  device_repeats = args.repeats or (3 if args.quick else 10)

  windows = _windows(n_grain, window, size)
  rows = []
  cv2.setNumThreads(1)  # one thread per call: grain supplies the parallelism
  for kind in KINDS:
    rows.append(bench_host(windows[0], kind=kind, repeats=host_repeats))
  if args.threads:
    for kind in KINDS:
      rows.append(bench_grain(windows, kind=kind, threads=args.threads,
                              passes=2 if args.quick else 5))
  frames = jax.device_put(jnp.asarray(
      np.random.default_rng(0).random((batch, window, size, size, 3), dtype=np.float32)))
  for kind in KINDS:
    rows.append(bench_device(frames, kind=kind, repeats=device_repeats))
  del frames
  frames_u8 = jax.device_put(jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (batch, window, size, size, 3), dtype=np.uint8)))
  rows += bench_device_in_step(frames_u8, kinds=KINDS, repeats=device_repeats)

  info = machine()
  print(f"{info['cpu']}, {info['cores']} cores; {info['device']}; jax {info['jax']}, "
        f"opencv {info['opencv']}, numpy {info['numpy']}")
  print(format_table(rows))
  if args.json:
    args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""Timing shared by the bench/ scripts."""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import subprocess
import tempfile
import time

# ISA extensions that decide which matmul / convolution kernels oneDNN, MKL, XLA:CPU (Eigen,
# YNNPACK) and PyTorch's own CPU kernels run: x86 vector widths, VNNI / bf16 / fp16 dot
# products, AMX tiles; on Arm NEON (asimd), SVE and the bf16 / int8 matrix instructions.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_vnni_int8",
             "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "sve", "sve2",
             "bf16", "i8mm", "sme")


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), or what `platform` knows where that is missing."""
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def _sysctl_flags() -> set[str]:
  """macOS: the CPU features `sysctl` lists (x86 `machdep.cpu.*features`, Arm `hw.optional.*`),
  lower-cased to /proc/cpuinfo's names where they differ (AVX2.0 -> avx2, SSE4.2 -> sse4_2,
  FEAT_BF16 -> bf16)."""
  try:
    out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
  except (OSError, subprocess.SubprocessError):
    return set()
  flags = set()
  for line in out.splitlines():
    key, _, value = line.partition(":")
    if key.startswith("machdep.cpu.") and "features" in key:
      flags |= {f.lower().replace("2.0", "2").replace("1.0", "").replace(".", "_")
                for f in value.split()}
    elif key.startswith("hw.optional.") and value.strip() == "1":
      name = key.rsplit(".", 1)[1].lower()
      flags.add({"neon": "asimd", "feat_bf16": "bf16", "feat_i8mm": "i8mm", "feat_sme": "sme",
                 "feat_dotprod": "asimddp"}.get(name, name))
  return flags


def cpu_flags() -> list[str]:
  """The CPU's ISA extensions among `ISA_FLAGS`, in that order: the `flags` (x86) or `Features`
  (Arm) line of /proc/cpuinfo; elsewhere what `sysctl` lists (macOS); `[]` where neither says
  (`platform.machine()` still names the architecture)."""
  try:
    with open("/proc/cpuinfo") as f:
      line = next(line for line in f if line.startswith(("flags", "Features")))
    have = set(line.split(":", 1)[1].split())
  except (OSError, StopIteration):
    have = _sysctl_flags() if platform.system() == "Darwin" else set()
  return [flag for flag in ISA_FLAGS if flag in have]


def cpu_description(cores: int | None = None) -> str:
  """`MODEL (N cores; arch: flag flag ...)`, the CPU line the bench scripts print."""
  flags = " ".join(cpu_flags()) or "ISA flags n/a"
  cores = cores or os.cpu_count()
  return f"{cpu_model()} ({cores} cores; {platform.machine()}: {flags})"


def write_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same folder and a rename, so a
  reader (or an interrupted run) never sees half a file. Creates the folder."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def median_ms(fn, *, repeats: int, warmup: int = 1, settle_s: float = 1.0) -> float:
  """Median wall time of fn() in ms, after `warmup` untimed calls (compilation).

  A result with `block_until_ready` (a JAX array) is waited for inside the timing. The first
  `settle_s` seconds are idle: the thread pools of the previous implementation (OpenMP under
  torch, XLA's) spin-wait a while after their last call and would share the 2 cores.
  """
  time.sleep(settle_s)
  def call():
    out = fn()
    if hasattr(out, "block_until_ready"):
      out.block_until_ready()
    return out

  for _ in range(warmup):
    call()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)

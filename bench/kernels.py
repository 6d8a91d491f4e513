"""Times every kernel and scorer against its peers in one run and prints one table.

    python bench/kernels.py                 # full sizes (a few minutes on 2 cores)
    python bench/kernels.py --quick         # small sizes, a smoke test
    python bench/kernels.py --json out.json
    python bench/kernels.py --only image    # one suite: dtw | image

Each row is the median of repeated calls after warm-up (compilation excluded); "speed-up" is
the median of the task's baseline (a peer library) divided by the row's median, measured in
this same run. Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import kernels_dtw  # noqa: E402  (bench/ is a folder of scripts, not a package)
import kernels_image  # noqa: E402
from timing import cpu_model  # noqa: E402

SUITES = {"dtw": kernels_dtw, "image": kernels_image}


def machine() -> dict:
  import jax
  import numba
  cpu = cpu_model()
  return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
          "jax": jax.__version__, "numba": numba.__version__}


def format_table(rows: list[dict]) -> str:
  baseline_ms = {(r["task"], r["impl"]): r["median_ms"] for r in rows}
  lines = ["| task | implementation | median ms | speed-up vs baseline |", "|---|---|---|---|"]
  for r in rows:
    base = baseline_ms.get((r["task"], r["baseline"]))
    ratio = f"{base / r['median_ms']:.2f}× vs {r['baseline']}" if base else "—"
    lines.append(f"| {r['task']} | {r['impl']} | {r['median_ms']:.3g} | {ratio} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--json", type=pathlib.Path, help="also write rows and machine here")
  parser.add_argument("--only", choices=sorted(SUITES), help="run one suite (default: all)")
  args = parser.parse_args()
  rows = []
  for name, module in SUITES.items():
    if args.only in (None, name):
      rows += module.run(quick=args.quick, repeats=args.repeats)
  info = machine()
  print(f"{info['cpu']}, {info['cores']} cores; python {info['python']}, jax {info['jax']}, "
        f"numba {info['numba']}")
  print(format_table(rows))
  if args.json:
    args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
  main()

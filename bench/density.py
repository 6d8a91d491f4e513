"""CutPaste's Gaussian density: jaxvad.density vs scikit-learn alone, fit and scoring, on the CPU.

    python bench/density.py                 # N = 10,000 x D = 128 and 512 (about a minute)
    python bench/density.py --quick         # N = 500 x D = 16 and 32, a smoke test
    python bench/density.py --json out.json

Input: N L2-normalised float32 feature vectors (correlated Gaussians through a fixed random
mixing matrix plus a constant offset, seed 0) to fit on, and N others (seed 1, half the
coordinates shifted: partly anomalous) to score, the same arrays for both implementations.

* jaxvad: `density.fit_gaussian` (scikit-learn's LedoitWolf on a float64 copy, stored float32)
  and `jax.jit(density.mahalanobis)` on features already on the device (waited for with
  `block_until_ready`).
* scikit-learn alone, as a user would call it (Runinho/pytorch-cutpaste does): `LedoitWolf()
  .fit(train)` on the float32 features (scikit-learn then fits in float32) and
  `.mahalanobis(test)` (the squared distance, via `pairwise_distances`, float64). The fit is
  also timed on a float64 copy, which is what jaxvad's fit runs.

Each row is the median of repeated calls after one warm-up call (compilation excluded);
"speed-up" is the scikit-learn row's median divided by the jaxvad row's, measured in this same
run. Before timing, the scores are checked against the float64 scikit-learn result (the square
root of its squared distance) and the worst relative difference is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.covariance import LedoitWolf  # noqa: E402

from jaxvad import density  # noqa: E402
from timing import cpu_model, median_ms  # noqa: E402

JAXVAD = "jaxvad (fit_gaussian; jit mahalanobis)"
SKLEARN = "scikit-learn LedoitWolf (float32 input)"
SKLEARN64 = "scikit-learn LedoitWolf (float64 input)"


def features(n: int, d: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
  """[n, d] float32 unit vectors: correlated Gaussians + 1, half the coordinates shifted."""
  mix = np.random.default_rng(1000 + d).normal(size=(d, d)) / np.sqrt(d)
  x = np.random.default_rng(seed).normal(size=(n, d)) @ mix + 1.0
  x[:, :d // 2] += shift * np.random.default_rng(seed + 1).random((n, 1))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def run(*, quick: bool, repeats: int) -> tuple[list[dict], list[str]]:
  """Rows for the table, and one accuracy line per D."""
  n, dims = (500, (16, 32)) if quick else (10_000, (128, 512))
  settle = 0.1 if quick else 1.0
  score = jax.jit(density.mahalanobis)
  rows, notes = [], []
  for d in dims:
    train, test = features(n, d, seed=0), features(n, d, seed=1, shift=1.0)
    train64, test_device = train.astype(np.float64), jax.device_put(test)

    # Agreement first: the float64 scikit-learn pipeline is the reference.
    reference = np.sqrt(LedoitWolf().fit(train64).mahalanobis(test.astype(np.float64)))
    fitted = density.fit_gaussian(train)
    ours = np.asarray(score(fitted, test_device))
    theirs = np.sqrt(LedoitWolf().fit(train).mahalanobis(test))
    worst = lambda got: float(np.max(np.abs(got - reference) / reference))  # noqa: E731
    notes.append(f"N = {n:,}, D = {d}: max relative difference of the distance from "
                 f"scikit-learn float64: jaxvad {worst(ours):.1e}, scikit-learn on float32 "
                 f"input {worst(theirs):.1e}")

    task = f"N = {n:,}, D = {d}"
    timed = {
        ("fit", JAXVAD): lambda: density.fit_gaussian(train),
        ("fit", SKLEARN): lambda: LedoitWolf().fit(train),
        ("fit", SKLEARN64): lambda: LedoitWolf().fit(train64),
        ("score", JAXVAD): lambda: score(fitted, test_device),
        ("score", SKLEARN): (lambda lw: lambda: lw.mahalanobis(test))(LedoitWolf().fit(train)),
        ("fit + score", JAXVAD): lambda: score(density.fit_gaussian(train), test_device),
        ("fit + score", SKLEARN): lambda: LedoitWolf().fit(train).mahalanobis(test),
    }
    for (phase, impl), fn in timed.items():
      rows.append({"task": f"{phase}, {task}", "impl": impl, "baseline": SKLEARN,
                   "median_ms": median_ms(fn, repeats=repeats, settle_s=settle)})
  return rows, notes


def format_table(rows: list[dict]) -> str:
  baseline_ms = {(r["task"], r["impl"]): r["median_ms"] for r in rows}
  lines = ["| task | implementation | median ms | speed-up vs scikit-learn |",
           "|---|---|---|---|"]
  for r in rows:
    base = baseline_ms.get((r["task"], r["baseline"]))
    ratio = f"{base / r['median_ms']:.2f}×" if base and r["impl"] != r["baseline"] else "—"
    lines.append(f"| {r['task']} | {r['impl']} | {r['median_ms']:.3g} | {ratio} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--json", type=pathlib.Path, help="also write rows and machine here")
  args = parser.parse_args()
  rows, notes = run(quick=args.quick, repeats=args.repeats)
  info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
          "jax": jax.__version__, "sklearn": sklearn.__version__}
  print(f"{info['cpu']}, {info['cores']} cores; python {info['python']}, jax {info['jax']}, "
        f"scikit-learn {info['sklearn']}")
  print(format_table(rows))
  for note in notes:
    print(note)
  if args.json:
    args.json.write_text(json.dumps({"machine": info, "rows": rows, "notes": notes}, indent=2)
                         + "\n")


if __name__ == "__main__":
  main()

"""Runs an exported scorer where only jax and numpy are: flax, optax, orbax, OpenCV and
jaxvad cannot be imported, and the loader is the single file jaxvad/exported.py copied to a
folder of its own (as on a line machine without jaxvad).

    python bench/standalone_scorer.py LOADER_FOLDER SCORER IN.npz OUT.npz

IN.npz holds "frames" (uint8 [T, H, W, C]) and the per-frame inputs the scorer's contract
names; OUT.npz gets "raw" (float64 [T]) and every term. Prints one JSON line: seconds to
import jax, to load and score once (compilation), and frames/s of later calls (median of 3).
Used by tests/test_methods.py and bench/deploy.py.
"""

import json
import statistics
import sys
import time


class _Blocked:
  """An import hook that refuses the packages a jax + numpy machine does not have."""

  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("flax", "optax", "orbax", "jaxvad", "bench", "tests", "cv2"):
      raise ImportError(f"{name} is not installed here")


def main(loader_folder: str, scorer_path: str, inputs_path: str, out_path: str) -> None:
  sys.meta_path.insert(0, _Blocked())
  sys.path.insert(0, loader_folder)
  t0 = time.perf_counter()
  import numpy as np
  import jax  # noqa: F401
  t1 = time.perf_counter()
  import exported
  scorer = exported.load_scorer(scorer_path)
  arrays = np.load(inputs_path)
  frames = arrays["frames"]
  inputs = {k: arrays[k] for k in arrays.files if k != "frames"}
  terms = scorer.terms(frames, **inputs)
  t2 = time.perf_counter()
  times = []
  for _ in range(3):
    start = time.perf_counter()
    scorer(frames, **inputs)
    times.append(time.perf_counter() - start)
  np.savez(out_path, raw=exported.combine_terms(scorer.terms_spec, terms), **terms)
  print(json.dumps({"import_s": t1 - t0, "load_and_first_s": t2 - t1,
                    "fps": len(frames) / statistics.median(times)}))


if __name__ == "__main__":
  main(*sys.argv[1:5])

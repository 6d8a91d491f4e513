"""Deployment figures of every detector: the exported scorer and live scoring, on this machine.

    python bench/deploy.py                     # every detector at its bench config (demo size)
    python bench/deploy.py --methods ffp --frames 200 --fps 25

Per method, with a freshly initialised state (speed does not depend on training):
* export: `jaxvad export`'s program (`jaxvad.export.export_scorer`) — seconds, file size;
* standalone: the scorer loaded in a subprocess where flax and jaxvad cannot be imported (the
  single file jaxvad/exported.py) — import + load seconds, frames/s over a clip (warm), and
  the max |difference| of its score terms from jaxvad's own `Scorer` on the same frames;
* live: `jaxvad.live` on a synthetic source, as fast as frames can be scored (frames/s and
  latency under saturation) and paced at `--fps` like a camera (latency p50 / p95), with every
  frame accounted for (scored + unscored + dropped = sent).
Prints a markdown table with the CPU model; `--json` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `bench` as a package
from bench import timing  # noqa: E402
from bench.train_step import random_batch  # noqa: E402
from jaxvad import config as config_lib  # noqa: E402
from jaxvad import export, exported, live, methods  # noqa: E402
from jaxvad.evaluation import evaluate  # noqa: E402

STANDALONE = pathlib.Path(__file__).with_name("standalone_scorer.py")


def _state(name: str, overrides: list[str]):
  method = methods.get(name)
  config = config_lib.load_config(method.bench_config, overrides)
  batch = random_batch(config)
  state = method.create_state(config, jax.random.key(0), batch,
                              load_pretrained=False)
  return config, state, batch["frames"].shape[2:]


def _clip(shape, count: int) -> np.ndarray:
  """A bright square moving over noise."""
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 60, (count, *shape), dtype=np.uint8)
  for t in range(count):
    x = (5 * t) % max(1, shape[1] - shape[0] // 4)
    frames[t, shape[0] // 3:shape[0] // 3 + shape[0] // 4, x:x + shape[0] // 4] = 220
  return frames


def _live(scorer, frames, *, fps: float | None) -> dict:
  # Speed only: unit term statistics stand in for a combined score's validation calibration.
  calibration = {"smoothing": 1, "threshold": {"value": 0.0},
                 "term_stats": {t.name: [0.0, 1.0] for t in scorer.spec.terms}}
  scorer_live = live.LiveScorer(scorer, calibration=calibration,
                                batch_size=scorer.config.score.batch_size)
  scorer_live.warm_up(frames.shape[1:])

  def source():
    start = time.monotonic()
    for i, frame in enumerate(frames):
      if fps:
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
      yield i, frame

  result = live.run(scorer_live, source(), lambda f: f, lambda line: None, poll=0.005)
  lost = len(frames) - (result["scored"] + result["unscored"] + result["dropped_buffer"])
  return {**result, "unaccounted": lost}


def run_method(name: str, *, frames_count: int, fps: float, work: pathlib.Path) -> dict:
  """One method's row (module docstring)."""
  overrides = ["model.label_source=none"] if name == "f2lm" else []   # bare frames: no classes
  config, state, shape = _state(name, overrides)
  scorer = evaluate.Scorer(config, state)
  frames = _clip(shape, frames_count)
  start = time.perf_counter()
  blob = export.export_scorer(config, state, frame_shape=shape)
  export_s = time.perf_counter() - start
  path = work / f"{name}.bin"
  path.write_bytes(blob)
  needed = exported.read_metadata(path)["input"]["inputs"]
  inputs = methods.get(name).frame_inputs(config, frames, None) if needed else {}
  np.savez(work / f"{name}.npz", frames=frames, **{k: inputs[k] for k in needed})
  alone = work / "alone"
  alone.mkdir(exist_ok=True)
  shutil.copy(exported.__file__, alone / "exported.py")
  out = subprocess.run([sys.executable, STANDALONE, alone, path, work / f"{name}.npz",
                        work / f"{name}.out.npz"], cwd=alone, capture_output=True, text=True,
                       timeout=900, check=True)
  standalone = json.loads(out.stdout.strip().splitlines()[-1])
  # Terms, not the raw score: a combined score z-scores its terms per clip, which scales
  # float noise by 1 / std on an untrained model.
  want = scorer.terms(frames, None)
  got = np.load(work / f"{name}.out.npz")
  diff = max(float(np.nanmax(np.abs(got[k] - v))) for k, v in want.items())
  fast = _live(scorer, frames, fps=None)
  paced = _live(scorer, frames, fps=fps)
  return {"method": name, "config": config.name, "frame_shape": list(shape),
          "window": config.data.window, "export_s": export_s, "file_bytes": len(blob),
          "standalone_import_s": standalone["import_s"],
          "standalone_load_s": standalone["load_and_first_s"],
          "standalone_fps": standalone["fps"],
          "max_abs_diff": diff,
          "live_fps": fast["frames_per_s"], "live_p95_ms_saturated": fast["latency_ms_p95"],
          "live_dropped_saturated": fast["dropped_buffer"],
          "paced_fps": fps, "paced_p50_ms": paced["latency_ms_p50"],
          "paced_p95_ms": paced["latency_ms_p95"], "paced_dropped": paced["dropped_buffer"],
          "unaccounted": fast["unaccounted"] + paced["unaccounted"]}


def format_table(rows: list[dict]) -> str:
  """Markdown table of `run_method` rows.

  Args:
    rows: the rows.

  Returns:
    The table.
  """
  head = ("| method | frames | export s | file | import + load s | standalone frames/s | "
          "max abs diff | live frames/s (p95 ms) | paced p50 / p95 ms | dropped | lost |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
  lines = [head]
  for r in rows:
    lines.append(
        f"| {r['method']} | {'x'.join(map(str, r['frame_shape']))} w{r['window']} | "
        f"{r['export_s']:.1f} | {r['file_bytes'] / 1e6:.1f} MB | "
        f"{r['standalone_import_s']:.1f} + {r['standalone_load_s']:.1f} | "
        f"{r['standalone_fps']:.0f} | {r['max_abs_diff']:.1e} | "
        f"{r['live_fps']:.0f} ({r['live_p95_ms_saturated']:.0f}) | "
        f"{r['paced_p50_ms']:.0f} / {r['paced_p95_ms']:.0f} at {r['paced_fps']:g} fps | "
        f"{r['live_dropped_saturated']} / {r['paced_dropped']} | {r['unaccounted']} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  detectors = [n for n in methods.names() if methods.get(n).is_detector
               and methods.get(n).bench_config]
  parser.add_argument("--methods", nargs="+", default=detectors, choices=detectors)
  parser.add_argument("--frames", type=int, default=120, help="frames per clip (default 120)")
  parser.add_argument("--fps", type=float, default=10.0, help="paced camera rate (default 10)")
  parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
  args = parser.parse_args(argv)
  print(f"CPU: {timing.cpu_description()}")
  rows = []
  with tempfile.TemporaryDirectory() as work:
    for name in args.methods:
      rows.append(run_method(name, frames_count=args.frames, fps=args.fps,
                             work=pathlib.Path(work)))
      print(json.dumps(rows[-1]), flush=True)
  print(format_table(rows))
  if args.json:
    timing.write_atomic(args.json, json.dumps({"cpu": timing.cpu_description(), "rows": rows},
                                              indent=1))


if __name__ == "__main__":
  main()

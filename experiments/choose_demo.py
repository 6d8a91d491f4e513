"""Chooses `jaxvad demo`'s detector on a held-out benchmark, never on the demo's own test clips.

Renders the tiny pickplace benchmark with another renderer seed (default 1; the demo reads
seed 0), trains each candidate on it, scores its test clips under each scoring and records frame
AUROC with its 95 % clip-bootstrap interval for all / no distractors / with distractors, and
AUROC per anomaly type on the clips without distractors. The candidate with the highest
no-distractor AUROC became `configs/demo.toml`; the record is `results/choose_demo_seed1.json`.

    python experiments/choose_demo.py [--seed 1] [--out runs/choose_demo] [CANDIDATE ...]
"""

import argparse
import dataclasses
import json
import pathlib
import time

from jaxvad import config as config_lib
from jaxvad import train
from jaxvad.data import datasets
from jaxvad.evaluation import evaluate

CANDIDATES = {   # name -> (config, overrides)
    "pae_400": ("predictive_ae_demo", []),
    "pae_1500": ("predictive_ae_demo", ["train.steps=1500"]),
    "ae_1500": ("convlstm_ae_demo", ["train.steps=1500"]),
}
SCORINGS = {     # name -> score.* overrides; patch size 0 = 8 px at 64x64, stride half of it
    "frame_psnr": {},
    "max_ssim": {"reduce": "max_patch", "patch_metric": "ssim"},
    "max_ssim16": {"reduce": "max_patch", "patch_metric": "ssim", "patch_size": 16,
                   "patch_stride": 8},
    "max_psnr16": {"reduce": "max_patch", "patch_metric": "psnr", "patch_size": 16,
                   "patch_stride": 8},
    "top4_ssim": {"reduce": "top_k_patches", "patch_metric": "ssim"},
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("candidates", nargs="*", metavar="CANDIDATE",
                      help=f"some of {', '.join(CANDIDATES)} (default: all)")
  parser.add_argument("--seed", type=int, default=1, help="renderer seed (not 0: the demo's)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/choose_demo"))
  args = parser.parse_args()
  if unknown := set(args.candidates) - set(CANDIDATES):
    parser.error(f"unknown candidates {sorted(unknown)}: choose from {', '.join(CANDIDATES)}")
  results_path = args.out / "results.json"
  results = json.loads(results_path.read_text()) if results_path.exists() else {}
  for name in args.candidates or list(CANDIDATES):
    config_name, overrides = CANDIDATES[name]
    config = config_lib.load_config(config_name, [f"data.root={args.out}/data",
                                                  f"data.seed={args.seed}", *overrides])
    datasets.ensure_benchmark(config.data, progress=False)
    start = time.perf_counter()
    train.train(config, args.out / name, resume=True, progress=True)
    train_s = time.perf_counter() - start
    config, state = train.load_trained(args.out / name)
    test, val = (datasets.load_split(config.data, s) for s in ("test", "val"))
    for scoring, score in SCORINGS.items():
      cfg = dataclasses.replace(config, score=dataclasses.replace(config.score, **score))
      result = evaluate.evaluate_clips(cfg, state, test, val_clips=val)
      groups = {g: [round(m["auroc"], 3), [round(x, 3) for x in m["auroc_ci"]]]
                for g, m in result["metrics"].items()}
      per_type = {t: round(v["auroc"], 3)
                  for t, v in result["metrics"]["no_distractors"].get("per_type", {}).items()}
      results[f"{name}/{scoring}"] = {"groups": groups, "types_no_distr": per_type,
                                      "train_s": round(train_s)}
      print(name, scoring, groups, per_type, flush=True)
    results_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()

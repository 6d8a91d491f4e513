"""Paper 001's experiments on the synthetic benchmark: four predictive-autoencoder variants ×
three augmentation strategies, frame-by-frame and case-by-case AUC (§4.1-4.2).

`jaxvad reproduce paper001` trains, per scene, every (variant, augmentation) pair on the normal
training clips, scores the validation and test clips by the PSNR of the predicted frame
(moving average of `score.smoothing` frames, 10 by default, §3.4), calibrates the threshold on
the normal validation clips only and reports, per group of test clips (all / without / with
distractors: person, lighting drift, shadow, camera shake):

  * frame AUC (every frame a case) and case AUC (each anomalous event and each normal interval
    one case, flagged if any of its frames is — `metrics.event_roc`);
  * the mean PSNR of normal validation frames (how sharp the predictions are) and the
    false positives at the threshold on the distractor clips (the paper's two qualitative
    findings: skiptwice predicts sharper frames but reacts more to motion; augmentation
    lowers false positives under lighting change).

Each run also gets the usual report (`jaxvad.evaluation.report`): score curves with the threshold and
detections (Fig. 4.3), the worst frames with prediction and error heat map (Fig. 4.1), ROC
curves.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Callable

import numpy as np

from jaxvad import augment
from jaxvad import config as config_lib
from jaxvad import train as train_lib
from jaxvad.data import datasets
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate, report
from jaxvad.evaluation import protocol as protocol_lib
from jaxvad.models.predictive_ae import VARIANTS

SCENES = ("conveyor", "pickplace")
AUGMENTS = augment.KINDS
PRESETS = {"tiny": "predictive_ae_demo", "small": "predictive_ae_pickplace"}
GROUPS = evaluate.GROUPS


def _summary(result: dict) -> dict:
  """The numbers of one run that go into the tables."""
  out = {}
  for group in GROUPS:
    m = result["metrics"].get(group)
    if m is None:
      continue
    out[group] = {"frame_auc": m["auroc"], "case_auc": m["events"]["auc"],
                  "case_auc_ci": m["events"].get("auc_ci"),
                  "TP": m.get("confusion", {}).get("TP"), "FP": m.get("confusion", {}).get("FP"),
                  "clips": m["clips"],
                  # 95 % bootstrap intervals over test clips (`protocol.evaluate`)
                  "frame_auc_ci": m.get("auroc_ci"), "aupr": m["aupr"],
                  "aupr_ci": m.get("aupr_ci"), "eer": m["eer"], "eer_ci": m.get("eer_ci")}
    if m.get("per_type"):
      out[group]["per_type"] = {
          t: {k: v[k] for k in ("auroc", "auroc_ci", "aupr", "aupr_ci", "anomalous_frames")}
          for t, v in m["per_type"].items()}
  t = result["threshold"]
  out["threshold"] = t
  out["bootstrap"] = result["metrics"]["all"].get("bootstrap")
  return out


def run_one(scene: str, variant: str, aug: str, *, preset: str, workdir: pathlib.Path,
            overrides=(), clips: dict | None = None, train_progress: bool = True) -> dict:
  """Trains (or reuses) one (variant, augmentation) run and evaluates it.

  Args:
    scene: a synthetic scene.
    variant: one of `VARIANTS`.
    aug: one of `AUGMENTS`.
    preset: "tiny" or "small" (which shipped config the run starts from).
    workdir: runs go to `<workdir>/<scene>/<variant>_<aug>`; finished runs are reused.
    overrides: more `KEY=VALUE` config overrides.
    clips: {"val": [...], "test": [...]} already loaded (else loaded here).
    train_progress: show the training progress bar.

  Returns:
    {"config", "result" (`evaluate.evaluate_clips`), "summary", "val_psnr"}.
  """
  if preset not in PRESETS:
    raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
  config = config_lib.load_config(PRESETS[preset], [f"data.scene={scene}",
                                                    f"model.variant={variant}",
                                                    f"model.augment={aug}", *overrides])
  datasets.ensure_benchmark(config.data, progress=train_progress)
  run_dir = workdir / scene / f"{variant}_{aug}"
  train_lib.train(config, run_dir, resume=True, progress=train_progress)
  config, state = train_lib.load_trained(run_dir)
  clips = clips or {s: datasets.load_split(config.data, s) for s in ("val", "test")}
  result = evaluate.evaluate_clips(config, state, clips["test"], val_clips=clips["val"])
  # The raw score of normal validation frames (PSNR: how sharp the predictions are).
  val_raw = np.concatenate([v["raw"] for v in result["val"]]) if result["val"] else np.nan
  return {"config": config, "result": result, "summary": _summary(result),
          "val_psnr": float(np.nanmean(val_raw))}


def run_scene(scene: str, *, preset: str, workdir: pathlib.Path, variants=VARIANTS,
              augments=AUGMENTS, overrides=(), progress: Callable | None = None,
              train_progress: bool = True) -> dict:
  """Every (variant, augmentation) run of one scene: {"runs": {(variant, aug): run_one(...)}}."""
  wrap = progress or (lambda xs, desc: xs)
  config = config_lib.load_config(PRESETS[preset], [f"data.scene={scene}", *overrides])
  datasets.ensure_benchmark(config.data, progress=train_progress)
  clips = {s: datasets.load_split(config.data, s) for s in ("val", "test")}
  lighting = [c.name for c in clips["test"] if set(c.meta.get("distractors") or ())
              & {"lighting", "shake"}]
  runs = {}
  for variant, aug in wrap([(v, a) for v in variants for a in augments], f"{scene} runs"):
    run = run_one(scene, variant, aug, preset=preset, workdir=workdir, overrides=overrides,
                  clips=clips, train_progress=train_progress)
    run["summary"]["fp_lighting_shake"] = _false_positives(run["result"], lighting)
    runs[(variant, aug)] = run
  return {"runs": runs, "lighting_shake_clips": lighting}


def _false_positives(result: dict, names: list[str]) -> int | None:
  """Frames flagged at the threshold but labelled normal, over the named test clips."""
  if result["threshold"] is None:
    return None
  fp = 0
  for clip in result["clips"]:
    if clip["name"] in names:
      scored = np.isfinite(clip["score"])
      fp += int((clip["flags"][scored] & ~clip["labels"][scored]).sum())
  return fp


# --------------------------------------------------------------------------- tables


def _f(x, digits=3) -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "n/a"
  return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _grid(title: str, runs: dict, cell: Callable) -> list[str]:
  """A markdown table: one row per variant, one column per augmentation, `cell(run)` each."""
  variants = list(dict.fromkeys(v for v, _ in runs))
  augments = list(dict.fromkeys(a for _, a in runs))
  lines = [f"### {title}\n", "| variant | " + " | ".join(augments) + " |",
           "|---|" + "---|" * len(augments)]
  lines += [f"| {v} | " + " | ".join(cell(runs[(v, a)]) for a in augments) + " |"
            for v in variants]
  return lines + [""]


def _auc_cell(g: dict) -> str:
  return (f"{report.format_ci(g['frame_auc'], g.get('frame_auc_ci'))} / "
          f"{report.format_ci(g['case_auc'], g.get('case_auc_ci'))}")


def _type_cell(summary: dict, anomaly_type: str) -> str:
  per = summary.get("all", {}).get("per_type", {})
  if anomaly_type not in per:
    return "—"
  return report.format_ci(per[anomaly_type]["auroc"], per[anomaly_type]["auroc_ci"])


def markdown_tables(results: dict) -> str:
  """Frame AUC [95 % CI] and case AUC per variant × augmentation, per scene and clip group,
  and frame AUC per anomaly type (all test clips) where the clips carry types, as markdown."""
  out = []
  for scene, r in results["scenes"].items():
    runs = r["runs"]
    for group in GROUPS:
      if not any(group in run["summary"] for run in runs.values()):
        continue
      clips = next(run["summary"][group]["clips"] for run in runs.values())
      out += _grid(f"{scene}: frame AUC / case AUC [95% CIs], test clips "
                   f"{group.replace('_', ' ')} ({clips} clips)", runs,
                   lambda run, g=group: _auc_cell(run["summary"][g]))
    types = sorted({t for run in runs.values()
                    for t in run["summary"].get("all", {}).get("per_type", {})})
    for t in types:
      out += _grid(f"{scene}: frame AUC [95% CI] of anomaly type {t} (its anomalous frames "
                   "against all normal frames), all test clips", runs,
                   lambda run, t=t: _type_cell(run["summary"], t))
    out += _grid(f"{scene}: mean PSNR of normal validation frames (dB) / false positives at the "
                 f"threshold on the {len(r['lighting_shake_clips'])} test clips with lighting "
                 "drift or camera shake", runs,
                 lambda run: f"{run['val_psnr']:.2f} / {_f(run['summary']['fp_lighting_shake'])}")
  return "\n".join(out)


def write_results(out_dir: pathlib.Path, results: dict) -> None:
  """tables.md, tables.json and one report folder per run (`<scene>/<variant>_<aug>/`)."""
  out_dir.mkdir(parents=True, exist_ok=True)
  payload = {"preset": results["preset"], "scenes": {}}
  for scene, r in results["scenes"].items():
    payload["scenes"][scene] = {
        "lighting_shake_clips": r["lighting_shake_clips"],
        "runs": {f"{v}_{a}": {**run["summary"], "val_psnr": run["val_psnr"],
                              "config": run["config"].to_dict()}
                 for (v, a), run in r["runs"].items()}}
    for (v, a), run in r["runs"].items():
      report.write_report(out_dir / scene / f"{v}_{a}", run["result"],
                          extra={"config": run["config"].to_dict(), "split": "test"})
  report.write_atomic(out_dir / "tables.json",
                      json.dumps(protocol_lib.json_safe(payload), indent=2) + "\n")
  first = next(iter(next(iter(results["scenes"].values()))["runs"].values()))["summary"]
  text = [f"# Paper 001 on the synthetic benchmark (preset {results['preset']})\n",
          "Scores: PSNR of the predicted 5th frame, moving average over score.smoothing frames; "
          "threshold on normal validation clips only. Cells: frame AUC / case AUC [95% CIs]. "
          f"{report.interval_note({'all': first})}\n",
          markdown_tables(results)]
  report.write_atomic(out_dir / "tables.md", "\n".join(text) + "\n")

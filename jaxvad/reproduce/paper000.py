"""Paper 000's experiments on the synthetic benchmark: masks against false alarms.

`jaxvad reproduce paper000` trains, per scene, the ConvLSTM autoencoder (§3.1.1) and the
R3D-18 background masking model (§3.1.2, weak partition labels §3.2) on normal clips, then
scores the validation and test clips with the autoencoder's PSNR computed

  * on the whole frame ("no mask"),
  * inside the renderer's ideal workspace mask ("ideal mask", Table 4.2),
  * outside it ("outside ideal mask": the background alone, a diagnostic: what a detector
    that sees only the person, shadows and lighting would score),
  * inside the learned mask ("learned mask", Tables 4.3-4.4): Eigen-CAM of the last N convs
    of layer4, averaged and min-max scaled per frame, resized to the frame, values below a
    threshold set to 0, averaged over a centred window of w frames (§3.1.2),

with the fusion of §3.1.3 (the mask multiplies reconstruction and frame; only unmasked pixels
count). Every row's threshold is calibrated on that row's normal validation scores only, then
TP/FN/FP/AUROC/AUPR are counted on the test clips, with the ablations of Tables 4.5-4.7.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Callable

import numpy as np

from jaxvad import config as config_lib
from jaxvad import masking
from jaxvad import train as train_lib
from jaxvad.data import datasets
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate, metrics, report
from jaxvad.evaluation import protocol as protocol_lib
from jaxvad.masking import MAIN_SETTING, MaskSetting
from jaxvad.methods import r3d_partition

SCENES = ("pickplace", "conveyor")
ROW_NAMES = ("no mask", "ideal mask", "outside ideal mask", "learned mask")

# The ablations hold the other two parameters at the paper's fixed values.
ABLATIONS = {
    "Table 4.5: layers for Eigen-CAM (threshold 0, window 1)":
        [MaskSetting(n, 0.0, 1) for n in (1, 2, 4)],
    "Table 4.6: threshold on attention maps (4 layers, window 1)":
        [MaskSetting(4, t, 1) for t in (0.0, 0.1, 0.2)],
    "Table 4.7: temporal smoothing window (4 layers, threshold 0)":
        [MaskSetting(4, 0.0, w) for w in (3, 7, 11)],
}

# preset -> (autoencoder config, masking-model config), both shipped in configs/.
PRESETS = {
    "tiny": ("convlstm_ae_demo", "r3d_partition_demo"),
    "medium": ("convlstm_ae_medium", "r3d_partition_medium"),
    "small": ("convlstm_ae_pickplace", "r3d_partition_pickplace"),
}


# --------------------------------------------------------------------------- per-clip outputs


@dataclasses.dataclass
class ClipOutputs:
  """What the two models say about one clip (host arrays)."""
  name: str
  labels: np.ndarray            # bool [T]
  has_distractors: bool
  distracted: np.ndarray        # bool [T]: any distractor visible in the frame
  frames: np.ndarray            # uint8 [T, H, W, C]
  image: np.ndarray             # float32 [T, H, W, C]: the detector's reconstruction
  cams: np.ndarray              # float32 [T, 4, h, w]: Eigen-CAM of layer4's convs, last last
  ideal: np.ndarray             # bool [T, H, W]: the renderer's workspace mask
  types: np.ndarray | None = None  # str [T]: anomaly type per frame ("" normal), if known


def clip_outputs(clip, *, scorer: evaluate.Scorer, masker) -> ClipOutputs:
  """Reconstructions and attention maps of every frame of a clip.

  Args:
    clip: a `datasets.Clip` with workspace masks.
    scorer: the autoencoder's `evaluate.Scorer`.
    masker: (config, state) of the masking model.
  """
  spec = scorer.spec
  image = scorer.runner.clip_outputs(scorer.state, clip.frames, [spec.image])[spec.image]
  m_config, m_state = masker
  return ClipOutputs(name=clip.name, labels=clip.labels.astype(bool),
                     has_distractors=bool(clip.meta.get("distractors")),
                     distracted=(np.zeros(len(clip.frames), bool) if clip.distractors is None
                                 else clip.distractors.any(axis=1)),
                     frames=clip.frames, image=np.asarray(image, np.float32),
                     cams=r3d_partition.clip_cams(m_config, m_state, clip.frames),
                     ideal=clip.workspace_mask, types=getattr(clip, "frame_types", None))


def learned_mask(cams: np.ndarray, setting: MaskSetting, frame_size) -> np.ndarray:
  """float32 `[T, H, W]` mask of one clip from its per-layer maps (`masking.mask_from_layer_maps`)."""
  return masking.mask_from_layer_maps(cams, setting=setting, frame_size=frame_size)


# --------------------------------------------------------------------------- one table row


def evaluate_row(scorer: evaluate.Scorer, val: list[ClipOutputs], test: list[ClipOutputs],
                 mask_fn: Callable, *, proto: protocol_lib.Protocol, threshold_method: str,
                 threshold_param: float) -> dict:
  """One mask variant: the detector's score inside `mask_fn(clip)` (None = whole frame) of
  every clip, evaluated by `evaluate.evaluate_scores` (threshold on validation only).

  Returns:
    {"threshold", "empty_frames", "bootstrap" (how the intervals were computed), and per group
    ("all", "with_distractors", "no_distractors"): TP, FN, FP, TN, auroc, aupr, eer (each with
    a 95 % bootstrap interval over test clips, "auroc_ci" etc.), event_auc, frames, clips, and
    where the clips carry anomaly types "per_type": {type: {auroc, auroc_ci, aupr, aupr_ci,
    anomalous_frames}}}.
  """
  scorer.empty_mask_frames = 0

  def scored(outs):
    return [evaluate.Scored(o.name, scorer.masked(o.image, o.frames, mask_fn(o)), o.labels,
                            has_distractors=o.has_distractors, types=o.types) for o in outs]

  result = evaluate.evaluate_scores(scored(test), val=scored(val), protocol=proto,
                                    threshold=threshold_method,
                                    threshold_param=threshold_param,
                                    bootstrap=scorer.config.score.bootstrap)
  row = {"threshold": result["threshold"], "empty_frames": scorer.empty_mask_frames,
         "bootstrap": result["metrics"]["all"]["bootstrap"]}
  for name, m in result["metrics"].items():
    c = m["confusion"]
    row[name] = {"TP": c["TP"], "FN": c["FN"], "FP": c["FP"], "TN": c["TN"],
                 "auroc": m["auroc"], "aupr": m["aupr"], "eer": m["eer"],
                 "auroc_ci": m["auroc_ci"], "aupr_ci": m["aupr_ci"], "eer_ci": m["eer_ci"],
                 "event_auc": m["events"]["auc"], "event_auc_ci": m["events"]["auc_ci"],
                 "frames": m["frames"], "clips": m["clips"]}
    if m.get("per_type"):
      row[name]["per_type"] = {
          t: {k: v[k] for k in ("auroc", "auroc_ci", "aupr", "aupr_ci", "anomalous_frames")}
          for t, v in m["per_type"].items()}
  return row


# --------------------------------------------------------------------------- tables


def _fmt_row(name: str, row: dict, group: str) -> str:
  g = row[group]
  ci = lambda k: report.format_ci(g[k], g.get(f"{k}_ci"))  # noqa: E731
  return (f"| {name} | {g['TP']} | {g['FN']} | {g['FP']} | {ci('auroc')} | {ci('aupr')} "
          f"| {ci('eer')} | {ci('event_auc')} |")


def _per_type_table(rows: dict, group: str) -> list[str]:
  """AUROC [95 % CI] per anomaly type (columns) of each row, or nothing without types."""
  types = sorted({t for row in rows.values() for t in row[group].get("per_type", {})})
  if not types:
    return []
  first = next(row[group]["per_type"] for row in rows.values() if row[group].get("per_type"))
  out = ["| | " + " | ".join(f"{t} ({first[t]['anomalous_frames']} frames)" if t in first
                             else t for t in types) + " |",
         "|---|" + "---|" * len(types)]
  for name, row in rows.items():
    per = row[group].get("per_type", {})
    out.append(f"| {name} | " + " | ".join(
        report.format_ci(per[t]["auroc"], per[t]["auroc_ci"]) if t in per else "—"
        for t in types) + " |")
  return out


def markdown_tables(results: dict, *, group: str = "with_distractors") -> str:
  """The Tables 4.2-4.7 analogues of every scene as markdown (test clips of `group`); AUROC,
  AUPR and EER with 95 % bootstrap intervals over test clips, and AUROC per anomaly type
  where the clips carry types."""
  head = ("| | True Positives | False Negatives | False Positives | AUROC [95% CI] | AUPR [95% CI] "
          "| EER [95% CI] | event AUC [95% CI] |\n|---|---|---|---|---|---|---|---|")
  out = []
  for scene, r in results["scenes"].items():
    out.append(f"### {scene}: test clips {group.replace('_', ' ')} (Tables 4.2-4.4)\n")
    out.append(head)
    for name in ROW_NAMES:
      out.append(_fmt_row(name, r["rows"][name], group))
    per_type = _per_type_table({n: r["rows"][n] for n in ROW_NAMES}, group)
    if per_type:
      out += [f"\n#### {scene}: AUROC [95% CI] per anomaly type, test clips "
              f"{group.replace('_', ' ')} (its anomalous frames against all normal frames)\n",
              *per_type]
    for title, rows in r["ablations"].items():
      out.append(f"\n#### {scene}: {title}\n")
      out.append(head)
      for name, row in rows.items():
        out.append(_fmt_row(name, row, group))
    out.append("")
  return "\n".join(out)


# --------------------------------------------------------------------------- driver


def _load_configs(preset: str, scene: str, ae_overrides, masker_overrides,
                  detector: str | None = None):
  if preset not in PRESETS:
    raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
  ae_name, masker_name = PRESETS[preset]
  ae_cfg = config_lib.load_config(detector or ae_name, [f"data.scene={scene}", *ae_overrides])
  m_cfg = config_lib.load_config(masker_name, [f"data.scene={scene}", *masker_overrides])
  # Colour may differ: the masker converts the detector's frames (`in_masker_colour`).
  for key in ("dataset", "scene", "preset", "root", "seed", "size"):
    if getattr(ae_cfg.data, key) != getattr(m_cfg.data, key):
      raise ConfigError(f"the detector ({ae_cfg.name}) and masking-model ({m_cfg.name}) "
                        f"configs must read the same frames: data.{key} is "
                        f"{getattr(ae_cfg.data, key)!r} vs {getattr(m_cfg.data, key)!r} (give "
                        f"--ae data.{key}=... or --masker data.{key}=...)")
  return ae_cfg, m_cfg


def _trained(config, workdir: pathlib.Path, *, progress: bool):
  train_lib.train(config, workdir, resume=True, progress=progress)
  return train_lib.load_trained(workdir)


def run_scene(scene: str, *, preset: str, workdir: pathlib.Path, ae_overrides=(),
              masker_overrides=(), detector: str | None = None,
              progress: Callable | None = None, train_progress: bool = True) -> dict:
  """Trains (or reuses) both models of one scene and computes every table row.

  `detector` names the config of the model whose scores are masked (default: the preset's
  ConvLSTM autoencoder, the paper's); any method with an image output works, scored as its
  config says (e.g. max-patch SSIM inside the mask). Runs go to <workdir>/<scene>/ae (or
  detector_<name>) and <workdir>/<scene>/masker, which every detector shares.
  """
  ae_cfg, m_cfg = _load_configs(preset, scene, ae_overrides, masker_overrides, detector)
  if ae_cfg.score.threshold == "none":
    raise ConfigError("the tables need a threshold: set score.threshold in the autoencoder "
                      "config (calibrated on validation data only)")
  datasets.ensure_benchmark(ae_cfg.data, progress=train_progress)
  ae_dir = f"detector_{ae_cfg.name}" if detector else "ae"
  ae_cfg, ae_state = _trained(ae_cfg, workdir / scene / ae_dir, progress=train_progress)
  masker = _trained(m_cfg, workdir / scene / "masker", progress=train_progress)
  scorer = evaluate.Scorer(ae_cfg, ae_state)
  wrap = progress or (lambda xs, desc: xs)
  outs = {split: [clip_outputs(c, scorer=scorer, masker=masker)
                  for c in wrap(datasets.load_split(ae_cfg.data, split), f"{scene} {split}")]
          for split in ("val", "test")}
  frame_size = outs["test"][0].frames.shape[1:3]
  proto = evaluate.protocol_for(ae_cfg, scorer.spec)
  kw = {"proto": proto, "threshold_method": ae_cfg.score.threshold,
        "threshold_param": ae_cfg.score.threshold_param}

  def row(mask_fn):
    return evaluate_row(scorer, outs["val"], outs["test"], mask_fn, **kw)

  def learned(setting):
    return lambda o: learned_mask(o.cams, setting, frame_size)

  rows = {"no mask": row(lambda o: None),
          "ideal mask": row(lambda o: o.ideal.astype(np.float32)),
          "outside ideal mask": row(lambda o: (~o.ideal).astype(np.float32)),
          "learned mask": row(learned(MAIN_SETTING))}
  rows["learned mask"]["setting"] = dataclasses.asdict(MAIN_SETTING)
  ablations = {title: {s.name: row(learned(s)) for s in settings}
               for title, settings in ABLATIONS.items()}
  return {"rows": rows, "ablations": ablations, "protocol": proto.to_dict(),
          "overlap": distractor_overlap(outs["test"]),
          "configs": {"ae": ae_cfg.to_dict(), "masker": masker[0].to_dict()},
          "outputs": outs, "scorer": scorer}


def distractor_overlap(test: list[ClipOutputs]) -> dict:
  """How often a distractor is in view during anomalous vs normal frames of the distractor test
  clips. Unequal rates let a detector of distractors alone score true positives (see the
  "outside ideal mask" row); with few test clips they are unequal by chance."""
  outs = [o for o in test if o.has_distractors]
  if not outs:
    return {"given_anomalous": float("nan"), "given_normal": float("nan")}
  labels = np.concatenate([o.labels for o in outs])
  seen = np.concatenate([o.distracted for o in outs])
  rate = lambda sel: float(seen[sel].mean()) if sel.any() else float("nan")  # noqa: E731
  return {"given_anomalous": rate(labels), "given_normal": rate(~labels)}


def target_check(row_none: dict, row_learned: dict) -> dict:
  """The issue's target on test clips with distractors: the learned mask removes at least half
  of the no-mask false positives and loses at most 5 % of the true positives."""
  a, b = row_none["with_distractors"], row_learned["with_distractors"]
  fp_removed = 1 - b["FP"] / a["FP"] if a["FP"] else float("nan")
  tp_kept = b["TP"] / a["TP"] if a["TP"] else float("nan")
  return {"fp_removed": fp_removed, "tp_kept": tp_kept,
          "met": bool(fp_removed >= 0.5 and tp_kept >= 0.95)}


def write_results(out_dir: pathlib.Path, results: dict) -> None:
  """tables.md, tables.json and figures (mask overlays, score curves) into out_dir."""
  out_dir.mkdir(parents=True, exist_ok=True)
  payload = {"preset": results["preset"], "scenes": {
      scene: {k: v for k, v in r.items() if k not in ("outputs", "scorer")}
      for scene, r in results["scenes"].items()}}
  for scene, r in payload["scenes"].items():
    r["target"] = target_check(r["rows"]["no mask"], r["rows"]["learned mask"])
  report.write_atomic(out_dir / "tables.json", json.dumps(protocol_lib.json_safe(payload), indent=2) + "\n")
  first = next(iter(payload["scenes"].values()))["rows"]["no mask"]
  text = [f"# Paper 000 on the synthetic benchmark (preset {results['preset']})\n",
          "Thresholds calibrated per row on the normal validation clips only "
          f"({first['threshold']['method']}). {report.interval_note({'all': first})}\n",
          markdown_tables(results), "## All test clips\n",
          markdown_tables(results, group="all")]
  for scene, r in payload["scenes"].items():
    t = r["target"]
    pct = lambda x: "n/a" if not math.isfinite(x) else f"{x:.0%}"  # noqa: E731
    text.append(f"- {scene}: on distractor test clips the learned mask removes "
                f"{pct(t['fp_removed'])} of the no-mask false positives and keeps "
                f"{pct(t['tp_kept'])} of the true positives (n/a: none without a mask); target "
                f"(>= 50 %, >= 95 %) {'met' if t['met'] else 'NOT met'}. A distractor is "
                f"in view in {pct(r['overlap']['given_anomalous'])} of their anomalous and "
                f"{pct(r['overlap']['given_normal'])} of their normal frames.")
  report.write_atomic(out_dir / "tables.md", "\n".join(text) + "\n")
  for scene, r in results["scenes"].items():
    _figures(out_dir / scene, r)


def _figures(out_dir: pathlib.Path, scene_result: dict) -> None:
  """masks.png (frame | ideal mask | learned mask, as 000 Fig. 4.3) for the highest-scoring
  frame of each distractor test clip, and scores.png (no mask vs learned mask per clip)."""
  plt = report.plt

  out_dir.mkdir(parents=True, exist_ok=True)
  test, scorer = scene_result["outputs"]["test"], scene_result["scorer"]
  spec = scorer.spec

  def anomaly(o, mask):   # the detector's score inside the mask, higher = more anomalous
    raw = scorer.masked(o.image, o.frames, mask)
    return raw if spec.higher_is_anomalous else -raw

  shown = [o for o in test if o.has_distractors][:4] or test[:4]
  fig, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.5 * len(shown)), squeeze=False,
                           layout="constrained")
  for row, o in zip(axes, shown):
    t = int(np.nanargmax(anomaly(o, None)))
    frame = o.frames[t].mean(-1) / 255.0
    mask = learned_mask(o.cams, MAIN_SETTING, o.frames.shape[1:3])[t]
    row[0].imshow(frame, cmap="gray", vmin=0, vmax=1)
    row[0].set_title(f"{o.name} frame {t}", fontsize=8)
    row[1].imshow(frame * o.ideal[t], cmap="gray", vmin=0, vmax=1)
    row[1].set_title("ideal mask", fontsize=8)
    row[2].imshow(frame, cmap="gray", vmin=0, vmax=1)
    row[2].imshow(mask, cmap="viridis", alpha=0.55, vmin=0, vmax=1)
    row[2].set_title(f"learned mask (N={MAIN_SETTING.layers}, thr {MAIN_SETTING.threshold:g}, "
                     f"w {MAIN_SETTING.window})", fontsize=8)
    for ax in row:
      ax.set_xticks([])
      ax.set_yticks([])
  report.write_atomic(out_dir / "masks.png", report.png_bytes(fig))

  fig, axes = plt.subplots(len(test), 1, figsize=(8, 1.9 * len(test)), squeeze=False,
                           layout="constrained")
  for ax, o in zip(axes[:, 0], test):
    for s, e in metrics.intervals(o.labels):
      ax.axvspan(s - 0.5, e - 0.5, color="tab:red", alpha=0.2, lw=0)
    for label, mask in (("no mask", None),
                        ("learned mask", learned_mask(o.cams, MAIN_SETTING,
                                                      o.frames.shape[1:3]))):
      scores = anomaly(o, mask)
      ax.plot((scores - np.nanmean(scores)) / (np.nanstd(scores) + 1e-9), lw=1, label=label)
    ax.set_title(f"{o.name}{' (distractors)' if o.has_distractors else ''}", fontsize=8)
    ax.tick_params(labelsize=7)
  axes[0, 0].legend(fontsize=7, loc="upper right")
  fig.suptitle(f"standardised anomaly score per frame ({spec.description}); red: anomalous "
               "frames", fontsize=9)
  report.write_atomic(out_dir / "scores.png", report.png_bytes(fig))

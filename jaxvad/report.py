"""Result files people open: metrics.json, per-frame scores.csv, score-curve plots."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxvad.data.synth import DISTRACTORS  # noqa: E402


def _write_atomic(path: pathlib.Path, data: str | bytes) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(data.encode() if isinstance(data, str) else data)
  os.replace(tmp, path)


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) runs of True in a bool vector."""
  padded = np.concatenate([[False], mask.astype(bool), [False]])
  edges = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def plot_score_curve(ax, clip: dict) -> None:
  """Anomaly score over frames, ground-truth anomalous frames shaded red (as 001 Fig. 4.3),
  frames with a distractor shaded grey."""
  t = np.arange(len(clip["score"]))
  if clip.get("distractors") is not None:
    for s, e in _intervals(np.asarray(clip["distractors"]).any(axis=1)):
      ax.axvspan(s - 0.5, e - 0.5, color="0.85", lw=0)
  for s, e in _intervals(clip["labels"]):
    ax.axvspan(s - 0.5, e - 0.5, color="tab:red", alpha=0.25, lw=0)
  ax.plot(t, clip["score"], color="tab:blue", lw=1.2)
  ax.set_xlim(-0.5, len(t) - 0.5)
  tag = " (distractors)" if clip["has_distractors"] else ""
  ax.set_title(f"{clip['name']}{tag}", fontsize=9)
  ax.set_xlabel("frame", fontsize=8)
  ax.set_ylabel("anomaly score (-PSNR)", fontsize=8)
  ax.tick_params(labelsize=7)


def write_report(out_dir: str | os.PathLike, result: dict, *, extra: dict | None = None) -> pathlib.Path:
  """Writes metrics.json, scores.csv, plots/<clip>.png and overview.png into `out_dir`.

  Args:
    out_dir: report folder (created).
    result: from `evaluate.evaluate_clips`.
    extra: more fields for metrics.json (config, timings, ...).

  Returns:
    The report folder.
  """
  out = pathlib.Path(out_dir)
  (out / "plots").mkdir(parents=True, exist_ok=True)
  payload = {"protocol": result["protocol"], "metrics": result["metrics"], **(extra or {})}
  _write_atomic(out / "metrics.json", json.dumps(_finite(payload), indent=2) + "\n")

  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(["clip", "frame", "label", "psnr", "score", *DISTRACTORS])
  for clip in result["clips"]:
    flags = clip.get("distractors")
    for t, (label, psnr, score) in enumerate(zip(clip["labels"], clip["psnr"], clip["score"])):
      row_flags = [int(f) for f in flags[t]] if flags is not None else [""] * len(DISTRACTORS)
      writer.writerow([clip["name"], t, int(label), f"{psnr:.4f}", f"{score:.4f}", *row_flags])
  _write_atomic(out / "scores.csv", buf.getvalue())

  for clip in result["clips"]:
    fig, ax = plt.subplots(figsize=(7, 2.6), layout="constrained")
    plot_score_curve(ax, clip)
    _save(fig, out / "plots" / f"{clip['name']}.png")

  clips = result["clips"]
  cols = 2
  rows = max(1, math.ceil(len(clips) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 2.4 * rows), layout="constrained",
                           squeeze=False)
  for ax, clip in zip(axes.flat, clips):
    plot_score_curve(ax, clip)
  for ax in list(axes.flat)[len(clips):]:
    ax.axis("off")
  fig.suptitle("anomaly score per test clip — red: anomalous frames (ground truth), "
               "grey: distractor present", fontsize=10)
  _save(fig, out / "overview.png")
  return out


def _save(fig, path: pathlib.Path) -> None:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  _write_atomic(path, buf.getvalue())


def _finite(obj):
  """JSON has no NaN: undefined metrics (one class only) become null."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: _finite(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite(v) for v in obj]
  return obj


def format_table(summary: dict) -> str:
  """A short plain-text table of the metrics groups."""
  lines = [f"{'test clips':<18}{'clips':>6}{'frames':>8}{'anomalous':>11}{'AUROC':>8}{'AUPR':>8}"]
  for name, m in summary.items():
    auroc = "n/a" if not math.isfinite(m["auroc"]) else f"{m['auroc']:.3f}"
    aupr = "n/a" if not math.isfinite(m["aupr"]) else f"{m['aupr']:.3f}"
    lines.append(f"{name:<18}{m['clips']:>6}{m['frames']:>8}{m['anomalous_frames']:>11}"
                 f"{auroc:>8}{aupr:>8}")
  return "\n".join(lines)

"""Result files people open: metrics.json, scores.csv, PNG plots and one self-contained report.html.

`write_report` takes the dict of `evaluate.evaluate_clips` and writes, into one folder:
  metrics.json        protocol, threshold, metrics per group of clips (+ run info)
  per_video.csv       one row per clip: frames, anomalous frames, AUROC, AUPR, EER, peak score
  scores.csv          one row per frame: label, anomaly type (where the clips carry types), the
                      method's raw score, processed score, flag, distractor flags
  plots/<clip>.png    score curve, ground truth shaded, threshold line, detections (001 Fig. 4.3)
  overview.png        all score curves on one page
  roc.png             frame and event ("case-by-case", 001 §4.1) ROC curves
  worst_frames.png    frame | reconstruction or prediction | error heat map of the worst frames
                      (001 Fig. 4.1), for methods whose score declares an image
  report.html         all of the above in one file (images embedded), opens without a server
Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxvad.evaluation import metrics  # noqa: E402
from jaxvad.data.synth import DISTRACTORS  # noqa: E402
from jaxvad.evaluation.protocol import json_safe  # noqa: E402
from jaxvad.fsio import ensure_dir, write_atomic  # noqa: E402,F401  (reproduce/ uses write_atomic)




def png_bytes(fig) -> bytes:
  """The figure as PNG bytes (110 dpi); the figure is closed."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  return buf.getvalue()


# --------------------------------------------------------------------------- plots


def plot_score_curve(ax, clip: dict, threshold: float | None = None) -> None:
  """Anomaly score over frames: ground-truth anomalous frames shaded red, frames with a
  distractor grey, the threshold dashed and flagged frames marked (001 Fig. 4.3)."""
  t = np.arange(len(clip["score"]))
  if clip.get("distractors") is not None:
    for s, e in metrics.intervals(np.asarray(clip["distractors"]).any(axis=1)):
      ax.axvspan(s - 0.5, e - 0.5, color="0.85", lw=0)
  for s, e in metrics.intervals(clip["labels"]):
    ax.axvspan(s - 0.5, e - 0.5, color="tab:red", alpha=0.25, lw=0)
  ax.plot(t, clip["score"], color="tab:blue", lw=1.2)
  if threshold is not None and math.isfinite(threshold):
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
  if clip.get("flags") is not None and clip["flags"].any():
    ax.plot(t[clip["flags"]], clip["score"][clip["flags"]], "v", color="tab:orange", ms=3.5,
            ls="none")
  ax.set_xlim(-0.5, len(t) - 0.5)
  tag = " (distractors)" if clip["has_distractors"] else ""
  ax.set_title(f"{clip['name']}{tag}", fontsize=9)
  ax.set_xlabel("frame", fontsize=8)
  ax.set_ylabel("anomaly score", fontsize=8)
  ax.tick_params(labelsize=7)


def _score_curve_png(clip: dict, threshold: float | None) -> bytes:
  fig, ax = plt.subplots(figsize=(7, 2.6), layout="constrained")
  plot_score_curve(ax, clip, threshold)
  return png_bytes(fig)


def _overview_png(clips: list[dict], threshold: float | None) -> bytes:
  cols = 2
  rows = max(1, math.ceil(len(clips) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 2.4 * rows), layout="constrained",
                           squeeze=False)
  for ax, clip in zip(axes.flat, clips):
    plot_score_curve(ax, clip, threshold)
  for ax in list(axes.flat)[len(clips):]:
    ax.axis("off")
  fig.suptitle("anomaly score per test clip — red: anomalous frames (ground truth), grey: "
               "distractor present, dashed: threshold, triangles: flagged frames", fontsize=10)
  return png_bytes(fig)


def _valid(clip: dict) -> np.ndarray:
  return np.isfinite(clip["score"])  # frames the protocol did not drop


def _roc_png(result: dict) -> bytes:
  """Frame ROC per group of clips, and the event ROC of all clips."""
  fig, (ax_f, ax_e) = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
  by_name = {c["name"]: c for c in result["clips"]}
  for name, members in result["groups"].items():
    clips = [by_name[n] for n in members]
    labels = np.concatenate([c["labels"][_valid(c)] for c in clips])
    scores = np.concatenate([c["score"][_valid(c)] for c in clips])
    if labels.all() or not labels.any():
      continue
    roc = metrics.frame_roc(labels, scores)
    m = result["metrics"][name]
    ax_f.plot(roc["fpr"], roc["tpr"], lw=1.4,
              label=f"{name} (AUROC {format_ci(m['auroc'], m.get('auroc_ci'))})")
  events = result["metrics"]["all"]["events"]
  if len(events["fpr"]):
    ax_e.plot(events["fpr"], events["tpr"], lw=1.4, drawstyle="default",
              label=f"all (event AUC {format_ci(events['auc'], events.get('auc_ci'))})")
  for ax, title, unit in ((ax_f, "frame-level ROC", "frames"),
                          (ax_e, "event-level ROC (case by case)", "intervals")):
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title,
           xlabel=f"false-positive rate (normal {unit} flagged)",
           ylabel=f"true-positive rate (anomalous {unit} flagged)")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8, loc="lower right")
  return png_bytes(fig)


def _draw_patches(ax, patches: dict, shape) -> str:
  """The patch grid (lines at every patch start) and the patches a patch-reduced score used
  (the worst one bold, the other top-k dashed) on an image axis; returns a title line."""
  size, stride = patches["patch_size"], patches["stride"]
  gh, gw = patches["grid"]
  h, w = shape
  # Pixel (y, x) is centred on (x, y): its edges are at +-0.5.
  line = {"color": "white", "lw": 0.4, "alpha": 0.45}
  ys = [i * stride - 0.5 for i in range(gh)] + [(gh - 1) * stride + size - 0.5]
  xs = [j * stride - 0.5 for j in range(gw)] + [(gw - 1) * stride + size - 0.5]
  for y in ys:
    ax.plot([xs[0], xs[-1]], [y, y], **line)
  for x in xs:
    ax.plot([x, x], [ys[0], ys[-1]], **line)
  for rank, (y, x) in reversed(list(enumerate(patches["corners"]))):
    ax.add_patch(matplotlib.patches.Rectangle(
        (x - 0.5, y - 0.5), size, size, fill=False, color="cyan",
        lw=2.0 if rank == 0 else 1.0, ls="-" if rank == 0 else "--"))
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  metric = patches["metric"].upper()
  value = f" {patches['values'][0]:.3g}" if patches["values"] else ""
  which = "" if patches["reduce"] == "max_patch" else (
      f"mean of the {patches['top_k']} worst (dashed); ")
  return f"\n{size} px patches every {stride} px; {which}worst patch {metric}{value}"


def _worst_frames_png(worst: list[dict]) -> bytes:
  """One row per frame: the frame, the model's image (if it has one), and its per-pixel anomaly
  map (the squared error of the image unless the method declares a map of its own). With a
  patch-reduced score the map also shows the patch grid and outlines the patch that fired
  (and the other top-k patches, dashed)."""
  cols = 3 if any("image" in w for w in worst) else 2   # a method without an image: no middle
  fig, axes = plt.subplots(len(worst), cols, figsize=(2.5 * cols, 2.6 * len(worst)),
                           layout="constrained", squeeze=False)
  for row, w in zip(axes, worst):
    frame = w["frame_image"].astype(np.float32) / 255.0
    recon = w.get("image")
    error = w["pixel_map"] if "pixel_map" in w else ((frame - recon) ** 2).mean(axis=-1)
    gray = frame.mean(axis=-1)
    kw = {"cmap": "gray", "vmin": 0, "vmax": 1}
    row[0].imshow(gray if frame.shape[-1] == 1 else frame, **kw)
    if cols == 3:
      row[1].imshow(recon.mean(axis=-1) if recon.shape[-1] == 1 else recon, **kw)
      row[1].set_title(w.get("model_output", "reconstruction"), fontsize=8)
    row[-1].imshow(gray, **kw)
    im = row[-1].imshow(error, cmap="inferno", alpha=0.6, vmin=0, vmax=max(error.max(), 1e-6))
    fig.colorbar(im, ax=row[-1], fraction=0.046, pad=0.02)
    fired = _draw_patches(row[-1], w["patches"], gray.shape) if w.get("patches") else ""
    truth = "anomalous" if w["label"] else "normal"
    row[0].set_title(f"{w['clip']} frame {w['frame']} ({truth})", fontsize=8)
    what = "anomaly map" if "pixel_map" in w else "squared error"
    row[-1].set_title(f"{what} (score {w['score']:.3g}){fired}", fontsize=7 if fired else 8)
    for ax in row:
      ax.set_xticks([])
      ax.set_yticks([])
  return png_bytes(fig)


# --------------------------------------------------------------------------- tables


def _finite(x) -> bool:
  return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(x)


def format_ci(value, ci=None, digits: int = 3) -> str:
  """"0.912 [0.850, 0.960]": a metric and its bootstrap interval ("n/a" for an undefined
  metric; the value alone when there is no interval, e.g. the bootstrap was off)."""
  if not _finite(value):
    return "n/a"
  text = f"{value:.{digits}f}"
  if ci is not None and len(ci) == 2 and all(_finite(x) for x in ci):
    text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
  return text


def interval_note(summary: dict) -> str:
  """One sentence on how the intervals were computed (from the first group that has them)."""
  boot = next((m.get("bootstrap") for m in summary.values() if m.get("bootstrap")), None)
  if not boot:
    return "No intervals (bootstrap off)."
  return (f"[lo, hi]: {boot['level']:.0%} percentile interval from a bootstrap over test "
          f"{boot['unit']} ({boot['resamples']} resamples, seed {boot['seed']}; whole clips "
          f"resampled with replacement, the metric recomputed under the protocol; resamples "
          f"with one class only skipped).")


def per_type_rows(summary: dict, digits: int = 3) -> tuple[list[str], list[list[str]]]:
  """The group x anomaly type AUROC table: (groups having per-type metrics, rows of [type,
  anomalous frames of the type in the first such group, "AUROC [lo, hi]" per group ("—" where
  the group has no frame of the type)]). No rows when no clip carries frame types."""
  groups = [g for g, m in summary.items() if m.get("per_type")]
  types = sorted({t for g in groups for t in summary[g]["per_type"]})
  rows = []
  for t in types:
    first = next(summary[g]["per_type"][t] for g in groups if t in summary[g]["per_type"])
    rows.append([t, str(first["anomalous_frames"])] + [
        format_ci(summary[g]["per_type"][t]["auroc"], summary[g]["per_type"][t]["auroc_ci"],
                  digits) if t in summary[g]["per_type"] else "—" for g in groups])
  return groups, rows


def format_table(summary: dict) -> str:
  """A short plain-text table of the metrics groups (AUROC with its bootstrap interval), and
  one of AUROC per anomaly type and group where the test clips carry frame types."""
  def fmt(x):
    return "n/a" if not _finite(x) else f"{x:.3f}"

  head = (f"{'test clips':<18}{'clips':>6}{'frames':>8}{'anomalous':>11}  {'AUROC [95% CI]':<22}"
          f"{'AUPR':>6}{'EER':>8}  event AUC [95% CI]")
  lines = [head]
  for name, m in summary.items():
    line = (f"{name:<18}{m['clips']:>6}{m['frames']:>8}{m['anomalous_frames']:>11}  "
            f"{format_ci(m['auroc'], m.get('auroc_ci')):<22}{fmt(m['aupr']):>6}"
            f"{fmt(m['eer']):>8}  "
            f"{format_ci(m['events']['auc'], m['events'].get('auc_ci')):<22}")
    if "confusion" in m:
      c = m["confusion"]
      line += f" TP {c['TP']} FN {c['FN']} FP {c['FP']} TN {c['TN']}"
    lines.append(line.rstrip())
  groups, rows = per_type_rows(summary)
  if rows:
    width = max(12, *(len(r[0]) + 2 for r in rows))
    lines += ["", "AUROC [95% CI] per anomaly type: its anomalous frames against all normal "
              "frames of the group's clips",
              (f"{'type':<{width}}{'frames':>7}  " + "".join(f"{g:<24}" for g in groups)).rstrip()]
    lines += [(f"{r[0]:<{width}}{r[1]:>7}  " + "".join(f"{c:<24}" for c in r[2:])).rstrip()
              for r in rows]
  return "\n".join(lines)


def _csv(rows: list[list]) -> str:
  buf = io.StringIO()
  csv.writer(buf).writerows(rows)
  return buf.getvalue()


def _scores_csv(clips: list[dict], raw_name: str) -> str:
  rows = [["clip", "frame", "label", "anomaly_type", raw_name, "score", "flagged", *DISTRACTORS]]
  for clip in clips:
    flags, types = clip.get("distractors"), clip.get("types")
    for t in range(len(clip["score"])):
      score = clip["score"][t]
      flagged = "" if clip["flags"] is None or not math.isfinite(score) else int(clip["flags"][t])
      row_flags = [int(f) for f in flags[t]] if flags is not None else [""] * len(DISTRACTORS)
      raw = clip["raw"][t]
      rows.append([clip["name"], t, int(clip["labels"][t]),
                   "" if types is None else types[t],
                   f"{raw:.4f}" if math.isfinite(raw) else "",
                   f"{score:.4f}" if math.isfinite(score) else "", flagged, *row_flags])
  return _csv(rows)


def _per_video_csv(result: dict) -> str:
  rows = [["clip", "frames", "anomalous_frames", "auroc", "aupr", "eer", "peak_score",
           "flagged_frames", "has_distractors"]]
  stats = {v["name"]: v for v in result["metrics"]["all"]["per_video"]}
  for clip in result["clips"]:
    v = stats[clip["name"]]
    flagged = "" if clip["flags"] is None else int(clip["flags"].sum())
    rows.append([clip["name"], v["frames"], v["anomalous_frames"],
                 *("" if not math.isfinite(v[k]) else f"{v[k]:.4f}"
                   for k in ("auroc", "aupr", "eer")),
                 f"{np.nanmax(clip['score']):.4f}", flagged, int(clip["has_distractors"])])
  return _csv(rows)


# --------------------------------------------------------------------------- html


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}dl{display:grid;grid-template-columns:max-content auto;
gap:.2em 1em}dt{font-weight:600}code{background:#f5f5f5;padding:0 .2em}.note{color:#a05a00}
"""


def _img(png: bytes, alt: str) -> str:
  data = base64.b64encode(png).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[list]) -> str:
  head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                 for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(x) -> str:
  if isinstance(x, float):
    return "n/a" if not math.isfinite(x) else f"{x:.4g}"
  return str(x)


def _html(result: dict, images: dict[str, bytes], extra: dict) -> str:
  proto, threshold = result["protocol"], result["threshold"]
  groups = result["metrics"]
  summary_rows = []
  for name, m in groups.items():
    c = m.get("confusion", {})
    summary_rows.append([name, m["clips"], m["frames"], m["anomalous_frames"],
                         *(format_ci(m[k], m.get(f"{k}_ci")) for k in ("auroc", "aupr", "eer")),
                         format_ci(m["events"]["auc"], m["events"].get("auc_ci")),
                         *(c.get(k, "—") for k in ("TP", "FN", "FP", "TN"))])
  type_groups, type_rows = per_type_rows(groups)
  per_type = ""
  if type_rows:
    definition = next(m["per_type_definition"] for m in groups.values() if m.get("per_type"))
    untyped = groups.get("all", {}).get("untyped_anomalous_frames", 0)
    per_type = ("<h2>AUROC per anomaly type</h2>"
                + _table(["type", "frames", *type_groups], type_rows)
                + f"<p>{html.escape(definition)}; frames: the type's anomalous frames in "
                f"{html.escape(type_groups[0])}"
                + (f"; {untyped} anomalous frame(s) of unknown type left out" if untyped else "")
                + ".</p>")
  per_video = [[v["name"], v["frames"], v["anomalous_frames"], _fmt(v["auroc"]), _fmt(v["aupr"]),
                _fmt(v["eer"])] for v in groups["all"]["per_video"]]
  if threshold:
    thr = (f"<p>Threshold <code>{_fmt(threshold['value'])}</code> ({html.escape(threshold['method'])}, "
           f"{html.escape(json.dumps(threshold['params']))}; flag when {threshold['rule']}), "
           f"calibrated on normal validation data only: "
           f"{html.escape(json.dumps(json_safe(threshold['stats'])))}.</p>")
  else:
    thr = "<p>No threshold (no validation clips, or <code>score.threshold = none</code>).</p>"
  notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in groups["all"]["notes"])
  weights = result.get("term_weights")
  if weights:
    chosen = ("set in the config" if weights["source"] == "config" else
              f"chosen by grid search on {weights['val_clips']} labelled validation clips "
              f"(AUROC there {_fmt(weights['val_auroc'])}), never on test labels")
    thr += (f"<p>Score terms weighted {html.escape(json.dumps(weights['weights']))}: "
            f"{html.escape(chosen)}.</p>")
  mask = ""
  if result.get("mask"):
    mask = (f"<p>Scored inside the background masks of a <code>"
            f"{html.escape(result['mask']['method'])}</code> run (paper 000 §3.1.3): "
            f"{html.escape(json.dumps(json_safe(result['mask'])))}.</p>")
  proto_rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                       for k, v in proto.items())
  run = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(json.dumps(json_safe(v)))}</dd>"
                for k, v in extra.items() if k != "config")
  sections = [
      "<h2>Score curves</h2>", _img(images["overview.png"], "score curves of every test clip"),
      "<h2>ROC curves</h2>", _img(images["roc.png"], "frame and event ROC curves"),
  ]
  loc = result.get("localization")
  if loc:
    rows = [[name, m["clips"], m["frames"], format_ci(m["pixel_auroc"], m["pixel_auroc_ci"]),
             format_ci(m["pro"], m["pro_ci"])]
            for name, m in [("all", loc), *sorted(loc["per_type"].items())]]
    sections += ["<h2>Localisation</h2>",
                 "<p>The method's anomaly maps against the ground-truth pixel masks: pixel "
                 f"AUROC and PRO (per-region overlap, area up to FPR {loc['max_fpr']:g}, "
                 "normalised); per type with every normal clip; 95 % intervals from a "
                 "bootstrap over clips.</p>",
                 _table(["clips", "count", "frames", "pixel AUROC [95% CI]", "PRO [95% CI]"],
                        rows)]
  if "worst_frames.png" in images:
    output = result["worst_frames"][0].get("model_output")
    shown = (f"the model's {html.escape(output)} and where it differs" if output
             else "and the method's anomaly map")
    sections += ["<h2>Worst frames</h2>",
                 f"<p>The highest-scoring frame of the highest-scoring clips, {shown}.</p>",
                 _img(images["worst_frames.png"], "worst frames with error heat maps")]
  return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jaxvad report</title>
<style>{_CSS}</style></head><body>
<h1>jaxvad evaluation report</h1>
<h2>Metrics</h2>
{_table(["clips", "count", "frames", "anomalous", "AUROC [95% CI]", "AUPR [95% CI]",
         "EER [95% CI]", "event AUC [95% CI]", "TP", "FN", "FP", "TN"], summary_rows)}
<p>{html.escape(interval_note(groups))}</p>
{per_type}
{thr}{mask}{notes}
<h2>Protocol</h2><dl>{proto_rows}</dl>
{"".join(sections)}
<h2>Per clip</h2>
<p>One clip's own metrics (no interval: the bootstrap resamples whole clips).</p>
{_table(["clip", "frames", "anomalous", "AUROC", "AUPR", "EER"], per_video)}
<h2>Run</h2><dl>{run}</dl>
</body></html>
"""


# --------------------------------------------------------------------------- entry point


def write_report(out_dir: str | os.PathLike, result: dict, *,
                 extra: dict | None = None) -> pathlib.Path:
  """Writes every file listed in the module docstring into `out_dir`.

  Args:
    out_dir: report folder (created).
    result: from `evaluate.evaluate_clips`.
    extra: more fields for metrics.json and the report's run section (config, timings, ...).

  Returns:
    The report folder.
  """
  out = pathlib.Path(out_dir)
  ensure_dir(out / "plots", what="report folder")
  extra = extra or {}
  payload = {"protocol": result["protocol"], "threshold": result["threshold"],
             "metrics": result["metrics"], "score": result.get("score_spec"),
             "term_weights": result.get("term_weights"), "mask": result.get("mask"),
             "localization": result.get("localization"), **extra}
  write_atomic(out / "metrics.json", json.dumps(json_safe(payload), indent=2) + "\n")
  raw_name = (result.get("score_spec") or {}).get("name", "raw")
  write_atomic(out / "scores.csv", _scores_csv(result["clips"], raw_name))
  write_atomic(out / "per_video.csv", _per_video_csv(result))

  threshold = result["threshold"]["value"] if result["threshold"] else None
  for clip in result["clips"]:
    if len(clip["score"]) > 1:   # a still image (one-frame clip) has no curve
      name = clip["name"].replace("/", "__")   # MVTec's <defect>/<image>
      write_atomic(out / "plots" / f"{name}.png", _score_curve_png(clip, threshold))
  images = {"overview.png": _overview_png(result["clips"], threshold),
            "roc.png": _roc_png(result)}
  if result.get("worst_frames"):
    images["worst_frames.png"] = _worst_frames_png(result["worst_frames"])
  for name, png in images.items():
    write_atomic(out / name, png)
  write_atomic(out / "report.html", _html(result, images, extra))
  return out

"""Score clips with a trained method and evaluate them under a named protocol."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from jaxvad import methods, metrics
from jaxvad import train as train_lib
from jaxvad.data import pipeline
from jaxvad.data.datasets import Clip


def protocol(config) -> dict:
  """The evaluation protocol, written into every result file so numbers stay comparable."""
  return {
      "score": "anomaly score = -PSNR(reconstruction, frame) in dB; higher = more anomalous",
      "normalisation": "none: raw scores pooled over all clips",
      "auroc": "micro: one ROC over the pooled frames of all clips",
      "smoothing": f"centred moving average, window {config.score.smoothing}",
      "frames_dropped_at_start": 0,
      "threshold": "none (threshold-free AUROC/AUPR)",
  }


def make_score_fn(method_name: str, mesh=None) -> Callable:
  """The method's `score_step`, jitted with the window batch split over the mesh."""
  mesh = mesh if mesh is not None else train_lib.make_mesh()
  fn = jax.jit(methods.get(method_name).score_step,
               in_shardings=(train_lib.replicated(mesh), train_lib.batch_sharding(mesh)))
  fn.mesh = mesh
  return fn


def score_clip(score_fn: Callable, state, frames: np.ndarray, *, window: int,
               batch_size: int) -> np.ndarray:
  """Per-frame PSNR of one clip: non-overlapping windows tile it, each frame scored once.

  Args:
    score_fn: from `make_score_fn`.
    state: the trained state.
    frames: uint8 `[T, H, W, C]`, T >= window.
    window: frames per window (the model's training window).
    batch_size: windows per call; the last batch is padded so only one shape is compiled.

  Returns:
    float64 `[T]` PSNR per frame (higher = better reconstructed = more normal).
  """
  starts, owner = pipeline.eval_windows(len(frames), window=window)
  per_device = -(-batch_size // score_fn.mesh.size)
  batch_size = per_device * score_fn.mesh.size  # divisible by the device count
  psnr = []
  for i in range(0, len(starts), batch_size):
    chunk = starts[i:i + batch_size]
    idx = chunk[:, None] + np.arange(window)
    windows = frames[idx]
    pad = batch_size - len(chunk)
    if pad:
      windows = np.concatenate([windows, np.repeat(windows[-1:], pad, axis=0)])
    out = score_fn(state, {"frames": windows})
    psnr.append(np.asarray(out["psnr"], np.float64)[:len(chunk)])
  psnr = np.concatenate(psnr)
  return psnr[owner[:, 0], owner[:, 1]]


def evaluate_clips(config, state, clips: Sequence[Clip], *, score_fn=None,
                   progress: Callable | None = None) -> dict:
  """Scores every clip and computes frame-level metrics, overall and split by distractors.

  Returns:
    {"protocol", "metrics": {"all", "no_distractors", "with_distractors"}, "clips": [...]} where
    each clip entry has name, labels, psnr, score (smoothed anomaly score), distractor flag.
  """
  score_fn = score_fn or make_score_fn(config.method)
  results = []
  iterator = progress(clips) if progress else clips
  for clip in iterator:
    if clip.labels is None:
      raise ValueError(f"clip {clip.name} has no labels: it cannot be evaluated")
    psnr = score_clip(score_fn, state, clip.frames, window=config.data.window,
                      batch_size=config.score.batch_size)
    score = metrics.moving_average(-psnr, window=config.score.smoothing)
    has_distractors = bool(clip.meta.get("distractors")) if clip.meta else False
    results.append({"name": clip.name, "labels": clip.labels.astype(bool), "psnr": psnr,
                    "score": score, "has_distractors": has_distractors,
                    "distractors": clip.distractors})
  groups = {
      "all": results,
      "no_distractors": [r for r in results if not r["has_distractors"]],
      "with_distractors": [r for r in results if r["has_distractors"]],
  }
  summary = {}
  for name, group in groups.items():
    if group:
      summary[name] = metrics.frame_metrics(np.concatenate([r["labels"] for r in group]),
                                            np.concatenate([r["score"] for r in group]))
      summary[name]["clips"] = len(group)
  return {"protocol": protocol(config), "metrics": summary, "clips": results}

"""Score clips with a trained method and evaluate them under a named protocol.

Order of work: raw per-frame PSNR of every clip (`score_clip`) -> the config's protocol
(`jaxvad.protocol`: drop, orient, smooth, normalise) -> a threshold calibrated on the normal
validation clips processed the same way (`jaxvad.thresholds`) -> frame and event metrics per
group of test clips -> reconstructions of the worst frames for the report's heat maps.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from jaxvad import config as config_lib
from jaxvad import methods
from jaxvad import protocol as protocol_lib
from jaxvad import thresholds
from jaxvad import train as train_lib
from jaxvad.data import pipeline
from jaxvad.data.datasets import Clip

# What the methods' score_step returns as the raw score (protocol.Protocol.score).
RAW_SCORE = "PSNR(reconstruction, frame) in dB"


def protocol_for(config) -> protocol_lib.Protocol:
  """The config's protocol preset with its smoothing window; written into every result.

  A frame predictor's protocol drops at least the `window - 1` frames it cannot predict."""
  proto = protocol_lib.get(config.score.protocol, score=RAW_SCORE,
                           smoothing=config.score.smoothing)
  if predicts_last(config.method):  # the first window - 1 frames have no prediction
    proto = dataclasses.replace(proto, drop_first=max(proto.drop_first, config.data.window - 1))
  return proto


def predicts_last(method_name: str) -> bool:
  """Whether the method predicts only the last frame of each window (a frame predictor)."""
  return bool(getattr(methods.get(method_name), "PREDICTS_LAST", False))


def make_score_fn(method_name: str, mesh=None, *, step: str = "score_step") -> Callable:
  """The method's `score_step` (or another per-window step, e.g. "cam_step"), jitted with the
  window batch split over the mesh."""
  mesh = mesh if mesh is not None else train_lib.make_mesh()
  fn = jax.jit(getattr(methods.get(method_name), step),
               in_shardings=(train_lib.replicated(mesh), train_lib.batch_sharding(mesh)))
  fn.mesh = mesh
  fn.last_only = predicts_last(method_name)
  return fn


def _run_windows(score_fn: Callable, state, frames: np.ndarray, starts: np.ndarray, *,
                 window: int, batch_size: int, key: str) -> np.ndarray:
  """`score_fn(...)[key]` of the windows at `starts`, batched; the last batch is padded so only
  one shape is compiled. Returns the stacked outputs, one row per start."""
  per_device = -(-batch_size // score_fn.mesh.size)
  batch_size = per_device * score_fn.mesh.size  # divisible by the device count
  out = []
  for i in range(0, len(starts), batch_size):
    chunk = starts[i:i + batch_size]
    windows = frames[chunk[:, None] + np.arange(window)]
    pad = batch_size - len(chunk)
    if pad:
      windows = np.concatenate([windows, np.repeat(windows[-1:], pad, axis=0)])
    out.append(np.asarray(score_fn(state, {"frames": windows})[key])[:len(chunk)])
  return np.concatenate(out)


def clip_outputs(step_fn: Callable, state, frames: np.ndarray, *, window: int,
                 batch_size: int, key: str) -> np.ndarray:
  """One per-frame output of a method step for every frame of a clip.

  Non-overlapping windows tile the clip (plus one aligned to its end), so each frame's output
  comes from exactly one window that saw it.

  Args:
    step_fn: a jitted step `(state, {"frames": uint8 [B, window, H, W, C]}) -> dict` whose
      `key` output is per frame, `[B, window, ...]` (e.g. from `make_score_fn`).
    state: the trained state.
    frames: uint8 `[T, H, W, C]`, T >= window.
    window: frames per window (the model's training window).
    batch_size: windows per call.
    key: which output to collect.

  Returns:
    `[T, ...]`, frame t's output; NaN for the first `window - 1` frames of a step that
    predicts only each window's last frame (`step_fn.last_only`, set by `make_score_fn`).
  """
  starts, owner = pipeline.eval_windows(len(frames), window=window,
                                        last_only=getattr(step_fn, "last_only", False))
  out = _run_windows(step_fn, state, frames, starts, window=window, batch_size=batch_size,
                     key=key)
  result = out[owner[:, 0], owner[:, 1]]
  if (owner[:, 0] < 0).any():   # frames no window predicts
    result = result.astype(np.promote_types(result.dtype, np.float32))
    result[owner[:, 0] < 0] = np.nan
  return result


def score_clip(score_fn: Callable, state, frames: np.ndarray, *, window: int,
               batch_size: int) -> np.ndarray:
  """Per-frame PSNR of one clip (`clip_outputs` of the "psnr" output).

  Returns:
    float64 `[T]` PSNR per frame (higher = better reconstructed = more normal).
  """
  return clip_outputs(score_fn, state, frames, window=window, batch_size=batch_size,
                      key="psnr").astype(np.float64)


def reconstruct(score_fn: Callable, state, frames: np.ndarray, frame_idx: Sequence[int], *,
                window: int, batch_size: int) -> np.ndarray:
  """The model's reconstructions of chosen frames, from the same windows `score_clip` used.

  Returns:
    float32 `[K, H, W, C]` in [0, 1], one per index in `frame_idx`.
  """
  starts, owner = pipeline.eval_windows(len(frames), window=window,
                                        last_only=getattr(score_fn, "last_only", False))
  rows = owner[np.asarray(frame_idx, np.int64)]
  if (rows[:, 0] < 0).any():
    raise ValueError(f"frames {list(np.asarray(frame_idx)[rows[:, 0] < 0])} come before the "
                     f"first full window of {window} frames: the model does not predict them")
  recon = _run_windows(score_fn, state, frames, starts[rows[:, 0]], window=window,
                       batch_size=batch_size, key="recon")
  return np.clip(recon[np.arange(len(rows)), rows[:, 1]], 0.0, 1.0).astype(np.float32)


def calibrate_threshold(config, state, val_clips: Sequence[Clip], *, score_fn: Callable,
                        progress: Callable | None = None) -> thresholds.Threshold | None:
  """The decision threshold from normal validation clips under the config's protocol.

  Only normal validation frames are used (labelled anomalous frames, if any, are left out);
  test data never is. None when `score.threshold = "none"` or there are no validation clips.
  """
  method = config.score.threshold
  if method == "none" or not val_clips:
    return None
  videos = [protocol_lib.Video(c.name, score_clip(score_fn, state, c.frames,
                                                  window=config.data.window,
                                                  batch_size=config.score.batch_size), c.labels)
            for c in (progress(val_clips, "score val") if progress else val_clips)]
  processed = protocol_lib.apply_protocol(protocol_for(config), videos)
  scores = np.concatenate([v.scores for v in processed])
  labels = np.concatenate([np.zeros(v.scores.size, bool) if v.labels is None else v.labels
                           for v in processed])
  param = {config_lib.THRESHOLD_PARAMS[method]: config.score.threshold_param}
  threshold = thresholds.calibrate(method, scores, val_labels=labels, **param)
  return dataclasses.replace(threshold, stats={**threshold.stats, "val_clips": len(val_clips)})


def _pad_dropped(scores: np.ndarray, drop: int) -> np.ndarray:
  """Processed scores back on the clip's frame axis: NaN where the protocol dropped frames."""
  return np.concatenate([np.full(drop, np.nan), scores])


def evaluate_clips(config, state, clips: Sequence[Clip], *, val_clips: Sequence[Clip] = (),
                   score_fn=None, progress: Callable | None = None) -> dict:
  """Scores every clip and computes frame and event metrics, overall and split by distractors.

  Args:
    config: the run's config (`score.protocol`, `score.threshold`, ...).
    state: the trained state.
    clips: labelled test clips.
    val_clips: normal validation clips to calibrate the threshold on (none: no threshold).
    score_fn: from `make_score_fn` (built when None).
    progress: `progress(clips, description)` wraps each clip iterable (a progress bar).

  Returns:
    {"protocol", "threshold" (record or None), "metrics": {group: `protocol.evaluate` result +
    "clips"} for groups "all", "no_distractors", "with_distractors" (the ones with clips),
    "clips": [{name, labels, psnr, score (processed, NaN on dropped frames), flags (score >=
    threshold, or None), has_distractors, distractors}], "worst_frames": [{clip, frame, score,
    frame_image uint8 [H, W, C], recon float [H, W, C] in [0, 1], model_output: "prediction"
    for a frame predictor, else "reconstruction"}]}.
  """
  score_fn = score_fn or make_score_fn(config.method)
  wrap = progress or (lambda xs, desc: xs)
  proto = protocol_for(config)
  threshold = calibrate_threshold(config, state, val_clips, score_fn=score_fn, progress=wrap)

  results, videos = [], []
  for clip in wrap(clips, "score test"):
    if clip.labels is None:
      raise ValueError(f"clip {clip.name} has no labels: it cannot be evaluated")
    psnr = score_clip(score_fn, state, clip.frames, window=config.data.window,
                      batch_size=config.score.batch_size)
    video = protocol_lib.Video(clip.name, psnr, clip.labels.astype(bool))
    score = _pad_dropped(protocol_lib.apply_protocol(proto, [video])[0].scores, proto.drop_first)
    with np.errstate(invalid="ignore"):
      flags = None if threshold is None else score >= threshold.value
    videos.append(video)
    results.append({"name": clip.name, "labels": video.labels, "psnr": psnr, "score": score,
                    "flags": flags,
                    "has_distractors": bool(clip.meta.get("distractors")) if clip.meta else False,
                    "distractors": clip.distractors})

  groups = {"all": range(len(results)),
            "no_distractors": [i for i, r in enumerate(results) if not r["has_distractors"]],
            "with_distractors": [i for i, r in enumerate(results) if r["has_distractors"]]}
  summary = {}
  for name, members in groups.items():
    if len(members):
      summary[name] = protocol_lib.evaluate(proto, [videos[i] for i in members],
                                            threshold=threshold)
      summary[name]["clips"] = len(members)

  return {"protocol": proto.to_dict(),
          "threshold": None if threshold is None else threshold.to_dict(),
          "metrics": summary, "clips": results,
          "worst_frames": _worst_frames(config, state, clips, results, score_fn=score_fn)}


def _worst_frames(config, state, clips, results, *, score_fn) -> list[dict]:
  """The highest-scoring frame of each of the `score.worst_frames` highest-scoring clips."""
  count = config.score.worst_frames
  output_name = "prediction" if predicts_last(config.method) else "reconstruction"
  peaks = [(np.nanmax(r["score"]), i, int(np.nanargmax(r["score"])))
           for i, r in enumerate(results) if np.isfinite(r["score"]).any()]
  worst = []
  for score, i, t in sorted(peaks, reverse=True)[:count]:
    recon = reconstruct(score_fn, state, clips[i].frames, [t], window=config.data.window,
                        batch_size=config.score.batch_size)[0]
    worst.append({"clip": results[i]["name"], "frame": t, "score": float(score),
                  "label": bool(results[i]["labels"][t]), "frame_image": clips[i].frames[t],
                  "recon": recon, "model_output": output_name})
  return worst

"""Live scoring (`jaxvad score --stream`): a camera, a stream URL or a growing video file,
scored as frames arrive.

A reader thread grabs frames into a bounded ring buffer (`RingBuffer`); when scoring falls
behind, the oldest frames are dropped and each one is reported. The scoring loop takes what
has arrived, forms the windows that are complete, scores them in one batch and writes one
JSON line per frame. Windows are those of `jaxvad score` (`jaxvad.exported.window_tiling`):
a frame predictor scores every frame from the window ending at it; a reconstructor scores
each block of `window` frames once it is complete, and at the end of the stream the frames
left over from a window ending at the last frame. So the raw scores of a replayed file equal
`jaxvad score`'s.

What cannot be done live is done with the normal validation clips instead (`calibrate`):
several score terms are standardised by the validation statistics (not the video's own);
smoothing is a trailing mean of the last `smoothing` scores (a centred one needs the future);
and the alarm threshold is calibrated on validation scores processed the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from typing import Callable, Iterator, Sequence

import jax
import numpy as np

from jaxvad import config as config_lib
from jaxvad import exported, methods, sharding
from jaxvad.errors import ConfigError, DataError
from jaxvad.evaluation import thresholds

__all__ = ["trailing_mean", "calibrate", "RingBuffer", "LiveScorer", "open_source",
           "capture_frames", "run"]


# --------------------------------------------------------------------------- calibration


def trailing_mean(scores, *, window: int) -> np.ndarray:
  """Causal moving average: each frame's mean over itself and the `window - 1` frames before
  it (fewer at the start); NaN frames are skipped (and stay NaN).

  Args:
    scores: float `[T]`.
    window: frames averaged (>= 1).

  Returns:
    float64 `[T]`.
  """
  scores = np.asarray(scores, np.float64)
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  finite = np.isfinite(scores)
  total = np.cumsum(np.where(finite, scores, 0.0))
  count = np.cumsum(finite)
  lag = lambda c: np.concatenate([np.zeros(window), c])[:len(c)]   # noqa: E731
  out = (total - lag(total)) / np.maximum(count - lag(count), 1)
  out[~finite] = np.nan
  return out


def calibrate(scorer, val_clips: Sequence, *, threshold: str, threshold_param: float,
              smoothing: int, progress: Callable | None = None) -> dict:
  """What live scoring takes from the normal validation clips.

  Args:
    scorer: the run's `evaluate.Scorer`.
    val_clips: normal validation clips (`datasets.Clip`).
    threshold: a `thresholds` method (`score.threshold`; "none" and "grid_search", which
      needs labels, fall back to mean_k_std with k = 3).
    threshold_param: its parameter.
    smoothing: trailing-mean window in frames.
    progress: `progress(clips, description)` wraps the clip iterable.

  Returns:
    JSON-ready {"smoothing", "term_stats" ({term: [mean, std]} of the oriented terms, or
    None for one term), "threshold" (`Threshold.to_dict`), "val_clips", "rule"}.

  Raises:
    DataError: no validation clip to calibrate on.
  """
  if not val_clips:
    raise DataError("no normal validation clips to calibrate the live threshold on")
  if threshold not in config_lib.THRESHOLD_PARAMS:
    threshold, threshold_param = "mean_k_std", 3.0
  spec = scorer.spec
  wrap = progress or (lambda xs, desc: xs)
  per_clip = [scorer.terms(c.frames, c) for c in wrap(val_clips, "calibrate")]
  stats = None
  if spec.combined:
    stats = {}
    for t in spec.terms:
      x = np.concatenate([np.asarray(v[t.name], np.float64) for v in per_clip])
      x = x[np.isfinite(x)] * (1 if t.higher_is_anomalous else -1)
      stats[t.name] = [float(x.mean()), float(x.std())]
  sign = 1.0 if spec.higher_is_anomalous else -1.0
  scores = np.concatenate([
      trailing_mean(sign * exported.combine_terms(_terms(spec), v, stats=stats), window=smoothing)
      for v in per_clip])
  calibrated = thresholds.calibrate(
      threshold, scores[np.isfinite(scores)],
      **{config_lib.THRESHOLD_PARAMS[threshold]: threshold_param})
  return {"smoothing": int(smoothing), "term_stats": stats,
          "threshold": calibrated.to_dict(), "val_clips": len(val_clips),
          "rule": "alarm when the trailing mean of the oriented score (higher = anomalous; "
                  "several terms standardised by term_stats) >= threshold.value"}


def _terms(spec) -> list[dict]:
  return [dataclasses.asdict(t) for t in spec.terms]


# --------------------------------------------------------------------------- frames in


class RingBuffer:
  """A bounded, thread-safe buffer of `(index, timestamp, frame)`: when full, a new frame
  pushes out the oldest, whose index goes to `dropped`; the indices of frames the source
  skipped go to `skipped` (`skip`)."""

  def __init__(self, capacity: int):
    if capacity < 1:
      raise ValueError(f"capacity must be >= 1, got {capacity}")
    self._items = collections.deque()
    self.capacity = int(capacity)
    self._cond = threading.Condition()
    self.dropped: list[int] = []
    self.skipped: list[int] = []
    self.closed = False

  def put(self, item) -> None:
    with self._cond:
      if len(self._items) == self.capacity:
        self.dropped.append(self._items.popleft()[0])
      self._items.append(item)
      self._cond.notify()

  def skip(self, index: int) -> None:
    with self._cond:
      self.skipped.append(index)

  def close(self) -> None:
    with self._cond:
      self.closed = True
      self._cond.notify()

  def take_all(self, timeout: float) -> tuple[list, list[int], list[int]]:
    """Everything buffered (waiting up to `timeout` s for a first frame), and the indices
    dropped and skipped since the last call."""
    with self._cond:
      if not self._items and not self.closed:
        self._cond.wait(timeout)
      out = list(self._items), self.dropped, self.skipped
      self._items.clear()
      self.dropped, self.skipped = [], []
      return out

  @property
  def done(self) -> bool:
    with self._cond:
      return self.closed and not self._items


def open_source(source: str):
  """Opens a live source with OpenCV.

  Args:
    source: a camera index ("0"), a URL ("rtsp://...", "http://...") or a file.

  Returns:
    The opened `cv2.VideoCapture`.

  Raises:
    DataError: it cannot be opened (naming it).
  """
  import cv2
  target = int(source) if source.isdigit() else source
  cap = cv2.VideoCapture(target)
  if not cap.isOpened():
    kind = "camera" if isinstance(target, int) else "stream or file"
    raise DataError(f"cannot open the {kind} {source!r}: check the camera index, the URL or "
                    f"the path (OpenCV's FFmpeg must support its format)")
  return cap


def capture_frames(source: str, *, pace: bool = False, follow: bool = False,
                   idle_timeout: float = 5.0, poll: float = 0.05,
                   stop: threading.Event | None = None) -> Iterator[tuple[int, np.ndarray]]:
  """`(source frame number, BGR frame)` from an OpenCV source until it ends.

  Args:
    source: camera index, URL or video file (`open_source`).
    pace: deliver a file's frames at its frame rate, as a camera would (replays).
    follow: a file that is still being written: at its end, wait for more frames (reopening
      it) until none came for `idle_timeout` s. Cameras and URLs always reconnect so.
    idle_timeout: seconds without a new frame after which the stream has ended.
    poll: seconds between retries.
    stop: set to stop early.

  Returns:
    An iterator of `(number, frame)`: the frame's number in the source (counted here, so
    frames a camera skipped itself are not seen) and the BGR frame.
  """
  import cv2
  is_file = not source.isdigit() and "://" not in source
  retry = follow or not is_file
  cap = open_source(source)
  fps = cap.get(cv2.CAP_PROP_FPS) if pace else 0
  period = 1.0 / fps if fps and fps > 0 else 0.0
  number, last_new, start = 0, time.monotonic(), time.monotonic()
  try:
    while stop is None or not stop.is_set():
      ok, frame = cap.read()
      if ok:
        if period:
          time.sleep(max(0.0, start + number * period - time.monotonic()))
        yield number, frame
        number += 1
        last_new = time.monotonic()
        continue
      if not retry or time.monotonic() - last_new > idle_timeout:
        return
      time.sleep(poll)
      cap.release()   # reopen: a growing file's new frames, a dropped connection
      cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
      if is_file and cap.isOpened():
        cap.set(cv2.CAP_PROP_POS_FRAMES, number)
  finally:
    cap.release()


# --------------------------------------------------------------------------- scoring


class LiveScorer:
  """Scores frames as they come, with `jaxvad score`'s windows (module docstring).

  Args:
    scorer: the run's `evaluate.Scorer` (its pure step and spec are used).
    calibration: `calibrate`'s result, or None (no term statistics: several terms cannot be
      combined; no alarms unless `threshold` is given).
    threshold: alarm when the smoothed anomaly score >= this (overrides the calibration's).
    smoothing: trailing-mean window (default: the calibration's, else 1).
    batch_size: most windows per call (batches are padded to powers of two up to it, so
      few shapes compile and one frame does not pay for a full batch).
    device: where to score (default: the first device).
  """

  def __init__(self, scorer, *, calibration: dict | None = None, threshold: float | None = None,
               smoothing: int | None = None, batch_size: int = 8, device=None):
    self.spec, self.config = scorer.spec, scorer.config
    if self.spec.combined and calibration is None:
      raise ConfigError(f"method {self.config.method!r} combines {len(self.spec.terms)} score "
                        "terms, which live scoring standardises by the normal validation clips: "
                        "keep the run's dataset (data.root) where it was trained")
    self.method = methods.get(self.config.method)
    self.window = self.config.data.window
    self.state = scorer.state
    mesh = sharding.make_mesh([device or jax.devices()[0]])
    self.fn = sharding.jit_window_step(scorer.step, mesh)
    self.max_batch = 1 << max(0, int(batch_size) - 1).bit_length()
    self.stats = calibration["term_stats"] if calibration else None
    self.threshold = (threshold if threshold is not None else
                      calibration["threshold"]["value"] if calibration else None)
    self.smoothing = int(smoothing or (calibration["smoothing"] if calibration else 1))
    self.sign = 1.0 if self.spec.higher_is_anomalous else -1.0
    self.frames: list[np.ndarray] = []     # the frames kept for windows still to come
    self.meta: list[tuple[int, float]] = []   # their (index, arrival time)
    self.inputs: list[dict] = []           # their per-frame inputs (`_update_inputs`)
    self.first = 0                         # stream position of self.frames[0]
    self.next_unscored = 0                 # stream position of the first frame not scored
    self.recent = collections.deque(maxlen=self.smoothing)   # trailing anomaly scores
    self.latencies: list[float] = []
    self.scored = 0

  def warm_up(self, frame_shape) -> None:
    """Compiles every batch size live scoring uses, so the first frames' latency is not
    compilation."""
    window = [np.zeros(frame_shape, np.uint8)] * self.window
    inputs = self.method.frame_inputs(self.config, np.stack(window), None) \
        if self.method.frame_inputs else {}
    size = 1
    while size <= self.max_batch:
      batch = {"frames": np.zeros((size, self.window, *frame_shape), np.uint8),
               **{k: np.stack([v] * size) for k, v in inputs.items()}}
      jax.block_until_ready(self.fn(self.state, batch))
      size *= 2

  def _update_inputs(self) -> None:
    """The method's per-frame inputs of the frames that have none yet, computed once per
    frame with the frame before it as context (a frame's inputs depend on it and the one
    before at most: flow from t - 1), so they equal the whole clip's."""
    if self.method.frame_inputs is None or len(self.inputs) == len(self.frames):
      return
    new = len(self.inputs)
    lo = max(new - 1, 0)
    rows = self.method.frame_inputs(self.config, np.stack(self.frames[lo:]), None)
    self.inputs += [{k: v[new - lo + i] for k, v in rows.items()}
                    for i in range(len(self.frames) - new)]

  def _window(self, start: int) -> dict[str, np.ndarray]:
    """The frames and inputs of the window at stream position `start`."""
    i = start - self.first
    out = {"frames": np.stack(self.frames[i:i + self.window])}
    if self.method.frame_inputs is not None:
      inputs = self.inputs[i:i + self.window]
      out.update({k: np.stack([x[k] for x in inputs]) for k in inputs[0]})
    return out

  def _score(self, starts: list[int]) -> list[dict[str, np.ndarray]]:
    """Term outputs `[T_w]` of the windows at the stream positions `starts`."""
    out = []
    for i in range(0, len(starts), self.max_batch):
      chunk = starts[i:i + self.max_batch]
      size = 1 << (len(chunk) - 1).bit_length()
      windows = [self._window(s) for s in chunk]
      windows += windows[-1:] * (size - len(chunk))   # padding: few shapes compile
      batch = {k: np.stack([x[k] for x in windows]) for k in windows[0]}
      result = jax.device_get(self.fn(self.state, batch))
      names = [t.name for t in self.spec.terms]
      out += [{k: np.asarray(result[k][j], np.float64) for k in names}
              for j in range(len(chunk))]
    return out

  def _record(self, position: int, terms: dict[str, float] | None, now: float) -> dict:
    index, arrived = self.meta[position - self.first]
    record = {"index": index, "timestamp": round(arrived, 6), "raw": None, "score": None,
              "alarm": None}
    if terms is None:
      record["unscored"] = "before the first full window"
      return record
    raw = float(exported.combine_terms(_terms(self.spec), {k: np.array([v]) for k, v in
                                                          terms.items()}, stats=self.stats)[0])
    self.recent.append(self.sign * raw)
    score = float(np.mean(self.recent))
    latency = now - arrived
    self.latencies.append(latency)
    self.scored += 1
    record.update(raw=raw, score=score, latency_ms=round(1000 * latency, 3),
                  alarm=None if self.threshold is None else bool(score >= self.threshold))
    if self.spec.combined:
      record["terms"] = {k: float(v) for k, v in terms.items()}
    return record

  def push(self, items: Sequence[tuple[int, float, np.ndarray]], *,
           final: bool = False) -> list[dict]:
    """Adds frames `(index, arrival time, uint8 [H, W, C])` and scores every frame whose
    window is complete (`final`: the end of the stream, the leftover frames too).

    Returns:
      One record per frame now decided, in order: {"index", "timestamp", "raw", "score",
      "alarm", "latency_ms"}, plus "terms" ({term: value}) for a combined score ("unscored"
      instead for frames no window scores).
    """
    self.add(items)
    return self.decide(final=final)

  def add(self, items: Sequence[tuple[int, float, np.ndarray]]) -> None:
    """Keeps frames `(index, arrival time, uint8 [H, W, C])` for scoring (`decide`)."""
    for index, arrived, frame in items:
      self.frames.append(frame)
      self.meta.append((index, arrived))

  def decide(self, *, final: bool = False) -> list[dict]:
    """Scores every kept frame whose window is complete (`push`)."""
    end = self.first + len(self.frames)   # stream positions [first, end) are kept
    w = self.window
    plan = []   # (window start, [(stream position, offset in its output)])
    if self.spec.last_only:
      for t in range(self.next_unscored, end):
        plan.append((t - w + 1, [(t, 0)]) if t >= w - 1 else (None, [(t, None)]))
    else:
      t = self.next_unscored
      while t + w <= end:
        plan.append((t, [(t + k, k) for k in range(w)]))
        t += w
      if final and t < end:
        if end >= w:   # a window ending at the last frame owns the frames left over
          plan.append((end - w, [(p, p - (end - w)) for p in range(t, end)]))
        else:
          plan += [(None, [(p, None)]) for p in range(t, end)]
    self._update_inputs()
    outputs = iter(self._score([s for s, _ in plan if s is not None]))
    now = time.time()
    records = []
    for start, owned in plan:
      out = next(outputs) if start is not None else None
      for position, offset in owned:
        terms = None if out is None else {k: v[offset] for k, v in out.items()}
        records.append(self._record(position, terms, now))
      self.next_unscored = owned[-1][0] + 1
    keep = max(self.next_unscored - w, 0) if not final else end   # history for next windows
    if keep > self.first:
      del self.frames[:keep - self.first], self.meta[:keep - self.first]
      del self.inputs[:keep - self.first]
      self.first = keep
    return records

  def summary(self, wall_s: float) -> dict:
    """Frames scored, frames/s and latency percentiles (ms) so far."""
    lat = np.asarray(self.latencies) * 1000
    return {"scored": self.scored, "frames_per_s": self.scored / wall_s if wall_s > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else None}


def run(live: LiveScorer, frames: Iterator[tuple[int, np.ndarray]], prepare: Callable,
        write: Callable[[str], None], *, buffer: int = 64, poll: float = 0.2) -> dict:
  """Reads `frames` on a thread into a `RingBuffer` and scores them with `live` as they come,
  until the source ends or Ctrl-C.

  Args:
    live: the `LiveScorer`.
    frames: `(source frame number, raw frame)` pairs (`capture_frames`).
    prepare: raw frame -> uint8 `[H, W, C]` as the run scores (resize, crop, colour).
    write: called with each JSON line.
    buffer: ring-buffer capacity in frames.
    poll: seconds the scoring loop waits for frames.

  Returns:
    {"frames" (every frame the source numbered: scored + unscored + dropped), "scored",
    "unscored", "dropped_buffer", "dropped_source", "alarms",
    "frames_per_s", "latency_ms_p50", "latency_ms_p95", "wall_s", "interrupted",
    "source_error"}.
  """
  ring, stop = RingBuffer(buffer), threading.Event()
  counts = collections.Counter()
  errors: list[BaseException] = []

  def read():
    expected = 0
    try:
      for number, raw in frames:
        if stop.is_set():
          break
        if number > expected:   # the source skipped frames: each is reported
          for missing in range(expected, number):
            ring.skip(missing)
        expected = number + 1
        ring.put((number, time.time(), prepare(raw)))
    except Exception as e:   # noqa: BLE001 -- reported by the scoring loop
      errors.append(e)
    finally:
      ring.close()

  def emit(record):
    write(json.dumps(record))
    counts["alarms"] += bool(record.get("alarm"))
    counts["unscored"] += "unscored" in record

  def dropped(index, why):
    emit({"index": index, "timestamp": round(time.time(), 6), "raw": None, "score": None,
          "alarm": None, "dropped": why})
    counts[f"dropped_{why}"] += 1

  def settle(items, lost, skipped, *, final=False):
    for index in lost:
      dropped(index, "buffer")
    for index in skipped:
      dropped(index, "source")
    live.add(items)   # first, so a Ctrl-C while scoring loses no frame
    for record in live.decide(final=final):
      emit(record)

  reader = threading.Thread(target=read, daemon=True, name="jaxvad-capture")
  start, interrupted = time.monotonic(), False
  reader.start()
  try:
    while not ring.done:
      settle(*ring.take_all(poll))
  except KeyboardInterrupt:
    interrupted = True
  finally:
    stop.set()
  settle(*ring.take_all(0), final=True)   # what arrived during the last batch or the interrupt
  wall = time.monotonic() - start
  frames = live.scored + counts["unscored"] + counts["dropped_buffer"] + counts["dropped_source"]
  return {"frames": frames, "scored": live.scored, "unscored": counts["unscored"],
          "dropped_buffer": counts["dropped_buffer"], "dropped_source": counts["dropped_source"],
          "alarms": counts["alarms"], **live.summary(wall), "wall_s": wall,
          "interrupted": interrupted,
          "source_error": str(errors[0]) if errors else None}

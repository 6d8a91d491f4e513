"""Deterministic synthetic industrial-video benchmark (mirrors the database of paper 000 §4.1).

No public industrial VAD database can be downloaded, so jaxvad renders one: a fixed camera
watches a repetitive machine process, clips are cut into cycles, and the test clips hold one
normal and one abnormal cycle each. Everything is drawn with OpenCV and is a pure function of
the seed, so the same seed gives byte-identical files on every run.

Scenes (`SCENES`):
  pickplace  A 2-link robot arm on a table. Each cycle: a block slides in from the feeder
             chute (left) to pad A, the arm reaches it (inverse kinematics on an eased Bezier
             trajectory), grips, carries it to pad B, releases, returns home while the block
             slides out on the output chute (right), then idles. Cycle lengths jitter.
  conveyor   A belt between two machine housings. Each cycle one box comes out of the left
             housing, passes an inspection gate (its sensor light turns green) and goes into
             the right housing; the spacing between boxes jitters. A cycle starts when its
             box's slot reaches the left housing's mouth, and at most one box is in view.

Anomalies (`ANOMALIES`) and how the per-frame label is set (always inside the abnormal cycle;
what an anomaly leaves behind is cleared at the end of its cycle, so the other cycle is normal):
  dropped      the block falls out of the gripper during the carry and lies on the table:
               labelled from the drop frame to the end of the cycle.
  missed_pick  the gripper closes on nothing and the block stays on pad A: labelled from the
               first frame the grip differs (the fingers close further) to the end of the cycle.
  wrong_place  the carry veers off to a wrong pad B': labelled from the first frame the
               trajectory deviates to the end of the cycle.
  stall        the whole machine freezes for 1.2-2 s (6-10 frames at 5 fps), inserted into the
               cycle (which gets that much longer): the frozen frames are labelled.
  fallen       the cycle's box lies rotated on its side: labelled while it is in view.
  missing      the cycle's box is absent: labelled while the box would have been in view (the
               frames in which the empty belt differs from a normal cycle, incl. the gate light).

Distractors (`DISTRACTORS`, label stays normal, flagged per frame in which it shows):
`person` (a walking, sometimes pausing figure behind the work area, cut off by the table edge /
safety rail), `lighting` (global gain drift with flicker and a slight colour tint), `shadow` (a
soft dark blob crossing the background band), `shake` (1-2 px camera translations, border
replicate). Their exposure is independent of the anomaly by construction: a test clip plans
each of its distractors once relative to a cycle (a start phase and a width, fractions of the
cycle) and replays it in every cycle, so a distractor is in view for the same fraction of the
normal and of the abnormal cycle's frames; among such schedules it draws one whose in-view rate
over the anomalous frames is within 0.03 of its rate over the normal frames (where frame
granularity allows: a 6-frame stall gives steps of 1/6). The k-th distracted test clip of every
anomaly type shows the same distractors. Train and val clips draw a fresh episode per cycle
(in a random subset of cycles), never locked to the process phase. benchmark.json's
`distractor_rates` records the measured rates.

The ideal workspace mask of a frame is the region the process uses in a normal cycle
(pickplace: the arm swept along its trajectory, the block paths, the base; conveyor: the
open belt, the gate and its light), dilated a little, plus the current footprint of the
arm/blocks/boxes (so a dropped block or a wrong path is covered from the frame it shows, and
an abnormal cycle's mask differs from a normal one only there). It never covers the person
or shadow bands, and it moves with the camera shake.

Every frame also has a semantic class map (`RenderedClip.classes`, ids into `SEMANTIC_CLASSES`),
painted by the same draw calls as the image (crisp edges, later parts over earlier ones, as in
the image): background (floor, wall, wall clutter), machine (pickplace: table edge, chute rails,
pads, arm base; conveyor: safety rail and stripes, belt frame rails, housings, gate, light), arm,
block, belt (surface and slats), box (with tape and label) and person. Shadows and lighting do
not change it; camera shake moves it like the image (nearest, border replicate).

On-disk layout written by `write_benchmark` (the contract `jaxvad.data.datasets` reads):

  <out_dir>/<scene>/
    benchmark.json                    written last (temp file + os.replace): its presence
                                      marks a complete benchmark
    <split>/<clip_name>/00000.png ... RGB frames as PNG, 5-digit frame index
    <split>/<clip_name>.labels.npz    anomaly bool[T], anomaly_type_index int8[T] (index
                                      into benchmark.json's anomaly_types, -1 on normal
                                      frames), distractors bool[T, K],
                                      distractor_names str[K], workspace_mask_bits uint8
                                      (np.packbits of the flat bool[T, H, W] mask),
                                      workspace_mask_shape int64[3], cycle_starts int64[C],
                                      classes uint8[T, H, W] (ids into semantic_classes)

  benchmark.json = {"format": "jaxvad-synth/2", "scene", "preset", "seed", "size": [H, W],
    "fps", "distractor_names", "anomaly_types", "semantic_classes", "renderer_version",
    "preset_spec" (the preset's fields, for cache checks), "distractor_rates": {split: {name
    (and "any"): {"clips": clips showing it, "normal": fraction of their normal frames it is in
    view in, "anomalous": same over their anomalous frames (null without any), "all_clips":
    {"normal", "anomalous"} over every clip of the split}}}, "clips": [{"name", "split",
    "num_frames", "anomaly_type" (null if normal), "anomaly_intervals": [[start, end), ...],
    "distractors": [names present], "cycle_starts": [...]}]}

Splits are `train` (normal, several cycles, some clips with distractors), `val` (normal) and
`test` (2 cycles, one abnormal; types spread evenly, half the clips of each type with
distractors, the abnormal cycle first in half the clips of each type and second in the other
half). Clip names are `<split>_<index:03d>`. Each clip is rendered into a hidden temp
folder and renamed into place, and a re-run over a folder without benchmark.json starts clean.
All randomness comes from `np.random.default_rng` seeded by (seed, scene, split, clip index).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import pathlib
import shutil
import threading
import zipfile
from typing import Sequence

import cv2
import numpy as np
import tqdm

from jaxvad.errors import ConfigError, DataError

SCENES: tuple[str, ...] = ("pickplace", "conveyor")
DISTRACTORS: tuple[str, ...] = ("person", "lighting", "shadow", "shake")
ANOMALIES: dict[str, tuple[str, ...]] = {
    "pickplace": ("dropped", "missed_pick", "wrong_place", "stall"),
    "conveyor": ("fallen", "missing"),
}
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Per-pixel semantic classes of `RenderedClip.classes` (index = class id), both scenes.
SEMANTIC_CLASSES: tuple[str, ...] = ("background", "machine", "arm", "block", "belt", "box",
                                     "person")
# Bump FORMAT when the files change, RENDERER_VERSION when the pictures or labels do: a cached
# benchmark of another format or renderer version is never reused (`benchmark_is_complete` is
# False for it, so `ensure_benchmark` and `jaxvad synth` render it again; the reader refuses
# another format). /2: per-cycle distractor schedules, anomaly_type_index, distractor_rates.
# Renderer 3: per-pixel semantic class maps (`classes` in the labels files).
FORMAT = "jaxvad-synth/2"
RENDERER_VERSION = 3


@dataclasses.dataclass(frozen=True)
class SynthPreset:
  """Sizes and clip counts of one benchmark (paper 000 §4.1 is `paper`)."""
  size: tuple[int, int]             # (H, W)
  fps: int
  train_clips: int
  train_distractor_clips: int       # how many of the train clips carry distractors
  train_cycles: int
  val_clips: int
  val_distractor_clips: int
  val_cycles: int
  test_clips: int                   # spread evenly over the scene's anomaly types
  test_cycles: int = 2              # one of them abnormal
  cycle_min: int = 20               # cycle length range in frames (normal cycles)
  cycle_max: int = 40


# Test clip counts are multiples of 8 (tiny, medium, small): every (anomaly type, with or
# without distractors) group of pickplace's 4 types then has an even number of clips, half of
# them abnormal in the first cycle and half in the second.
PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(size=(64, 64), fps=5, train_clips=4, train_distractor_clips=2,
                        train_cycles=3, val_clips=2, val_distractor_clips=1, val_cycles=2,
                        test_clips=32),
    "medium": SynthPreset(size=(96, 96), fps=5, train_clips=8, train_distractor_clips=3,
                          train_cycles=4, val_clips=4, val_distractor_clips=2, val_cycles=3,
                          test_clips=48),
    "small": SynthPreset(size=(128, 128), fps=5, train_clips=12, train_distractor_clips=4,
                         train_cycles=4, val_clips=4, val_distractor_clips=2, val_cycles=4,
                         test_clips=48),
    "paper": SynthPreset(size=(128, 128), fps=5, train_clips=80, train_distractor_clips=26,
                         train_cycles=6, val_clips=8, val_distractor_clips=3, val_cycles=6,
                         test_clips=40),
}


@dataclasses.dataclass(frozen=True)
class RenderedClip:
  """One rendered clip with its per-frame ground truth."""
  frames: np.ndarray          # uint8 [T, H, W, 3], RGB
  anomaly: np.ndarray         # bool [T]
  distractors: np.ndarray     # bool [T, len(DISTRACTORS)]
  workspace_mask: np.ndarray  # bool [T, H, W]
  cycle_starts: np.ndarray    # int64 [num_cycles]
  anomaly_type: str | None
  classes: np.ndarray         # uint8 [T, H, W], index into SEMANTIC_CLASSES per pixel


# --------------------------------------------------------------------------- drawing helpers

_SHIFT = 4                      # cv2 fixed-point fraction bits: sub-pixel smooth motion
_FIXED = float(1 << _SHIFT)
_NOISE_SIGMA = 2.0              # sensor noise on 0..255


def _rng(*key: int) -> np.random.Generator:
  return np.random.default_rng([int(k) for k in key])


class _View:
  """Maps unit scene coordinates (x right, y down, both in [0, 1]) to pixels."""

  def __init__(self, size: tuple[int, int]):
    self.h, self.w = size
    self.s = float(min(size))   # lengths and radii scale with the short side
    self._scale = np.array([self.w, self.h], np.float64)

  def p(self, pt) -> np.ndarray:
    return np.asarray(pt, np.float64) * self._scale - 0.5

  def r(self, length: float) -> float:
    return length * self.s


def _fixed(pts) -> np.ndarray:
  return np.rint(np.asarray(pts, np.float64) * _FIXED).astype(np.int32)


_PEN = threading.local()      # .state: (class canvas or None, class id) while `_pen` is active


@contextlib.contextmanager
def _pen(canvas: np.ndarray | None = None, name: str | None = None):
  """While active, `_poly` / `_circle` (so `_capsule`) also paint into a class canvas.

  Args:
    canvas: uint8 [H, W] class map in the image's pixel coordinates (a view, for a view of the
      image); None keeps the enclosing pen's (a scene part sets only its class).
    name: the class (from `SEMANTIC_CLASSES`) painted; None keeps the enclosing pen's.

  Without a canvas nothing is painted, so the scenes' draw methods also run without one.
  Drawing is crisp (cv2.LINE_8): a pixel gets the class of the last part covering its centre.
  """
  old = getattr(_PEN, "state", (None, 0))
  _PEN.state = (old[0] if canvas is None else canvas,
                old[1] if name is None else SEMANTIC_CLASSES.index(name))
  try:
    yield
  finally:
    _PEN.state = old


def _poly(img, pts, color, aa=True):
  pts = _fixed(pts)
  cv2.fillConvexPoly(img, pts, color, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)
  canvas, cls = getattr(_PEN, "state", (None, 0))
  if canvas is not None:
    cv2.fillConvexPoly(canvas, pts, cls, cv2.LINE_8, _SHIFT)


def _circle(img, center, radius, color, aa=True):
  c = _fixed(center)
  c, r = (int(c[0]), int(c[1])), max(1, int(round(radius * _FIXED)))
  cv2.circle(img, c, r, color, -1, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)
  canvas, cls = getattr(_PEN, "state", (None, 0))
  if canvas is not None:
    cv2.circle(canvas, c, r, cls, -1, cv2.LINE_8, _SHIFT)


def _capsule(img, p, q, radius, color, aa=True):
  """A thick segment with round ends (arm links, limbs); p, q in pixels."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  d = q - p
  n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * radius
  _poly(img, [p + n, q + n, q - n, p - n], color, aa)
  _circle(img, p, radius, color, aa)
  _circle(img, q, radius, color, aa)


def _rect_pts(center, half_w, half_h, angle) -> np.ndarray:
  """Corners of a rectangle rotated by `angle` radians (pixel units)."""
  c, s = math.cos(angle), math.sin(angle)
  corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
  return np.asarray(center, np.float64) + corners @ np.array([[c, s], [-s, c]])


def _ease(x: float) -> float:
  """Cosine ease in/out on [0, 1]: zero velocity at both ends, like a servo move."""
  return 0.5 - 0.5 * math.cos(math.pi * min(max(x, 0.0), 1.0))


def _phase(u: float, span: tuple[float, float]) -> float:
  return min(max((u - span[0]) / (span[1] - span[0]), 0.0), 1.0)


def _bezier(a, c, b, s: float) -> np.ndarray:
  a, c, b = (np.asarray(v, np.float64) for v in (a, c, b))
  return (1 - s) ** 2 * a + 2 * (1 - s) * s * c + s ** 2 * b


def _lerp(a, b, s: float) -> np.ndarray:
  return (1 - s) * np.asarray(a, np.float64) + s * np.asarray(b, np.float64)


def _value_noise(rng, shape, cells, size) -> np.ndarray:
  """Smooth random field: a coarse normal grid upsampled with bicubic interpolation."""
  grid = rng.normal(size=(cells, cells) + shape).astype(np.float32)
  out = cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
  return out.reshape(size + shape)


def _background_base(rng, view, wall_color, floor_color, horizon):
  """Textured wall above `horizon`, textured floor/table below; float32 [H, W, 3]."""
  h, w = view.h, view.w
  low = _value_noise(rng, (3,), 4, (h, w)) * 7.0
  fine = _value_noise(rng, (), max(4, w // 3), (h, w))[..., None] * 3.0
  ys = (np.arange(h, dtype=np.float32)[:, None, None] + 0.5) / h
  wall = np.asarray(wall_color, np.float32) * (1.0 - 0.12 * ys)          # light from above
  grain = np.sin(ys * 90.0 + _value_noise(rng, (), 3, (h, w))[..., None] * 2.0) * 4.0
  floor = np.asarray(floor_color, np.float32) + grain
  img = np.where(ys < horizon, wall, floor) + low + fine
  return img


def _wall_clutter(rng, img, view, horizon):
  """A few cabinets/windows/posters on the wall: texture that a passing person occludes."""
  for _ in range(int(rng.integers(2, 5))):
    x0, ww = rng.uniform(0.0, 0.85), rng.uniform(0.08, 0.22)
    y0, hh = rng.uniform(0.03, horizon * 0.5), rng.uniform(0.08, horizon * 0.5)
    color = tuple(float(c) for c in rng.uniform(60, 200, 3))
    pts = view.p([[x0, y0], [x0 + ww, y0], [x0 + ww, y0 + hh], [x0, y0 + hh]])
    _poly(img, pts, color, aa=False)
    inner = view.p([[x0 + 0.015, y0 + 0.015], [x0 + ww - 0.015, y0 + 0.015],
                    [x0 + ww - 0.015, y0 + hh - 0.015], [x0 + 0.015, y0 + hh - 0.015]])
    _poly(img, inner, tuple(0.8 * c + 25 for c in color), aa=False)


# --------------------------------------------------------------------------- pickplace scene


@dataclasses.dataclass(frozen=True)
class _Block:
  x: float
  y: float
  angle: float
  scale: float = 1.0         # > 1 while lifted (closer to the camera)


@dataclasses.dataclass(frozen=True)
class _ArmState:
  tcp: tuple[float, float]   # tool centre point (between the fingertips), unit coordinates
  opening: float             # finger separation, unit lengths
  blocks: tuple[_Block, ...]
  carried: int               # index into blocks of the block in the gripper, -1 if none


@dataclasses.dataclass(frozen=True)
class _PickVariant:
  """How one cycle deviates from the normal plan (all zero/None = normal)."""
  kind: str | None = None
  t_drop: int = -1
  land: tuple[float, float] = (0.0, 0.0)
  land_angle: float = 0.0
  delta: tuple[float, float] = (0.0, 0.0)   # wrong_place: B' - B
  s_dev: float = 1.0                        # wrong_place: carry progress where it veers off


class _PickPlace:
  """A 2-link arm moving blocks from pad A to pad B."""
  name = "pickplace"
  horizon = 0.40            # table back edge; the person is drawn above it only
  shadow_bands = ((0.10, 0.26),)
  base = np.array([0.5, 0.9])
  l1, l2, tool = 0.23, 0.19, 0.07          # link lengths; wrist -> tool centre point
  home, pick, place = (0.5, 0.62), (0.25, 0.64), (0.75, 0.64)
  feed_from, out_to = (-0.07, 0.64), (1.08, 0.64)
  reach_ctrl, carry_ctrl, return_ctrl = (0.34, 0.58), (0.5, 0.47), (0.66, 0.58)
  block = 0.075
  open_w, block_w, empty_w = 0.115, 0.093, 0.026   # finger separation: open / on block / on air
  # Phases as fractions u of the cycle's motion time (the rest of the cycle idles at home).
  feed, reach, grip, carry = (0.0, 0.20), (0.0, 0.28), (0.28, 0.38), (0.38, 0.62)
  release, back, out = (0.62, 0.70), (0.70, 0.92), (0.74, 1.0)
  wrong_offsets = ((-0.13, 0.0), (-0.08, -0.09), (0.0, 0.11), (-0.11, 0.09))

  def __init__(self, view: _View):
    self.view = view
    self.dil = max(1, int(round(view.r(0.025))))

  # ---- kinematics

  def elbow(self, tcp) -> np.ndarray:
    """Inverse kinematics of the 2-link arm (link 2 incl. the tool), fixed elbow branch."""
    d = np.asarray(tcp, np.float64) - self.base
    l2 = self.l2 + self.tool
    dist = min(max(math.hypot(*d), abs(self.l1 - l2) + 1e-6), self.l1 + l2 - 1e-6)
    cos_b = (self.l1 ** 2 + dist ** 2 - l2 ** 2) / (2 * self.l1 * dist)
    theta = math.atan2(d[1], d[0]) - math.acos(min(max(cos_b, -1.0), 1.0))
    return self.base + self.l1 * np.array([math.cos(theta), math.sin(theta)])

  def link2_angle(self, tcp) -> float:
    d = np.asarray(tcp, np.float64) - self.elbow(tcp)
    return math.atan2(d[1], d[0])

  def tcp(self, u: float, var: _PickVariant) -> np.ndarray:
    delta = np.asarray(var.delta, np.float64)
    if u < self.reach[1]:
      return _bezier(self.home, self.reach_ctrl, self.pick, _ease(_phase(u, self.reach)))
    if u < self.carry[0]:
      return np.asarray(self.pick, np.float64)
    if u < self.carry[1]:
      s = _ease(_phase(u, self.carry))
      veer = _ease((s - var.s_dev) / (1.0 - var.s_dev)) if s > var.s_dev else 0.0
      return _bezier(self.pick, self.carry_ctrl, self.place, s) + veer * delta
    target = np.asarray(self.place, np.float64) + delta
    if u < self.back[0]:
      return target
    ctrl = np.asarray(self.return_ctrl) + 0.5 * delta
    return _bezier(target, ctrl, self.home, _ease(_phase(u, self.back)))

  # ---- timeline

  def state(self, t: int, motion: int, var: _PickVariant) -> _ArmState:
    u = min(t / (motion - 1), 1.0)
    tcp = self.tcp(u, var)
    g = _ease(_phase(u, self.grip))
    r = _ease(_phase(u, self.release))
    closed = self.empty_w if var.kind == "missed_pick" else self.block_w
    opening = self.open_w + g * (closed - self.open_w)
    opening += r * (self.open_w - opening)
    a0 = self.link2_angle(self.pick)
    blocks, carried = [], -1
    if var.kind == "dropped" and t >= var.t_drop:
      u_d = min(var.t_drop / (motion - 1), 1.0)
      s_d = _phase(u_d, self.carry)
      p_d = self.tcp(u_d, var)
      a_d = self.link2_angle(p_d) - a0
      f = 0.5 if t == var.t_drop else 1.0        # two frames to hit the table
      p = _lerp(p_d, var.land, f)
      lifted = 1.0 + 0.12 * math.sin(math.pi * s_d)
      blocks.append(_Block(p[0], p[1], a_d + f * var.land_angle, lifted + f * (1.0 - lifted)))
      opening = self.empty_w + r * (self.open_w - self.empty_w)
    elif u < self.feed[1]:
      p = _lerp(self.feed_from, self.pick, _ease(_phase(u, self.feed)))
      blocks.append(_Block(p[0], p[1], 0.0))
    elif u < self.carry[0] or var.kind == "missed_pick":
      blocks.append(_Block(self.pick[0], self.pick[1], 0.0))
    elif u < self.carry[1]:
      s = _phase(u, self.carry)
      blocks.append(_Block(tcp[0], tcp[1], self.link2_angle(tcp) - a0,
                           1.0 + 0.12 * math.sin(math.pi * s)))
      carried = 0
    else:
      target = np.asarray(self.place) + np.asarray(var.delta)
      angle = self.link2_angle(target) - a0
      if var.kind == "wrong_place" or u < self.out[0]:
        p = target                                # a block off the chute stays put
      else:
        p = _lerp(target, self.out_to, _phase(u, self.out) ** 2)   # slides off, accelerating
      if p[0] < 1.0 + self.block:
        blocks.append(_Block(p[0], p[1], angle))
    return _ArmState((float(tcp[0]), float(tcp[1])), float(opening), tuple(blocks), carried)

  def variant(self, kind: str, motion: int, rng: np.random.Generator) -> _PickVariant:
    if kind == "dropped":
      frames = [t for t in range(motion)
                if 0.25 < _phase(min(t / (motion - 1), 1.0), self.carry) < 0.75]
      t_drop = int(rng.choice(frames))
      p_d = self.tcp(min(t_drop / (motion - 1), 1.0), _PickVariant())
      ang = rng.uniform(0, 2 * math.pi)
      off = rng.uniform(0.02, 0.04) * np.array([math.cos(ang), math.sin(ang)]) + [0, 0.02]
      land = (float(p_d[0] + off[0]), float(p_d[1] + off[1]))
      spin = float(rng.uniform(0.35, 0.9) * rng.choice([-1, 1]))
      return _PickVariant("dropped", t_drop=t_drop, land=land, land_angle=spin)
    if kind == "wrong_place":
      delta = self.wrong_offsets[int(rng.integers(len(self.wrong_offsets)))]
      return _PickVariant("wrong_place", delta=delta, s_dev=float(rng.uniform(0.3, 0.6)))
    return _PickVariant(kind)

  def timeline(self, lengths, proc_rng, anomaly, anomaly_cycle, anom_rng, fps):
    ratios = proc_rng.uniform(0.72, 0.88, size=len(lengths))
    states, labels, starts = [], [], []
    for k, length in enumerate(lengths):
      length = int(length)
      motion = max(8, int(round(length * ratios[k])))
      normal = [self.state(t, motion, _PickVariant()) for t in range(length)]
      lab = [False] * length
      cyc = normal
      if anomaly is not None and k == anomaly_cycle:
        if anomaly == "stall":
          t_s = int(anom_rng.integers(round(0.15 * (motion - 1)), round(0.85 * (motion - 1)) + 1))
          n = int(anom_rng.integers(round(1.2 * fps), round(2.0 * fps) + 1))
          cyc = normal[:t_s + 1] + [normal[t_s]] * n + normal[t_s + 1:]
          lab = [t_s < t <= t_s + n for t in range(len(cyc))]
        else:
          var = self.variant(anomaly, motion, anom_rng)
          cyc = [self.state(t, motion, var) for t in range(length)]
          onset = next(t for t in range(length) if cyc[t] != normal[t])
          lab = [t >= onset for t in range(length)]
      starts.append(len(states))
      states += cyc
      labels += lab
    return states, np.array(labels, bool), np.array(starts, np.int64)

  # ---- drawing

  def draw_static(self, rng, img):
    v = self.view
    _wall_clutter(rng, img, v, self.horizon)
    with _pen(name="machine"):
      _poly(img, v.p([[0, self.horizon - 0.012], [1, self.horizon - 0.012],
                      [1, self.horizon + 0.01], [0, self.horizon + 0.01]]), (95, 85, 70),
            aa=False)   # table back edge
      y, half = self.pick[1], self.block * 0.75
      for x0, x1 in ((0.0, self.pick[0] + 0.05), (self.place[0] - 0.05, 1.0)):   # chute rails
        for side in (-1, 1):
          yy = y + side * half
          _poly(img, v.p([[x0, yy - 0.006], [x1, yy - 0.006], [x1, yy + 0.006],
                          [x0, yy + 0.006]]), (120, 120, 125))
      for pad in (self.pick, self.place):
        _poly(img, _rect_pts(v.p(pad), v.r(0.05), v.r(0.05), 0.0), (150, 145, 128))
        _poly(img, _rect_pts(v.p(pad), v.r(0.04), v.r(0.04), 0.0), (168, 160, 142))
      c = v.p(self.base)
      _poly(img, _rect_pts(c + [0, v.r(0.02)], v.r(0.1), v.r(0.07), 0.0), (70, 72, 78))
      _circle(img, c, v.r(0.068), (105, 108, 115))
      _circle(img, c, v.r(0.052), (80, 82, 88))

  def _draw_block(self, img, b: _Block):
    v = self.view
    half = v.r(self.block / 2) * b.scale
    with _pen(name="block"):
      _poly(img, _rect_pts(v.p((b.x, b.y)), half, half, b.angle), (120, 55, 30))
      _poly(img, _rect_pts(v.p((b.x, b.y)), half * 0.72, half * 0.72, b.angle), (175, 90, 50))

  def draw(self, img, state: _ArmState):
    v = self.view
    for i, b in enumerate(state.blocks):
      if i != state.carried:
        self._draw_block(img, b)
    tcp = np.asarray(state.tcp)
    elbow = self.elbow(tcp)
    d = (tcp - elbow) / max(np.linalg.norm(tcp - elbow), 1e-9)
    n = np.array([-d[1], d[0]])
    wrist = elbow + self.l2 * d
    base, e_px, w_px = v.p(self.base), v.p(elbow), v.p(wrist)
    with _pen(name="arm"):
      _capsule(img, base, e_px, v.r(0.036), (150, 80, 20))
      _capsule(img, base, e_px, v.r(0.027), (232, 132, 32))
      _capsule(img, e_px, w_px, v.r(0.029), (150, 80, 20))
      _capsule(img, e_px, w_px, v.r(0.021), (242, 152, 48))
      _circle(img, base, v.r(0.03), (55, 55, 60))
      _circle(img, e_px, v.r(0.024), (55, 55, 60))
      palm = self.open_w / 2 + 0.012
      _capsule(img, v.p(wrist + palm * n), v.p(wrist - palm * n), v.r(0.012), (90, 90, 96))
      if state.carried >= 0:   # over the palm, under the fingers
        self._draw_block(img, state.blocks[state.carried])
      for side in (-1, 1):
        root = wrist + side * state.opening / 2 * n
        _capsule(img, v.p(root), v.p(root + (self.tool + 0.02) * d), v.r(0.008), (60, 60, 66))

  def _footprint(self, mask, state: _ArmState, grow: float):
    """Draws the arm, gripper and blocks of `state` into `mask`, grown by `grow` pixels."""
    v = self.view
    tcp = np.asarray(state.tcp)
    elbow = self.elbow(tcp)
    d = (tcp - elbow) / max(np.linalg.norm(tcp - elbow), 1e-9)
    n = np.array([-d[1], d[0]])
    wrist = elbow + self.l2 * d
    _capsule(mask, v.p(self.base), v.p(elbow), v.r(0.036) + grow, 1, aa=False)
    _capsule(mask, v.p(elbow), v.p(wrist), v.r(0.029) + grow, 1, aa=False)
    palm = self.open_w / 2 + 0.012
    _capsule(mask, v.p(wrist + palm * n), v.p(wrist - palm * n), v.r(0.012) + grow, 1, aa=False)
    for side in (-1, 1):
      root = wrist + side * state.opening / 2 * n
      _capsule(mask, v.p(root), v.p(root + (self.tool + 0.02) * d), v.r(0.008) + grow, 1,
               aa=False)
    for b in state.blocks:
      half = v.r(self.block / 2) * b.scale + grow
      _poly(mask, _rect_pts(v.p((b.x, b.y)), half, half, b.angle), 1, aa=False)

  def sweep(self) -> np.ndarray:
    """The normal cycle's workspace: all it sweeps along its densely sampled trajectory."""
    mask = np.zeros((self.view.h, self.view.w), np.uint8)
    samples = 121            # steps of < 1/3 of a link's width even in the fastest phase
    for t in range(samples):
      self._footprint(mask, self.state(t, samples, _PickVariant()), 0.0)
    _poly(mask, _rect_pts(self.view.p(self.base) + [0, self.view.r(0.02)], self.view.r(0.1),
                          self.view.r(0.07), 0.0), 1, aa=False)
    k = 2 * self.dil + 1
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask.flags.writeable = False
    return mask

  def mask(self, state: _ArmState) -> np.ndarray:
    # The normal cycle's region plus where the arm and blocks are now (a dropped block, a
    # wrong path): an abnormal cycle's mask differs only once its anomaly shows.
    mask = _pick_region((self.view.h, self.view.w)).copy()
    self._footprint(mask, state, float(self.dil))
    return mask


@functools.lru_cache(maxsize=8)
def _pick_region(size: tuple[int, int]) -> np.ndarray:
  # Shared by all clips of a size: the cycles differ in timing, never in path.
  return _PickPlace(_View(size)).sweep()


# --------------------------------------------------------------------------- conveyor scene


@dataclasses.dataclass(frozen=True)
class _Box:
  x: float
  y: float
  fallen: bool
  angle: float
  tint: float


@dataclasses.dataclass(frozen=True)
class _BeltState:
  t: int                     # global frame (belt slat phase)
  boxes: tuple[_Box, ...]
  light: bool


class _Conveyor:
  """Boxes carried on a belt between two machine housings, past an inspection gate."""
  name = "conveyor"
  horizon = 0.36            # safety rail; the person is drawn above it only
  shadow_bands = ((0.08, 0.22), (0.90, 0.96))
  belt = (0.50, 0.74)       # belt surface, y range
  open_x = (0.2, 0.8)       # belt visible between the housings
  gate_x, gate_half = 0.5, 0.012
  light_at, light_r = (0.5, 0.45), 0.022
  box_w, box_h = 0.11, 0.13           # standing box (unit lengths)
  lying_w, lying_h = 0.155, 0.085     # a fallen box shows its long side
  extent = math.hypot(0.155, 0.085)   # max x extent of any box: fixes the slot and belt speed

  def __init__(self, view: _View, cycle_min: int):
    self.view = view
    self.dil = max(1, int(round(view.r(0.025))))
    # Belt speed: a slot crosses the open belt (plus 2 px of anti-aliasing) within cycle_min - 1
    # frames, so each cycle's box is only ever in view inside its own cycle.
    span = self.open_x[1] - self.open_x[0] + self.extent + 4.0 / view.w
    self.speed = span / (cycle_min - 1)
    self.cols = (int(round(self.open_x[0] * view.w)), int(round(self.open_x[1] * view.w)))
    self.slat = self.speed / 0.37       # belt moves 37% of a slat per frame: reads as forward
    self._static_region = None

  def box_pts(self, box: _Box, grow: float = 0.0) -> np.ndarray:
    v = self.view
    hw, hh = (self.lying_w, self.lying_h) if box.fallen else (self.box_w, self.box_h)
    return _rect_pts(v.p((box.x, box.y)), v.r(hw / 2) + grow, v.r(hh / 2) + grow, box.angle)

  def in_view(self, box: _Box) -> bool:
    xs = self.box_pts(box)[:, 0]
    return xs.max() > self.cols[0] - 1.5 and xs.min() < self.cols[1] - 1 + 1.5

  def timeline(self, lengths, proc_rng, anomaly, anomaly_cycle, anom_rng, fps):
    lengths = np.asarray(lengths, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    tints = proc_rng.uniform(-12, 12, size=len(lengths))
    y_c = sum(self.belt) / 2
    fall = (float(anom_rng.uniform(0.35, 0.95) * anom_rng.choice([-1, 1])),
            float(anom_rng.uniform(-0.02, 0.02)))
    labels = np.zeros(total, bool)
    states = []
    for t in range(total):
      boxes, light = [], False
      for k, s_k in enumerate(starts):
        x = self.open_x[0] - self.extent / 2 + self.speed * (t - s_k)
        abnormal = anomaly is not None and k == anomaly_cycle
        fallen = abnormal and anomaly == "fallen"
        box = _Box(x, y_c + (fall[1] if fallen else 0.0), fallen, fall[0] if fallen else 0.0,
                   float(tints[k]))
        if not self.in_view(box):
          continue
        if abnormal:
          labels[t] = True
          if anomaly == "missing":
            continue
        boxes.append(box)
        light |= abs(x - self.gate_x) < self.gate_half + self.box_w / 2
      states.append(_BeltState(t, tuple(boxes), light))
    return states, labels, starts

  def draw_static(self, rng, img):
    v = self.view
    _wall_clutter(rng, img, v, self.horizon)
    y0, y1 = self.belt
    rail = self.horizon
    with _pen(name="machine"):
      _poly(img, v.p([[0, rail - 0.03], [1, rail - 0.03], [1, rail], [0, rail]]), (200, 170, 40),
            aa=False)
      for x in np.arange(0.0, 1.0, 0.08):   # hazard stripes
        _poly(img, v.p([[x, rail - 0.03], [x + 0.03, rail - 0.03], [x + 0.015, rail],
                        [x - 0.015, rail]]), (40, 40, 40))
      _poly(img, v.p([[0, y0 - 0.02], [1, y0 - 0.02], [1, y1 + 0.02], [0, y1 + 0.02]]),
            (150, 155, 160), aa=False)                      # belt frame rails
    with _pen(name="belt"):
      _poly(img, v.p([[0, y0], [1, y0], [1, y1], [0, y1]]), (62, 64, 68), aa=False)

  def draw_foreground(self, img, alpha):
    """Housings and the gate: static, drawn over the boxes (crisp edges, boolean alpha).

    All of it is class `machine` (where `alpha`): it is painted by slicing, not with the pen.
    """
    v = self.view
    h = v.h
    rows = (int(round(0.42 * h)), int(round(0.82 * h)))
    for c0, c1 in ((0, self.cols[0]), (self.cols[1], v.w)):
      img[rows[0]:rows[1], c0:c1] = (70, 95, 130)
      img[rows[0]:rows[0] + max(1, h // 32), c0:c1] = (110, 135, 170)
      mouth = (c1 - max(1, v.w // 40), c1) if c0 == 0 else (c0, c0 + max(1, v.w // 40))
      belt_rows = slice(int(round(self.belt[0] * h)), int(round(self.belt[1] * h)))
      img[belt_rows, mouth[0]:mouth[1]] = (30, 32, 38)
      alpha[rows[0]:rows[1], c0:c1] = True
    g0 = int(round((self.gate_x - self.gate_half) * v.w))
    g1 = max(g0 + 1, int(round((self.gate_x + self.gate_half) * v.w)))
    r0, r1 = int(round((self.belt[0] - 0.03) * h)), int(round((self.belt[1] + 0.03) * h))
    img[r0:r1, g0:g1] = (195, 195, 200)
    alpha[r0:r1, g0:g1] = True

  def draw(self, img, state: _BeltState):
    v = self.view
    y0, y1 = self.belt
    phase = (self.speed * state.t) % self.slat
    with _pen(name="belt"):
      for x in np.arange(self.open_x[0] - self.slat + phase, self.open_x[1] + self.slat,
                         self.slat):
        _poly(img, v.p([[x, y0], [x + 0.012, y0], [x + 0.012, y1], [x, y1]]), (44, 46, 50))
    with _pen(name="box"):
      self._draw_boxes(img, state)

  def _draw_boxes(self, img, state: _BeltState):
    v = self.view
    for box in state.boxes:
      base = np.array([192, 150, 100]) + box.tint
      _poly(img, self.box_pts(box), tuple(float(c) for c in base * 0.7))
      if box.fallen:
        _poly(img, self.box_pts(box, -v.r(0.008)), tuple(float(c) for c in base * 0.88))
        # The shipping label on the side, which a standing box never shows.
        at = v.p((box.x, box.y)) + v.r(0.02) * np.array([math.cos(box.angle), math.sin(box.angle)])
        _poly(img, _rect_pts(at, v.r(0.03), v.r(0.022), box.angle), (235, 235, 228))
      else:
        _poly(img, self.box_pts(box, -v.r(0.008)), tuple(float(c) for c in base))
        top = _rect_pts(v.p((box.x, box.y - self.box_h * 0.3)), v.r(self.box_w / 2 - 0.008),
                        v.r(0.012), 0.0)
        _poly(img, top, tuple(float(c) for c in base * 0.85))
        tape = _rect_pts(v.p((box.x, box.y)), v.r(0.012), v.r(self.box_h / 2 - 0.008), 0.0)
        _poly(img, tape, (218, 196, 150))

  def draw_light(self, img, state: _BeltState):
    v = self.view
    with _pen(name="machine"):
      _circle(img, v.p(self.light_at), v.r(self.light_r + 0.008), (60, 60, 64))
      _circle(img, v.p(self.light_at), v.r(self.light_r),
              (70, 235, 95) if state.light else (40, 70, 50))

  def mask(self, state: _BeltState) -> np.ndarray:
    v = self.view
    if self._static_region is None:
      m = np.zeros((v.h, v.w), np.uint8)
      x0, x1 = self.open_x
      y0, y1 = self.belt
      _poly(m, v.p([[x0, y0 - 0.02], [x1, y0 - 0.02], [x1, y1 + 0.02], [x0, y1 + 0.02]]), 1,
            aa=False)
      _circle(m, v.p(self.light_at), v.r(self.light_r + 0.008), 1, aa=False)
      k = 2 * self.dil + 1
      self._static_region = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = self._static_region.copy()
    if state.boxes:
      extra = np.zeros_like(mask)
      for box in state.boxes:
        _poly(extra, self.box_pts(box, self.dil), 1, aa=False)
      extra[:, :max(0, self.cols[0] - self.dil)] = 0      # hidden inside the housings
      extra[:, self.cols[1] + self.dil:] = 0
      mask |= extra
    return mask


# --------------------------------------------------------------------------- background


def _scene(scene: str, view: _View, cycle_min: int):
  return _PickPlace(view) if scene == "pickplace" else _Conveyor(view, cycle_min)


@functools.lru_cache(maxsize=8)
def _static_layers(scene: str, size: tuple[int, int], background_seed: int):
  """The camera's static view (same for every clip of a benchmark): background + foreground.

  Returns:
    (bg uint8 [H, W, 3], fg (conveyor) uint8 [H, W, 3] or None, alpha (conveyor: where fg
    covers) bool [H, W] or None, bg_classes uint8 [H, W], fg_classes uint8 [H, W] or None).
  """
  view = _View(size)
  impl = _scene(scene, view, 20)
  rng = _rng(background_seed, 1000 + SCENES.index(scene))
  if scene == "pickplace":
    colors = (rng.uniform(120, 150, 3), rng.uniform(160, 185, 3) * [1.0, 0.96, 0.86])
  else:
    colors = (rng.uniform(125, 155, 3), rng.uniform(105, 125, 3))
  bg = _background_base(rng, view, colors[0], colors[1], impl.horizon)
  bg = np.clip(np.rint(bg), 0, 255).astype(np.uint8)
  bg_classes = np.zeros(size, np.uint8)
  with _pen(bg_classes, "background"):
    impl.draw_static(rng, bg)
  fg = alpha = fg_classes = None
  if scene == "conveyor":
    fg = np.zeros_like(bg)
    alpha = np.zeros(size, bool)
    impl.draw_foreground(fg, alpha)
    fg_classes = np.where(alpha, SEMANTIC_CLASSES.index("machine"), 0).astype(np.uint8)
  layers = (bg, fg, alpha, bg_classes, fg_classes)
  for a in layers:
    if a is not None:
      a.flags.writeable = False
  return layers


def _static_background(scene: str, size: tuple[int, int], background_seed: int = 0) -> np.ndarray:
  """The bare scene (no process, no distractors, no noise): uint8 [H, W, 3]. For tests."""
  bg, fg, alpha, _, _ = _static_layers(scene, tuple(size), background_seed)
  out = bg.copy()
  if fg is not None:
    out[alpha] = fg[alpha]
  return out


# --------------------------------------------------------------------------- distractors
#
# When a distractor shows is planned in cycle time: cycle k spans [k, k + 1), mapped linearly
# onto its frames (so a longer cycle, e.g. one with a stall inserted, stretches its share of an
# episode). A clip with an anomaly (a test clip) plans each of its distractors once, as a start
# phase p and a width w < 1, and replays it (same person / shadow / tint) over [k + p, k + p + w)
# for every cycle k, the one before the clip included: an episode may run on into the next
# cycle, and the clip may start or end inside one. Every cycle thus has the distractor in view
# for the same fraction w of its frames (to a frame at each episode edge), normal or abnormal;
# of the phases p that also keep its rate in the anomalous frames within `_BALANCE_TOL` of its
# rate in the normal frames (or the best phase, if none does), one is drawn. A normal clip
# (train, val) draws a fresh episode, inside its cycle, for a random subset of its cycles, so no
# distractor is locked to the process phase in training footage.

_WIDTHS = {"person": (0.35, 0.75), "lighting": (0.35, 0.9), "shadow": (0.3, 0.7),
           "shake": (0.15, 0.45)}      # episode length range, fraction of a cycle
_EPISODE_P = 0.7                       # normal clips: chance that a cycle has an episode
_BALANCE_TOL = 0.03                    # clips with an anomaly: |rate anomalous - rate normal|
_PHASES = 48                           # start phases tried per replayed schedule


def _frame_at(tau: float, starts, lengths) -> float:
  """Frame time of cycle time `tau`; cycles before the first / after the last are as long."""
  k = math.floor(tau)
  c = min(max(k, 0), len(starts) - 1)
  return float(starts[c]) + (tau - c) * float(lengths[c])


def _replayed_windows(starts, lengths, n_frames, phase, width) -> list[tuple[int, int]]:
  """(first frame, frame count) of the episodes [k + phase, k + phase + width) in the clip."""
  windows = []
  for k in range(-1, len(starts)):
    t0 = int(round(_frame_at(k + phase, starts, lengths)))
    t1 = max(t0 + 2, int(round(_frame_at(k + phase + width, starts, lengths))))
    if t1 > 0 and t0 < n_frames:
      windows.append((t0, t1 - t0))
  return windows


def _cycle_window(start: int, length: int, phase: float, width: float) -> tuple[int, int]:
  """(first frame, frame count) of an episode at `phase` (fraction) inside one cycle."""
  n = min(length, max(2, int(round(width * length))))
  return start + min(int(round(phase * length)), length - n), n


def _windows_flags(windows, n_frames: int) -> np.ndarray:
  flags = np.zeros(n_frames, bool)
  for t0, n in windows:
    flags[max(0, t0):max(0, t0 + n)] = True
  return flags


def _imbalance(flags: np.ndarray, labels: np.ndarray) -> float:
  """|in-view rate over anomalous frames - over normal frames| (0 without both kinds)."""
  if labels.all() or not labels.any():
    return 0.0
  return abs(float(flags[labels].mean()) - float(flags[~labels].mean()))


def _within(candidates, key) -> list:
  """The candidates whose key is within `_BALANCE_TOL` (or the smallest key, if larger)."""
  limit = max(min(key(c) for c in candidates), _BALANCE_TOL) + 1e-12
  return [c for c in candidates if key(c) <= limit]


def _schedule(rng, starts, lengths, labels, width_range, replay: bool,
              shown=None) -> list[tuple[int, int]]:
  """(first frame, frame count) of each episode of one distractor in a clip (may overhang it).

  `shown` (replay only): bool [T], where the distractors planned before this one show; among
  the balanced phases, those that also balance the union with them are preferred.
  """
  if replay:
    width = float(rng.uniform(*width_range))
    pick = float(rng.random())
    shown = np.zeros(len(labels), bool) if shown is None else shown
    candidates = []
    for phase in np.arange(_PHASES) / _PHASES:
      windows = _replayed_windows(starts, lengths, len(labels), float(phase), width)
      flags = _windows_flags(windows, len(labels))
      candidates.append((_imbalance(flags, labels), _imbalance(flags | shown, labels), windows))
    ok = _within(_within(candidates, lambda c: c[0]), lambda c: c[1])
    return ok[min(int(pick * len(ok)), len(ok) - 1)][2]
  has = rng.random(len(lengths)) < _EPISODE_P
  if not has.any():
    has[int(rng.integers(len(lengths)))] = True
  windows = []
  for k in np.flatnonzero(has):
    width = float(rng.uniform(*width_range))
    windows.append(_cycle_window(int(starts[k]), int(lengths[k]),
                                 float(rng.uniform(0.0, 1.0 - width)), width))
  return windows


@dataclasses.dataclass(frozen=True)
class _Walker:
  """A person crossing the view in frames [t0, t0 + n), maybe stopping at the wall a while."""
  t0: int
  n: int
  direction: int
  pause_frac: float         # fraction of the n frames spent standing (0: walks straight on)
  pause_at: float           # x where the person stops to do something at the wall
  edge: float               # |x - 0.5| (unit widths) beyond which no part of the body shows
  scale: float
  skin: tuple
  shirt: tuple
  hair: tuple
  stride: float             # radians of gait phase per frame

  def x_at(self, t: int) -> tuple[float, bool] | None:
    """(x, standing) at frame t, None outside the episode; every frame inside shows the body."""
    i = t - self.t0
    if not 0 <= i < self.n:
      return None
    n_pause = min(self.n - 2, int(round(self.pause_frac * self.n)))
    steps = self.n - n_pause
    step = 2 * self.edge / steps
    x_in = 0.5 - self.direction * self.edge
    j_pause = min(steps, max(0, int(round(abs(self.pause_at - x_in) / step))))
    if i < j_pause:
      return x_in + self.direction * (i + 0.5) * step, False
    if i < j_pause + n_pause:
      return x_in + self.direction * j_pause * step, True
    return x_in + self.direction * (i - n_pause + 0.5) * step, False


_SKINS = ((224, 184, 150), (198, 150, 112), (150, 105, 75), (95, 65, 45))
_SHIRTS = ((40, 70, 160), (170, 40, 40), (40, 130, 70), (230, 200, 60), (60, 60, 70),
           (235, 235, 235), (120, 60, 150), (230, 120, 40))
_HAIRS = ((30, 25, 20), (90, 60, 30), (160, 130, 80), (120, 120, 120))
_TORSO_HALF = 0.066         # short-side units: half the shoulder width


def _walker_look(rng, fps: float, view: _View) -> dict:
  scale = float(rng.uniform(0.9, 1.1))
  pause = rng.random() < 0.5
  return dict(
      direction=int(rng.choice([-1, 1])),
      pause_frac=float(rng.uniform(0.2, 0.45)) if pause else 0.0,
      pause_at=float(rng.uniform(0.25, 0.75)),
      # The torso's centre stops this far outside: its near edge stays a pixel or so inside.
      edge=0.5 + 0.75 * _TORSO_HALF * scale * view.s / view.w,
      scale=scale, skin=_SKINS[int(rng.integers(len(_SKINS)))],
      shirt=_SHIRTS[int(rng.integers(len(_SHIRTS)))], hair=_HAIRS[int(rng.integers(len(_HAIRS)))],
      stride=float(2 * math.pi * rng.uniform(0.8, 1.1) / fps))


def _plan_walkers(rng, windows, fps: float, view: _View, replay: bool) -> list[_Walker]:
  look = _walker_look(rng, fps, view) if replay else None
  return [_Walker(t0=t0, n=n, **(look or _walker_look(rng, fps, view))) for t0, n in windows]


def _draw_person(img, view: _View, w: _Walker, t: int, horizon: float):
  """Head, hair, neck, torso and swinging arms; the legs are hidden behind the work area."""
  x, paused = w.x_at(t)
  phi = w.stride * (t - w.t0)
  s = view.s * w.scale
  cx = x * view.w - 0.5
  bob = 0.0 if paused else -abs(math.sin(phi)) * 0.006 * s
  y_sh = horizon * view.h - 0.19 * s + bob
  waist = horizon * view.h + 0.03 * s
  if paused:   # working at something on the wall: one arm raised, moving a little
    angles = (-0.15, 2.1 + 0.3 * math.sin(1.7 * phi))
  else:        # radians from straight down, positive towards +x; the arms swing in antiphase
    angles = (-0.12 + 0.35 * math.sin(phi), 0.12 - 0.35 * math.sin(phi))
  for side, angle in zip((-1, 1), angles):
    sh = np.array([cx + side * 0.058 * s, y_sh + 0.018 * s])
    hand = sh + 0.16 * s * np.array([math.sin(angle), math.cos(angle)])
    _capsule(img, sh, hand, 0.019 * s, w.shirt)
    _circle(img, hand, 0.017 * s, w.skin)
  t_half = _TORSO_HALF * s
  torso = [[cx - t_half, y_sh], [cx + t_half, y_sh], [cx + 0.052 * s, waist],
           [cx - 0.052 * s, waist]]
  _poly(img, torso, w.shirt)
  _circle(img, (cx - 0.05 * s, y_sh + 0.012 * s), 0.016 * s, w.shirt)   # shoulders
  _circle(img, (cx + 0.05 * s, y_sh + 0.012 * s), 0.016 * s, w.shirt)
  _poly(img, _rect_pts((cx, y_sh - 0.012 * s), 0.014 * s, 0.016 * s, 0.0), w.skin)
  head = np.array([cx, y_sh - 0.06 * s])
  _circle(img, head - [0, 0.008 * s], 0.044 * s, w.hair)
  _circle(img, head + [0.004 * s * w.direction, 0.004 * s], 0.038 * s, w.skin)


@dataclasses.dataclass(frozen=True)
class _ShadowPass:
  """A soft dark blob crossing the background band in frames [t0, t0 + n)."""
  t0: int
  n: int
  direction: int
  y: float
  drift: float
  rx: float
  ry: float
  depth: float

  def center(self, t: int) -> tuple[float, float]:
    f = (t - self.t0 + 0.5) / self.n
    x = -0.8 * self.rx + f * (1 + 1.6 * self.rx)   # overlaps the frame in every frame
    if self.direction < 0:
      x = 1 - x
    return x, self.y + self.drift * (f - 0.5)


def _shadow_look(rng, bands) -> dict:
  lo, hi = bands[int(rng.integers(len(bands)))]
  return dict(direction=int(rng.choice([-1, 1])), y=float(rng.uniform(lo, hi)),
              drift=float(rng.uniform(-0.03, 0.03)), rx=float(rng.uniform(0.12, 0.2)),
              ry=float(rng.uniform(0.06, 0.1)), depth=float(rng.uniform(0.3, 0.5)))


def _plan_shadows(rng, windows, bands, replay: bool) -> list[_ShadowPass]:
  look = _shadow_look(rng, bands) if replay else None
  return [_ShadowPass(t0=t0, n=n, **(look or _shadow_look(rng, bands))) for t0, n in windows]


def _apply_shadow(img, view: _View, sp: _ShadowPass, t: int) -> bool:
  """Darkens a soft ellipse (compact support) in place; returns whether it touched the frame."""
  if not sp.t0 <= t < sp.t0 + sp.n:
    return False
  cx, cy = sp.center(t)
  x0, x1 = max(0, int((cx - sp.rx) * view.w)), min(view.w, int((cx + sp.rx) * view.w) + 2)
  y0, y1 = max(0, int((cy - sp.ry) * view.h)), min(view.h, int((cy + sp.ry) * view.h) + 2)
  if x0 >= x1 or y0 >= y1:
    return False
  xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / view.w - cx) / sp.rx
  ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / view.h - cy) / sp.ry
  d = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
  soft = np.clip((1.0 - d) / 0.5, 0.0, 1.0)
  soft = soft * soft * (3 - 2 * soft)
  img[y0:y1, x0:x1] *= (1.0 - sp.depth * soft)[..., None]
  return bool(soft.max() > 0)


def _plan_lighting(rng, windows, n_frames: int, replay: bool) -> np.ndarray:
  """Per-frame RGB gains [T, 3] (1 = no change): a drift with a tint, maybe flickering."""
  gains = np.ones((n_frames, 3), np.float32)
  look = None
  for t0, n in windows:
    if look is None or not replay:
      look = (rng.uniform(0.12, 0.3) * rng.choice([-1, 1]),
              np.array([1 + rng.uniform(-0.3, 0.3), 1.0, 1 + rng.uniform(-0.3, 0.3)]),
              rng.random() < 0.6)
    amp, tint, flicker = look
    ramp = max(1, n // 4)
    for i in range(max(0, -t0), min(n, n_frames - t0)):
      env = min(1.0, (i + 1) / ramp, (n - i) / ramp)
      g = 1.0 + amp * env * tint
      if flicker:
        g = g + rng.uniform(-0.05, 0.05)
      gains[t0 + i] *= g.astype(np.float32)
  return gains


def _plan_shake(rng, windows, n_frames: int, view: _View) -> np.ndarray:
  """Per-frame (dx, dy) camera offsets in pixels (>= 1 px inside episodes, else zero)."""
  offsets = np.zeros((n_frames, 2), np.float64)
  for t0, n in windows:
    for t in range(max(0, t0), min(n_frames, t0 + n)):
      mag = max(1.0, rng.uniform(1.0, 2.0) * view.s / 128)
      ang = rng.uniform(0, 2 * math.pi)
      offsets[t] = mag * math.cos(ang), mag * math.sin(ang)
  return offsets


# --------------------------------------------------------------------------- render_clip


def _check_size(size) -> tuple[int, int]:
  try:
    h, w = (int(s) for s in size)
  except (TypeError, ValueError):
    raise ConfigError(f"size must be (H, W), got {size!r}") from None
  if h < 32 or w < 32 or (h, w) != tuple(size):
    raise ConfigError(f"size must be (H, W) with integers >= 32, got {size!r}")
  return h, w


def render_clip(scene: str, *, num_cycles: int, anomaly: str | None = None,
                anomaly_cycle: int | None = None, distractors: Sequence[str] = (),
                size: tuple[int, int] = (128, 128), fps: float = 5, seed: int = 0,
                background_seed: int = 0, cycle_range: tuple[int, int] | None = None,
                noise: bool = True) -> RenderedClip:
  """Renders one clip of `scene` with its ground truth.

  The process, the anomaly, each distractor and the sensor noise draw from separate random
  streams of `seed`, so the same clip rendered with and without a distractor differs only where
  that distractor shows, and (without distractors) with and without an anomaly only where the
  anomaly shows. With an anomaly, each distractor's schedule is replayed in every cycle and
  balanced against the anomaly labels (module docstring, "Distractors").

  Args:
    scene: one of `SCENES`.
    num_cycles: number of process cycles (>= 1); the clip starts at the first cycle's start.
    anomaly: one of `ANOMALIES[scene]`, or None for a normal clip.
    anomaly_cycle: which cycle is abnormal (0-based); None draws one from the seed.
    distractors: names from `DISTRACTORS` to show (each at least once).
    size: frame size (H, W).
    fps: frame rate; sets the gait and stall durations in frames (distractor episodes are
      fractions of a cycle).
    seed: clip seed (process jitter, anomaly details, distractors, noise).
    background_seed: seed of the static camera view, shared by all clips of a benchmark.
    cycle_range: (min, max) normal cycle length in frames; None = 4-8 s at `fps`.
    noise: add Gaussian sensor noise (sigma 2); off only for tests and inspection.

  Returns:
    A `RenderedClip`.

  Raises:
    ConfigError: unknown scene, anomaly or distractor, or a bad size/count/range.
  """
  if scene not in SCENES:
    raise ConfigError(f"unknown scene {scene!r}: choose one of {', '.join(SCENES)}")
  if anomaly is not None and anomaly not in ANOMALIES[scene]:
    raise ConfigError(f"unknown anomaly {anomaly!r} for scene {scene!r}: choose one of "
                      f"{', '.join(ANOMALIES[scene])}")
  unknown = [d for d in distractors if d not in DISTRACTORS]
  if unknown:
    raise ConfigError(f"unknown distractor(s) {unknown}: choose from {', '.join(DISTRACTORS)}")
  if int(num_cycles) < 1:
    raise ConfigError(f"num_cycles must be >= 1, got {num_cycles}")
  if anomaly_cycle is not None and not 0 <= anomaly_cycle < num_cycles:
    raise ConfigError(f"anomaly_cycle must be in [0, {num_cycles}), got {anomaly_cycle}")
  if fps <= 0:
    raise ConfigError(f"fps must be positive, got {fps}")
  size = _check_size(size)
  if cycle_range is None:
    cycle_range = (int(round(4 * fps)), int(round(8 * fps)))
  lo, hi = (int(c) for c in cycle_range)
  if not 10 <= lo <= hi:
    raise ConfigError(f"cycle_range must be (min, max) frames with 10 <= min <= max, "
                      f"got {cycle_range!r}")

  view = _View(size)
  impl = _scene(scene, view, lo)
  proc_rng, anom_rng, noise_rng = _rng(seed, 1), _rng(seed, 2), _rng(seed, 3)
  if anomaly is not None and anomaly_cycle is None:
    anomaly_cycle = int(anom_rng.integers(num_cycles))
  lengths = proc_rng.integers(lo, hi + 1, size=int(num_cycles))
  states, labels, starts = impl.timeline(lengths, proc_rng, anomaly, anomaly_cycle, anom_rng, fps)
  n = len(states)

  # Each distractor has its own stream: adding one never changes how another looks. A clip
  # with an anomaly replays one schedule per distractor in every cycle, balanced against the
  # anomaly and then against the union with the ones before it (see "distractors" above), so
  # there adding one may shift the phase of those after it in DISTRACTORS.
  streams = {d: _rng(seed, 10 + i) for i, d in enumerate(DISTRACTORS)}
  lengths = np.diff(np.append(starts, n))
  replay = anomaly is not None
  windows = {}
  flags = np.zeros((n, len(DISTRACTORS)), bool)
  for k, d in enumerate(DISTRACTORS):
    if d in distractors:
      windows[d] = _schedule(streams[d], starts, lengths, labels, _WIDTHS[d], replay,
                             shown=flags.any(axis=1))
      flags[:, k] = _windows_flags(windows[d], n)
  walkers = (_plan_walkers(streams["person"], windows["person"], fps, view, replay)
             if "person" in windows else [])
  shadows = (_plan_shadows(streams["shadow"], windows["shadow"], impl.shadow_bands, replay)
             if "shadow" in windows else [])
  gains = (_plan_lighting(streams["lighting"], windows["lighting"], n, replay)
           if "lighting" in windows else None)
  offsets = (_plan_shake(streams["shake"], windows["shake"], n, view)
             if "shake" in windows else None)

  bg, fg, alpha, bg_classes, fg_classes = _static_layers(scene, size, int(background_seed))
  h, w = size
  horizon_rows = int(round(impl.horizon * h))
  frames = np.empty((n, h, w, 3), np.uint8)
  masks = np.empty((n, h, w), bool)
  classes = np.empty((n, h, w), np.uint8)
  for t, state in enumerate(states):
    canvas, cls = bg.copy(), bg_classes.copy()
    for walker in walkers:
      if walker.x_at(t) is not None:
        with _pen(cls[:horizon_rows], "person"):
          _draw_person(canvas[:horizon_rows], view, walker, t, impl.horizon)
    with _pen(cls):   # each part of the scene sets its class
      impl.draw(canvas, state)
      if fg is not None:
        canvas[alpha] = fg[alpha]
        cls[alpha] = fg_classes[alpha]
        impl.draw_light(canvas, state)
    mask = impl.mask(state)
    img = canvas.astype(np.float32)
    for sp in shadows:
      _apply_shadow(img, view, sp, t)
    if gains is not None:
      img *= gains[t]
    if offsets is not None and flags[t, 3]:
      shift = np.array([[1, 0, offsets[t, 0]], [0, 1, offsets[t, 1]]], np.float64)
      img = cv2.warpAffine(img, shift, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
      mask = cv2.warpAffine(mask, shift, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
      cls = cv2.warpAffine(cls, shift, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_REPLICATE)
    if noise:
      img += noise_rng.standard_normal((h, w, 3), dtype=np.float32) * _NOISE_SIGMA
    frames[t] = np.clip(np.rint(img), 0, 255)
    masks[t] = mask.astype(bool)
    classes[t] = cls
  return RenderedClip(frames=frames, anomaly=labels, distractors=flags, workspace_mask=masks,
                      cycle_starts=starts, anomaly_type=anomaly, classes=classes)


# --------------------------------------------------------------------------- benchmark writer


@dataclasses.dataclass(frozen=True)
class _ClipPlan:
  name: str
  split: str
  num_cycles: int
  anomaly: str | None
  anomaly_cycle: int | None
  distractors: tuple[str, ...]
  seed: int


def _spread(i: int, n: int, k: int) -> bool:
  """True for k of the n indices, evenly spread (Bresenham)."""
  return (i + 1) * k // n > i * k // n


def _pick_distractors(rng, index: int) -> tuple[str, ...]:
  """A random non-empty subset for the `index`-th distractor clip of a split.

  `person`, the headline distractor, is in 3 of every 4 such clips; the 4th shows only the
  others, so every split also tests them without a person.
  """
  with_person = index % 4 != 3
  others = [d for d in DISTRACTORS[1:] if rng.random() < 0.45]
  if not with_person and not others:
    others = [DISTRACTORS[1 + int(rng.integers(len(DISTRACTORS) - 1))]]
  return tuple(d for d in DISTRACTORS if d in others or (d == "person" and with_person))


def _plan_benchmark(scene: str, preset: SynthPreset, seed: int) -> list[_ClipPlan]:
  s_idx = SCENES.index(scene)
  types = ANOMALIES[scene]
  plans = []
  for split_idx, split in enumerate(SPLITS):
    if split == "test":
      count, cycles = preset.test_clips, preset.test_cycles
    else:
      count = getattr(preset, f"{split}_clips")
      cycles = getattr(preset, f"{split}_cycles")
    num_distracted = 0
    for i in range(count):
      rng = _rng(seed, s_idx, split_idx, i, 7)
      clip_seed = int(np.random.SeedSequence([seed, s_idx, split_idx, i]).generate_state(1)[0])
      if split == "test":
        j = i // len(types)                   # j-th clip of its anomaly type
        has_d = j % 2 == 1
        anomaly, anomaly_cycle = types[i % len(types)], (j + j // 2) % cycles
        # The k-th distracted clip of every type shows the same distractors: no anomaly type
        # is seen with a distractor more often than another.
        k = j // 2
        distractors = _pick_distractors(_rng(seed, s_idx, split_idx, k, 8), k) if has_d else ()
      else:
        has_d = _spread(i, count, getattr(preset, f"{split}_distractor_clips"))
        anomaly = anomaly_cycle = None
        distractors = _pick_distractors(rng, num_distracted) if has_d else ()
      num_distracted += has_d
      plans.append(_ClipPlan(f"{split}_{i:03d}", split, cycles, anomaly, anomaly_cycle,
                             distractors, clip_seed))
  return plans


def _write_npz(path: pathlib.Path, arrays: dict) -> None:
  """Like np.savez_compressed, but byte-reproducible: fixed zip timestamps and attributes."""
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
    for key, value in arrays.items():
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
      info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      info.create_system = 3
      info.external_attr = 0o644 << 16
      zf.writestr(info, buf.getvalue())


def _intervals(labels: np.ndarray) -> list[list[int]]:
  """[start, end) runs of True."""
  padded = np.concatenate([[False], labels, [False]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(padded))
  return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _type_index(clip: RenderedClip, anomaly_types: Sequence[str]) -> np.ndarray:
  """int8 [T]: the index into `anomaly_types` of each anomalous frame's type, -1 if normal."""
  index = np.full(len(clip.anomaly), -1, np.int8)
  if clip.anomaly_type is not None:
    index[clip.anomaly] = list(anomaly_types).index(clip.anomaly_type)
  return index


def _write_clip(split_dir: pathlib.Path, name: str, clip: RenderedClip,
                anomaly_types: Sequence[str]) -> None:
  split_dir.mkdir(parents=True, exist_ok=True)
  tmp = split_dir / f".{name}.tmp"
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir()
  params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
  for i, frame in enumerate(clip.frames):
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]), params)  # RGB -> BGR
    if not ok:
      raise DataError(f"could not encode frame {i} of {name} as PNG")
    (tmp / f"{i:05d}.png").write_bytes(buf.tobytes())
  final = split_dir / name
  if final.exists():
    shutil.rmtree(final)
  os.replace(tmp, final)
  tmp_labels = split_dir / f".{name}.labels.npz.tmp"
  _write_npz(tmp_labels, {
      "anomaly": clip.anomaly,
      "anomaly_type_index": _type_index(clip, anomaly_types),
      "distractors": clip.distractors,
      "distractor_names": np.array(DISTRACTORS),
      "workspace_mask_bits": np.packbits(clip.workspace_mask.reshape(-1)),
      "workspace_mask_shape": np.array(clip.workspace_mask.shape, np.int64),
      "cycle_starts": clip.cycle_starts.astype(np.int64),
      "classes": clip.classes,
  })
  os.replace(tmp_labels, split_dir / f"{name}.labels.npz")


class _RateCounts:
  """Per split and distractor (and `any`): normal / anomalous frames, and those with it in view."""

  def __init__(self):
    self._counts: dict = {}

  def add(self, split: str, clip: RenderedClip) -> None:
    flags = np.concatenate([clip.distractors, clip.distractors.any(axis=1, keepdims=True)], 1)
    a = clip.anomaly
    for k, name in enumerate(DISTRACTORS + ("any",)):
      f = flags[:, k]
      c = np.array([(~a).sum(), (f & ~a).sum(), a.sum(), (f & a).sum()], np.int64)
      entry = self._counts.setdefault(split, {}).setdefault(
          name, {"clips": 0, "with": np.zeros(4, np.int64), "all": np.zeros(4, np.int64)})
      entry["all"] += c
      if f.any():
        entry["clips"] += 1
        entry["with"] += c

  def rates(self) -> dict:
    def rate(c, i):
      return None if c[i] == 0 else round(float(c[i + 1] / c[i]), 4)
    return {split: {name: {"clips": e["clips"], "normal": rate(e["with"], 0),
                           "anomalous": rate(e["with"], 2),
                           "all_clips": {"normal": rate(e["all"], 0),
                                         "anomalous": rate(e["all"], 2)}}
                    for name, e in kinds.items()}
            for split, kinds in self._counts.items()}


def format_distractor_rates(rates: dict, split: str = "test") -> str:
  """benchmark.json's `distractor_rates` of one split as a few readable lines.

  Args:
    rates: the `distractor_rates` dict of a benchmark.json.
    split: which split to show.

  Returns:
    A header line and one line per distractor (and `any`): the fraction of normal / anomalous
    frames it is in view in, over the clips that show it, then over all clips of the split.
  """
  def fmt(r):
    return "  -  " if r is None else f"{r:.3f}"
  lines = [f"distractor in view in normal / anomalous {split} frames "
           f"(over the clips showing it | over all clips):"]
  for name, e in rates.get(split, {}).items():
    lines.append(f"  {name:<9} {fmt(e['normal'])} / {fmt(e['anomalous'])} ({e['clips']:>3} clips)"
                 f" | {fmt(e['all_clips']['normal'])} / {fmt(e['all_clips']['anomalous'])}")
  return "\n".join(lines)


def _resolve_preset(preset: str | SynthPreset, size) -> tuple[str, SynthPreset]:
  if isinstance(preset, SynthPreset):
    name = "custom"
  elif preset in PRESETS:
    name, preset = preset, PRESETS[preset]
  else:
    raise ConfigError(f"unknown synth preset {preset!r}: choose one of {', '.join(PRESETS)}")
  if size is not None and len(size) != 0:
    preset = dataclasses.replace(preset, size=_check_size(size))
  return name, preset


def _read_json(path: pathlib.Path) -> dict | None:
  try:
    meta = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _header(scene: str, preset_name: str, spec: SynthPreset, seed: int) -> dict:
  """The benchmark.json fields that identify what was rendered (everything but the clips)."""
  return {
      "format": FORMAT, "scene": scene, "preset": preset_name, "seed": seed,
      "size": list(spec.size), "fps": spec.fps, "distractor_names": list(DISTRACTORS),
      "anomaly_types": list(ANOMALIES[scene]), "semantic_classes": list(SEMANTIC_CLASSES),
      "renderer_version": RENDERER_VERSION,
      "preset_spec": {k: list(v) if isinstance(v, tuple) else v
                      for k, v in dataclasses.asdict(spec).items()},
  }


def benchmark_matches(path, *, scene: str, preset: str | SynthPreset = "tiny",
                      size: tuple[int, int] | None = None, seed: int = 0) -> bool:
  """Whether `path` holds a complete benchmark rendered with these settings (for caching).

  Args:
    path: the benchmark folder (`<out_dir>/<scene>`).
    scene: as for `write_benchmark`.
    preset: as for `write_benchmark`.
    size: (H, W) the frames must have; None accepts any rendered size (a benchmark rendered
      with `--size` stays usable).
    seed: as for `write_benchmark`.

  Returns:
    True if complete and rendered by this renderer version with these settings.
  """
  if scene not in SCENES or not benchmark_is_complete(path):
    return False
  preset_name, spec = _resolve_preset(preset, size)
  meta = _read_json(pathlib.Path(path) / "benchmark.json")
  want = _header(scene, preset_name, spec, int(seed))
  if size is None:
    want.pop("size")
    want["preset_spec"]["size"] = meta.get("size")
  return all(meta.get(k) == v for k, v in want.items())


def benchmark_is_complete(path) -> bool:
  """Whether `path` (an `<out_dir>/<scene>` folder) holds a completely written benchmark.

  Args:
    path: the benchmark folder.

  Returns:
    True if benchmark.json is readable, of the current format and renderer version (an older
    benchmark is stale: `stale_benchmark` says what it is), and every clip it lists has its frame
    folder and labels file.
  """
  root = pathlib.Path(path)
  meta = _read_json(root / "benchmark.json")
  if meta is None or meta.get("renderer_version") != RENDERER_VERSION:
    return False
  try:
    return all((root / c["split"] / c["name"]).is_dir()
               and (root / c["split"] / f"{c['name']}.labels.npz").is_file()
               for c in meta["clips"])
  except (KeyError, TypeError):
    return False


def stale_benchmark(path) -> str | None:
  """What a benchmark of another format or renderer version in `path` is, else None.

  Args:
    path: the benchmark folder (`<out_dir>/<scene>`).

  Returns:
    A description such as "jaxvad-synth/2, renderer 2 (this jaxvad: jaxvad-synth/2, renderer
    3)" if `path/benchmark.json` is a jaxvad benchmark file from another version; None if it is
    current, missing or unreadable.
  """
  try:
    meta = json.loads((pathlib.Path(path) / "benchmark.json").read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("jaxvad-synth/"):
    return None
  if meta.get("format") == FORMAT and meta.get("renderer_version") == RENDERER_VERSION:
    return None
  return (f"{meta.get('format')}, renderer {meta.get('renderer_version')} (this jaxvad: "
          f"{FORMAT}, renderer {RENDERER_VERSION})")


def write_benchmark(out_dir, *, scene: str, preset: str | SynthPreset = "tiny",
                    size: tuple[int, int] | None = None, seed: int = 0,
                    progress: bool = True) -> pathlib.Path:
  """Renders a whole benchmark (train/val/test) of `scene` into `<out_dir>/<scene>`.

  Always renders (use `benchmark_matches` / `benchmark_is_complete` to skip a cached one).
  What an earlier or interrupted run left there (split folders, benchmark.json) is removed
  first, so the result never mixes runs; nothing else in the folder is touched.

  Args:
    out_dir: parent folder; the benchmark goes into its `<scene>` subfolder.
    scene: one of `SCENES`.
    preset: a name from `PRESETS` (or a `SynthPreset`).
    size: (H, W) overriding the preset's frame size.
    seed: benchmark seed; also seeds the static background shared by all clips.
    progress: show a tqdm progress bar over clips (rate and ETA), then print the test
      split's distractor rates (`format_distractor_rates`).

  Returns:
    The benchmark folder `<out_dir>/<scene>`.

  Raises:
    ConfigError: unknown scene or preset, bad size.
  """
  if scene not in SCENES:
    raise ConfigError(f"unknown scene {scene!r}: choose one of {', '.join(SCENES)}")
  preset_name, spec = _resolve_preset(preset, size)
  seed = int(seed)
  if seed < 0:
    raise ConfigError(f"seed must be a non-negative integer, got {seed}")
  root = pathlib.Path(out_dir) / scene
  header = _header(scene, preset_name, spec, seed)
  # Start clean: only the paths this writer owns are removed.
  (root / "benchmark.json").unlink(missing_ok=True)
  (root / "benchmark.json.tmp").unlink(missing_ok=True)
  for split in SPLITS:
    if (root / split).exists():
      shutil.rmtree(root / split)
  root.mkdir(parents=True, exist_ok=True)

  entries = []
  counts = _RateCounts()
  plans = _plan_benchmark(scene, spec, seed)
  for plan in tqdm.tqdm(plans, desc=f"synth {scene}/{preset_name}", unit="clip",
                        disable=not progress):
    clip = render_clip(scene, num_cycles=plan.num_cycles, anomaly=plan.anomaly,
                       anomaly_cycle=plan.anomaly_cycle, distractors=plan.distractors,
                       size=spec.size, fps=spec.fps, seed=plan.seed, background_seed=seed,
                       cycle_range=(spec.cycle_min, spec.cycle_max))
    _write_clip(root / plan.split, plan.name, clip, ANOMALIES[scene])
    counts.add(plan.split, clip)
    entries.append({
        "name": plan.name, "split": plan.split, "num_frames": int(len(clip.frames)),
        "anomaly_type": plan.anomaly, "anomaly_intervals": _intervals(clip.anomaly),
        "distractors": [d for i, d in enumerate(DISTRACTORS) if clip.distractors[:, i].any()],
        "cycle_starts": [int(s) for s in clip.cycle_starts],
    })
  tmp = root / "benchmark.json.tmp"
  # One line per header key and per clip: diffable, and short even for the paper preset.
  rates = counts.rates()
  lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
  lines += [' "distractor_rates": {']
  lines += [f"  {json.dumps(s)}: {json.dumps(r)}," for s, r in rates.items()]
  lines[-1] = lines[-1].rstrip(",")
  lines += [' },', ' "clips": ['] + [f"  {json.dumps(e)}," for e in entries]
  lines[-1] = lines[-1].rstrip(",")
  tmp.write_text("{\n" + "\n".join(lines) + "\n ]\n}\n")
  os.replace(tmp, root / "benchmark.json")
  if progress:
    print(f"{scene}/{preset_name}: " + format_distractor_rates(rates))
  return root

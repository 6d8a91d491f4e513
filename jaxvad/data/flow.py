"""Dense optical flow of a clip's consecutive frames on the host (OpenCV): the motion input of
paper 004's F2LM generator.

Methods (`FLOW_METHODS`):
  dis        DIS (Kroeger et al. 2016), OpenCV's `DISOPTICAL_FLOW_PRESET_MEDIUM`: fast and
             accurate. It needs frames of at least `DIS_MIN_SIDE` pixels on both sides
             (OpenCV 5.0 rejects smaller ones or crashes on wide ones 12-15 px high).
  farneback  Farneback (2003), `cv2.calcOpticalFlowFarneback` with the usual parameters
             (pyramid scale 0.5, 3 levels, 3 iterations, poly_n 5, poly_sigma 1.2); its window
             is 15 px from a short side of 240 px up and proportionally smaller below (at
             least 5), so small frames keep their moving parts apart.

Frames are converted to gray first (RGB, as every jaxvad reader returns them).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["FLOW_METHODS", "DIS_MIN_SIDE", "clip_flow"]

FLOW_METHODS: tuple[str, ...] = ("dis", "farneback")
DIS_MIN_SIDE = 16


def _farneback_window(h: int, w: int) -> int:
  return max(5, min(15, round(min(h, w) / 16))) | 1


def clip_flow(frames: np.ndarray, *, method: str = "dis") -> np.ndarray:
  """float32 [T, H, W, 2]: dense optical flow (dx, dy in pixels) from frame t - 1 to frame t.

  Args:
    frames: uint8 [T, H, W, C] frames, C = 1 (gray) or 3 (RGB), converted to gray.
    method: one of `FLOW_METHODS` (module docstring).

  Returns:
    float32 [T, H, W, 2]: flow[t][y, x] = (dx, dy) such that what is at (x, y) in frame t - 1
    is at about (x + dx, y + dy) in frame t (OpenCV's convention); flow[0] = 0.

  Raises:
    ValueError: frames not a uint8 [T, H, W, C] array with C = 1 or 3, an unknown method, or
      frames smaller than `DIS_MIN_SIDE` for `dis`.
  """
  if method not in FLOW_METHODS:
    raise ValueError(f"unknown optical flow method {method!r}: choose one of "
                     f"{', '.join(FLOW_METHODS)}")
  if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
    raise ValueError(f"frames must be a uint8 [T, H, W, C] array, got "
                     f"{getattr(frames, 'dtype', type(frames).__name__)} "
                     f"{list(np.shape(frames))}")
  t, h, w, c = frames.shape
  if c not in (1, 3):
    raise ValueError(f"frames must have 1 (gray) or 3 (RGB) channels, got {c}")
  if method == "dis" and min(h, w) < DIS_MIN_SIDE:
    raise ValueError(f"DIS optical flow needs frames of at least {DIS_MIN_SIDE}x{DIS_MIN_SIDE} "
                     f"pixels, got {h}x{w}: use method='farneback' or larger frames")
  gray = [np.ascontiguousarray(f[..., 0] if c == 1 else cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
          for f in frames]
  flow = np.zeros((t, h, w, 2), np.float32)
  if method == "dis":
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for i in range(1, t):
      flow[i] = dis.calc(gray[i - 1], gray[i], None)
  else:
    win = _farneback_window(h, w)
    for i in range(1, t):
      flow[i] = cv2.calcOpticalFlowFarneback(gray[i - 1], gray[i], None, 0.5, 3, win, 3, 5,
                                             1.2, 0)
  return flow

"""Host optical flow of consecutive frames (DIS, Farneback)."""

import cv2
import numpy as np
import pytest

from jaxvad.data import flow


def _shifted(size, dx, dy, t=3, channels=3):
  """A smooth random texture moving by (dx, dy) whole pixels per frame: uint8 [T, H, W, C]."""
  h, w = size
  pad = (t + 1) * max(abs(dx), abs(dy)) + 8
  coarse = np.random.default_rng(0).uniform(0, 255, ((h + 2 * pad) // 4, (w + 2 * pad) // 4))
  big = cv2.resize(coarse.astype(np.float32), (w + 2 * pad, h + 2 * pad),
                   interpolation=cv2.INTER_CUBIC)
  big = np.clip(big, 0, 255).astype(np.uint8)
  frames = np.stack([big[pad - i * dy:pad - i * dy + h, pad - i * dx:pad - i * dx + w]
                     for i in range(t)])
  return np.repeat(frames[..., None], channels, axis=-1)


@pytest.mark.parametrize("method", flow.FLOW_METHODS)
@pytest.mark.parametrize("size, dx, dy", [((32, 32), 1, -1), ((64, 64), 2, 1),
                                          ((48, 80), -3, 2)])
def test_a_shifted_texture_gives_its_shift(method, size, dx, dy):
  frames = _shifted(size, dx, dy)
  out = flow.clip_flow(frames, method=method)
  assert out.dtype == np.float32 and out.shape == (len(frames), *size, 2)
  assert not out[0].any()
  for f in out[1:]:
    np.testing.assert_allclose(np.median(f.reshape(-1, 2), axis=0), (dx, dy), atol=0.5)
  gray = flow.clip_flow(frames[..., :1], method=method)   # 1 channel: the same gray frames
  np.testing.assert_allclose(gray, out, atol=1e-4)


def test_still_frames_give_no_flow_and_single_frames_work():
  frames = np.repeat(_shifted((32, 32), 0, 0, t=1), 3, axis=0)
  for method in flow.FLOW_METHODS:
    still = np.abs(flow.clip_flow(frames, method=method))
    assert np.median(still) < 0.01 and still.mean() < 0.05    # Farneback: a few border pixels
    assert flow.clip_flow(frames[:1], method=method).shape == (1, 32, 32, 2)


def test_bad_inputs_raise():
  good = _shifted((32, 32), 1, 0)
  with pytest.raises(ValueError, match="unknown optical flow method 'tvl1'"):
    flow.clip_flow(good, method="tvl1")
  with pytest.raises(ValueError, match=r"uint8 \[T, H, W, C\] array, got float32"):
    flow.clip_flow(good.astype(np.float32))
  with pytest.raises(ValueError, match=r"got uint8 \[2, 32, 32\]"):
    flow.clip_flow(good[:2, ..., 0])
  with pytest.raises(ValueError, match=r"got list"):
    flow.clip_flow(list(good))
  with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels, got 4"):
    flow.clip_flow(np.zeros((2, 32, 32, 4), np.uint8))
  with pytest.raises(ValueError, match=r"at least 16x16 pixels, got 12x64: use method='farneback'"):
    flow.clip_flow(np.zeros((2, 12, 64, 3), np.uint8))
  assert flow.clip_flow(np.zeros((2, 12, 64, 3), np.uint8), method="farneback").shape == (
      2, 12, 64, 2)

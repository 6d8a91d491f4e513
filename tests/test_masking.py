"""jaxvad.masking: threshold, temporal pooling, resize, the background-mask chain, masked scores."""

import functools

import jax
import numpy as np
import pytest

from jaxvad import masking
from jaxvad.evaluation import metrics
from jaxvad import scoring
from tests.naive import cam as naive


def _maps(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _activations(shape, seed):
  """Non-negative features with a strong direction inside a moving block, plus noise."""
  rng = np.random.default_rng(seed)
  b, t, h, w, c = shape
  region = np.zeros((b, t, h, w, 1))
  for i in range(t):
    region[:, i, i % h, :max(1, w // 2)] = 1.0
  acts = 3.0 * region * rng.uniform(0.5, 1.0, size=c) + 0.3 * np.abs(rng.normal(size=shape))
  return acts.astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_threshold_keeps_soft_values(jit):
  cam = _maps((2, 3, 4, 5))
  cam[0, 0, 0, :3] = [0.1, 0.0999, 0.5]
  fn = jax.jit(lambda c, t: masking.threshold_mask(c, threshold=t)) if jit else (
      lambda c, t: masking.threshold_mask(c, threshold=t))
  got = np.asarray(fn(cam, 0.1))
  np.testing.assert_array_equal(got, naive.threshold(cam, np.float32(0.1)))
  np.testing.assert_array_equal(got[0, 0, 0, :3], np.float32([0.1, 0.0, 0.5]))  # >= kept
  np.testing.assert_array_equal(fn(cam, 0.0), cam)  # Tables 4.5/4.7: threshold 0


def test_temporal_pool_is_a_per_pixel_moving_average():
  masks = _maps((2, 5, 3, 4), seed=1)  # window 7 > T = 5: every frame averages what exists
  for window in (1, 2, 3, 4, 7):
    got = np.asarray(jax.jit(functools.partial(masking.temporal_pool, window=window))(masks))
    assert got.shape == masks.shape and got.dtype == np.float32
    for b in range(2):
      for r in range(3):
        for c in range(4):
          np.testing.assert_allclose(got[b, :, r, c],
                                     metrics.moving_average(masks[b, :, r, c], window=window),
                                     atol=1e-6)
    np.testing.assert_allclose(got, naive.temporal_pool(masks, window), atol=1e-6)
    if window in (1, 4):
      np.testing.assert_allclose(masking.temporal_pool(masks, window=window), got, atol=1e-6)


def test_resize_masks():
  masks = _maps((2, 3, 4, 5), seed=2)
  up = np.asarray(jax.jit(functools.partial(masking.resize_masks, size=(8, 13)))(masks))
  assert up.shape == (2, 3, 8, 13)
  for idx in np.ndindex(2, 3):
    np.testing.assert_allclose(up[idx], naive.resize_bilinear(masks[idx], (8, 13)), atol=1e-6)
  down = np.asarray(masking.resize_masks(masks, size=(2, 3)))
  assert down.shape == (2, 3, 2, 3) and down.min() >= masks.min() and down.max() <= masks.max()
  binary = (masks > 0.5).astype(np.float32)
  near = np.asarray(masking.resize_masks(binary, size=(8, 10), method="nearest"))
  assert set(np.unique(near)) <= {0.0, 1.0}
  np.testing.assert_array_equal(near[..., ::2, ::2], binary)


def test_background_mask_is_the_paper_chain():
  # Three layers given, the last two used (N = 2), with R3D-like strides in time and space.
  acts = [_activations((1, 4, 4, 4, 3), 0), _activations((1, 4, 3, 4, 5), 1),
          _activations((1, 2, 2, 2, 6), 2)]
  options = dict(frame_size=(6, 8), layers=2, threshold=0.3, window=3, num_frames=4,
                 method="svd")
  got = np.asarray(jax.jit(functools.partial(masking.background_mask, **options))(acts))
  cam = naive.eigen_cam_layers(acts[1:], (6, 8), 4)
  want = naive.temporal_pool(naive.threshold(cam, 0.3), 3)
  assert got.shape == (1, 4, 6, 8) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=5e-5)
  assert 0.0 <= got.min() and got.max() <= 1.0 and 0 < (got == 0).mean() < 1


def test_background_mask_no_jit():
  # The shape of tests/test_cam.py's no-jit test, whose eager compilations this one reuses.
  acts = [_activations((2, 3, 5, 6, 7), 3)]
  got = masking.background_mask(acts, frame_size=(10, 12), threshold=0.2, window=2,
                                num_frames=6, method="svd")
  want = naive.temporal_pool(naive.threshold(naive.eigen_cam_layers(acts, (10, 12), 6), 0.2), 2)
  np.testing.assert_allclose(got, want, atol=5e-5)


def test_background_mask_power_and_one_layer():
  acts = [_activations((2, 4, 4, 4, 3), 3), _activations((2, 4, 3, 4, 5), 4)]
  fn = jax.jit(functools.partial(masking.background_mask, frame_size=(6, 8), layers=1))
  np.testing.assert_allclose(fn(acts), naive.eigen_cam_layers(acts[1:], (6, 8), 4), atol=5e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_masked_scores(jit):
  rng = np.random.default_rng(5)
  recon, frames = (rng.uniform(size=(2, 3, 6, 7, 3)).astype(np.float32) for _ in range(2))
  mask = np.where(rng.uniform(size=(2, 3, 6, 7)) > 0.4, rng.uniform(size=(2, 3, 6, 7)), 0.0)
  mask = mask.astype(np.float32)
  mask[1, 2] = 0.0  # a frame with nothing left to score
  fn = jax.jit(masking.masked_scores) if jit else masking.masked_scores
  got = {k: np.asarray(v) for k, v in fn(recon, frames, mask).items()}
  assert set(got) == {"psnr", "mse"} and got["psnr"].shape == (2, 3)
  np.testing.assert_allclose(got["psnr"], scoring.psnr(recon, frames, mask=mask), rtol=1e-6)
  np.testing.assert_allclose(got["mse"], scoring.mse(recon, frames, mask=mask), rtol=1e-6)
  mse, psnr = naive.masked_mse_psnr(recon.reshape(6, 6, 7, 3), frames.reshape(6, 6, 7, 3),
                                    mask.reshape(6, 6, 7))
  np.testing.assert_allclose(got["mse"].ravel(), mse, rtol=1e-5)
  np.testing.assert_allclose(got["psnr"].ravel(), psnr, atol=1e-4)
  assert np.isnan(got["psnr"][1, 2]) and np.isnan(got["mse"][1, 2])
  assert np.isfinite(np.delete(got["psnr"].ravel(), 5)).all()
  # A mask of ones is no mask.
  ones = fn(recon, frames, np.ones((6, 7), np.float32))
  np.testing.assert_allclose(ones["psnr"], scoring.psnr(recon, frames), atol=1e-5)
  # max_val scales with the frames.
  scaled = masking.masked_scores(255 * recon, 255 * frames, mask, max_val=255.0)
  np.testing.assert_allclose(scaled["psnr"], got["psnr"], atol=1e-3)


def test_bad_inputs():
  maps = np.ones((1, 3, 4, 4), np.float32)
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="threshold"):
      masking.threshold_mask(maps, threshold=bad)
  with pytest.raises(TypeError, match="real"):
    masking.threshold_mask(np.array(["a"]), threshold=0.1)
  for bad in (0, -2, 1.5, True):
    with pytest.raises(ValueError, match="window"):
      masking.temporal_pool(maps, window=bad)
  with pytest.raises(ValueError, match="T, H, W"):
    masking.temporal_pool(np.ones((4, 4)), window=3)
  for bad in ((4,), (0, 4), (2.5, 3), "ab"):
    with pytest.raises(ValueError, match="size"):
      masking.resize_masks(maps, size=bad)
  with pytest.raises(ValueError, match="method"):
    masking.resize_masks(maps, size=(8, 8), method="cubic")
  with pytest.raises(ValueError, match="H, W"):
    masking.resize_masks(np.ones(4), size=(8, 8))
  acts = [np.ones((1, 2, 2, 2, 3), np.float32)] * 2
  for bad in (0, 3, 1.5, True):
    with pytest.raises(ValueError, match="layers"):
      masking.background_mask(acts, frame_size=(4, 4), layers=bad)
  with pytest.raises(ValueError, match="window"):
    masking.background_mask(acts, frame_size=(4, 4), window=0)
  with pytest.raises(ValueError, match="threshold"):
    masking.background_mask(acts, frame_size=(4, 4), threshold=2.0)
  frames = np.ones((2, 4, 4, 3), np.float32)
  with pytest.raises(ValueError, match="shapes differ"):
    masking.masked_scores(frames, frames[:1], np.ones((4, 4)))
  with pytest.raises(ValueError, match="mask"):
    masking.masked_scores(frames, frames, np.ones((4, 5)))

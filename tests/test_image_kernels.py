"""SSIM/PSNR/patch-score and moving-average kernels against the slow references and scikit-image.

Frames are tiny (2 x 16 x 20 x 3) so the window-by-window references stay fast; every case
that a compiled specialisation needs (uint8, float32, float64; 11 and 9 taps) appears at least
once.
"""

import math

import numpy as np
import pytest

from jaxvad.evaluation import metrics
from jaxvad_kernels import image_scores as im
from tests import naive
from tests.naive import image as naive_im

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _pair(rng, shape, dtype):
  """A random frame batch and a noisy copy, in [0, 255] (uint8) or [0, 1] (floats)."""
  if dtype == np.uint8:
    a = rng.integers(0, 256, shape)
    b = np.clip(a + rng.integers(-40, 41, shape), 0, 255)
    return a.astype(np.uint8), b.astype(np.uint8), 255.0
  a = rng.random(shape)
  b = np.clip(a + 0.15 * rng.standard_normal(shape), 0, 1)
  return a.astype(dtype), b.astype(dtype), 1.0


def _mask(rng, kind, n, h, w):
  if kind is None:
    return None
  if kind == "hw_bool":
    return rng.random((h, w)) < 0.7
  if kind == "nhw_bool":
    return rng.random((n, h, w)) < 0.6
  # Fractional weights with zeros: the mask scales the frames, and only nonzero pixels count.
  return np.where(rng.random((n, h, w)) < 0.3, 0.0, rng.random((n, h, w)))


# (dtype, frame shape, mask kind, sigma, win_size, patch)
CASES = [
    (np.float64, (2, 16, 20, 3), None, 1.5, 11, 6),
    (np.float64, (2, 16, 20), "hw_bool", 1.5, 11, 7),
    (np.uint8, (2, 16, 20, 3), "nhw_float", 1.5, 11, 8),
    (np.uint8, (3, 13, 11), None, 1.5, 11, 6),
    (np.float32, (2, 16, 20, 3), "hw_bool", 1.5, 11, 6),
    (np.float32, (2, 16, 20), None, 1.5, 11, 8),
    (np.float64, (2, 17, 14, 2), "nhw_bool", 1.0, 9, 5),
]


@pytest.mark.parametrize("dtype, shape, mask_kind, sigma, win_size, patch", CASES)
def test_matches_naive(dtype, shape, mask_kind, sigma, win_size, patch):
  rng = np.random.default_rng(len(shape) * 100 + shape[1])
  a, b, max_val = _pair(rng, shape, dtype)
  mask = _mask(rng, mask_kind, *shape[:3])
  window = {"sigma": sigma, "win_size": win_size}

  want_map = naive_im.ssim_map(a, b, max_val=max_val, mask=mask, **window)
  got_map = im.ssim_map(a, b, mask=mask, **window)
  assert got_map.dtype == np.float64 and got_map.shape == shape[:3]
  np.testing.assert_allclose(got_map, want_map, **TOL)

  got = im.ssim(a, b, mask=mask, **window)
  assert got.dtype == np.float64 and got.shape == shape[:1]
  np.testing.assert_allclose(got, naive_im.ssim(a, b, max_val=max_val, mask=mask, **window),
                             **TOL)
  np.testing.assert_allclose(im.mse(a, b, mask=mask), naive_im.mse(a, b, mask=mask), **TOL)
  np.testing.assert_allclose(im.psnr(a, b, mask=mask),
                             naive_im.psnr(a, b, max_val=max_val, mask=mask), **TOL)

  got_patch = im.patch_scores(a, b, patch=patch, mask=mask, **window)
  want_patch = naive_im.patch_scores(a, b, patch=patch, max_val=max_val, mask=mask, **window)
  assert set(got_patch) == {"ssim", "mse", "psnr"}
  for key, want in want_patch.items():
    assert got_patch[key].shape == (shape[0], shape[1] // patch, shape[2] // patch)
    np.testing.assert_allclose(got_patch[key], want, err_msg=key, **TOL)


def test_naive_psnr_agrees_with_the_package_reference():
  # Without a mask the masked reference must reduce to tests.naive.psnr.
  a, b, _ = _pair(np.random.default_rng(1), (3, 5, 6, 2), np.float64)
  np.testing.assert_allclose(naive_im.psnr(a, b, max_val=1.0), naive.psnr(a, b), rtol=1e-13)
  np.testing.assert_allclose(im.psnr(a, b), naive.psnr(a, b), **TOL)


def test_gaussian_taps():
  ndimage = pytest.importorskip("scipy.ndimage")
  for sigma, win_size in [(1.5, 11), (1.0, 9), (0.8, 5)]:
    taps = im.gaussian_taps(sigma, win_size)
    assert taps.shape == (win_size,) and taps.sum() == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_allclose(np.outer(taps, taps), naive_im.gaussian_window(sigma, win_size),
                               rtol=1e-14)
    # scipy's gaussian_filter builds the same taps (scikit-image: truncate=3.5, so r = 5 at 1.5).
    r = (win_size - 1) // 2
    delta = np.zeros(2 * r + 1)
    delta[r] = 1.0
    np.testing.assert_allclose(ndimage.gaussian_filter1d(delta, sigma, truncate=r / sigma), taps,
                               rtol=1e-14)


# --------------------------------------------------------------------------- scikit-image


def _skimage_ssim(x, y, max_val, sigma=1.5, full=False):
  metrics_sk = pytest.importorskip("skimage.metrics")
  return metrics_sk.structural_similarity(
      x, y, gaussian_weights=True, sigma=sigma, use_sample_covariance=False, data_range=max_val,
      channel_axis=-1 if x.ndim == 3 else None, full=full)


@pytest.mark.parametrize("dtype, shape, sigma, win_size", [
    (np.float64, (3, 24, 31, 3), 1.5, 11),
    (np.float64, (2, 11, 13), 1.5, 11),   # a frame barely larger than the window
    (np.uint8, (2, 30, 26), 1.5, 11),
    (np.float64, (2, 20, 17, 2), 1.0, 9),  # scikit-image derives 9 taps from sigma 1
])
def test_matches_skimage(dtype, shape, sigma, win_size):
  a, b, max_val = _pair(np.random.default_rng(shape[1]), shape, dtype)
  got = im.ssim(a, b, sigma=sigma, win_size=win_size)
  got_map = im.ssim_map(a, b, sigma=sigma, win_size=win_size)
  for n in range(shape[0]):
    want, want_map = _skimage_ssim(a[n], b[n], max_val, sigma, full=True)
    assert got[n] == pytest.approx(want, rel=1e-12, abs=1e-12)
    if want_map.ndim == 3:  # per-channel maps
      want_map = want_map.mean(axis=-1)
    np.testing.assert_allclose(got_map[n], want_map, rtol=1e-10, atol=1e-12)


def test_float32_matches_skimage_in_float64():
  # The kernel computes in float64 whatever the input dtype (scikit-image keeps float32).
  a, b, _ = _pair(np.random.default_rng(4), (2, 18, 22, 3), np.float32)
  got = im.ssim(a, b)
  want = [_skimage_ssim(x.astype(np.float64), y.astype(np.float64), 1.0) for x, y in zip(a, b)]
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_masked_ssim_map_is_skimage_on_masked_frames():
  rng = np.random.default_rng(8)
  a, b, _ = _pair(rng, (2, 16, 20, 3), np.float64)
  mask = rng.random((2, 16, 20)) < 0.5
  got = im.ssim_map(a, b, mask=mask)
  for n in range(2):
    m = mask[n, :, :, None]
    want = _skimage_ssim(a[n] * m, b[n] * m, 1.0, full=True)[1].mean(axis=-1)
    np.testing.assert_allclose(got[n], want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("dtype, max_val", [(np.float64, 1.0), (np.uint8, 255.0)])
def test_identical_frames(dtype, max_val):
  a, _, _ = _pair(np.random.default_rng(2), (2, 16, 20, 3), dtype)
  np.testing.assert_allclose(im.ssim(a, a), 1.0, rtol=1e-12)
  np.testing.assert_allclose(im.ssim_map(a, a), 1.0, rtol=1e-12)
  np.testing.assert_array_equal(im.mse(a, a), 0.0)
  # The MSE floor eps keeps the PSNR finite: 10 log10(max_val**2 / 1e-10).
  np.testing.assert_allclose(im.psnr(a, a), 10 * math.log10(max_val**2 / 1e-10), rtol=1e-12)
  patches = im.patch_scores(a, a, patch=8)
  np.testing.assert_allclose(patches["ssim"], 1.0, rtol=1e-12)
  np.testing.assert_allclose(patches["psnr"], 10 * math.log10(max_val**2 / 1e-10), rtol=1e-12)


def test_constant_frames():
  # Zero variance everywhere: SSIM reduces to the luminance term (2xy + C1) / (x^2 + y^2 + C1).
  values = [(0.2, 0.7), (0.5, 0.5), (0.0, 1.0), (0.0, 0.0)]
  a = np.stack([np.full((16, 20), x) for x, _ in values])
  b = np.stack([np.full((16, 20), y) for _, y in values])
  c1 = 0.01**2
  want = [(2 * x * y + c1) / (x * x + y * y + c1) for x, y in values]
  np.testing.assert_allclose(im.ssim(a, b), want, rtol=1e-10)
  np.testing.assert_allclose(im.ssim(a, b), naive_im.ssim(a, b, max_val=1.0), rtol=1e-10)
  np.testing.assert_allclose(im.ssim_map(a, b), np.broadcast_to(np.reshape(want, (4, 1, 1)),
                                                                (4, 16, 20)), rtol=1e-10)
  np.testing.assert_allclose(im.mse(a, b), [(x - y) ** 2 for x, y in values], rtol=1e-12)
  np.testing.assert_allclose(im.psnr(a, b), naive_im.psnr(a, b, max_val=1.0), rtol=1e-12)


def test_all_masked_frames_score_nan():
  a, b, _ = _pair(np.random.default_rng(3), (3, 16, 20, 3), np.float64)
  mask = np.ones((3, 16, 20), bool)
  mask[1] = False             # nothing left
  mask[2, 5:-5, 5:-5] = False  # only border pixels left: no SSIM interior, but an MSE
  ssim = im.ssim(a, b, mask=mask)
  assert np.isfinite(ssim[0]) and np.isnan(ssim[1]) and np.isnan(ssim[2])
  for score in (im.mse(a, b, mask=mask), im.psnr(a, b, mask=mask)):
    assert np.isfinite(score[[0, 2]]).all() and np.isnan(score[1])
  np.testing.assert_allclose(ssim, naive_im.ssim(a, b, max_val=1.0, mask=mask), **TOL)
  assert np.isnan(im.ssim(a, b, mask=np.zeros((16, 20)))).all()
  assert np.isnan(im.psnr(a, b, mask=np.zeros((16, 20)))).all()
  patches = im.patch_scores(a, b, patch=8, mask=mask)
  for key in ("ssim", "mse", "psnr"):
    assert np.isnan(patches[key][1]).all() and np.isfinite(patches[key][0]).all()


def test_patch_ssim_weighted_mean_is_frame_ssim():
  a, b, _ = _pair(np.random.default_rng(6), (2, 24, 32), np.float64)
  patch = 8
  tiles = im.patch_scores(a, b, patch=patch)
  # Interior pixels per tile: the first and last tile rows/columns lose 5 pixels to the crop.
  rows, cols = np.full(3, patch), np.full(4, patch)
  rows[[0, -1]] -= 5
  cols[[0, -1]] -= 5
  counts = np.outer(rows, cols)
  weighted = (tiles["ssim"] * counts).sum(axis=(1, 2)) / counts.sum()
  np.testing.assert_allclose(weighted, im.ssim(a, b), rtol=1e-12)
  # The tiles' MSE averages to the frame's (equal tiles cover the frame).
  np.testing.assert_allclose(tiles["mse"].mean(axis=(1, 2)), im.mse(a, b), rtol=1e-12)


def test_input_forms_agree():
  rng = np.random.default_rng(9)
  a, b, _ = _pair(rng, (2, 16, 20, 3), np.float64)
  want = im.ssim(a, b)
  # Views that are not C-contiguous, and one mask shared by all frames vs one per frame.
  flipped = im.ssim(a[:, ::-1, :, ::-1], b[:, ::-1, :, ::-1])
  np.testing.assert_allclose(flipped, naive_im.ssim(a[:, ::-1, :, ::-1], b[:, ::-1, :, ::-1],
                                                    max_val=1.0), **TOL)
  mask = rng.random((16, 20)) < 0.5
  np.testing.assert_array_equal(im.ssim(a, b, mask=mask),
                                im.ssim(a, b, mask=np.broadcast_to(mask, (2, 16, 20))))
  np.testing.assert_array_equal(im.ssim(a, b, mask=mask), im.ssim(a, b, mask=mask * 1.0))
  # An all-ones mask takes the masked code paths to the unmasked answers.
  ones = np.ones((16, 20))
  for fn in (im.ssim, im.ssim_map, im.mse, im.psnr):
    np.testing.assert_array_equal(fn(a, b, mask=ones), fn(a, b))
  for key, value in im.patch_scores(a, b, patch=8, mask=ones).items():
    np.testing.assert_array_equal(value, im.patch_scores(a, b, patch=8)[key])
  # A gray batch is a one-channel batch.
  np.testing.assert_array_equal(im.ssim(a[..., 0], b[..., 0]), im.ssim(a[..., :1], b[..., :1]))
  # Mixed dtypes are scored in float64; max_val is then required when one side is uint8.
  a8, b8, _ = _pair(rng, (2, 16, 20), np.uint8)
  np.testing.assert_allclose(im.ssim(a8, b8.astype(np.float32), max_val=255),
                             im.ssim(a8, b8), **TOL)
  np.testing.assert_allclose(im.psnr(a8.astype(np.float64), b8, max_val=255), im.psnr(a8, b8),
                             **TOL)
  a32 = a.astype(np.float32)
  np.testing.assert_array_equal(im.ssim(a32, b), im.ssim(a32.astype(np.float64), b))
  # float16 frames (no Numba dtype) are scored in float64.
  a16, b16 = a.astype(np.float16), b.astype(np.float16)
  np.testing.assert_array_equal(im.ssim(a16, b16),
                                im.ssim(a16.astype(np.float64), b16.astype(np.float64)))
  # max_val and eps are honoured.
  np.testing.assert_allclose(im.psnr(a, b, max_val=2.0) - im.psnr(a, b),
                             20 * math.log10(2.0), rtol=1e-12)
  assert im.psnr(a, a, eps=1e-4) == pytest.approx(40.0)
  np.testing.assert_allclose(im.ssim(a * 255, b * 255, max_val=255), want, **TOL)


def test_threaded_batch_equals_frame_by_frame():
  # Batches of >= 65536 pixels split over threads; single frames here run on the caller.
  rng = np.random.default_rng(12)
  a, b, _ = _pair(rng, (5, 120, 136), np.float64)
  mask = rng.random((5, 120, 136)) < 0.8
  got = {"ssim": im.ssim(a, b, mask=mask), "ssim_map": im.ssim_map(a, b, mask=mask),
         "mse": im.mse(a, b, mask=mask), "psnr": im.psnr(a, b, mask=mask)}
  got_patch = im.patch_scores(a, b, patch=32, mask=mask)
  for n in range(5):
    one = (a[n:n + 1], b[n:n + 1])
    for name, fn in (("ssim", im.ssim), ("ssim_map", im.ssim_map), ("mse", im.mse),
                     ("psnr", im.psnr)):
      np.testing.assert_array_equal(got[name][n], fn(*one, mask=mask[n])[0], err_msg=name)
    for key, value in im.patch_scores(*one, patch=32, mask=mask[n]).items():
      np.testing.assert_array_equal(got_patch[key][n], value[0], err_msg=key)


# --------------------------------------------------------------------------- moving average


def test_moving_average():
  rng = np.random.default_rng(10)
  for length in (1, 2, 7, 50):
    x = 1e6 + rng.standard_normal(length)
    for window in (1, 2, 3, 4, 9, length + 3):
      got = im.moving_average(x, window=window)
      assert got.dtype == np.float64 and got.shape == x.shape
      np.testing.assert_allclose(got, naive.moving_average(x, window), rtol=1e-13)
      np.testing.assert_allclose(got, metrics.moving_average(x, window=window), rtol=1e-13)
  # Rounding must not random-walk along a long series (an uncompensated running sum ends
  # ~1e-8 off here): the tail matches a fresh average of the tail.
  long = 1e6 + rng.standard_normal(1_000_000)
  np.testing.assert_allclose(im.moving_average(long, window=25)[-100:],
                             naive.moving_average(long[-200:], 25)[-100:], rtol=0, atol=2e-9)
  x = rng.standard_normal(10)
  got = im.moving_average(x, window=1)
  np.testing.assert_array_equal(got, x)
  assert got is not x
  assert im.moving_average(np.zeros(0), window=3).shape == (0,)


# --------------------------------------------------------------------------- bad input

_F = np.zeros((2, 16, 20, 3))


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((_F.astype(np.int32), _F.astype(np.int32)), {}, TypeError, "uint8 or floating"),
    ((_F.astype(bool), _F.astype(bool)), {}, TypeError, "uint8 or floating"),
    ((_F[0, 0], _F[0, 0]), {}, ValueError, r"\[N, H, W, C\] or \[N, H, W\]"),
    ((_F[None], _F[None]), {}, ValueError, r"\[N, H, W, C\] or \[N, H, W\]"),
    ((_F[:0], _F[:0]), {}, ValueError, "a is empty"),
    ((_F, np.where(_F == 0, np.nan, _F)), {}, ValueError, "b contains NaN"),
    ((_F + np.inf, _F), {}, ValueError, "a contains NaN or inf"),
    ((_F - np.inf, _F - np.inf), {}, ValueError, "a contains NaN or inf"),
    ((_F, _F[:, :15]), {}, ValueError, "shapes differ"),
    ((_F, _F[..., :1]), {}, ValueError, "shapes differ"),
    ((_F.astype(np.uint8), _F), {}, TypeError, "pass max_val"),
    ((_F, _F), {"mask": np.ones((16, 21))}, ValueError, "mask must be"),
    ((_F, _F), {"mask": np.ones((3, 16, 20))}, ValueError, "mask must be"),
    ((_F, _F), {"mask": np.ones((1, 16, 20))}, ValueError, "mask must be"),
    ((_F, _F), {"mask": np.ones((2, 16, 20, 3))}, ValueError, "mask must be"),
    ((_F, _F), {"mask": np.full((16, 20), np.nan)}, ValueError, "mask contains NaN"),
    ((_F, _F), {"mask": np.full((16, 20), "a")}, TypeError, "mask must be bool or real"),
    ((_F, _F), {"max_val": 0}, ValueError, "max_val must be a positive"),
    ((_F, _F), {"max_val": np.inf}, ValueError, "max_val must be a positive"),
])
def test_bad_frames(args, kwargs, error, match):
  for fn in (im.ssim, im.ssim_map, im.psnr, im.patch_scores):
    with pytest.raises(error, match=match):
      fn(*args, **kwargs)
  if "max_val" not in kwargs and match != "pass max_val":  # mse needs no range
    with pytest.raises(error, match=match):
      im.mse(*args, **kwargs)


def test_nan_under_a_zero_mask_still_raises():
  # MSE/PSNR check the frames only when a sum is not finite; a masked NaN must still get there.
  bad = _F.copy()
  bad[1, 3, 4, 1] = np.nan
  for fn in (im.mse, im.psnr, im.ssim, im.patch_scores):
    with pytest.raises(ValueError, match="b contains NaN"):
      fn(_F, bad, mask=np.zeros((16, 20)))


@pytest.mark.parametrize("kwargs, match", [
    ({"win_size": 10}, "positive odd integer"),
    ({"win_size": 0}, "positive odd integer"),
    ({"win_size": 7.5}, "positive odd integer"),
    ({"win_size": 17}, "exceeds the frame size"),
    ({"sigma": 0.0}, "sigma must be > 0"),
    ({"sigma": np.nan}, "sigma must be > 0"),
    ({"k1": -0.01}, "k1 and k2 must be >= 0"),
])
def test_bad_window(kwargs, match):
  for fn in (im.ssim, im.ssim_map, im.patch_scores):
    with pytest.raises(ValueError, match=match):
      fn(_F, _F, **kwargs)


@pytest.mark.parametrize("patch", [0, 17, 6.5])
def test_bad_patch(patch):
  # patch must fit the frame and be an integer.
  with pytest.raises(ValueError, match="patch must be an integer"):
    im.patch_scores(_F, _F, patch=patch)


def test_patches_inside_the_ssim_crop_have_no_ssim():
  # 4 px patches every 2 px: those within 5 px (11 taps) of a border have no interior pixel.
  a, b, _ = _pair(np.random.default_rng(8), (1, 16, 16), np.float64)
  got = im.patch_scores(a, b, patch=4, stride=2)
  assert np.isfinite(got["psnr"]).all() and np.isfinite(got["mse"]).all()
  inner = np.zeros((7, 7), bool)
  inner[1:6, 1:6] = True   # patches 1..5 (rows 2..5 to 10..13) reach the interior [5, 11)
  np.testing.assert_array_equal(np.isfinite(got["ssim"][0]), inner)


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.zeros((3, 2)),), {"window": 2}, "x must be 1-D"),
    ((np.zeros(3),), {"window": 0}, "window must be an integer >= 1"),
    ((np.zeros(3),), {"window": 1.5}, "window must be an integer >= 1"),
    ((np.array([1.0, np.nan]),), {"window": 2}, "x contains NaN"),
])
def test_moving_average_bad_input(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    im.moving_average(*args, **kwargs)

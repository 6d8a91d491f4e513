import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxvad_kernels import image_scores as kernels

from jaxvad.evaluation import metrics
from jaxvad import scoring
from tests import naive


def _frames(shape, seed, noise=0.05):
  """Frame pairs in [0, 1] with the content of real video: smooth ramps, a flat block
  (zero local variance, where a float32 SSIM cancels worst) and a mild reconstruction error."""
  rng = np.random.default_rng(seed)
  h, w = shape[-3:-1]
  ramp = np.add.outer(np.linspace(0, 0.6, h), np.linspace(0, 0.3, w))[..., None]
  a = ramp + 0.3 * rng.random(shape)
  a[..., : h // 3, : w // 2, :] = 0.7
  b = a + rng.normal(0, noise, shape)
  b[..., : h // 4, : w // 3, :] = 0.7 + rng.normal(0, 1e-3, b[..., : h // 4, : w // 3, :].shape)
  return np.clip(a, 0, 1).astype(np.float32), np.clip(b, 0, 1).astype(np.float32)


def _mask(shape, seed, kind):
  """None, a shared [H, W] mask, or a per-frame [..., H, W] mask (soft values and zeros)."""
  if kind == "none":
    return None
  rng = np.random.default_rng(seed)
  frame_shape = shape[-3:-1] if kind == "shared" else shape[:-1]
  return (rng.random(frame_shape) > 0.3) * rng.uniform(0.5, 1.0, frame_shape).astype(np.float32)


def _scores(a, b, mask, opts=()):
  """(ssim, ssim_map, mse, psnr) of one batch; opts holds the SSIM options as (key, value)."""
  kw = dict(opts)
  max_val = kw.get("max_val", 1.0)
  return (scoring.ssim(a, b, mask=mask, **kw), scoring.ssim_map(a, b, mask=mask, **kw),
          scoring.mse(a, b, mask=mask), scoring.psnr(a, b, mask=mask, max_val=max_val))


# Module level, so tests that share a shape share its compile (~1 s each).
_jit_scores = jax.jit(_scores, static_argnums=3)


def _all_scores(a, b, mask, use_jit, **opts):
  """(ssim, ssim_map, mse, psnr) as NumPy arrays, jitted or eagerly."""
  fn = _jit_scores if use_jit else _scores
  return tuple(np.asarray(x) for x in fn(a, b, mask, tuple(sorted(opts.items()))))


def _both_ssims(a, b, mask, use_jit, **opts):
  """(ssim, ssim_map) as NumPy arrays, jitted or eagerly."""
  return _all_scores(a, b, mask, use_jit, **opts)[:2]


def _flat(x):
  """[..., H, W, C] frames (or [..., H, W] masks, with C=None) as the kernels' [N, ...]."""
  return None if x is None else x.reshape((-1,) + x.shape[-3:])


@pytest.mark.parametrize("use_jit", [False, True])
def test_psnr_matches_reference(use_jit):
  rng = np.random.default_rng(0)
  a = rng.random((6, 9, 7, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
  b[2] = a[2]  # identical frame: capped by eps, finite
  fn = jax.jit(scoring.psnr) if use_jit else scoring.psnr
  got = np.asarray(fn(a, b))
  np.testing.assert_allclose(got, naive.psnr(a, b), rtol=1e-5)
  assert np.isfinite(got).all()


def test_psnr_batched_time_axis_and_max_val():
  rng = np.random.default_rng(1)
  a = rng.random((2, 3, 8, 8, 1)).astype(np.float32) * 255
  b = rng.random((2, 3, 8, 8, 1)).astype(np.float32) * 255
  got = np.asarray(scoring.psnr(a, b, max_val=255.0))
  ref = naive.psnr(a.reshape(6, 8, 8, 1), b.reshape(6, 8, 8, 1), max_val=255.0).reshape(2, 3)
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_psnr_rejects_bad_shapes():
  with pytest.raises(ValueError, match="shapes differ"):
    scoring.psnr(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3)))
  with pytest.raises(ValueError, match="H, W, C"):
    scoring.psnr(np.zeros((4, 4)), np.zeros((4, 4)))


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7, 50])
def test_moving_average_matches_reference(window):
  x = np.random.default_rng(window).normal(size=23)
  np.testing.assert_allclose(metrics.moving_average(x, window=window),
                             naive.moving_average(x, window), rtol=1e-12)


def test_auroc_aupr_against_reference_and_sklearn_edge_cases():
  rng = np.random.default_rng(2)
  labels = rng.random(200) < 0.3
  scores = rng.normal(size=200) + labels * 0.8
  scores[:20] = np.round(scores[:20])  # some ties
  assert metrics.frame_auroc(labels, scores) == pytest.approx(naive.auroc(labels, scores), abs=1e-12)
  # AUPR (average precision) by its definition, on untied scores: the mean over anomalous
  # frames of the precision among the frames scored at least as high.
  untied = rng.normal(size=200) + labels * 0.8
  hits = labels[np.argsort(-untied)]
  precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
  assert metrics.frame_aupr(labels, untied) == pytest.approx(precision_at_hits.mean(), abs=1e-12)
  assert np.isnan(metrics.frame_auroc(np.zeros(5, bool), np.arange(5.0)))
  with pytest.raises(ValueError, match="NaN"):
    metrics.frame_auroc(labels, np.full(200, np.nan))


# ---------------------------------------------------------------------------------------------
# SSIM, MSE and PSNR against the Numba kernels (float64), the reference conventions.

# Every new shape costs an XLA compile (~0.5 s), and in eager mode one per op (~1.5 s), so
# eager mode runs on one shape only.
SSIM_CASES = [  # (shape, mask kind, use_jit)
    ((4, 24, 21, 1), "none", False),
    ((4, 24, 21, 1), "per_frame", False),
    ((4, 24, 21, 1), "none", True),
    ((2, 2, 20, 17, 3), "shared", True),
    ((3, 24, 21, 3), "per_frame", True),
]


@pytest.mark.parametrize("shape,mask_kind,use_jit", SSIM_CASES)
def test_ssim_and_map_match_kernels(shape, mask_kind, use_jit):
  a, b = _frames(shape, seed=len(shape) + shape[-1])
  mask = _mask(shape, seed=7, kind=mask_kind)
  got, got_map = _both_ssims(a, b, mask, use_jit)
  assert got.shape == shape[:-3] and got_map.shape == shape[:-1]
  assert got.dtype == np.float32 and got_map.dtype == np.float32
  # The kernels take [N, H, W, C] and an [N, H, W] or [H, W] mask; float64 input is the
  # specialisation every kernel test compiles (numba caches it on disk).
  a64, b64 = _flat(a).astype(np.float64), _flat(b).astype(np.float64)
  kmask = mask if mask is None or mask.ndim == 2 else mask.reshape((-1,) + mask.shape[-2:])
  ref = kernels.ssim(a64, b64, max_val=1.0, mask=kmask).reshape(shape[:-3])
  ref_map = kernels.ssim_map(a64, b64, max_val=1.0, mask=kmask).reshape(shape[:-1])
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got_map, ref_map, rtol=0, atol=1e-5)


def test_ssim_options_match_scikit_image():
  # Non-default windows against scikit-image (the kernels' own reference), not the kernels: a
  # new window length is a new numba compile of several seconds. skimage derives the window
  # from sigma (truncate 3.5), so win_size 9 for sigma 1.
  metrics_ski = pytest.importorskip("skimage.metrics")
  a, b = _frames((2, 19, 23, 2), seed=3, noise=0.1)
  a, b = a * 255, b * 255
  opts = dict(max_val=255.0, sigma=1.0, win_size=9, k1=0.02, k2=0.05)
  got, got_map = _both_ssims(a, b, None, True, **opts)
  for n in range(2):
    ref, ref_map = metrics_ski.structural_similarity(
        a[n].astype(np.float64), b[n].astype(np.float64), gaussian_weights=True, sigma=1.0,
        use_sample_covariance=False, data_range=255.0, K1=0.02, K2=0.05, channel_axis=-1,
        full=True)
    np.testing.assert_allclose(got[n], ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_map[n], ref_map.mean(-1), rtol=0, atol=1e-5)


def test_ssim_one_pixel_window_is_the_luminance_term():
  # win_size 1: local means are the pixels and (co)variances vanish, so the map is
  # (2xy + C1) / (x^2 + y^2 + C1) and the C2 factors cancel.
  a, b = _frames((2, 5, 4, 3), seed=4)
  got, got_map = _both_ssims(a, b, None, True, win_size=1)
  x, y, c1 = a.astype(np.float64), b.astype(np.float64), 0.01**2
  ref_map = ((2 * x * y + c1) / (x * x + y * y + c1)).mean(-1)
  np.testing.assert_allclose(got_map, ref_map, rtol=0, atol=1e-6)
  np.testing.assert_allclose(got, ref_map.mean((1, 2)), rtol=0, atol=1e-6)


def test_ssim_identical_frames_and_fully_masked_frames():
  a, _ = _frames((3, 24, 21, 3), seed=6)
  ones = np.ones((3, 24, 21), np.float32)
  got, got_map = _both_ssims(a, a, ones, True)
  np.testing.assert_allclose(got, 1.0, atol=1e-6)
  np.testing.assert_allclose(got_map, 1.0, atol=1e-6)
  b = np.clip(a + 0.1, 0, 1)
  mask = ones.copy()
  mask[1] = 0.0            # nothing left: every score is NaN
  mask[2, 5:-5, 5:-5] = 0  # only the border is left: MSE/PSNR count it, SSIM has no interior
  ssim, _, mse, psnr = _all_scores(a, b, mask, True)
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  for name, got, nan_frames in (("ssim", ssim, [1, 2]), ("mse", mse, [1]), ("psnr", psnr, [1])):
    got = np.asarray(got)
    assert (np.isnan(got) == np.isin(np.arange(3), nan_frames)).all(), name
    np.testing.assert_allclose(got, getattr(kernels, name)(a64, b64, mask=mask), rtol=1e-5)
  # The guarded division gives the unscored frames a zero gradient, not NaN.
  grad = jax.jit(jax.grad(lambda x: jnp.nansum(scoring.ssim(x, b, mask=mask))))(a)
  assert np.isfinite(np.asarray(grad)).all() and np.asarray(grad[0]).any()
  assert not np.asarray(grad[1:]).any()


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "shared", "per_frame"])
def test_mse_psnr_match_kernels(mask_kind, use_jit):
  shape = (2, 3, 12, 10, 3)
  a, b = _frames(shape, seed=8)
  b[0, 1] = a[0, 1]  # identical frame: PSNR capped by eps
  mask = _mask(shape, seed=9, kind=mask_kind)
  kmask = None if mask is None else mask if mask.ndim == 2 else mask.reshape(6, 12, 10)
  flat_a, flat_b = _flat(a).astype(np.float64), _flat(b).astype(np.float64)
  def both(a, b, mask):
    return scoring.mse(a, b, mask=mask), scoring.psnr(a, b, mask=mask)
  got_mse, got_psnr = (jax.jit(both) if use_jit else both)(a, b, mask)
  np.testing.assert_allclose(got_mse, kernels.mse(flat_a, flat_b, mask=kmask).reshape(2, 3),
                             rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(got_psnr,
                             kernels.psnr(flat_a, flat_b, max_val=1.0, mask=kmask).reshape(2, 3),
                             rtol=1e-5)


def test_scores_reject_bad_input():
  a = np.zeros((2, 16, 16, 1), np.float32)
  with pytest.raises(ValueError, match="shapes differ"):
    scoring.ssim(a, np.zeros((2, 16, 15, 1)))
  with pytest.raises(ValueError, match="H, W, C"):
    scoring.ssim_map(np.zeros((16, 16)), np.zeros((16, 16)))
  for win_size in (0, 4, 10, 2.5):
    with pytest.raises(ValueError, match="positive odd"):
      scoring.ssim(a, a, win_size=win_size)
  with pytest.raises(ValueError, match="exceeds the frame"):
    scoring.ssim(a[:, :9], a[:, :9])
  with pytest.raises(ValueError, match="sigma"):
    scoring.ssim(a, a, sigma=0.0)
  with pytest.raises(ValueError, match="max_val"):
    scoring.psnr(a, a, max_val=0.0)
  for bad_mask in (np.ones(16), np.ones((16, 15)), np.ones((3, 16, 16)), np.ones((2, 2, 16, 16))):
    with pytest.raises(ValueError, match="mask"):
      scoring.ssim(a, a, mask=bad_mask)
    with pytest.raises(ValueError, match="mask"):
      scoring.mse(a, a, mask=bad_mask)
  with pytest.raises(TypeError, match="real"):
    scoring.ssim(a.astype(np.complex64), a.astype(np.complex64))
  # The checks read static shapes, so they fire while tracing under jit too.
  with pytest.raises(ValueError, match="exceeds the frame"):
    jax.jit(scoring.ssim)(a[:, :9], a[:, :9])

"""jaxvad.cam: Eigen-CAM per frame vs a float64 numpy.linalg.svd reference, sign rule, layers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import cam
from tests.naive import cam as naive

METHODS = ["power", "eigh", "svd"]


def _blob_activations(shape, *, seed=0, amp=3.0, noise=0.3, region=None):
  """Non-negative [..., H, W, C] features: a strong direction d inside a region, plus noise.

  Returns (activations float32, region bool [H, W]).
  """
  rng = np.random.default_rng(seed)
  *_, h, w, c = shape
  if region is None:
    region = np.zeros((h, w), bool)
    region[h // 4:h // 4 + max(1, h // 3), w // 3:w // 3 + max(1, w // 2)] = True
  direction = rng.uniform(0.5, 1.0, size=c)
  acts = amp * region[..., None] * direction + noise * np.abs(rng.normal(size=shape))
  return acts.astype(np.float32), region


# Jitted once per method and reused, so the tests share compilations.
CAM = {m: jax.jit(functools.partial(cam.eigen_cam, method=m)) for m in METHODS}
CHANNEL_GRAM, PIXEL_GRAM = (2, 3, 5, 6, 7), (2, 2, 3, 4, 16)  # H'W' > C' and H'W' < C'


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [CHANNEL_GRAM, PIXEL_GRAM], ids=["channel-gram", "pixel-gram"])
def test_matches_naive_svd(shape, method):
  x, _ = _blob_activations(shape, seed=1)
  got = np.asarray(CAM[method](x))
  assert got.shape == shape[:-1] and got.dtype == np.float32
  np.testing.assert_allclose(got, naive.eigen_cam(x), atol=2e-5)


@pytest.mark.parametrize("method", METHODS)
def test_no_jit_matches_jit(method):
  x, _ = _blob_activations(CHANNEL_GRAM, seed=1)
  np.testing.assert_allclose(cam.eigen_cam(x, method=method), CAM[method](x), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_sign_rule_is_invariant_to_flipping_the_activations(method):
  x, _ = _blob_activations(CHANNEL_GRAM, seed=2)
  signed = np.random.default_rng(3).normal(size=CHANNEL_GRAM).astype(np.float32)
  # Zero-mean features: v . mu ~ 0, so the largest-|p| fallback decides.
  zero_mean = signed - signed.mean(axis=(-3, -2), keepdims=True)
  for a in (x, signed, zero_mean):
    got = np.asarray(CAM[method](a))
    np.testing.assert_allclose(CAM[method](-a), got, atol=1e-6)
    np.testing.assert_allclose(got.max(axis=(-2, -1)), 1.0, atol=1e-6)
    if method != "power" or a is x:  # the random maps have small gaps: power is not converged
      np.testing.assert_allclose(got, naive.eigen_cam(a), atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fraction", ["small", "large"])
def test_localises_the_leading_direction(method, fraction):
  h, w = CHANNEL_GRAM[2:4]
  region = np.zeros((h, w), bool)
  if fraction == "small":
    region[1:3, 2:4] = True   # 4 of 30 pixels
  else:
    region[:, 2:] = True      # 2/3 of the frame: a largest-|p| rule would light the background
  x, _ = _blob_activations(CHANNEL_GRAM, seed=4, noise=0.1, region=region)
  got = np.asarray(CAM[method](x))
  assert np.all(got[..., region] > 0.5)
  assert np.all(got[..., ~region] < 0.1)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_maps_are_zero_not_nan(method, jit):
  fn = CAM[method] if jit else functools.partial(cam.eigen_cam, method=method)
  cases = [
      np.zeros(CHANNEL_GRAM, np.float32),
      np.full(CHANNEL_GRAM, 0.1, np.float32),                                 # constant, inexact
      np.broadcast_to(np.arange(7, dtype=np.float32) / 3, CHANNEL_GRAM),      # constant channels
  ]
  if jit:
    cases.append(np.random.default_rng(5).normal(size=(2, 1, 1, 7)).astype(np.float32))  # 1 x 1
  for a in cases:
    got = np.asarray(fn(a))
    assert got.shape == a.shape[:-1]
    np.testing.assert_array_equal(got, 0.0)


def test_output_in_unit_range_float32_and_batched():
  x = np.random.default_rng(6).normal(size=CHANNEL_GRAM)  # float64 in, float32 out
  got = np.asarray(CAM["power"](x))
  assert got.dtype == np.float32
  assert got.min() == 0.0 and got.max() <= 1.0 and np.isfinite(got).all()
  np.testing.assert_allclose(got.max(axis=(-2, -1)), 1.0, atol=1e-6)
  # Batching does not mix frames: permuting the frames permutes the maps.
  np.testing.assert_allclose(CAM["power"](x[::-1, ::-1]), got[::-1, ::-1], atol=1e-6)


def test_power_iteration_agrees_with_svd_to_1e4():
  x, _ = _blob_activations(CHANNEL_GRAM, seed=7, amp=1.0, noise=0.5)
  np.testing.assert_allclose(CAM["power"](x), CAM["svd"](x), atol=1e-4)


def _layers(activation_list, **options):
  options.setdefault("method", "svd")  # compiles faster at these sizes; power is tested above
  return jax.jit(functools.partial(cam.eigen_cam_layers, **options))(activation_list)


@pytest.mark.parametrize("time_resize", ["repeat", "linear"])
def test_layers_match_naive(time_resize):
  # Different spatial sizes, time lengths and channel counts, as R3D's last block.
  a1, _ = _blob_activations((2, 4, 4, 5, 6), seed=8)
  a2, _ = _blob_activations((2, 2, 2, 3, 8), seed=9)
  got = np.asarray(_layers([a1, a2], frame_size=(8, 10), num_frames=4, time_resize=time_resize))
  assert got.shape == (2, 4, 8, 10) and got.dtype == np.float32
  want = naive.eigen_cam_layers([a1, a2], (8, 10), 4, time_resize)
  np.testing.assert_allclose(got, want, atol=5e-5)
  np.testing.assert_allclose(got.max(axis=(-2, -1)), 1.0, atol=1e-6)
  # The same from per-layer maps computed (and cached) beforehand.
  combine = jax.jit(functools.partial(cam.combine_maps, frame_size=(8, 10), num_frames=4,
                                      time_resize=time_resize))
  np.testing.assert_allclose(combine([CAM["svd"](a1), CAM["svd"](a2)]), got, atol=1e-6)


def test_repeat_maps_each_frame_to_the_step_covering_it():
  a, _ = _blob_activations((1, 2, 3, 3, 4), seed=10)
  a[0, 1] = a[0, 1, ::-1]  # the two steps differ
  got = np.asarray(_layers([a], frame_size=(3, 3), num_frames=16))
  per_step = np.asarray(CAM["svd"](a))
  np.testing.assert_allclose(got[0, :8], np.broadcast_to(per_step[0, 0], (8, 3, 3)), atol=1e-6)
  np.testing.assert_allclose(got[0, 8:], np.broadcast_to(per_step[0, 1], (8, 3, 3)), atol=1e-6)


def test_one_layer_at_frame_size_is_eigen_cam():
  a, _ = _blob_activations(CHANNEL_GRAM, seed=11)
  np.testing.assert_allclose(_layers([a], frame_size=CHANNEL_GRAM[2:4]), CAM["svd"](a),
                             atol=1e-6)


def test_num_frames_defaults_to_the_longest_layer():
  a1 = jax.ShapeDtypeStruct((1, 4, 2, 2, 3), jnp.float32)
  a2 = jax.ShapeDtypeStruct((1, 2, 2, 2, 3), jnp.float32)
  out = jax.eval_shape(functools.partial(cam.eigen_cam_layers, frame_size=(4, 5)), [a1, a2])
  assert out.shape == (1, 4, 4, 5)


def test_bad_inputs():
  good = np.ones((1, 2, 3, 3, 4), np.float32)
  with pytest.raises(ValueError, match="H', W', C'"):
    cam.eigen_cam(np.ones((3, 4)))
  with pytest.raises(ValueError, match="empty"):
    cam.eigen_cam(np.ones((2, 0, 3, 4)))
  with pytest.raises(ValueError, match="method"):
    cam.eigen_cam(good, method="eig")
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="iterations"):
      cam.eigen_cam(good, iterations=bad)
  with pytest.raises(TypeError, match="real"):
    cam.eigen_cam(np.ones((2, 3, 3, 4), complex))
  with pytest.raises(ValueError, match="empty"):
    cam.eigen_cam_layers([], frame_size=(4, 4))
  with pytest.raises(ValueError, match="T, H, W, C"):
    cam.eigen_cam_layers([np.ones((3, 3, 4))], frame_size=(4, 4))
  with pytest.raises(ValueError, match="leading axes"):
    cam.eigen_cam_layers([good, np.ones((2, 2, 3, 3, 4))], frame_size=(4, 4))
  for size in ((4,), (4, 0), (4.5, 4), "ab", None):
    with pytest.raises(ValueError, match="frame_size"):
      cam.eigen_cam_layers([good], frame_size=size)
  with pytest.raises(ValueError, match="num_frames"):
    cam.eigen_cam_layers([good], frame_size=(4, 4), num_frames=0)
  with pytest.raises(ValueError, match="time_resize"):
    cam.eigen_cam_layers([good], frame_size=(4, 4), time_resize="cubic")
  with pytest.raises(ValueError, match="method"):
    cam.eigen_cam_layers([good], frame_size=(4, 4), method="qr")
  maps = np.ones((1, 2, 3, 3), np.float32)
  with pytest.raises(ValueError, match="empty"):
    cam.combine_maps([], frame_size=(4, 4))
  with pytest.raises(ValueError, match="T, H, W"):
    cam.combine_maps([np.ones((3, 3))], frame_size=(4, 4))
  with pytest.raises(ValueError, match="leading axes"):
    cam.combine_maps([maps, np.ones((2, 2, 3, 3))], frame_size=(4, 4))
  with pytest.raises(ValueError, match="frame_size"):
    cam.combine_maps([maps], frame_size=(4, -4))
  with pytest.raises(ValueError, match="num_frames"):
    cam.combine_maps([maps], frame_size=(4, 4), num_frames=1.5)
  with pytest.raises(ValueError, match="time_resize"):
    cam.combine_maps([maps], frame_size=(4, 4), time_resize="nearest")

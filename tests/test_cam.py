"""jaxvad.cam: Eigen-CAM per frame vs a float64 numpy.linalg.svd reference, sign rule, layers;
Grad-CAM vs the closed-form gradient of a linear head, batching on a Flax model."""

import functools

import flax.linen as nn
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


# ---------------------------------------------------------------------------------------------
# Grad-CAM.

GAP_SHAPE, NUM_CLASSES = (3, 4, 5, 6), 5   # [B, H', W', C'], K


def _gap_head_params(seed=20):
  rng = np.random.default_rng(seed)
  weight = rng.normal(size=(GAP_SHAPE[-1], NUM_CLASSES)).astype(np.float32)
  bias = rng.normal(size=NUM_CLASSES).astype(np.float32)
  return weight, bias


def _gap_head(weight, bias):
  """logits = mean_hw(A) @ W + b: the reference's closed-form gradient applies."""
  return lambda a: jnp.mean(a, axis=(1, 2)) @ weight + bias


def _gap_acts(seed=21):
  return np.random.default_rng(seed).normal(size=GAP_SHAPE).astype(np.float32)


@pytest.mark.parametrize("size", [None, (9, 11), (3, 2)], ids=["feature-grid", "up", "down"])
@pytest.mark.parametrize("per_image", [False, True], ids=["scalar-class", "per-image-class"])
def test_grad_cam_matches_closed_form_linear_head(per_image, size):
  weight, bias = _gap_head_params()
  acts = _gap_acts()
  classes = np.array([4, 0, 2]) if per_image else 3
  fn = jax.jit(functools.partial(cam.grad_cam, _gap_head(weight, bias), size=size))
  got = np.asarray(fn(acts, classes))
  want = naive.grad_cam_linear_gap(acts, weight, classes)
  assert want.max(axis=(-2, -1)).min() == 1.0   # every reference map is non-degenerate
  if size is not None:
    want = np.asarray(jax.image.resize(want.astype(np.float32), (GAP_SHAPE[0],) + size,
                                       method="bilinear"))
  assert got.shape == (GAP_SHAPE[0],) + (size or GAP_SHAPE[1:3]) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1e-6)
  # Eager and jitted agree.
  eager = cam.grad_cam(_gap_head(weight, bias), acts, classes, size=size)
  np.testing.assert_allclose(eager, got, atol=1e-6)


class _Features(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(4, (3, 3))(x))


class _Head(nn.Module):
  @nn.compact
  def __call__(self, a):
    a = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2))(a))
    return nn.Dense(3)(jnp.mean(a, axis=(1, 2)))


def test_grad_cam_batched_equals_per_image_on_a_flax_model():
  images = np.random.default_rng(22).normal(size=(4, 8, 8, 2)).astype(np.float32)
  features, head = _Features(), _Head()
  f_params = features.init(jax.random.key(0), images[:1])
  acts = features.apply(f_params, images)                     # [4, 8, 8, 4]
  h_params = head.init(jax.random.key(1), acts[:1])
  classes = np.array([0, 2, 1, 2])

  @functools.partial(jax.jit, static_argnames="size")
  def explain(params, a, c, size=None):
    return cam.grad_cam(lambda x: head.apply(params, x), a, c, size=size)

  batched = np.asarray(explain(h_params, acts, classes))
  assert batched.shape == (4, 8, 8)
  single = np.concatenate([explain(h_params, acts[i:i + 1], classes[i:i + 1])
                           for i in range(4)])
  np.testing.assert_allclose(batched, single, atol=1e-6)
  np.testing.assert_allclose(batched.max(axis=(-2, -1)), 1.0)
  resized = np.asarray(explain(h_params, acts, classes, size=(16, 16)))
  assert resized.shape == (4, 16, 16)
  assert np.isfinite(resized).all() and resized.min() >= 0 and resized.max() <= 1
  # Each image's map explains its own class: another class gives another map.
  other = np.asarray(explain(h_params, acts, (classes + 1) % 3))
  assert not np.allclose(other, explain(h_params, acts, classes), atol=1e-3)


@pytest.mark.parametrize("jit", [False, True])
def test_grad_cam_degenerate_maps_are_zero_not_nan(jit):
  weight, bias = _gap_head_params()
  weight = -np.abs(weight)                        # every alpha_k < 0
  positive = np.abs(_gap_acts()) + 0.1            # so sum_k alpha_k A_k < 0 everywhere
  fn = functools.partial(cam.grad_cam, _gap_head(weight, bias), size=(6, 7))
  fn = jax.jit(fn) if jit else fn
  for acts in (positive, np.zeros(GAP_SHAPE, np.float32)):
    got = np.asarray(fn(acts, 1))
    assert got.shape == (GAP_SHAPE[0], 6, 7)
    np.testing.assert_array_equal(got, 0.0)


def test_grad_cam_traced_out_of_range_class_gives_zeros():
  weight, bias = _gap_head_params()
  fn = jax.jit(functools.partial(cam.grad_cam, _gap_head(weight, bias)))
  got = np.asarray(fn(_gap_acts(), jnp.array([0, NUM_CLASSES, -1])))
  assert got[0].max() == 1.0
  np.testing.assert_array_equal(got[1:], 0.0)


def test_grad_cam_bad_inputs():
  weight, bias = _gap_head_params()
  head, acts = _gap_head(weight, bias), _gap_acts()
  with pytest.raises(ValueError, match="B, H', W', C'"):
    cam.grad_cam(head, acts[0], 0)
  with pytest.raises(ValueError, match="B, H', W', C'"):
    cam.grad_cam(head, acts[None], 0)
  with pytest.raises(ValueError, match="empty"):
    cam.grad_cam(head, np.ones((2, 0, 3, 6), np.float32), 0)
  for bad in (NUM_CLASSES, -1, [0, 1, NUM_CLASSES]):
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 5\)"):
      cam.grad_cam(head, acts, bad)
  with pytest.raises(ValueError, match="class_index must be a scalar or"):
    cam.grad_cam(head, acts, [0, 1])
  with pytest.raises(ValueError, match="class_index must be a scalar or"):
    cam.grad_cam(head, acts, np.zeros((3, 1), int))
  for bad in (1.0, True, "a"):
    with pytest.raises(TypeError, match="class_index must be integers"):
      cam.grad_cam(head, acts, bad)
  for size in ((4,), (4, 0), (4.5, 4), "ab", 7):
    with pytest.raises(ValueError, match="size"):
      cam.grad_cam(head, acts, 0, size=size)
  with pytest.raises(ValueError, match=r"logits \[B, K\]"):
    cam.grad_cam(lambda a: jnp.sum(a, axis=(1, 2, 3)), acts, 0)
  with pytest.raises(ValueError, match=r"logits \[B, K\]"):
    cam.grad_cam(lambda a: jnp.mean(a, axis=(1, 2))[:2], acts, 0)
  with pytest.raises(TypeError, match="head must be a function"):
    cam.grad_cam(weight, acts, 0)
  with pytest.raises(TypeError, match="real"):
    cam.grad_cam(head, acts.astype(complex), 0)

"""jaxvad.augment: device (JAX) and host (OpenCV) window augmentation of paper 001 §3.2.2."""

import cmath
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import augment

GEOMETRIC = ("angle_deg", "dx", "dy")
IDENTITY = {"angle_deg": 0.0, "dx": 0.0, "dy": 0.0, "brightness": 1.0, "saturation": 1.0,
            "gain": 1.0}

_apply_jit = jax.jit(augment.apply_params)
_augment_jit = jax.jit(augment.augment_batch, static_argnames="kind")


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def jitted(request):
  return request.param


def apply_params(frames, params, jitted):
  return (_apply_jit if jitted else augment.apply_params)(frames, params)


def augment_batch(frames, key, kind, jitted):
  return (_augment_jit if jitted else augment.augment_batch)(frames, key, kind=kind)


def textured(h=48, w=64, c=3, t=5):
  """uint8 [T, H, W, C]: smooth sinusoids (frames identical), every channel different."""
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  planes = [127.5 + 100 * np.sin(x / 5 + y / 7), 127.5 + 100 * np.cos(x / 6 - y / 4),
            127.5 + 120 * np.sin((x + y) / 9)]
  image = np.clip(np.rint(np.stack(planes[:c], -1)), 0, 255).astype(np.uint8)
  return np.repeat(image[None], t, axis=0)


def to_device(window):
  """uint8 [T, H, W, C] -> float32 [1, T, H, W, C] in [0, 1]."""
  return jnp.asarray(window[None], jnp.float32) / 255


def batched(params):
  return {k: jnp.asarray([v], jnp.float32) for k, v in params.items()}


def reference_warp(image, angle_deg, dx, dy):
  """Slow, obviously correct warp of a float [H, W] image, pixel by pixel.

  For each output pixel: undo the translation, then undo the rotation by turning the offset
  from the centre clockwise (as displayed) by angle_deg, using complex numbers in
  mathematical orientation (imaginary axis up = -y), then sample bilinearly with the
  coordinates clamped to the image (edge pixels replicated).
  """
  h, w = image.shape
  cx, cy = (w - 1) / 2, (h - 1) / 2
  out = np.zeros((h, w))
  for y in range(h):
    for x in range(w):
      offset = complex(x - dx - cx, -(y - dy - cy))
      src = offset * cmath.exp(-1j * math.radians(angle_deg))
      sx, sy = cx + src.real, cy - src.imag
      x0, y0 = math.floor(sx), math.floor(sy)
      fx, fy = sx - x0, sy - y0

      def pixel(yy, xx):
        return image[min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)]

      out[y, x] = ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
                   + fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)))
  return out


# --- host vs device ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_jax_matches_cv2_general(seed, jitted):
  window = textured()
  params = {k: float(v[0]) for k, v in
            augment.draw_params_np(np.random.default_rng(seed), 1, kind="general").items()}
  host = augment.apply_window_params(window, params).astype(np.float64)
  device = np.asarray(apply_params(to_device(window), batched(params), jitted))[0] * 255
  # Measured: <= 0.5 levels for the warp alone (the host rounds to uint8), <= ~1.05 with
  # the colour stages (the host also rounds after the warp). No border is excluded: OpenCV's
  # pixel-centre convention and BORDER_REPLICATE match map_coordinates(mode="nearest").
  assert np.abs(device - host).max() <= 1.5
  geometric = {k: params[k] for k in GEOMETRIC}
  host = augment.apply_window_params(window, geometric).astype(np.float64)
  device = np.asarray(apply_params(to_device(window), batched(geometric), jitted))[0] * 255
  assert np.abs(device - host).max() <= 0.75


def test_jax_matches_cv2_on_noise():
  """Even on white noise (the steepest texture) the two warps agree to the host's rounding."""
  window = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
  params = {"angle_deg": -3.7, "dx": 1.3, "dy": -0.4}
  host = augment.apply_window_params(window, params).astype(np.float64)
  device = np.asarray(augment.apply_params(to_device(window), batched(params)))[0] * 255
  assert np.abs(device - host).max() <= 0.75


def test_jax_matches_cv2_lighting(jitted):
  window = textured()
  params = {"gain": 1.13}
  host = augment.apply_window_params(window, params).astype(np.float64)
  device = np.asarray(apply_params(to_device(window), batched(params), jitted))[0] * 255
  assert np.abs(device - host).max() <= 0.5 + 1e-3


# --- geometry against a slow reference --------------------------------------------------------


@pytest.mark.parametrize("angle_deg, dx, dy", [(17.0, 0.6, -1.3), (-4.2, -1.7, 0.9),
                                               (33.0, 0.0, 0.0), (0.0, 1.25, 0.5)])
def test_warp_matches_slow_reference(angle_deg, dx, dy, jitted):
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, (9, 11)).astype(np.uint8)
  expected = reference_warp(image.astype(np.float64), angle_deg, dx, dy)
  params = {"angle_deg": angle_deg, "dx": dx, "dy": dy}
  window = image[None, :, :, None]  # [T=1, H, W, C=1]
  device = np.asarray(apply_params(to_device(window), batched(params), jitted))[0, 0, ..., 0]
  np.testing.assert_allclose(device * 255, expected, atol=1e-3)
  host = augment.apply_window_params(window, params)[0, ..., 0]
  assert np.abs(host - expected).max() <= 0.75


@pytest.mark.parametrize("implementation", ["device", "host"])
def test_positive_angle_turns_counter_clockwise(implementation):
  """A dot right of the centre moves up (smaller y) and left under a positive angle."""
  h, w = 9, 11
  image = np.zeros((1, h, w, 1), np.uint8)
  image[0, 4, 9] = 255  # centre is (x, y) = (5, 4): the dot is 4 px to its right
  params = {"angle_deg": 30.0}
  if implementation == "device":
    out = np.asarray(augment.apply_params(to_device(image), batched(params)))[0, 0, ..., 0]
  else:
    out = augment.apply_window_params(image, params)[0, ..., 0].astype(np.float64)
  y, x = np.mgrid[0:h, 0:w]
  cy, cx = (out * y).sum() / out.sum(), (out * x).sum() / out.sum()
  # Exact target: (5 + 4 cos 30°, 4 - 4 sin 30°) = (8.46, 2.0); bilinear spreads it a little.
  assert cy == pytest.approx(4 - 4 * math.sin(math.radians(30)), abs=0.3)
  assert cx == pytest.approx(5 + 4 * math.cos(math.radians(30)), abs=0.3)


def test_translation_direction():
  """Positive dx moves the content right, positive dy down (an integer shift is exact)."""
  image = np.random.default_rng(3).integers(0, 256, (1, 9, 11, 3), dtype=np.uint8)
  params = {"dx": 2.0, "dy": 1.0}
  host = augment.apply_window_params(image, params)
  device = np.asarray(augment.apply_params(to_device(image), batched(params)))[0] * 255
  np.testing.assert_array_equal(host[0, 1:, 2:], image[0, :-1, :-2])
  np.testing.assert_allclose(device[0, 1:, 2:], image[0, :-1, :-2], atol=1e-3)
  # Replicated border: the uncovered rows and columns repeat the edge.
  np.testing.assert_array_equal(host[0, 0, 2:], image[0, 0, :-2])
  np.testing.assert_array_equal(host[0, 1:, 0], image[0, :-1, 0])


# --- one transform per window, different ones per sequence -------------------------------------


@pytest.mark.parametrize("kind", ["general", "lighting"])
def test_same_transform_for_every_frame_of_a_window(kind, jitted):
  window = textured(t=5)
  batch = jnp.repeat(to_device(window), 4, axis=0)  # 4 identical sequences of 5 equal frames
  out = np.asarray(augment_batch(batch, jax.random.key(0), kind, jitted))
  for b in range(4):
    for t in range(1, 5):
      np.testing.assert_array_equal(out[b, t], out[b, 0])
  # Different sequences got different parameters, hence different frames.
  for b in range(1, 4):
    assert np.abs(out[b, 0] - out[0, 0]).max() > 1e-3
  host = augment.augment_window(window, np.random.default_rng(0), kind=kind)
  for t in range(1, 5):
    np.testing.assert_array_equal(host[t], host[0])


def test_sequences_get_independent_params():
  params = augment.draw_params(jax.random.key(1), 8, kind="general")
  for name, values in params.items():
    assert len(np.unique(np.asarray(values))) == 8, name
  # The parameters are not copies of each other either (drawn independently).
  rows = np.stack([np.asarray(v) for v in params.values()])
  assert len({tuple(np.round(r, 6)) for r in rows}) == len(rows)


# --- parameter draws ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", augment.KINDS)
@pytest.mark.parametrize("draw", ["jax", "numpy"])
def test_params_within_ranges(kind, draw):
  n = 2000
  if draw == "jax":
    params = jax.jit(augment.draw_params, static_argnums=1,
                     static_argnames="kind")(jax.random.key(3), n, kind=kind)
  else:
    params = augment.draw_params_np(np.random.default_rng(3), n, kind=kind)
  assert set(params) == set(augment.KIND_PARAMS[kind])
  for name, values in params.items():
    values = np.asarray(values)
    low, high = augment.RANGES[name]
    assert values.shape == (n,)
    assert values.min() >= low and values.max() <= high, name
    # Uniform over the whole range: both ends are reached within 2 % of the width.
    assert values.min() < low + 0.02 * (high - low) and values.max() > high - 0.02 * (high - low)


def test_paper_ranges():
  assert augment.RANGES["angle_deg"] == (-5.0, 5.0)
  assert augment.RANGES["dx"] == augment.RANGES["dy"] == (-2.0, 2.0)
  assert augment.RANGES["brightness"] == augment.RANGES["saturation"] == (0.9, 1.1)
  assert augment.RANGES["gain"] == (0.85, 1.15)
  assert augment.KINDS == ("none", "general", "lighting")


# --- identities --------------------------------------------------------------------------------


def test_identity_params(jitted):
  window = textured()
  frames = to_device(window)
  out = apply_params(frames, batched(IDENTITY), jitted)
  np.testing.assert_allclose(np.asarray(out), np.asarray(frames), atol=1e-6)
  np.testing.assert_array_equal(augment.apply_window_params(window, IDENTITY), window)


@pytest.mark.parametrize("c", [1, 3])
def test_none_is_identity(c, jitted):
  window = textured(c=c)
  frames = to_device(window)
  out = augment_batch(frames, jax.random.key(0), "none", jitted)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(frames))
  host = augment.augment_window(window, np.random.default_rng(0), kind="none")
  np.testing.assert_array_equal(host, window)
  assert host is not window


def test_lighting_only_scales(jitted):
  frames = jnp.asarray(np.random.default_rng(0).random((6, 2, 16, 20, 3)), jnp.float32)
  key = jax.random.key(5)
  out = np.asarray(augment_batch(frames, key, "lighting", jitted))
  gain = np.asarray(augment.draw_params(key, 6, kind="lighting")["gain"])
  x = np.asarray(frames)
  for b in range(6):
    unclipped = (x[b] * gain[b] < 1) & (x[b] > 1e-3)
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose(out[b][unclipped] / x[b][unclipped], gain[b], rtol=1e-5)
    np.testing.assert_array_equal(out[b][~unclipped & (x[b] > 1e-3)], 1.0)
  # Host: each pixel is round(clip(x * gain)).
  window = textured()
  host = augment.apply_window_params(window, {"gain": 0.9})
  np.testing.assert_array_equal(host, np.rint(window * np.float32(0.9)).astype(np.uint8))


def test_colour_formulas(jitted):
  """Brightness, then saturation against the ITU-R 601 luma, each clipped (torchvision's)."""
  x = np.random.default_rng(2).random((1, 1, 4, 5, 3)).astype(np.float32)
  b, s = 1.08, 0.93
  bright = np.clip(x * b, 0, 1)
  gray = bright @ np.asarray([0.299, 0.587, 0.114], np.float32)
  expected = np.clip(bright * s + gray[..., None] * (1 - s), 0, 1)
  out = apply_params(jnp.asarray(x), batched({"brightness": b, "saturation": s}), jitted)
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)


def test_deterministic(jitted):
  frames = to_device(textured())
  a = augment_batch(frames, jax.random.key(11), "general", jitted)
  b = augment_batch(frames, jax.random.key(11), "general", jitted)
  c = augment_batch(frames, jax.random.key(12), "general", jitted)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  window = textured()
  h1 = augment.augment_window(window, np.random.default_rng(4), kind="general")
  h2 = augment.augment_window(window, np.random.default_rng(4), kind="general")
  h3 = augment.augment_window(window, np.random.default_rng(5), kind="general")
  np.testing.assert_array_equal(h1, h2)
  assert not np.array_equal(h1, h3)


def test_grayscale_saturation_is_a_no_op(jitted):
  window = textured(c=1)
  frames = to_device(window)
  out = apply_params(frames, batched({"saturation": 1.1}), jitted)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(frames))
  np.testing.assert_array_equal(augment.apply_window_params(window, {"saturation": 0.9}), window)
  # The other stages still run on 1-channel frames, and host and device agree.
  params = {"angle_deg": 2.5, "dx": -1.0, "dy": 0.5, "brightness": 1.05, "saturation": 0.9}
  host = augment.apply_window_params(window, params)
  device = np.asarray(apply_params(frames, batched(params), jitted))[0] * 255
  assert host.shape == window.shape
  assert np.abs(device - host).max() <= 1.5
  out = augment_batch(frames, jax.random.key(0), "general", jitted)
  assert out.shape == frames.shape


def test_dtype_and_shape_kept():
  frames = jnp.zeros((2, 5, 8, 10, 3), jnp.bfloat16) + 0.5
  out = augment.augment_batch(frames, jax.random.key(0), kind="general")
  assert out.shape == frames.shape and out.dtype == jnp.bfloat16
  window = np.full((5, 8, 10, 3), 128, np.uint8)
  host = augment.augment_window(window, np.random.default_rng(0), kind="general")
  assert host.shape == window.shape and host.dtype == np.uint8


# --- bad input ---------------------------------------------------------------------------------


def test_bad_arguments():
  frames = jnp.zeros((1, 5, 8, 10, 3))
  window = np.zeros((5, 8, 10, 3), np.uint8)
  with pytest.raises(ValueError, match="kind"):
    augment.augment_batch(frames, jax.random.key(0), kind="flip")
  with pytest.raises(ValueError, match="kind"):
    augment.augment_window(window, np.random.default_rng(0), kind="General")
  with pytest.raises(ValueError, match="kind"):
    augment.draw_params(jax.random.key(0), 2, kind=None)
  with pytest.raises(ValueError, match="kind"):
    augment.draw_params_np(np.random.default_rng(0), 2, kind="color")
  with pytest.raises(ValueError, match="frames"):
    augment.augment_batch(frames[0], jax.random.key(0), kind="general")
  with pytest.raises(ValueError, match="frames"):
    augment.apply_params(frames[0], {})
  with pytest.raises(ValueError, match="window"):
    augment.augment_window(window[0], np.random.default_rng(0), kind="general")
  with pytest.raises(ValueError, match="window"):
    augment.apply_window_params(window[None], {})
  with pytest.raises(ValueError, match="params"):
    augment.apply_params(frames, {"zoom": jnp.ones(1)})
  with pytest.raises(ValueError, match="params"):
    augment.apply_params(frames, {"gain": jnp.ones(3)})
  with pytest.raises(ValueError, match="rng_or_params"):
    augment.augment_window(window, {"gain": 1.1}, kind="general")
  with pytest.raises(ValueError, match="rng_or_params"):
    augment.augment_window(window, 3, kind="general")
  with pytest.raises(TypeError, match="frames"):
    augment.apply_params(jnp.zeros((1, 5, 8, 10, 3), jnp.uint8), {})
  with pytest.raises(TypeError, match="window"):
    augment.apply_window_params(window.astype(np.float32), {})


def test_jit_matches_eager_on_full_size_frames():
  """Regression: XLA once computed the sampling corner and its fraction in different fusions
  with different rounding, so under jit a few pixels per batch of 224 x 224 frames were sampled
  one pixel off (map_coordinates + saturation). Every pixel must match the eager result."""
  b = 8
  frames = jnp.asarray(np.random.default_rng(0).random((b, 2, 224, 224, 3), np.float32))
  params = {k: jnp.asarray(v, jnp.float32) for k, v in
            augment.draw_params_np(np.random.default_rng(0), b, kind="general").items()}
  jitted = np.asarray(_apply_jit(frames, params))
  eager = np.asarray(augment.apply_params(frames, params))
  assert np.abs(jitted - eager).max() < 1e-4

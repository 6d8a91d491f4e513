"""Training-window augmentation of paper 001 §3.2.2, drawn once per sequence.

The predictive autoencoder of paper 001 sees windows of 5 frames (4 inputs + the target),
and "it is very important to apply the same augmentation to all frames in the same single
training sequence, as well as to the target". Every transform here is therefore drawn once
per window (per sequence of a batch) and applied identically to all T frames of it.

Kinds (`KINDS`):

- "none": identity.
- "general" (the paper's `General_aug`): rotation uniform in [-5°, 5°], translation uniform
  in [-2, 2] px along x and along y independently, brightness and saturation factors uniform
  in [0.9, 1.1] (±10 %), each drawn independently per sequence.
- "lighting" (the paper's `Lighting_aug`): one global gain uniform in [0.85, 1.15] (±15 %)
  per sequence.

Stages, applied in this order to whichever parameters are present:

1. warp (`angle_deg`, `dx`, `dy`): rotation by `angle_deg` about the image centre
   `((W - 1) / 2, (H - 1) / 2)` (pixel centres at integer coordinates), then translation by
   `(dx, dy)` px. Positive angles turn the content counter-clockwise as displayed (y axis
   pointing down), as `cv2.getRotationMatrix2D` and torchvision's `rotate` do; positive `dx`
   moves the content right, positive `dy` down. Output pixel `p` is sampled bilinearly at
   `R(-angle) (p - c - (dx, dy)) + c`. Samples outside the frame take the nearest edge pixel
   (border = replicate). This departs from torchvision's `RandomAffine`, which fills with 0:
   black corners and strips would be an artefact that exists in no test frame, and the model
   would have to learn to predict them in the target frame.
2. brightness (`brightness`): `clip(x * b)`, as torchvision's `adjust_brightness`.
3. saturation (`saturation`): `clip(x * s + gray * (1 - s))` with the ITU-R 601 luma
   `gray = 0.299 R + 0.587 G + 0.114 B` of the (brightness-adjusted) frame, as torchvision's
   `adjust_saturation`; a no-op for 1-channel frames.
4. gain (`gain`): `clip(x * g)`.

Clipping is to [0, 1] on the device and [0, 255] on the host.

Two implementations share the parameter ranges and stage order:

- device (`augment_batch`, `apply_params`, `draw_params`): pure JAX on float frames
  `[B, T, H, W, C]` in [0, 1], meant to be called inside the jitted training step (no hidden
  jit here). The warp samples a per-sequence affine grid with a hand-written bilinear gather
  of each pixel's 2x2 neighbourhood, shared by all T frames and C channels. Not
  `jax.scipy.ndimage.map_coordinates(order=1, mode="nearest")`: under jit on XLA:CPU
  (jax 0.10.2), map_coordinates followed by the saturation stage had XLA recompute the
  sampling coordinates in several fusions that rounded differently, so the floor used by the
  gather and the one used for the weights disagreed at a few pixels per batch of 224 x 224
  frames, which were then sampled one pixel off; it was also about 2x slower there. Here the
  coordinates come out of a matmul (which XLA stores once instead of recomputing) and both
  corner and fractions are derived from those stored values.
- host (`augment_window`, `apply_window_params`, `draw_params_np`): uint8 windows
  `[T, H, W, C]` for a grain pipeline, with `cv2.warpAffine(INTER_LINEAR, BORDER_REPLICATE)`
  and the colour stages in float32 NumPy, rounded back to uint8. The host rounds to uint8
  after the warp and again at the end, so the two agree to about 1 intensity level of 255
  (measured: <= 0.5 for the warp alone, <= 1.05 with the colour stages, OpenCV 5.0), not
  exactly.

The two draw functions consume different random streams (jax.random vs np.random), so the same
seed does not give the same parameters on host and device.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KINDS", "RANGES", "KIND_PARAMS", "draw_params", "draw_params_np", "apply_params",
           "augment_batch", "apply_window_params", "augment_window"]

KINDS = ("none", "general", "lighting")

# Uniform ranges [low, high] of every parameter.
RANGES = {
    "angle_deg": (-5.0, 5.0),
    "dx": (-2.0, 2.0),
    "dy": (-2.0, 2.0),
    "brightness": (0.9, 1.1),
    "saturation": (0.9, 1.1),
    "gain": (0.85, 1.15),
}

# The parameters each kind draws (and so the stages it applies).
KIND_PARAMS = {
    "none": (),
    "general": ("angle_deg", "dx", "dy", "brightness", "saturation"),
    "lighting": ("gain",),
}

_GEOMETRIC = ("angle_deg", "dx", "dy")
_LUMA = (0.299, 0.587, 0.114)


def _check_kind(kind):
  if not isinstance(kind, str) or kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  return kind


def _check_batch(batch):
  if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 0:
    raise ValueError(f"batch must be an integer >= 0, got {batch!r}")
  return int(batch)


def _check_param_names(params, name):
  if not isinstance(params, Mapping):
    raise ValueError(f"{name} must be a dict of augmentation parameters, got "
                     f"{type(params).__name__}")
  unknown = sorted(set(params) - set(RANGES))
  if unknown:
    raise ValueError(f"{name} has unknown keys {unknown}; known: {tuple(RANGES)}")


def _check_channels(params, channels, name):
  if "saturation" in params and channels not in (1, 3):
    raise ValueError(f"saturation needs 1- or 3-channel frames, {name} has {channels}")


def _inverse_affine(angle_deg, dx, dy, height, width, xp):
  """Rows of the 2x3 matrix taking output pixel (x, y, 1) to its source (x, y): see module doc."""
  theta = xp.deg2rad(angle_deg)
  cos, sin = xp.cos(theta), xp.sin(theta)
  cx, cy = (width - 1) / 2, (height - 1) / 2
  # source - c = R(-angle) (p - c - d); R(-angle) = [[cos, -sin], [sin, cos]] with y down.
  tx, ty = cx + dx, cy + dy
  row_x = (cos, -sin, cx - cos * tx + sin * ty)
  row_y = (sin, cos, cy - sin * tx - cos * ty)
  return row_x, row_y


# ---------------------------------------------------------------------------------------------
# Parameters.


def draw_params(key, batch: int, *, kind: str) -> dict:
  """Per-sequence augmentation parameters, drawn with `jax.random` (jittable).

  Args:
    key: a `jax.random` key (typed or raw uint32).
    batch: number of sequences B (static).
    kind: one of `KINDS`; selects which parameters are drawn (`KIND_PARAMS[kind]`).

  Returns:
    dict name -> float32 `[B]`, each uniform in `RANGES[name]` and independent of the others;
    empty for "none".

  Raises:
    ValueError: an unknown kind or a bad batch.
  """
  names = KIND_PARAMS[_check_kind(kind)]
  batch = _check_batch(batch)
  if not names:
    return {}
  lows = jnp.asarray([RANGES[n][0] for n in names], jnp.float32)[:, None]
  highs = jnp.asarray([RANGES[n][1] for n in names], jnp.float32)[:, None]
  values = jax.random.uniform(key, (len(names), batch), jnp.float32, lows, highs)
  return {n: values[i] for i, n in enumerate(names)}


def draw_params_np(rng: np.random.Generator, batch: int, *, kind: str) -> dict:
  """Per-sequence augmentation parameters, drawn with NumPy (for the host pipeline).

  Args:
    rng: a NumPy random generator.
    batch: number of sequences B.
    kind: one of `KINDS`; selects which parameters are drawn (`KIND_PARAMS[kind]`).

  Returns:
    dict name -> float64 `[B]`, each uniform in `RANGES[name]` and independent of the others;
    empty for "none".

  Raises:
    ValueError: an unknown kind, a bad batch or an rng that is not a `np.random.Generator`.
  """
  names = KIND_PARAMS[_check_kind(kind)]
  batch = _check_batch(batch)
  if not isinstance(rng, np.random.Generator):
    raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
  return {n: rng.uniform(*RANGES[n], size=batch) for n in names}


# ---------------------------------------------------------------------------------------------
# Device (JAX).


def _warp_batch(frames, angle_deg, dx, dy):
  """Bilinear warp of `[B, T, H, W, C]` frames, one sampling grid per sequence (see module doc)."""
  _, _, h, w, c = frames.shape
  row_x, row_y = _inverse_affine(angle_deg, dx, dy, h, w, jnp)  # 3 x [B] each
  # Source coordinates [B, 2, H * W] of every output pixel, as a matmul: XLA does not copy a
  # dot into each consumer, so the corner and the fractions below are computed from the same
  # stored coordinates (see the module docstring).
  matrix = jnp.stack([jnp.stack(row_x, -1), jnp.stack(row_y, -1)], 1)  # [B, 2, 3]
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  pixels = np.stack([x.ravel(), y.ravel(), np.ones(h * w, np.float32)])  # [3, H * W]
  src = jnp.einsum("bij,jp->bip", matrix, pixels, precision=jax.lax.Precision.HIGHEST)
  src_x = src[:, 0].reshape(-1, h, w)
  src_y = src[:, 1].reshape(-1, h, w)
  # Top-left corner of the 2x2 neighbourhood clamped into the frame and fractions clipped to
  # [0, 1]: samples outside the frame take the edge pixels (border = replicate).
  x0 = jnp.clip(jnp.floor(src_x), 0, w - 2)
  y0 = jnp.clip(jnp.floor(src_y), 0, h - 2)
  fx = jnp.clip(src_x - x0, 0, 1)[:, None, :, :, None]  # [B, 1, H, W, 1]
  fy = jnp.clip(src_y - y0, 0, 1)[:, None, :, :, None]

  def neighbourhoods(image, top, left):  # [H, W, C], [H, W], [H, W] -> [H, W, 2, 2, C]
    def one(i, j):
      return jax.lax.dynamic_slice(image, (i, j, 0), (2, 2, c))
    return jax.vmap(jax.vmap(one))(top, left)

  # The same corners for every frame of a sequence: vmap over T with shared indices, then B.
  per_sequence = jax.vmap(neighbourhoods, in_axes=(0, None, None))
  q = jax.vmap(per_sequence)(frames, y0.astype(jnp.int32), x0.astype(jnp.int32))
  top = q[..., 0, 0, :] * (1 - fx) + q[..., 0, 1, :] * fx  # [B, T, H, W, C]
  bottom = q[..., 1, 0, :] * (1 - fx) + q[..., 1, 1, :] * fx
  return (top * (1 - fy) + bottom * fy).astype(frames.dtype)


def apply_params(frames, params: Mapping):
  """Frames augmented with given per-sequence parameters (pure JAX, jittable).

  The stages (see the module docstring) run for the parameters present: a warp if any of
  `angle_deg`, `dx`, `dy` is given (missing ones are 0), then brightness, saturation and
  gain if given. Values outside `RANGES` are allowed (tests, visualisation).

  Args:
    frames: float `[B, T, H, W, C]` in [0, 1].
    params: dict name -> float `[B]` (names from `RANGES`), e.g. from `draw_params`.

  Returns:
    `[B, T, H, W, C]` of the frames' dtype, in [0, 1]; every frame of sequence b is
    transformed with parameters b.

  Raises:
    ValueError: frames not of rank 5 (or smaller than 2 x 2 pixels for a warp), unknown
      parameter names, parameters not of shape `[B]`, or saturation on frames with C not in
      (1, 3).
    TypeError: frames that are not floating point.
  """
  frames = jnp.asarray(frames)
  if frames.ndim != 5:
    raise ValueError(f"frames must be [B, T, H, W, C], got shape {frames.shape}")
  if not jnp.issubdtype(frames.dtype, jnp.floating):
    raise TypeError(f"frames must be floating point in [0, 1], got dtype {frames.dtype}")
  _check_param_names(params, "params")
  b, _, _, _, c = frames.shape
  _check_channels(params, c, "frames")
  dtype = frames.dtype
  vectors = {}
  for name, value in params.items():
    value = jnp.asarray(value, jnp.float32)  # the sampling grid is float32 even for bf16 frames
    if value.shape != (b,):
      raise ValueError(f"params[{name!r}] must have shape ({b},) (one value per sequence), got "
                       f"{value.shape}")
    vectors[name] = value
  # [B, 1, 1, 1, 1]: broadcasts over T, H, W, C.
  values = {name: v.astype(dtype)[:, None, None, None, None] for name, v in vectors.items()}

  def clip(x):
    return jnp.clip(x, 0.0, 1.0)

  if any(n in vectors for n in _GEOMETRIC):
    if min(frames.shape[2:4]) < 2:
      raise ValueError(f"frames must be at least 2 x 2 pixels to be warped, got shape "
                       f"{frames.shape}")
    zero = jnp.zeros((b,), jnp.float32)
    frames = _warp_batch(frames, *(vectors.get(n, zero) for n in _GEOMETRIC))
  if "brightness" in values:
    frames = clip(frames * values["brightness"])
  if "saturation" in values and c == 3:
    s = values["saturation"]
    # An explicit weighted sum: XLA:CPU runs `frames @ luma` as a slow dot.
    gray = sum(frames[..., i:i + 1] * w for i, w in enumerate(_LUMA))
    frames = clip(frames * s + gray * (1 - s))
  if "gain" in values:
    frames = clip(frames * values["gain"])
  return frames.astype(dtype)


def augment_batch(frames, key, *, kind: str):
  """A batch of windows augmented on the device, one random draw per sequence (jittable).

  `kind` is static; call this inside the jitted training step, with a fresh key per step
  (e.g. `jax.random.fold_in(key, step)`).

  Args:
    frames: float `[B, T, H, W, C]` in [0, 1].
    key: a `jax.random` key.
    kind: one of `KINDS`.

  Returns:
    `[B, T, H, W, C]` of the frames' dtype, in [0, 1]: `apply_params(frames,
    draw_params(key, B, kind=kind))`; the frames themselves for "none".

  Raises:
    ValueError: an unknown kind or frames not of rank 5 (and see `apply_params`).
    TypeError: frames that are not floating point.
  """
  _check_kind(kind)
  frames = jnp.asarray(frames)
  if frames.ndim != 5:
    raise ValueError(f"frames must be [B, T, H, W, C], got shape {frames.shape}")
  return apply_params(frames, draw_params(key, frames.shape[0], kind=kind))


# ---------------------------------------------------------------------------------------------
# Host (OpenCV + NumPy).


def _check_window_array(window):
  if not isinstance(window, np.ndarray):
    window = np.asarray(window)
  if window.ndim != 4:
    raise ValueError(f"window must be [T, H, W, C], got shape {window.shape}")
  if window.dtype != np.uint8:
    raise TypeError(f"window must be uint8, got dtype {window.dtype}")
  return window


def apply_window_params(window, params: Mapping) -> np.ndarray:
  """One window augmented on the host with given parameters (OpenCV warp, NumPy colour).

  The host twin of `apply_params`, with the same stages, order and geometric convention.

  Args:
    window: uint8 `[T, H, W, C]`.
    params: dict name -> float scalar (names from `RANGES`), e.g. one sequence of
      `draw_params_np`.

  Returns:
    uint8 `[T, H, W, C]`, a new array (the input is not modified).

  Raises:
    ValueError: window not of rank 4, unknown parameter names, non-scalar parameters, or
      saturation on frames with C not in (1, 3).
    TypeError: a window that is not uint8.
  """
  window = _check_window_array(window)
  _check_param_names(params, "params")
  t, h, w, c = window.shape
  _check_channels(params, c, "window")
  values = {}
  for name, value in params.items():
    value = np.asarray(value, np.float64)
    if value.size != 1:
      raise ValueError(f"params[{name!r}] must be a scalar for one window, got shape "
                       f"{value.shape}")
    values[name] = float(value.reshape(()))

  out = window
  if any(n in values for n in _GEOMETRIC):
    row_x, row_y = _inverse_affine(*(values.get(n, 0.0) for n in _GEOMETRIC), h, w, np)
    matrix = np.asarray([row_x, row_y], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = np.empty_like(window)
    for i in range(t):
      # cv2 drops a trailing axis of 1 channel; write into the [H, W, C] slot either way.
      out[i] = cv2.warpAffine(window[i], matrix, (w, h), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE).reshape(h, w, c)
  colour = [n for n in ("brightness", "saturation", "gain") if n in values]
  if "saturation" in colour and c == 1:
    colour.remove("saturation")
  if not colour:
    return out.copy() if out is window else out
  x = out.astype(np.float32)
  for name in colour:
    if name == "saturation":
      s = np.float32(values[name])
      gray = x @ np.asarray(_LUMA, np.float32)
      x *= s
      x += (1 - s) * gray[..., None]
    else:
      x *= np.float32(values[name])
    np.clip(x, 0, 255, out=x)
  return np.rint(x, out=x).astype(np.uint8)


def augment_window(window, rng_or_params, *, kind: str) -> np.ndarray:
  """One training window augmented on the host (CPU), the same transform for all its frames.

  For a grain pipeline, before batching, e.g.
  `ds.random_map(lambda item, rng: {**item, "frames": augment_window(item["frames"], rng,
  kind=kind)}, seed=seed)`.

  Args:
    window: uint8 `[T, H, W, C]`.
    rng_or_params: a `np.random.Generator` to draw the parameters from (`draw_params_np`
      with B = 1), or a dict of scalar parameters to apply; a dict may only hold the
      parameters of `kind` (`KIND_PARAMS[kind]`).
    kind: one of `KINDS`.

  Returns:
    uint8 `[T, H, W, C]`, a new array.

  Raises:
    ValueError: an unknown kind, a window not of rank 4, parameters that `kind` does not
      draw, or an rng_or_params that is neither a Generator nor a dict.
    TypeError: a window that is not uint8.
  """
  _check_kind(kind)
  window = _check_window_array(window)
  if isinstance(rng_or_params, np.random.Generator):
    params = {n: v[0] for n, v in draw_params_np(rng_or_params, 1, kind=kind).items()}
  elif isinstance(rng_or_params, Mapping):
    params = dict(rng_or_params)
    foreign = sorted(set(params) - set(KIND_PARAMS[kind]))
    if foreign:
      raise ValueError(f"rng_or_params has {foreign}, which kind={kind!r} does not use "
                       f"(it uses {KIND_PARAMS[kind]})")
  else:
    raise ValueError(f"rng_or_params must be a np.random.Generator or a dict of parameters, "
                     f"got {type(rng_or_params).__name__}")
  return apply_window_params(window, params)

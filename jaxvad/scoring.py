"""Jit-able, differentiable per-frame reconstruction scores (JAX). No hidden jit: callers jit.

Frames are float, channels last, scaled to [0, max_val]. The per-frame reduction runs over
the trailing (H, W, C) axes, so `[N, H, W, C]` and `[B, T, H, W, C]` inputs both work. Shape
checks raise ValueError up front; they read only static shapes, so they also work under jit.

The conventions are those of the Numba kernels (`jaxvad_kernels.image_scores`, whose module
docstring is the reference), and the two agree to ~1e-6 on frames in [0, 1]:

* SSIM (Wang et al. 2004; paper 001 eq. 2.5): separable Gaussian window of `win_size` taps,
  `w[k] ∝ exp(-k**2 / (2 sigma**2))` normalised to sum 1; `C1 = (k1 max_val)**2`,
  `C2 = (k2 max_val)**2`; borders by reflection with the edge pixel repeating (numpy
  'symmetric'), so the map is full `H x W`; the mean SSIM of a frame averages the map over the
  interior, `(win_size - 1) // 2` pixels from every border, and over channels.
* Masks `[..., H, W]` (paper 000 §3.1.3) multiply both frames before scoring, and only the
  pixels where the mask is nonzero count. A frame with no pixel to average scores NaN (its
  gradient is zero, not NaN).
* PSNR is `10 log10(max_val**2 / max(MSE, eps))`, finite for identical frames.

Scores are float32 (float64 for float64 input with x64 enabled).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["mse", "psnr", "ssim", "ssim_map"]

_FRAME_AXES = (-3, -2, -1)


# ---------------------------------------------------------------------------------------------
# Validation (static shapes only, so it runs under jit too).


def _check_pair(a, b):
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  if a.ndim < 3:
    raise ValueError(f"expected [..., H, W, C] frames, got shape {a.shape}")


def _as_float(x):
  """x as a JAX array of a float dtype at least as wide as float32."""
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
    raise TypeError(f"frames must be real numbers, got dtype {x.dtype}")
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _prepare(a, b, mask):
  """Validated float frames a, b `[..., H, W, C]` and the mask as float `[..., H, W]` or None."""
  a, b = _as_float(a), _as_float(b)
  _check_pair(a, b)
  if mask is None:
    return a, b, None
  m = jnp.asarray(mask)
  frame_shape = a.shape[:-1]  # [..., H, W]
  try:
    ok = m.ndim >= 2 and np.broadcast_shapes(m.shape, frame_shape) == frame_shape
  except ValueError:
    ok = False
  if not ok or m.shape[-2:] != frame_shape[-2:]:
    raise ValueError(f"mask must be [..., H, W] broadcastable to {frame_shape}, "
                     f"got shape {m.shape}")
  return a, b, m.astype(a.dtype)


def _check_window(sigma, win_size, k1, k2, height, width):
  if isinstance(win_size, bool) or int(win_size) != win_size or win_size < 1 or win_size % 2 == 0:
    raise ValueError(f"win_size must be a positive odd integer, got {win_size}")
  if win_size > min(height, width):
    raise ValueError(f"win_size {win_size} exceeds the frame size {height}x{width}")
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma}")
  # k1, k2 may be traced (they only scale constants); Python numbers are checked here.
  if any(isinstance(k, (int, float)) and k < 0 for k in (k1, k2)):
    raise ValueError(f"k1 and k2 must be >= 0, got {k1}, {k2}")


def _check_max_val(max_val):
  # A traced max_val is allowed (it only scales constants); a Python number is checked here.
  if isinstance(max_val, (int, float)) and not max_val > 0:
    raise ValueError(f"max_val must be > 0, got {max_val}")


def _masked_frame_mean(values, weight):
  """Mean of values `[..., H, W]` over the pixels where weight (0/1, broadcastable) is 1.

  NaN where no pixel counts; the division is guarded so such frames get a zero gradient.
  """
  weight = jnp.broadcast_to(weight, values.shape)
  total = jnp.sum(jnp.where(weight > 0, values, 0.0), axis=(-2, -1))
  count = jnp.sum(weight, axis=(-2, -1))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


# ---------------------------------------------------------------------------------------------
# MSE and PSNR.


def mse(a, b, *, mask=None):
  """Mean squared error per frame.

  Args:
    a, b: float arrays `[..., H, W, C]` of the same shape.
    mask: optional `[..., H, W]` bool/float mask, broadcastable to the frames' leading axes
      and shared by every channel; it multiplies both frames and only nonzero pixels count.

  Returns:
    float32 `[...]`: the mean over H, W, C of (a - b)**2 (over the unmasked pixels; NaN for a
    frame whose mask is all zero).
  """
  a, b, m = _prepare(a, b, mask)
  diff = a - b
  if m is None:
    return jnp.mean(diff * diff, axis=_FRAME_AXES)
  diff = diff * m[..., None]
  return _masked_frame_mean(jnp.mean(diff * diff, axis=-1), (m != 0).astype(a.dtype))


def psnr(a, b, *, max_val: float = 1.0, eps: float = 1e-10, mask=None):
  """Peak signal-to-noise ratio per frame, in dB: 10 log10(max_val**2 / MSE) (paper 001 eq. 2.9).

  Args:
    a, b: float arrays `[..., H, W, C]` of the same shape.
    max_val: the largest possible pixel value (1.0 for frames scaled to [0, 1]).
    eps: floor on the MSE so identical frames give a large finite PSNR, not inf.
    mask: optional `[..., H, W]` mask, as in `mse` (paper 000 §3.1.3).

  Returns:
    float32 `[...]`: PSNR per frame; higher means a better reconstruction (more normal). NaN
    for a frame whose mask is all zero.
  """
  _check_max_val(max_val)
  # jnp.maximum keeps NaN (all-masked frames) as NaN.
  return 10.0 * jnp.log10(max_val**2 / jnp.maximum(mse(a, b, mask=mask), eps))


# ---------------------------------------------------------------------------------------------
# SSIM.


def _gaussian_taps(sigma: float, win_size: int) -> np.ndarray:
  """The normalised window `w[k] ∝ exp(-k**2 / (2 sigma**2))`, `k = -r..r` (as the kernels)."""
  r = (win_size - 1) // 2
  k = np.arange(-r, r + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (k / sigma) ** 2)
  return taps / taps.sum()


def _window_sum(term, taps):
  """sum_k taps[k] term(k) for a symmetric window: centre first, then mirrored pairs."""
  r = len(taps) // 2
  acc = taps[r] * term(r)
  for d in range(1, r + 1):
    acc = acc + taps[r + d] * (term(r - d) + term(r + d))
  return acc


def _reflect(z, axis, r):
  """z extended by r pixels each side along axis, the edge pixel repeating (numpy 'symmetric')."""
  widths = [(0, 0)] * z.ndim
  widths[axis] = (r, r)
  return jnp.pad(z, widths, mode="symmetric")


def _shifted(z, axis, size):
  """k -> z[k : k + size] along axis: the k-th tap's view of a padded array."""
  return lambda k: jax.lax.slice_in_dim(z, k, k + size, axis=axis)


def _tangent_blur(z, taps):
  """The separable Gaussian filter over the last two axes, reflect borders (linear in z).

  Written as a sum of shifted zero-pads of z, cropped: it filters tangents in the SSIM JVP,
  and what matters there is its transpose (reverse mode), which autodiff turns into a sum of
  slices, the fast form. A sum of slices transposes into 2r + 1 separately materialised pads
  (XLA does not fuse them), which ran ~3x slower than this filter's transpose (measured).
  """
  r = len(taps) // 2
  for axis in (z.ndim - 1, z.ndim - 2):
    n = z.shape[axis]
    u = _reflect(z, axis, r)

    def shifted_pad(k, u=u, axis=axis):  # u moved k - 2r places, in n + 4r slots
      config = [(0, 0, 0)] * u.ndim
      config[axis] = (2 * r - k, k, 0)
      return jax.lax.pad(u, jnp.zeros((), u.dtype), config)

    z = jax.lax.slice_in_dim(_window_sum(shifted_pad, taps), 2 * r, 2 * r + n, axis=axis)
  return z


def _local_stats(x, y, taps):
  """Local Gaussian-window statistics of planes x, y `[..., H, W]`.

  Returns (mu_x, mu_y, var_x + var_y, cov_xy); SSIM needs only the sum of the variances.

  The filter is a sum of shifted, weighted slices of the reflect-padded planes, rows then
  columns: XLA's CPU convolution is several times slower at these shapes (measured against
  dm-pix, which convolves).

  The variances are not E[x**2] - E[x]**2: in float32 that cancels catastrophically in flat
  regions, where the variance is far below C2 (errors ~1e-4 in the map). Instead the law of
  total variance splits the 2-D window into rows, var = E_rows[row variance] +
  Var_rows[row mean], both from centred differences, so nothing large cancels (the map then
  agrees with the float64 kernels to ~1e-6).
  """
  r = len(taps) // 2
  height, width = x.shape[-2:]
  row_ax, col_ax = x.ndim - 2, x.ndim - 1
  # Horizontal pass: per input row and output column, the row means and centred (co)variances.
  xs = _shifted(_reflect(x, col_ax, r), col_ax, width)
  ys = _shifted(_reflect(y, col_ax, r), col_ax, width)
  hx, hy = _window_sum(xs, taps), _window_sum(ys, taps)
  # The barriers keep XLA from fusing (so recomputing) each window sum into its 2r + 1
  # consumers; measured 1.5x faster with them.
  hx, hy = jax.lax.optimization_barrier((hx, hy))
  hvar = _window_sum(lambda k: (xs(k) - hx) ** 2 + (ys(k) - hy) ** 2, taps)
  hcov = _window_sum(lambda k: (xs(k) - hx) * (ys(k) - hy), taps)
  # Vertical pass. Reflected input rows give reflected rows of every row statistic, so padding
  # the statistics equals padding the frame first.
  hx, hy, hvar, hcov = jax.lax.optimization_barrier(
      tuple(_reflect(z, row_ax, r) for z in (hx, hy, hvar, hcov)))
  vx, vy = _shifted(hx, row_ax, height), _shifted(hy, row_ax, height)
  vvar, vcov = _shifted(hvar, row_ax, height), _shifted(hcov, row_ax, height)
  mu_x, mu_y = _window_sum(vx, taps), _window_sum(vy, taps)
  mu_x, mu_y = jax.lax.optimization_barrier((mu_x, mu_y))
  var_sum = _window_sum(lambda k: vvar(k) + (vx(k) - mu_x) ** 2 + (vy(k) - mu_y) ** 2, taps)
  cov = _window_sum(lambda k: vcov(k) + (vx(k) - mu_x) * (vy(k) - mu_y), taps)
  return mu_x, mu_y, var_sum, cov


def _ssim_terms(x, y, c1, c2, taps):
  """The SSIM map and its factors: numerators n1, n2 and denominators d1, d2."""
  mu_x, mu_y, var_sum, cov = _local_stats(x, y, taps)
  n1, d1 = 2.0 * mu_x * mu_y + c1, mu_x * mu_x + mu_y * mu_y + c1
  n2, d2 = 2.0 * cov + c2, var_sum + c2
  return (n1 * n2) / (d1 * d2), (mu_x, mu_y, n1, d1, n2, d2)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _ssim_planes(x, y, c1, c2, taps):
  """SSIM map of planes x, y `[..., H, W]` (one channel each); taps a tuple of floats."""
  return _ssim_terms(x, y, c1, c2, taps)[0]


@_ssim_planes.defjvp
def _ssim_planes_jvp(taps, primals, tangents):
  # The map is a function of four linear filters of x, y: mu_x = G x, mu_y = G y,
  # E2 = G (x^2 + y^2) and Exy = G (x y), with var_sum = E2 - mu_x^2 - mu_y^2 and
  # cov = Exy - mu_x mu_y. Differentiating through those moments makes the tangent one
  # filter of four stacked planes, which reverse mode transposes into one more. Autodiff
  # through the centred forward pass instead transposes every shifted slice separately: the
  # gradient then took ~8x longer to compile (and agreed to ~1e-6 relative).
  x, y, c1, c2 = primals
  tx, ty, tc1, tc2 = tangents
  s, (mu_x, mu_y, n1, d1, n2, d2) = _ssim_terms(x, y, c1, c2, taps)
  t_mu_x, t_mu_y, t_e2, t_exy = _tangent_blur(
      jnp.stack([tx, ty, 2.0 * (x * tx + y * ty), y * tx + x * ty]), taps)
  inv = 1.0 / (d1 * d2)
  s_d1, s_d2 = s / d1, s / d2
  ds_dmu = inv * (n2 - n1)  # the n1, n2 parts of dS/dmu_x (times 2 mu_y), likewise mu_y
  ds_dd = s_d2 - s_d1       # the d1, d2 parts (times 2 mu_x)
  t_s = (2.0 * (mu_y * ds_dmu + mu_x * ds_dd) * t_mu_x
         + 2.0 * (mu_x * ds_dmu + mu_y * ds_dd) * t_mu_y
         - s_d2 * t_e2 + 2.0 * n1 * inv * t_exy
         + (n2 * inv - s_d1) * tc1 + (n1 * inv - s_d2) * tc2)
  return s, t_s


def _ssim_map(a, b, m, *, max_val, sigma, win_size, k1, k2):
  """Channel-mean SSIM map `[..., H, W]` of validated frames; m is the float mask or None."""
  if m is not None:
    a, b = a * m[..., None], b * m[..., None]
  # Channels to the front, so W is the minor (vectorised) axis of every slice.
  x, y = jnp.moveaxis(a, -1, -3), jnp.moveaxis(b, -1, -3)
  taps = tuple(float(t) for t in _gaussian_taps(sigma, int(win_size)))
  c1 = jnp.asarray((k1 * max_val) ** 2, x.dtype)
  c2 = jnp.asarray((k2 * max_val) ** 2, x.dtype)
  return jnp.mean(_ssim_planes(x, y, c1, c2, taps), axis=-3)


def ssim_map(a, b, *, max_val: float = 1.0, sigma: float = 1.5, win_size: int = 11,
             k1: float = 0.01, k2: float = 0.03, mask=None):
  """Per-pixel SSIM map of every frame pair, averaged over channels.

  The map is full size: border pixels use reflect padding (see the module docstring); `ssim`
  crops `(win_size - 1) // 2` pixels from each border before averaging it.

  Args:
    a, b: float frames `[..., H, W, C]` of the same shape, in [0, max_val]; H, W >= win_size.
    max_val: the dynamic range of the pixel values.
    sigma: standard deviation of the Gaussian window, in pixels (static).
    win_size: number of Gaussian taps per axis, odd (static).
    k1, k2: the SSIM constants, `C1 = (k1 max_val)**2`, `C2 = (k2 max_val)**2`.
    mask: optional `[..., H, W]` bool/float mask, broadcastable to the frames' leading axes;
      it multiplies both frames first.

  Returns:
    float32 `[..., H, W]` in [-1, 1].
  """
  a, b, m = _prepare(a, b, mask)
  _check_window(sigma, win_size, k1, k2, *a.shape[-3:-1])
  _check_max_val(max_val)
  return _ssim_map(a, b, m, max_val=max_val, sigma=sigma, win_size=win_size, k1=k1, k2=k2)


def ssim(a, b, *, max_val: float = 1.0, sigma: float = 1.5, win_size: int = 11,
         k1: float = 0.01, k2: float = 0.03, mask=None):
  """Mean SSIM of every frame pair (Wang et al. 2004; paper 001 eq. 2.5).

  The mean runs over the interior pixels, `(win_size - 1) // 2` from every border (as
  scikit-image and the Numba kernels), that the mask leaves in; channels count equally.

  Args:
    a, b: float frames `[..., H, W, C]` of the same shape, in [0, max_val]; H, W >= win_size.
    max_val: the dynamic range of the pixel values.
    sigma: standard deviation of the Gaussian window, in pixels (static).
    win_size: number of Gaussian taps per axis, odd (static).
    k1, k2: the SSIM constants, `C1 = (k1 max_val)**2`, `C2 = (k2 max_val)**2`.
    mask: optional `[..., H, W]` bool/float mask, broadcastable to the frames' leading axes;
      it multiplies both frames and only nonzero pixels count.

  Returns:
    float32 `[...]` in [-1, 1]; NaN for a frame whose mask leaves no interior pixel.
  """
  a, b, m = _prepare(a, b, mask)
  height, width = a.shape[-3:-1]
  _check_window(sigma, win_size, k1, k2, height, width)
  _check_max_val(max_val)
  smap = _ssim_map(a, b, m, max_val=max_val, sigma=sigma, win_size=win_size, k1=k1, k2=k2)
  pad = (int(win_size) - 1) // 2
  interior = np.zeros((height, width), np.float32)
  interior[pad:height - pad, pad:width - pad] = 1.0
  if m is None:
    # Static interior: a plain mean over the crop.
    return jnp.mean(smap[..., pad:height - pad, pad:width - pad], axis=(-2, -1))
  return _masked_frame_mean(smap, (m != 0).astype(smap.dtype) * interior)

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
* Patches (paper 004, `patch_scores`): every `P x P` patch every `stride` pixels from the
  top-left corner, whole patches only, as `jaxvad_kernels.patch_scores`; `reduce_patches`
  turns them into one score per frame from the worst patches, in the metric's orientation.

Scores are float32 (float64 for float64 input with x64 enabled).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["mse", "psnr", "ssim", "ssim_map", "patch_geometry", "patch_scores", "reduce_patches",
           "PATCH_METRICS", "PATCH_REDUCTIONS"]

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
  smap = _ssim_planes(x, y, c1, c2, taps)
  # The channel mean as a sum of slices, not a reduce over the non-minor C axis: XLA:CPU's
  # layout assignment then re-laid out the whole filter for that reduce, and SSIM of
  # 32 x 64 x 64 x 3 frames took 34 ms instead of 6 (the same 96 planes as one channel).
  total = smap[..., 0, :, :]
  for c in range(1, smap.shape[-3]):
    total = total + smap[..., c, :, :]
  return total / smap.shape[-3]


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


# ---------------------------------------------------------------------------------------------
# Patch scores (paper 004): the same metrics over a grid of patches, and the worst patches.

PATCH_METRICS = ("psnr", "mse", "ssim")
PATCH_REDUCTIONS = ("max_patch", "top_k_patches")
# A metric's worst patch: the lowest PSNR / SSIM (higher = more alike), the highest MSE.
_LOWER_IS_WORSE = {"psnr": True, "mse": False, "ssim": True}


def _check_metric(metric):
  if metric not in PATCH_METRICS:
    raise ValueError(f"metric must be one of {', '.join(PATCH_METRICS)}, got {metric!r}")


def _is_int(v):
  return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def patch_geometry(height: int, width: int, *, patch_size: int = 0, stride: int = 0,
                   metric: str = "psnr", win_size: int = 11) -> tuple[int, int]:
  """The patch side and stride in pixels for `height x width` frames; 0 picks them.

  Automatic: paper 004's 32-pixel patches at 256 x 256, scaled with the frame:
  `patch_size = round(32 * min(H, W) / 256)` (halves rounded up), at least 4 pixels (for SSIM
  at least `(win_size - 1) // 2 + 1`, so border patches keep interior pixels), at most
  `min(H, W)`; `stride = patch_size // 2` (half-overlapping patches, so an anomaly that
  straddles a patch border is also seen whole), at least 1. 64 x 64 frames get 8-pixel
  patches every 4 pixels, a 15 x 15 grid.

  Args:
    height, width: the frame size in pixels.
    patch_size: the patch side in pixels; 0 = automatic.
    stride: pixels between neighbouring patches, at most `patch_size`; 0 = automatic.
    metric: "psnr", "mse" or "ssim" (SSIM needs patches wider than its border crop).
    win_size: the SSIM window (for the automatic SSIM patch size and the check).

  Returns:
    `(patch_size, stride)`, both resolved and checked.

  Raises:
    ValueError: a size or stride that is not an integer or does not fit the frame.
  """
  _check_metric(metric)
  for name, v in (("patch_size", patch_size), ("stride", stride), ("height", height),
                  ("width", width)):
    if not _is_int(v) or v < 0:
      raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
  side = min(height, width)
  low = (int(win_size) - 1) // 2 + 1 if metric == "ssim" else 1
  if patch_size == 0:
    patch_size = min(side, max(4, low, int(math.floor(32 * side / 256 + 0.5))))
  if not low <= patch_size <= side:
    extra = (f" (SSIM with win_size {win_size} needs patches wider than its "
             f"{low - 1}-pixel border crop)" if metric == "ssim" else "")
    raise ValueError(f"patch_size must be in [{low}, {side}] for {height}x{width} frames"
                     f"{extra}, got {patch_size}")
  if stride == 0:
    stride = max(1, patch_size // 2)
  if not 1 <= stride <= patch_size:
    raise ValueError(f"stride must be in [1, patch_size = {patch_size}], got {stride}")
  return int(patch_size), int(stride)


def _patch_sums(x, size, stride):
  """Sums of x `[..., H, W]` over every `size x size` patch every `stride` pixels:
  `[..., gh, gw]` (the grid of `patch_geometry`; partial patches dropped)."""
  lead = (1,) * (x.ndim - 2)
  return jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, lead + (size, size),
                               lead + (stride, stride), "VALID")


def _patch_mean(values, weight, size, stride):
  """Per-patch mean of values `[..., H, W]` over the pixels where weight (0/1) is 1; NaN where
  none (with a zero gradient, as `_masked_frame_mean`)."""
  weight = jnp.broadcast_to(weight, values.shape)
  total = _patch_sums(jnp.where(weight > 0, values, 0.0), size, stride)
  count = _patch_sums(weight, size, stride)
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def patch_scores(pred, target, *, metric: str = "psnr", patch_size: int, stride: int | None = None,
                 max_val: float = 1.0, eps: float = 1e-10, sigma: float = 1.5,
                 win_size: int = 11, k1: float = 0.01, k2: float = 0.03, mask=None):
  """PSNR, MSE or SSIM of every `patch_size x patch_size` patch, every `stride` pixels.

  The grid and definitions are those of the Numba `jaxvad_kernels.patch_scores`: patches start
  at the top-left corner, only whole patches count (`(H - P) // stride + 1` rows of them); a
  patch's MSE averages its unmasked pixels and channels, its PSNR is `10 log10(max_val**2 /
  max(MSE, eps))`, and its SSIM is the mean of the frame's SSIM map (`ssim_map`, so each
  pixel's window reaches outside the patch) over the patch's pixels in the frame's interior
  (`ssim`'s border crop) that the mask keeps.

  Args:
    pred, target: float frames `[..., H, W, C]` of the same shape, in [0, max_val].
    metric: "psnr" (dB), "mse" or "ssim" (static).
    patch_size: the patch side P in pixels, 1 <= P <= min(H, W); for SSIM larger than
      `(win_size - 1) // 2` (static; `patch_geometry` picks one).
    stride: pixels between neighbouring patches, in [1, P]; None = P, non-overlapping (static).
    max_val: the dynamic range of the pixel values.
    eps: floor on the MSE in the PSNR.
    sigma, win_size, k1, k2: the SSIM window and constants, as in `ssim`.
    mask: optional `[..., H, W]` bool/float mask, broadcastable to the frames' leading axes;
      it multiplies both frames and only nonzero pixels count.

  Returns:
    float32 `[..., gh, gw]` per-patch values (higher = more alike for PSNR and SSIM, lower for
    MSE); NaN for a patch whose mask keeps no pixel.

  Raises:
    ValueError: shapes that differ, an unknown metric, a patch or stride that does not fit.
  """
  _check_metric(metric)
  pred, target, m = _prepare(pred, target, mask)
  height, width = pred.shape[-3:-1]
  if metric == "ssim":
    _check_window(sigma, win_size, k1, k2, height, width)
  _check_max_val(max_val)
  if not _is_int(patch_size) or patch_size < 1:
    raise ValueError(f"patch_size must be an integer >= 1, got {patch_size!r}")
  if stride is not None and (not _is_int(stride) or stride < 1):
    raise ValueError(f"stride must be an integer >= 1 or None, got {stride!r}")
  size, stride = patch_geometry(height, width, patch_size=int(patch_size),
                                stride=int(patch_size if stride is None else stride),
                                metric=metric, win_size=win_size)
  keep = None if m is None else (m != 0).astype(pred.dtype)
  if metric == "ssim":
    smap = _ssim_map(pred, target, m, max_val=max_val, sigma=sigma, win_size=win_size, k1=k1,
                     k2=k2)
    pad = (int(win_size) - 1) // 2
    interior = np.zeros((height, width), np.float32)
    interior[pad:height - pad, pad:width - pad] = 1.0
    if keep is not None:
      return _patch_mean(smap, keep * interior, size, stride)
    # Without a mask the interior pixels per patch are static: counted here, not by XLA
    # (which constant-folds a window sum of a constant slowly, seconds per compile).
    count = np.lib.stride_tricks.sliding_window_view(interior, (size, size))[::stride, ::stride]
    count = count.sum(axis=(-2, -1))
    total = _patch_sums(smap * interior, size, stride)
    return jnp.where(count > 0, total / np.maximum(count, 1), jnp.nan).astype(smap.dtype)
  diff = pred - target if m is None else (pred - target) * m[..., None]
  sq = jnp.mean(diff * diff, axis=-1)
  if keep is None:
    err = _patch_sums(sq, size, stride) / (size * size)
  else:
    err = _patch_mean(sq, keep, size, stride)
  if metric == "mse":
    return err
  return 10.0 * jnp.log10(max_val**2 / jnp.maximum(err, eps))


def reduce_patches(values, *, metric: str, reduce: str = "max_patch", top_k: int = 1):
  """One score per frame from its per-patch values: the worst patch, or the mean of the worst k.

  "Worst" is the lowest PSNR or SSIM, or the highest MSE, so the result keeps the metric's
  orientation (a PSNR stays higher = more normal). NaN patches (nothing left by a mask) are
  never chosen; a frame whose chosen patches are all NaN scores NaN (top_k_patches averages
  the finite ones among the k worst).

  Args:
    values: `[..., gh, gw]` per-patch values (`patch_scores`).
    metric: "psnr", "mse" or "ssim": which way is worse (static).
    reduce: "max_patch" (the worst patch's value) or "top_k_patches" (the mean of the `top_k`
      worst patches' values) (static).
    top_k: patches averaged by top_k_patches, 1 <= top_k <= gh * gw (static).

  Returns:
    `[...]`, one value per frame, in the metric's units.

  Raises:
    ValueError: an unknown metric or reduction, or a top_k that does not fit the grid.
  """
  _check_metric(metric)
  if reduce not in PATCH_REDUCTIONS:
    raise ValueError(f"reduce must be one of {', '.join(PATCH_REDUCTIONS)}, got {reduce!r}")
  values = jnp.asarray(values)
  if values.ndim < 2:
    raise ValueError(f"expected [..., gh, gw] patch values, got shape {values.shape}")
  count = values.shape[-2] * values.shape[-1]
  k = 1 if reduce == "max_patch" else top_k
  if not _is_int(k) or not 1 <= k <= count:
    raise ValueError(f"top_k must be an integer in [1, {count}] (the patches per frame), "
                     f"got {top_k!r}")
  flat = values.reshape(values.shape[:-2] + (count,))
  finite = jnp.isfinite(flat)
  # Badness, higher = worse; NaN patches are never the worst.
  bad = jnp.where(finite, -flat if _LOWER_IS_WORSE[metric] else flat, -jnp.inf)
  if k == 1:
    pick = jnp.argmax(bad, axis=-1)[..., None]
  else:
    pick = jax.lax.top_k(bad, int(k))[1]
  chosen = jnp.take_along_axis(flat, pick, axis=-1)
  ok = jnp.take_along_axis(finite, pick, axis=-1)
  n_ok = jnp.sum(ok, axis=-1)
  total = jnp.sum(jnp.where(ok, chosen, 0.0), axis=-1)
  return jnp.where(n_ok > 0, total / jnp.maximum(n_ok, 1), jnp.nan)

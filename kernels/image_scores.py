"""SSIM, PSNR and per-patch scores of frame batches, and score smoothing, on the CPU (Numba).

Frames are `[N, H, W, C]` (or grayscale `[N, H, W]`), uint8 or float. Every score is float64,
one value per frame (or per patch).

SSIM follows Wang et al. 2004 and matches scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=max_val, channel_axis=-1)` to ~1e-12:

* Local statistics use a separable Gaussian of `win_size` taps,
  `w[k] ∝ exp(-k**2 / (2 sigma**2))` for `k = -r..r`, `r = (win_size - 1) // 2`, normalised to
  sum 1 (scipy's `gaussian_filter` with `truncate=3.5` builds the same 11 taps for sigma=1.5).
* Borders: the frame is extended by reflection about its edge, the edge pixel repeating
  (scipy `mode='reflect'`, numpy `'symmetric'`: `d c b a | a b c d | d c b a`), so the map has
  the full `H x W` size.
* The mean SSIM of a frame averages the map over the interior only: `r` pixels are cropped
  from each border, the pixels whose window needed padding (scikit-image's `crop(S, pad)`).
  In that interior the map is exactly dm-pix's 'valid' map.
* Channels: the mean over channels of the per-channel SSIM (scikit-image's `channel_axis`).

Masks (paper 000 §3.1.3): a mask `[N, H, W]` or `[H, W]` (bool or float, shared by every
channel) multiplies both frames before scoring, and only the pixels where it is nonzero count:
MSE/PSNR average over the unmasked pixels, SSIM over the unmasked interior pixels. A frame (or
patch) with no pixel to average scores NaN: the score is undefined there, and a NaN keeps the
batch shape while `jaxvad.metrics` refuses it loudly if it reaches a ROC curve.

PSNR is `10 log10(max_val**2 / max(MSE, eps))` with `eps = 1e-10`, as `jaxvad.scoring.psnr`:
identical frames score a finite 100 dB (max_val 1) or ~148 dB (max_val 255), not inf.
"""

from __future__ import annotations

import numba
import numpy as np

from jaxvad_kernels._jit import njit, parallel_njit, prange

__all__ = ["ssim", "ssim_map", "psnr", "mse", "patch_scores", "moving_average"]

def gaussian_taps(sigma: float, win_size: int) -> np.ndarray:
  """The normalised 1-D Gaussian window `w[k] ∝ exp(-k**2 / (2 sigma**2))`, `k = -r..r`."""
  r = (win_size - 1) // 2
  k = np.arange(-r, r + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (k / sigma) ** 2)
  return taps / taps.sum()


# ---------------------------------------------------------------------------------------------
# Numba cores: they only loop; the public wrappers below validate and prepare their input.


# The Gaussian taps travel as a tuple: its length is part of the type, so the tap loops below
# have a compile-time trip count, LLVM unrolls them, and the pixel loop around them vectorises
# with every tap summed in registers (one store per output instead of one per tap).


@njit
def _blur_row(row, dst, taps):
  """dst[j] = sum_k taps[k] row[j + k]: the horizontal pass over one reflect-padded row."""
  r = len(taps) // 2
  for j in range(dst.shape[0]):
    # Centre tap first, then mirrored pairs from the inside out: scipy's order for
    # symmetric kernels, and r + 1 products instead of 2r + 1.
    acc = taps[r] * row[j + r]
    for d in range(1, r + 1):
      acc += taps[r + d] * (row[j + r - d] + row[j + r + d])
    dst[j] = acc


@njit
def _blur_column(blur, i, dst, taps):
  """dst[j] = sum_k taps[k] blur[i + k, j]: the vertical pass for output row i.

  blur is [H + 2r, W]: horizontally blurred rows with r reflected rows above and below.
  """
  # One statistic at a time: fusing all four into one loop ran 4x slower (measured).
  r = len(taps) // 2
  c = i + r
  for j in range(dst.shape[0]):
    acc = taps[r] * blur[c, j]
    for d in range(1, r + 1):
      acc += taps[r + d] * (blur[c - d, j] + blur[c + d, j])
    dst[j] = acc


@njit
def _ssim_formula(mu, c1, c2, out):
  """Wang et al.'s SSIM from the local means mu = [x, y, x*x + y*y, x*y] of one row."""
  for j in range(out.shape[0]):
    ux, uy = mu[0, j], mu[1, j]
    mxy = ux * uy
    a1 = 2.0 * mxy + c1
    a2 = 2.0 * (mu[3, j] - mxy) + c2
    b1 = ux * ux + uy * uy + c1
    b2 = mu[2, j] - ux * ux - uy * uy + c2  # vx + vy + C2
    out[j] = (a1 * a2) / (b1 * b2)


@njit
def _ssim_frame(x, y, m, taps, c1, c2, pad, keep_map, out_map, rows, blur, mu, srow):
  """SSIM of one frame x, y [H, W, C] after multiplying by m [H, W], in scratch buffers.

  Returns (sum, count) of the SSIM over interior (`pad` from every border) pixels where m is
  nonzero, over all channels; with `keep_map`, adds the channel-mean map to out_map [H, W].
  """
  # A plain function called from the parallel loop: numba's parfor lowering optimised this
  # body 1.5x worse when it was written inline (measured).
  height, width, n_ch = x.shape
  r = len(taps) // 2
  inv_ch = 1.0 / n_ch
  total, count = 0.0, 0
  for c in range(n_ch):
    done = 0  # input rows through the horizontal pass so far
    for i in range(height):
      # Blur input rows just ahead of the output row, so they are still in cache.
      while done <= min(height - 1, i + r):
        for j in range(width):
          u = x[done, j, c] * m[done, j]
          v = y[done, j, c] * m[done, j]
          rows[0, r + j] = u
          rows[1, r + j] = v
          rows[2, r + j] = u * u + v * v
          rows[3, r + j] = u * v
        for q in range(4):
          for k in range(r):  # reflect: d c b a | a b c d | d c b a
            rows[q, r - 1 - k] = rows[q, r + k]
            rows[q, r + width + k] = rows[q, r + width - 1 - k]
          _blur_row(rows[q], blur[q, r + done], taps)
        done += 1
        if done == r or done == height:  # mirror rows once their sources exist
          for q in range(4):
            for k in range(r):
              if done == r:
                blur[q, r - 1 - k] = blur[q, r + k]
              if done == height:
                blur[q, r + height + k] = blur[q, r + height - 1 - k]
      for q in range(4):
        _blur_column(blur[q], i, mu[q], taps)
      _ssim_formula(mu, c1, c2, srow)
      if keep_map:
        for j in range(width):
          out_map[i, j] += srow[j] * inv_ch
      if pad <= i < height - pad:
        for j in range(pad, width - pad):
          if m[i, j] != 0:
            total += srow[j]
            count += 1
  return total, count


@parallel_njit
def _ssim_core(x, y, m, taps, c1, c2, pad, keep_map, n_chunks):
  """SSIM of x, y [N, H, W, C] after multiplying by m [1|N, H, W]; taps is a tuple.

  Returns per-frame (sums, counts) as `_ssim_frame`, and the channel-mean map [N, H, W] with
  `keep_map` (else a [0, H, W] placeholder).
  """
  n_frames, height, width, _ = x.shape
  r = len(taps) // 2
  smap = np.zeros((n_frames if keep_map else 0, height, width))
  sums = np.zeros(n_frames)
  counts = np.zeros(n_frames)
  # One chunk of frames per thread, so the scratch buffers are allocated once per thread.
  for chunk in prange(n_chunks):
    # SSIM needs four local means: x, y, x*x + y*y (only vx + vy enters) and x*y.
    rows = np.empty((4, width + 2 * r))          # one reflect-padded input row per statistic
    blur = np.empty((4, height + 2 * r, width))  # horizontal pass, r reflected rows each side
    mu = np.empty((4, width))                    # one output row of local means
    srow = np.empty(width)
    no_map = np.empty((0, 0))
    for n in range(np.int64(chunk), n_frames, n_chunks):
      out_map = smap[n] if keep_map else no_map
      mi = min(n, m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
      sums[n], counts[n] = _ssim_frame(x[n], y[n], m[mi], taps, c1, c2, pad, keep_map, out_map,
                                       rows, blur, mu, srow)
  return sums, counts, smap


@parallel_njit
def _squared_error(x, y, m):
  """Per frame: sum of (m x - m y)**2 over the pixels where m != 0, and the number of terms."""
  n_frames, height, width, n_ch = x.shape
  sums = np.zeros(n_frames)
  counts = np.zeros(n_frames)
  for n in prange(n_frames):
    mi = min(np.int64(n), m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
    total, count = 0.0, 0
    for i in range(height):
      for j in range(width):
        w = m[mi, i, j]
        if w != 0:
          for c in range(n_ch):
            e = x[n, i, j, c] * w - y[n, i, j, c] * w
            total += e * e
          count += n_ch
    sums[n], counts[n] = total, count
  return sums, counts


@parallel_njit
def _patch_sums(smap, x, y, m, pad, patch):
  """Per P x P patch: SSIM-map sum and count (interior, unmasked), squared-error sum and count."""
  n_frames, height, width, n_ch = x.shape
  gh, gw = height // patch, width // patch
  ssim_sum = np.zeros((n_frames, gh, gw))
  ssim_cnt = np.zeros((n_frames, gh, gw))
  se_sum = np.zeros((n_frames, gh, gw))
  se_cnt = np.zeros((n_frames, gh, gw))
  for n in prange(n_frames):
    mi = min(np.int64(n), m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
    for i in range(gh * patch):
      pi = i // patch
      row_inside = pad <= i < height - pad
      for j in range(gw * patch):
        w = m[mi, i, j]
        if w == 0:
          continue
        pj = j // patch
        total = 0.0
        for c in range(n_ch):
          e = x[n, i, j, c] * w - y[n, i, j, c] * w
          total += e * e
        se_sum[n, pi, pj] += total
        se_cnt[n, pi, pj] += n_ch
        if row_inside and pad <= j < width - pad:
          ssim_sum[n, pi, pj] += smap[n, i, j]
          ssim_cnt[n, pi, pj] += 1
  return ssim_sum, ssim_cnt, se_sum, se_cnt


@njit
def _moving_average_core(x, window):
  # Running window sum: O(T), and the sum stays the size of one window, so rounding does not
  # grow with the series as a prefix sum's would.
  n = x.shape[0]
  left, right = (window - 1) // 2, window // 2
  out = np.empty(n)
  total = 0.0
  hi = -1  # frames [lo, hi] are in the running sum
  lo = 0
  for t in range(n):
    new_hi = min(n - 1, t + right)
    while hi < new_hi:
      hi += 1
      total += x[hi]
    new_lo = max(0, t - left)
    while lo < new_lo:
      total -= x[lo]
      lo += 1
    out[t] = total / (hi - lo + 1)
  return out


# ---------------------------------------------------------------------------------------------
# Validation shared by the public wrappers.


def _as_frames(arr, name):
  arr = np.asarray(arr)
  if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
    raise TypeError(f"{name} must be uint8 or floating, got dtype {arr.dtype}")
  if arr.ndim == 3:  # grayscale [N, H, W]
    arr = arr[..., None]
  if arr.ndim != 4:
    raise ValueError(f"{name} must be [N, H, W, C] or [N, H, W], got shape {arr.shape}")
  if 0 in arr.shape:
    raise ValueError(f"{name} is empty: shape {arr.shape}")
  if arr.dtype != np.uint8 and not np.isfinite(arr).all():
    raise ValueError(f"{name} contains NaN or inf")
  return arr


def _prepare(a, b, mask, max_val):
  """Validated (x, y, m, max_val): frames [N, H, W, C], mask float64 [1|N, H, W]."""
  a, b = _as_frames(a, "a"), _as_frames(b, "b")
  if a.shape != b.shape:
    raise ValueError(f"a and b shapes differ: {a.shape} vs {b.shape}")
  if a.dtype != b.dtype:
    # One dtype per compiled kernel; mixed inputs are scored in float64.
    if np.uint8 in (a.dtype, b.dtype) and max_val is None:
      raise TypeError(f"a is {a.dtype} and b is {b.dtype}: pass max_val, the range is ambiguous")
    a, b = a.astype(np.float64), b.astype(np.float64)
  if max_val is None:
    max_val = 255.0 if a.dtype == np.uint8 else 1.0
  max_val = float(max_val)
  if not max_val > 0 or not np.isfinite(max_val):
    raise ValueError(f"max_val must be a positive finite number, got {max_val}")
  n, h, w, _ = a.shape
  if mask is None:
    m = np.ones((1, h, w))
  else:
    m = np.asarray(mask)
    if not (m.dtype == bool or np.issubdtype(m.dtype, np.integer)
            or np.issubdtype(m.dtype, np.floating)):
      raise TypeError(f"mask must be bool or real, got dtype {m.dtype}")
    if m.shape not in ((h, w), (n, h, w)):
      raise ValueError(f"mask must be [N, H, W] = {(n, h, w)} or [H, W] = {(h, w)}, "
                       f"got shape {m.shape}")
    m = np.ascontiguousarray(m.reshape((-1, h, w)), dtype=np.float64)
    if not np.isfinite(m).all():
      raise ValueError("mask contains NaN or inf")
  return np.ascontiguousarray(a), np.ascontiguousarray(b), m, max_val


def _check_window(sigma, win_size, k1, k2, h, w):
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma}")
  if int(win_size) != win_size or win_size < 1 or win_size % 2 == 0:
    raise ValueError(f"win_size must be a positive odd integer, got {win_size}")
  if win_size > min(h, w):
    raise ValueError(f"win_size {win_size} exceeds the frame size {h}x{w}")
  if k1 < 0 or k2 < 0:
    raise ValueError(f"k1 and k2 must be >= 0, got {k1}, {k2}")


def _ssim_prepared(x, y, m, max_val, sigma, win_size, k1, k2, keep_map):
  """(per-frame mean SSIM, map or placeholder) of validated input."""
  _check_window(sigma, win_size, k1, k2, x.shape[1], x.shape[2])
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  pad = (int(win_size) - 1) // 2
  n_chunks = min(x.shape[0], numba.get_num_threads())
  taps = tuple(gaussian_taps(sigma, int(win_size)))
  sums, counts, smap = _ssim_core(x, y, m, taps, c1, c2, pad, keep_map, n_chunks)
  with np.errstate(invalid="ignore"):
    return sums / counts, smap


def _psnr_from_mse(err, max_val, eps):
  # np.maximum keeps NaN (all-masked frames) as NaN.
  return 10.0 * np.log10(max_val**2 / np.maximum(err, eps))


# ---------------------------------------------------------------------------------------------
# Public API.


def ssim_map(a, b, *, max_val=None, sigma: float = 1.5, win_size: int = 11, k1: float = 0.01,
             k2: float = 0.03, mask=None) -> np.ndarray:
  """Per-pixel SSIM map of every frame pair, averaged over channels.

  The map is full size: border pixels use reflect padding (see the module docstring); `ssim`
  crops `(win_size - 1) // 2` pixels from each border before averaging it.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape; H, W >= win_size.
    max_val: the dynamic range (`data_range`); None means 255 for uint8 and 1.0 for floats.
    sigma: standard deviation of the Gaussian window, in pixels.
    win_size: number of Gaussian taps per axis (odd).
    k1, k2: the SSIM constants, `C1 = (k1 max_val)**2`, `C2 = (k2 max_val)**2`.
    mask: optional `[N, H, W]` or `[H, W]` bool/float mask; it multiplies both frames first.

  Returns:
    float64 `[N, H, W]`.
  """
  x, y, m, max_val = _prepare(a, b, mask, max_val)
  return _ssim_prepared(x, y, m, max_val, sigma, win_size, k1, k2, True)[1]


def ssim(a, b, *, max_val=None, sigma: float = 1.5, win_size: int = 11, k1: float = 0.01,
         k2: float = 0.03, mask=None) -> np.ndarray:
  """Mean SSIM of every frame pair (Wang et al. 2004; paper 001 eq. 2.5).

  The mean runs over the interior pixels, `(win_size - 1) // 2` from every border (as
  scikit-image), that the mask leaves in; channels count equally.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape; H, W >= win_size.
    max_val: the dynamic range (`data_range`); None means 255 for uint8 and 1.0 for floats.
    sigma: standard deviation of the Gaussian window, in pixels.
    win_size: number of Gaussian taps per axis (odd).
    k1, k2: the SSIM constants, `C1 = (k1 max_val)**2`, `C2 = (k2 max_val)**2`.
    mask: optional `[N, H, W]` or `[H, W]` bool/float mask; it multiplies both frames and only
      nonzero pixels count.

  Returns:
    float64 `[N]` in [-1, 1]; NaN for a frame whose mask leaves no interior pixel.
  """
  x, y, m, max_val = _prepare(a, b, mask, max_val)
  return _ssim_prepared(x, y, m, max_val, sigma, win_size, k1, k2, False)[0]


def mse(a, b, *, mask=None) -> np.ndarray:
  """Mean squared error of every frame pair over its unmasked pixels and all channels.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape.
    mask: optional `[N, H, W]` or `[H, W]` bool/float mask; it multiplies both frames and only
      nonzero pixels count.

  Returns:
    float64 `[N]`; NaN for a frame whose mask is all zero.
  """
  x, y, m, _ = _prepare(a, b, mask, 1.0)
  sums, counts = _squared_error(x, y, m)
  with np.errstate(invalid="ignore"):
    return sums / counts


def psnr(a, b, *, max_val=None, mask=None, eps: float = 1e-10) -> np.ndarray:
  """Peak signal-to-noise ratio of every frame pair in dB (paper 001 eq. 2.9).

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape.
    max_val: the largest pixel value; None means 255 for uint8 and 1.0 for floats.
    mask: optional `[N, H, W]` or `[H, W]` bool/float mask; it multiplies both frames and only
      nonzero pixels count (paper 000 §3.1.3).
    eps: floor on the MSE, so identical frames give a finite PSNR (as `jaxvad.scoring.psnr`).

  Returns:
    float64 `[N]`; NaN for a frame whose mask is all zero.
  """
  x, y, m, max_val = _prepare(a, b, mask, max_val)
  sums, counts = _squared_error(x, y, m)
  with np.errstate(invalid="ignore"):
    return _psnr_from_mse(sums / counts, max_val, eps)


def patch_scores(a, b, *, patch: int = 32, max_val=None, sigma: float = 1.5,
                 win_size: int = 11, k1: float = 0.01, k2: float = 0.03,
                 mask=None) -> dict[str, np.ndarray]:
  """SSIM, MSE and PSNR of every non-overlapping `patch x patch` tile (Destroyer, paper 004).

  Tiles start at the top-left corner; the `H % patch` bottom rows and `W % patch` right
  columns that do not fill a tile are not scored (they still feed the SSIM window of their
  neighbours). A tile's SSIM is the mean of the frame's SSIM map (`ssim_map`) over the tile,
  with the same interior crop as `ssim`: so border tiles average fewer pixels, and the
  pixel-count weighted mean of the tile SSIMs is the frame SSIM when H, W are multiples of
  `patch`. MSE/PSNR average every unmasked pixel of the tile.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape; H, W >= patch.
    patch: tile side P, larger than `(win_size - 1) // 2` so border tiles keep pixels.
    max_val, sigma, win_size, k1, k2, mask: as in `ssim`.

  Returns:
    dict of float64 `[N, H // P, W // P]` arrays: "ssim", "mse", "psnr" (NaN where the mask
    leaves a tile no pixel to average).
  """
  x, y, m, max_val = _prepare(a, b, mask, max_val)
  h, w = x.shape[1:3]
  _check_window(sigma, win_size, k1, k2, h, w)
  pad = (int(win_size) - 1) // 2
  if int(patch) != patch or patch <= pad or patch > min(h, w):
    raise ValueError(f"patch must be an integer in ({pad}, {min(h, w)}] for {h}x{w} frames "
                     f"and win_size {win_size}, got {patch}")
  smap = _ssim_prepared(x, y, m, max_val, sigma, win_size, k1, k2, True)[1]
  ssim_sum, ssim_cnt, se_sum, se_cnt = _patch_sums(smap, x, y, m, pad, int(patch))
  with np.errstate(invalid="ignore"):
    err = se_sum / se_cnt
    return {"ssim": ssim_sum / ssim_cnt, "mse": err,
            "psnr": _psnr_from_mse(err, max_val, 1e-10)}


def moving_average(x, *, window: int) -> np.ndarray:
  """Centred moving average of a score series; the edges average the frames that exist.

  Frame t averages frames `[t - (window - 1) // 2, t + window // 2]` clipped to the series,
  as `jaxvad.metrics.moving_average` (same results), in O(T) for any window.

  Args:
    x: float `[T]` scores.
    window: window length in frames; 1 returns a copy.

  Returns:
    float64 `[T]`.
  """
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 1:
    raise ValueError(f"x must be 1-D, got shape {x.shape}")
  if int(window) != window or window < 1:
    raise ValueError(f"window must be an integer >= 1, got {window}")
  if not np.isfinite(x).all():
    raise ValueError("x contains NaN or inf")
  return _moving_average_core(np.ascontiguousarray(x), int(window))

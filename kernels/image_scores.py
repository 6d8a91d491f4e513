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
batch shape while `jaxvad.evaluation.metrics` refuses it loudly if it reaches a ROC curve.

PSNR is `10 log10(max_val**2 / max(MSE, eps))` with `eps = 1e-10`, as `jaxvad.scoring.psnr`:
identical frames score a finite 100 dB (max_val 1) or ~148 dB (max_val 255), not inf.

Batches are split by frame over `numba.get_num_threads()` threads.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import numba
import numpy as np

from jaxvad_kernels._jit import njit

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

  blur is [H + 2r, W]: the horizontally blurred, reflect-padded rows.
  """
  # Unsigned row indices: numba then skips its negative-index wraparound, whose branches kept
  # LLVM from vectorising the block version below.
  r = len(taps) // 2
  c = i + r
  for j in range(dst.shape[0]):
    acc = taps[r] * blur[np.uint64(c), j]
    for d in range(1, r + 1):
      acc += taps[r + d] * (blur[np.uint64(c - d), j] + blur[np.uint64(c + d), j])
    dst[j] = acc


@njit
def _blur_columns4(blur, i, mu, q, taps):
  """mu[b, q, j] = sum_k taps[k] blur[i + b + k, j] for b = 0..3: four output rows at once.

  The four rows share 2r + 4 input rows, loaded once per j instead of 4 (2r + 1) times: one
  row at a time, the vertical pass was bound by loads from L2 (2.5x slower, measured).
  """
  r = len(taps) // 2
  c = i + r
  u = np.uint64
  for j in range(mu.shape[2]):
    t = taps[r]
    a0 = t * blur[u(c), j]
    a1 = t * blur[u(c + 1), j]
    a2 = t * blur[u(c + 2), j]
    a3 = t * blur[u(c + 3), j]
    for d in range(1, r + 1):
      t = taps[r + d]
      a0 += t * (blur[u(c - d), j] + blur[u(c + d), j])
      a1 += t * (blur[u(c + 1 - d), j] + blur[u(c + 1 + d), j])
      a2 += t * (blur[u(c + 2 - d), j] + blur[u(c + 2 + d), j])
      a3 += t * (blur[u(c + 3 - d), j] + blur[u(c + 3 + d), j])
    mu[0, q, j] = a0
    mu[1, q, j] = a1
    mu[2, q, j] = a2
    mu[3, q, j] = a3


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
def _ssim_frame(x, y, m, masked, taps, c1, c2, pad, keep_map, out_map, rows, blur, mu, srow,
                colsum):
  """SSIM of one frame x, y [H, W, C] after multiplying by m [H, W], in scratch buffers.

  Returns (sum, count) of the SSIM over interior (`pad` from every border) pixels where m is
  nonzero, over all channels; with `keep_map`, adds the channel-mean map to out_map [H, W].
  Without `masked`, m is all ones and is not read.
  """
  height, width, n_ch = x.shape
  r = len(taps) // 2
  inv_ch = 1.0 / n_ch
  colsum[:] = 0.0
  for c in range(n_ch):
    done = 0  # padded rows through the horizontal pass so far
    for i0 in range(0, height, 4):
      nb = min(4, height - i0)  # output rows i0 .. i0 + nb - 1, blocks of 4
      # They need padded rows up to i0 + nb - 1 + 2r: blur those just ahead, still in cache.
      while done < i0 + nb + 2 * r:
        # Padded row p is frame row p - r reflected at the borders (d c b a | a b c d |
        # d c b a); the 2r reflected rows are blurred a second time rather than copied.
        s = done - r
        if s < 0:
          s = -s - 1
        elif s >= height:
          s = 2 * height - 1 - s
        if masked:
          for j in range(width):
            u = x[s, j, c] * m[s, j]
            v = y[s, j, c] * m[s, j]
            rows[0, r + j] = u
            rows[1, r + j] = v
            rows[2, r + j] = u * u + v * v
            rows[3, r + j] = u * v
        else:
          for j in range(width):
            u = np.float64(x[s, j, c])
            v = np.float64(y[s, j, c])
            rows[0, r + j] = u
            rows[1, r + j] = v
            rows[2, r + j] = u * u + v * v
            rows[3, r + j] = u * v
        for q in range(4):
          for k in range(r):  # reflect the row ends the same way
            rows[q, r - 1 - k] = rows[q, r + k]
            rows[q, r + width + k] = rows[q, r + width - 1 - k]
          _blur_row(rows[q], blur[q, done], taps)
        done += 1
      for q in range(4):
        if nb == 4:
          _blur_columns4(blur[q], i0, mu, q, taps)
        else:
          for b in range(nb):
            _blur_column(blur[q], i0 + b, mu[b, q], taps)
      for b in range(nb):
        i = i0 + b
        _ssim_formula(mu[b], c1, c2, srow)
        if keep_map:
          for j in range(width):
            out_map[i, j] += srow[j] * inv_ch
        # Per-column sums: vectorised, where one running sum with a branch serialised on the
        # add latency (a fifth of the frame's time, measured).
        if pad <= i < height - pad and masked:
          for j in range(pad, width - pad):
            colsum[j] += srow[j] if m[i, j] != 0 else 0.0
        elif pad <= i < height - pad:
          for j in range(pad, width - pad):
            colsum[j] += srow[j]
  if not masked:
    return colsum.sum(), (height - 2 * pad) * (width - 2 * pad) * n_ch
  count = 0
  for i in range(pad, height - pad):
    for j in range(pad, width - pad):
      count += m[i, j] != 0
  return colsum.sum(), count * n_ch


# The frame loops below run one chunk of frames per thread: Python threads calling `nogil`
# kernels (`_over_frames`). A `prange` loop did the same as fast, but numba's parfor lowering
# added 3-4 s of compilation per dtype and window size (measured), paid again after every edit
# and on every fresh checkout.


@njit(nogil=True)
def _ssim_chunk(x, y, m, masked, taps, c1, c2, pad, keep_map, smap, sums, counts, start, step):
  """SSIM of frames start, start + step, ... of x, y [N, H, W, C] after multiplying by m.

  m is [1|N, H, W] (all ones, and not read, without `masked`); taps is a tuple. Writes
  per-frame (sum, count) as `_ssim_frame` to sums, counts [N], and with `keep_map` the
  channel-mean map to smap [N, H, W] (zero-filled).
  """
  n_frames, height, width, _ = x.shape
  r = len(taps) // 2
  # Scratch buffers, once per chunk. SSIM needs four local means: x, y, x*x + y*y (only
  # vx + vy enters) and x*y.
  rows = np.empty((4, width + 2 * r))         # one reflect-padded input row per statistic
  blur = np.empty((4, height + 2 * r, width))  # horizontal pass of every padded row
  mu = np.empty((4, 4, width))                # local means of 4 output rows, [row, stat, W]
  srow = np.empty(width)
  colsum = np.empty(width)
  no_map = np.empty((0, 0))
  for n in range(start, n_frames, step):
    out_map = smap[n] if keep_map else no_map
    mi = min(n, m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
    sums[n], counts[n] = _ssim_frame(x[n], y[n], m[mi], masked, taps, c1, c2, pad, keep_map,
                                     out_map, rows, blur, mu, srow, colsum)


@njit
def _squared_error_row(x, y, w, wide, acc, masked):
  """acc[k] += (w x[k] - w y[k])**2 over one frame row x, y [W, C] and its mask row w [W].

  acc and wide are [W * C] scratch; wide gets w repeated per channel, so the error loop runs
  over one flat row and vectorises (a loop over C inside the pixel loop did not). Without
  `masked` (w all ones) the weights are skipped: (x - y)**2, the same numbers.
  """
  width, n_ch = x.shape
  xf, yf = x.reshape(width * n_ch), y.reshape(width * n_ch)
  if not masked:
    for k in range(width * n_ch):
      e = np.float64(xf[k]) - np.float64(yf[k])  # float32 - float32 would round in float32
      acc[k] += e * e
    return
  for j in range(width):
    for c in range(n_ch):
      wide[j * n_ch + c] = w[j]
  for k in range(width * n_ch):
    # Masked pixels add exactly 0 (a finite pixel times 0), so no branch; a NaN or inf pixel
    # makes the sum NaN or inf, masked or not, which `_squared_error` then reports.
    e = xf[k] * wide[k] - yf[k] * wide[k]
    acc[k] += e * e


@njit(nogil=True)
def _squared_error_chunk(x, y, m, masked, sums, counts, start, step):
  """Per frame n = start, start + step, ...: sum of (m x - m y)**2 where m != 0, and its terms."""
  # Per-column partial sums: a single running sum serialises on the add latency.
  n_frames, height, width, n_ch = x.shape
  acc = np.empty(width * n_ch)
  wide = np.empty(width * n_ch)
  for n in range(start, n_frames, step):
    mi = min(n, m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
    acc[:] = 0.0
    count = 0
    for i in range(height):
      _squared_error_row(x[n, i], y[n, i], m[mi, i], wide, acc, masked)
      for j in range(width):
        count += m[mi, i, j] != 0
    sums[n], counts[n] = acc.sum(), count * n_ch


@njit(nogil=True)
def _patch_chunk(smap, x, y, m, masked, pad, patch, stride, ssim_sum, ssim_cnt, se_sum, se_cnt,
                 start, step):
  """Per-patch sums of frames start, start + step, ... into the [N, gh, gw] outputs.

  Patch (pi, pj) covers rows `pi * stride + [0, patch)` and columns `pj * stride + [0, patch)`.
  Per patch: the sum and count of the SSIM map smap over interior unmasked pixels, and of the
  squared errors over unmasked pixels (count in pixels x channels).
  """
  _, height, width, n_ch = x.shape
  gh, gw = se_sum.shape[1:]
  rows = (gh - 1) * stride + patch  # the rows (and below, columns) some patch covers
  cols = (gw - 1) * stride + patch
  # Per-pixel maps of one frame (each pixel's squared error computed once, however many
  # patches overlap it), then per patch row the column sums over its rows, vectorised over W,
  # reduced to patches.
  se_px, px_cnt = np.empty((rows, cols)), np.empty((rows, cols))
  s_px, s_cnt = np.empty((rows, cols)), np.empty((rows, cols))
  se_acc, wide = np.empty(width * n_ch), np.empty(width * n_ch)
  col_se, col_px, col_s, col_sc = (np.empty(cols), np.empty(cols), np.empty(cols),
                                   np.empty(cols))
  for n in range(start, x.shape[0], step):
    mi = min(n, m.shape[0] - 1)  # the mask is [1, H, W] or [N, H, W]
    for i in range(rows):
      se_acc[:] = 0.0
      _squared_error_row(x[n, i], y[n, i], m[mi, i], wide, se_acc, masked)
      inside = pad <= i < height - pad
      for j in range(cols):
        acc = 0.0
        for c in range(n_ch):
          acc += se_acc[j * n_ch + c]
        keep = m[mi, i, j] != 0
        se_px[i, j] = acc
        px_cnt[i, j] = keep
        keep_s = keep and inside and pad <= j < width - pad
        s_px[i, j] = smap[n, i, j] if keep_s else 0.0
        s_cnt[i, j] = keep_s
    for pi in range(gh):
      col_se[:] = 0.0
      col_px[:] = 0.0
      col_s[:] = 0.0
      col_sc[:] = 0.0
      for i in range(pi * stride, pi * stride + patch):
        for j in range(cols):
          col_se[j] += se_px[i, j]
          col_px[j] += px_cnt[i, j]
          col_s[j] += s_px[i, j]
          col_sc[j] += s_cnt[i, j]
      for pj in range(gw):
        lo, hi = pj * stride, pj * stride + patch
        se_sum[n, pi, pj] = col_se[lo:hi].sum()
        se_cnt[n, pi, pj] = col_px[lo:hi].sum() * n_ch
        ssim_sum[n, pi, pj] = col_s[lo:hi].sum()
        ssim_cnt[n, pi, pj] = col_sc[lo:hi].sum()


# Worker threads for `_over_frames`, started on first use and kept: threads started afresh for
# every call made SSIM of 64 x 256 x 256 frames 27.5 ms instead of 20.5 (measured). A forked
# child inherits the pool object but not its threads, so it starts its own.
_pool = None
_pool_lock = threading.Lock()


def _forget_pool():
  global _pool
  _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
  global _pool
  with _pool_lock:
    if _pool is None:
      # numba.get_num_threads() can only be set up to NUMBA_NUM_THREADS; the caller is one.
      _pool = concurrent.futures.ThreadPoolExecutor(
          max(1, numba.config.NUMBA_NUM_THREADS - 1), thread_name_prefix="jaxvad_kernels")
    return _pool


def _over_frames(kernel, n_frames, pixels, *args):
  """Runs kernel(*args, start, step) for start = 0 .. step - 1, one thread each.

  step is `numba.get_num_threads()` capped by n_frames, so NUMBA_NUM_THREADS and
  `numba.set_num_threads` apply as they would to a `prange` loop. The calling thread runs
  start 0. A batch of fewer than 65536 pixels in all (n_frames frames of `pixels` each) runs
  on the calling thread alone.
  """
  step = max(1, min(n_frames, numba.get_num_threads()))
  if step == 1 or n_frames * pixels < 65536:  # a hand-off costs ~0.1 ms (measured)
    kernel(*args, 0, 1)
    return
  futures = [_thread_pool().submit(kernel, *args, start, step) for start in range(1, step)]
  try:
    kernel(*args, 0, step)
  finally:
    for future in futures:
      future.result()  # waits, and re-raises a worker's exception


@njit
def _neumaier_add(total, comp, v):
  """total + v, with the rounding error of the addition added to the compensation comp."""
  t = total + v
  if abs(total) >= abs(v):
    comp += (total - t) + v
  else:
    comp += (v - t) + total
  return t, comp


@njit
def _moving_average_core(x, window):
  # Running window sum: O(T) for any window. Each add/subtract rounds, and those errors would
  # random-walk over a long series (measured 2e-8 off after 2M frames around 1e6); the
  # Neumaier compensation keeps the error at a few ulps of the window sum instead.
  n = x.shape[0]
  left, right = (window - 1) // 2, window // 2
  out = np.empty(n)
  total, comp = 0.0, 0.0
  hi = -1  # frames [lo, hi] are in the running sum
  lo = 0
  for t in range(n):
    new_hi = min(n - 1, t + right)
    while hi < new_hi:
      hi += 1
      total, comp = _neumaier_add(total, comp, x[hi])
    new_lo = max(0, t - left)
    while lo < new_lo:
      total, comp = _neumaier_add(total, comp, -x[lo])
      lo += 1
    out[t] = (total + comp) / (hi - lo + 1)
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
  if arr.dtype not in (np.uint8, np.float32, np.float64):
    # Numba has no float16 or long double arrays; the kernels compute in float64 anyway.
    arr = arr.astype(np.float64)
  return arr


def _check_finite(arr, name):
  if arr.dtype != np.uint8 and not np.isfinite(arr).all():
    raise ValueError(f"{name} contains NaN or inf")


def _prepare(a, b, mask, max_val, *, check_finite=True):
  """Validated (x, y, m, max_val): frames [N, H, W, C], mask float64 [1|N, H, W].

  With `check_finite=False` the caller checks the frames for NaN and inf itself.
  """
  a, b = _as_frames(a, "a"), _as_frames(b, "b")
  if a.shape != b.shape:
    raise ValueError(f"a and b shapes differ: {a.shape} vs {b.shape}")
  if check_finite:
    _check_finite(a, "a")
    _check_finite(b, "b")
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


def _ssim_prepared(x, y, m, masked, max_val, sigma, win_size, k1, k2, keep_map):
  """(per-frame mean SSIM, map or placeholder) of validated input."""
  _check_window(sigma, win_size, k1, k2, x.shape[1], x.shape[2])
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  pad = (int(win_size) - 1) // 2
  taps = tuple(gaussian_taps(sigma, int(win_size)))
  n = x.shape[0]
  sums, counts = np.zeros(n), np.zeros(n)
  smap = np.zeros((n if keep_map else 0,) + x.shape[1:3])
  _over_frames(_ssim_chunk, n, x.shape[1] * x.shape[2], x, y, m, masked, taps, c1, c2, pad,
               keep_map, smap, sums, counts)
  with np.errstate(invalid="ignore"):
    return sums / counts, smap


def _squared_error(x, y, m, masked):
  """Per-frame (sum, count) of the squared errors over unmasked pixels; x, y may hold NaN/inf.

  A NaN or inf pixel always reaches its frame's sum (times a zero mask it is NaN), so the
  frames are checked only when a sum is not finite: the up-front check read both batches
  once more, half the time of PSNR itself (measured).
  """
  sums, counts = np.zeros(x.shape[0]), np.zeros(x.shape[0])
  _over_frames(_squared_error_chunk, x.shape[0], x.shape[1] * x.shape[2], x, y, m, masked, sums,
               counts)
  if not np.isfinite(sums).all():
    _check_finite(x, "a")
    _check_finite(y, "b")
  return sums, counts


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
  return _ssim_prepared(x, y, m, mask is not None, max_val, sigma, win_size, k1, k2, True)[1]


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
  return _ssim_prepared(x, y, m, mask is not None, max_val, sigma, win_size, k1, k2, False)[0]


def mse(a, b, *, mask=None) -> np.ndarray:
  """Mean squared error of every frame pair over its unmasked pixels and all channels.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape.
    mask: optional `[N, H, W]` or `[H, W]` bool/float mask; it multiplies both frames and only
      nonzero pixels count.

  Returns:
    float64 `[N]`; NaN for a frame whose mask is all zero.
  """
  x, y, m, _ = _prepare(a, b, mask, 1.0, check_finite=False)
  sums, counts = _squared_error(x, y, m, mask is not None)
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
  x, y, m, max_val = _prepare(a, b, mask, max_val, check_finite=False)
  sums, counts = _squared_error(x, y, m, mask is not None)
  with np.errstate(invalid="ignore"):
    return _psnr_from_mse(sums / counts, max_val, eps)


def _patch_grid(height: int, width: int, *, patch: int, stride: int) -> tuple[int, int]:
  """The number of patch rows and columns of a `height x width` frame.

  Patches start at the top-left corner every `stride` pixels and only whole patches count:
  the last `(H - patch) % stride` rows and `(W - patch) % stride` columns are in no patch.
  `jaxvad.scoring.patch_scores` uses the same grid.

  Args:
    height, width: the frame size in pixels.
    patch: the patch side P in pixels, 1 <= P <= min(height, width).
    stride: pixels between neighbouring patches, 1 <= stride <= P.

  Returns:
    `(gh, gw) = ((H - P) // stride + 1, (W - P) // stride + 1)`.

  Raises:
    ValueError: a patch or stride out of range, or not an integer.
  """
  for name, v in (("patch", patch), ("stride", stride)):
    if isinstance(v, bool) or int(v) != v:
      raise ValueError(f"{name} must be an integer, got {v!r}")
  if not 1 <= patch <= min(height, width):
    raise ValueError(f"patch must be an integer in [1, {min(height, width)}] for "
                     f"{height}x{width} frames, got {patch}")
  if not 1 <= stride <= patch:
    raise ValueError(f"stride must be an integer in [1, patch = {patch}], got {stride}")
  return (int(height) - int(patch)) // int(stride) + 1, (int(width) - int(patch)) // int(stride) + 1


def patch_scores(a, b, *, patch: int = 32, stride: int | None = None, max_val=None,
                 sigma: float = 1.5, win_size: int = 11, k1: float = 0.01, k2: float = 0.03,
                 mask=None) -> dict[str, np.ndarray]:
  """SSIM, MSE and PSNR of every `patch x patch` patch, every `stride` pixels (paper 004).

  Patches start at the top-left corner (`_patch_grid`); the bottom rows and right columns that
  do not fill a patch are not scored (they still feed the SSIM window of their neighbours).
  A patch's SSIM is the mean of the frame's SSIM map (`ssim_map`) over the patch, with the
  same interior crop as `ssim`: so border patches average fewer pixels (none, and score NaN,
  when `patch <= (win_size - 1) // 2`), and with
  `stride = patch` the pixel-count weighted mean of the patch SSIMs is the frame SSIM when H,
  W are multiples of `patch`. MSE/PSNR average every unmasked pixel of the patch.
  `jaxvad.scoring.patch_scores` computes the same numbers in JAX.

  Args:
    a, b: frames `[N, H, W, C]` or `[N, H, W]`, uint8 or float, same shape; H, W >= patch.
    patch: patch side P in pixels (SSIM: larger than `(win_size - 1) // 2` for every patch to
      keep interior pixels).
    stride: pixels between neighbouring patches, in [1, patch]; None: `patch` (tiles).
    max_val, sigma, win_size, k1, k2, mask: as in `ssim`.

  Returns:
    dict of float64 `[N, gh, gw]` arrays (`_patch_grid`): "ssim", "mse", "psnr" (NaN where the
    mask leaves a patch no pixel to average, and SSIM where the border crop leaves none).
  """
  x, y, m, max_val = _prepare(a, b, mask, max_val)
  h, w = x.shape[1:3]
  _check_window(sigma, win_size, k1, k2, h, w)
  pad = (int(win_size) - 1) // 2
  stride = patch if stride is None else stride
  gh, gw = _patch_grid(h, w, patch=patch, stride=stride)
  smap = _ssim_prepared(x, y, m, mask is not None, max_val, sigma, win_size, k1, k2, True)[1]
  grid = (x.shape[0], gh, gw)
  ssim_sum, ssim_cnt, se_sum, se_cnt = (np.empty(grid) for _ in range(4))
  _over_frames(_patch_chunk, x.shape[0], h * w, smap, x, y, m, mask is not None, pad, int(patch),
               int(stride), ssim_sum, ssim_cnt, se_sum, se_cnt)
  with np.errstate(invalid="ignore"):
    err = se_sum / se_cnt
    return {"ssim": ssim_sum / ssim_cnt, "mse": err,
            "psnr": _psnr_from_mse(err, max_val, 1e-10)}


def moving_average(x, *, window: int) -> np.ndarray:
  """Centred moving average of a score series; the edges average the frames that exist.

  Frame t averages frames `[t - (window - 1) // 2, t + window // 2]` clipped to the series,
  as `jaxvad.evaluation.metrics.moving_average` (same results), in O(T) for any window.

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
  if window == 1:  # exactly the input, as jaxvad.evaluation.metrics (a running sum would round)
    return x.copy()
  return _moving_average_core(np.ascontiguousarray(x), int(window))

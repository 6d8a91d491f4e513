"""Slow image-score references: SSIM one window at a time, MSE/PSNR one pixel at a time.

Frames are [N, H, W, C] (or [N, H, W]); a mask [H, W] or [N, H, W] multiplies both frames and
only its nonzero pixels are averaged. Written from the definitions (Wang et al. 2004), with
the border convention of scikit-image's `structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`: frames are extended by numpy 'symmetric' padding (scipy
'reflect'), and the mean skips the (win_size - 1) // 2 pixels next to every border.
"""

import math

import numpy as np

from tests import naive


def _frames(a):
  a = np.asarray(a, np.float64)
  return a[..., None] if a.ndim == 3 else a


def _masks(mask, shape):
  """One float [H, W] mask per frame (all ones without a mask)."""
  n, h, w = shape[:3]
  if mask is None:
    return np.ones((n, h, w))
  return np.broadcast_to(np.asarray(mask, np.float64), (n, h, w))


def gaussian_window(sigma, win_size):
  """The 2-D window: outer product of w[k] = exp(-k^2 / (2 sigma^2)), k = -r..r, sum 1."""
  r = (win_size - 1) // 2
  taps = np.array([math.exp(-k * k / (2 * sigma * sigma)) for k in range(-r, r + 1)])
  window = np.outer(taps, taps)
  return window / window.sum()


def ssim_map_2d(x, y, *, max_val, sigma=1.5, win_size=11, k1=0.01, k2=0.03):
  """Full-size SSIM map of two [H, W] images; borders by symmetric (edge-repeating) padding."""
  r = (win_size - 1) // 2
  window = gaussian_window(sigma, win_size)
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  xp = np.pad(np.asarray(x, np.float64), r, mode="symmetric")
  yp = np.pad(np.asarray(y, np.float64), r, mode="symmetric")
  out = np.empty(np.shape(x))
  for i in range(out.shape[0]):
    for j in range(out.shape[1]):
      px = xp[i:i + win_size, j:j + win_size]
      py = yp[i:i + win_size, j:j + win_size]
      ux, uy = (window * px).sum(), (window * py).sum()
      vx = (window * (px - ux) ** 2).sum()
      vy = (window * (py - uy) ** 2).sum()
      cov = (window * (px - ux) * (py - uy)).sum()
      out[i, j] = ((2 * ux * uy + c1) * (2 * cov + c2)
                   / ((ux * ux + uy * uy + c1) * (vx + vy + c2)))
  return out


def ssim_map(a, b, *, max_val, mask=None, **kw):
  """[N, H, W]: the channel mean of the per-channel maps of the masked frames."""
  a, b = _frames(a), _frames(b)
  masks = _masks(mask, a.shape)
  out = np.zeros(a.shape[:3])
  for n in range(a.shape[0]):
    for c in range(a.shape[3]):
      out[n] += ssim_map_2d(a[n, ..., c] * masks[n], b[n, ..., c] * masks[n], max_val=max_val,
                            **kw)
    out[n] /= a.shape[3]
  return out


def _interior(shape, win_size):
  """Boolean [H, W]: the pixels whose window needs no padding."""
  r = (win_size - 1) // 2
  inside = np.zeros(shape, bool)
  inside[r:shape[0] - r, r:shape[1] - r] = True
  return inside


def ssim(a, b, *, max_val, mask=None, win_size=11, **kw):
  """[N]: per channel, the mean map over interior unmasked pixels; then the channel mean."""
  a, b = _frames(a), _frames(b)
  masks = _masks(mask, a.shape)
  out = []
  for n in range(a.shape[0]):
    keep = _interior(a.shape[1:3], win_size) & (masks[n] != 0)
    if not keep.any():
      out.append(math.nan)
      continue
    per_channel = [ssim_map_2d(a[n, ..., c] * masks[n], b[n, ..., c] * masks[n],
                               max_val=max_val, win_size=win_size, **kw)[keep].mean()
                   for c in range(a.shape[3])]
    out.append(np.mean(per_channel))
  return np.array(out)


def _masked_pixels(a, b, masks, n, rows=slice(None), cols=slice(None)):
  """The [K, C] masked pixel values of frame n (inside rows x cols) where the mask is nonzero."""
  m = masks[n][rows, cols]
  keep = m != 0
  return (a[n][rows, cols][keep] * m[keep][:, None], b[n][rows, cols][keep] * m[keep][:, None])


def _mse_of(x, y):
  if x.size == 0:
    return math.nan
  total = 0.0
  for v in (x - y).ravel():
    total += v * v
  return total / x.size


def _psnr_of(x, y, max_val):
  if x.size == 0:
    return math.nan
  return naive.psnr(x[None], y[None], max_val=max_val)[0]


def mse(a, b, *, mask=None):
  """[N]: mean of (m a - m b)^2 over unmasked pixels and all channels; NaN if none."""
  a, b = _frames(a), _frames(b)
  masks = _masks(mask, a.shape)
  return np.array([_mse_of(*_masked_pixels(a, b, masks, n)) for n in range(len(a))])


def psnr(a, b, *, max_val, mask=None):
  """[N]: 10 log10(max_val^2 / max(masked MSE, 1e-10)), as tests.naive.psnr; NaN if no pixel."""
  a, b = _frames(a), _frames(b)
  masks = _masks(mask, a.shape)
  return np.array([_psnr_of(*_masked_pixels(a, b, masks, n), max_val) for n in range(len(a))])


def patch_scores(a, b, *, patch, max_val, mask=None, win_size=11, **kw):
  """Per P x P tile from the top-left (partial tiles dropped): SSIM, MSE, PSNR.

  A tile's SSIM is the mean of the full frame's channel-mean map over the tile's interior
  unmasked pixels; MSE/PSNR are those of the tile's unmasked pixels.
  """
  a, b = _frames(a), _frames(b)
  masks = _masks(mask, a.shape)
  n_frames, h, w = a.shape[:3]
  gh, gw = h // patch, w // patch
  maps = ssim_map(a, b, max_val=max_val, mask=mask, win_size=win_size, **kw)
  inside = _interior((h, w), win_size)
  out = {key: np.empty((n_frames, gh, gw)) for key in ("ssim", "mse", "psnr")}
  for n in range(n_frames):
    for p in range(gh):
      for q in range(gw):
        rows, cols = slice(p * patch, (p + 1) * patch), slice(q * patch, (q + 1) * patch)
        keep = inside[rows, cols] & (masks[n][rows, cols] != 0)
        out["ssim"][n, p, q] = maps[n][rows, cols][keep].mean() if keep.any() else math.nan
        x, y = _masked_pixels(a, b, masks, n, rows, cols)
        out["mse"][n, p, q] = _mse_of(x, y)
        out["psnr"][n, p, q] = _psnr_of(x, y, max_val)
  return out

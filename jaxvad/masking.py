"""Background masks from Eigen-CAM maps, and masked scoring (paper 000 §3.1.2-3.1.3).

No hidden jit: callers jit (every option is static).

The background mask of a clip is made in this order:

1. `jaxvad.cam.eigen_cam_layers`: Eigen-CAM per frame on each of the last N conv layers
   (N = 1, 2, 4 in Table 4.5), each map resized to the frame size and resampled along time to
   the frame count, averaged over the layers and min-max scaled to [0, 1]
   (`jaxvad.cam.combine_maps` does the combining for per-layer maps computed beforehand);
2. `threshold_mask`: values below the threshold become 0, the others keep their value
   (§3.1.2: "values above the threshold retain the current value, whereas those below are
   reduced to zeros"), so the mask stays soft;
3. `temporal_pool`: a centred average over a window of w frames (§3.1.2: "average pooling
   along the temporal dimension with small window size").

The paper fixes threshold-then-pool and says nothing about where the resize goes; here the
maps are resized to the frame size first, per layer, as pytorch-grad-cam (which aggregates
several target layers this way) does, so threshold and pooling act on the full-size map that
the scores see. `resize_masks` is there for masks made at another size.

Fusion (§3.1.3, `masked_scores`): the mask multiplies both the reconstruction and the
reference frame, and PSNR/MSE average over the pixels the mask leaves nonzero only.
A soft mask value m therefore weights that pixel's squared error by m**2.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad import cam as cam_lib
from jaxvad import scoring

__all__ = ["threshold_mask", "temporal_pool", "resize_masks", "background_mask",
           "masked_scores", "MaskSetting", "MAIN_SETTING", "mask_from_layer_maps"]

_RESIZE_METHODS = ("linear", "nearest")


def _as_float(x, name):
  x = x if isinstance(x, jax.Array) else np.asarray(x)  # a clean TypeError for strings
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
          or x.dtype == jnp.bool_):
    raise TypeError(f"{name} must be real numbers, got dtype {x.dtype}")
  x = jnp.asarray(x)  # float64 becomes float32 here unless x64 is enabled
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _is_positive_int(n):
  return isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1


def _check_window(window):
  if not _is_positive_int(window):
    raise ValueError(f"window must be a positive integer, got {window!r}")
  return int(window)


def _check_threshold(threshold):
  # A traced threshold is allowed; a Python number is checked here.
  if isinstance(threshold, (int, float, np.number)) and not 0.0 <= threshold <= 1.0:
    raise ValueError(f"threshold must be in [0, 1], got {threshold}")


def _check_size(size):
  try:
    ok = len(size) == 2 and all(_is_positive_int(s) for s in size)
  except TypeError:
    ok = False
  if not ok:
    raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
  return int(size[0]), int(size[1])


def threshold_mask(cam, *, threshold: float):
  """Attention map values below the threshold set to 0; the others kept as they are.

  The mask stays soft, as in paper 000 §3.1.2 (values at or above the threshold "retain the
  current value"); `threshold=0` leaves a [0, 1] map unchanged (Tables 4.5 and 4.7).

  Args:
    cam: float `[...]` attention map in [0, 1], e.g. `[B, T, H, W]`.
    threshold: the cut in [0, 1]; may be traced (then it is not range-checked).

  Returns:
    float32 `[...]`: `cam` where `cam >= threshold`, else 0.

  Raises:
    ValueError: a Python-number threshold outside [0, 1] or NaN.
  """
  cam = _as_float(cam, "cam")
  _check_threshold(threshold)
  return jnp.where(cam >= threshold, cam, jnp.zeros((), cam.dtype))


def temporal_pool(masks, *, window: int):
  """Centred average of masks over time; the edges average over the frames that exist.

  Frame t averages frames `[t - (window - 1) // 2, t + window // 2]` that lie in the clip (an
  even window reaches one frame further ahead), the per-pixel equivalent of
  `jaxvad.evaluation.metrics.moving_average`. Pooling stays within the T axis of one array: to pool
  across clip boundaries, concatenate the clips along T first.

  Args:
    masks: float `[..., T, H, W]`.
    window: window length in frames, >= 1 (static; 1 leaves the masks unchanged).

  Returns:
    float32 `[..., T, H, W]`.

  Raises:
    ValueError: fewer than 3 axes or a bad window.
  """
  masks = _as_float(masks, "masks")
  if masks.ndim < 3:
    raise ValueError(f"masks must be [..., T, H, W], got shape {masks.shape}")
  window = _check_window(window)
  if window == 1:
    return masks
  counts = _window_counts(masks.shape[-3], window)
  return _window_sum(masks, window) / jnp.asarray(counts, masks.dtype)[:, None, None]


def _window_sum(masks, window: int):
  """Sum over the centred time window of `temporal_pool` (frames outside the clip count 0)."""
  left, right = (window - 1) // 2, window // 2
  dims = (1,) * (masks.ndim - 3) + (window, 1, 1)
  padding = [(0, 0)] * (masks.ndim - 3) + [(left, right), (0, 0), (0, 0)]
  return jax.lax.reduce_window(masks, jnp.zeros((), masks.dtype), jax.lax.add, dims,
                               (1,) * masks.ndim, padding)


def _window_counts(length: int, window: int) -> np.ndarray:
  """How many frames of a clip of `length` each centred window of `temporal_pool` covers."""
  left, right = (window - 1) // 2, window // 2
  t = np.arange(length)
  return np.minimum(t + right, length - 1) - np.maximum(t - left, 0) + 1


def resize_masks(masks, *, size, method: str = "linear"):
  """Masks resized to another frame size (`jax.image.resize`).

  "linear" is bilinear with half-pixel centres: edge pixels are clamped when upsampling and
  the kernel is widened (antialiased) when downsampling; values stay within the input's
  range. "nearest" keeps binary masks binary.

  Args:
    masks: float `[..., H, W]`.
    size: `(H_new, W_new)`, positive integers.
    method: "linear" (default) or "nearest".

  Returns:
    float32 `[..., H_new, W_new]`.

  Raises:
    ValueError: fewer than 2 axes, a bad size or an unknown method.
  """
  masks = _as_float(masks, "masks")
  if masks.ndim < 2:
    raise ValueError(f"masks must be [..., H, W], got shape {masks.shape}")
  height, width = _check_size(size)
  if method not in _RESIZE_METHODS:
    raise ValueError(f"method must be one of {_RESIZE_METHODS}, got {method!r}")
  return jax.image.resize(masks, masks.shape[:-2] + (height, width), method=method)


def background_mask(activation_list: Sequence, *, frame_size, layers: int | None = None,
                    threshold: float = 0.0, window: int = 1, num_frames: int | None = None,
                    time_resize: str = "repeat", method: str = "power",
                    iterations: int = 150):
  """The background mask of paper 000 §3.1.2: Eigen-CAM, threshold, temporal pooling.

  Order: `eigen_cam_layers` over the last `layers` activations (resized to `frame_size`,
  resampled to `num_frames`, averaged, min-max scaled), then `threshold_mask`, then
  `temporal_pool`. The defaults (all layers, threshold 0, window 1) are the settings the
  paper's ablations hold fixed; its best values are the last 4 conv layers (Table 4.5), a
  threshold near 0.1 (Table 4.6) and a window of 5-10 frames (Table 4.7).

  Args:
    activation_list: float arrays `[..., T_l, H_l, W_l, C_l]`, shallowest first (e.g. the conv
      layers of R3D-18's last block), leading axes equal.
    frame_size: `(H, W)` of the frames to be masked.
    layers: use the last this many activations (N in Table 4.5); None uses them all.
    threshold: attention values below it become 0, in [0, 1].
    window: temporal pooling window in frames, >= 1.
    num_frames: T of the mask; None takes the longest `T_l` (pass the clip length when every
      layer is strided in time, as R3D's deep layers are).
    time_resize: "repeat" or "linear", see `jaxvad.cam.eigen_cam_layers`.
    method: "power", "eigh" or "svd", see `jaxvad.cam.eigen_cam`.
    iterations: power iterations, see `jaxvad.cam.eigen_cam`.

  Returns:
    float32 `[..., T, H, W]` soft mask in [0, 1], 0 = background (ignored by the scores).

  Raises:
    ValueError: `layers` outside 1..len(activation_list), and the errors of the steps.
  """
  activation_list = list(activation_list)
  if layers is None:
    layers = len(activation_list)
  if not (_is_positive_int(layers) and layers <= len(activation_list)):
    raise ValueError(f"layers must be an integer in 1..{len(activation_list)} "
                     f"(the number of activations given), got {layers!r}")
  window = _check_window(window)
  _check_threshold(threshold)
  cam = cam_lib.eigen_cam_layers(activation_list[len(activation_list) - int(layers):],
                                 frame_size=frame_size, num_frames=num_frames,
                                 time_resize=time_resize, method=method,
                                 iterations=iterations)
  return temporal_pool(threshold_mask(cam, threshold=threshold), window=window)


def masked_scores(recon, frames, mask, *, max_val: float = 1.0):
  """PSNR and MSE over the pixels a mask keeps (paper 000 §3.1.3 fusion).

  The mask multiplies the reconstruction and the reference frame, and only pixels where it
  is nonzero count (`jaxvad.scoring.psnr` and `mse` with `mask=`).

  Args:
    recon: float reconstructions `[..., H, W, C]` in [0, max_val].
    frames: float reference frames, the same shape.
    mask: float `[..., H, W]` in [0, 1] (e.g. from `background_mask`), broadcastable to the
      frames' leading axes.
    max_val: the dynamic range of the pixel values.

  Returns:
    {"psnr": float32 `[...]` in dB, "mse": float32 `[...]`}; NaN for a frame whose mask is
    all zero (no pixel to score).

  Raises:
    ValueError: shapes that differ or a mask that does not fit the frames.
  """
  return {"psnr": scoring.psnr(recon, frames, max_val=max_val, mask=mask),
          "mse": scoring.mse(recon, frames, mask=mask)}



# --------------------------------------------------------------------------- from per-layer maps


@dataclasses.dataclass(frozen=True)
class MaskSetting:
  """How per-layer attention maps become a mask: last `layers` convs, `threshold`, pooling
  `window` (the three knobs of paper 000 Tables 4.5-4.7)."""
  layers: int
  threshold: float
  window: int

  @property
  def name(self) -> str:
    return f"layers={self.layers} threshold={self.threshold:g} window={self.window}"


# The learned mask of paper 000: the last 4 convs (Table 4.5's best), threshold 0.1 (§4.5.2:
# "around 0.1 is the most appropriate") and window 7 (§4.5.3: "within [5, 10]").
MAIN_SETTING = MaskSetting(layers=4, threshold=0.1, window=7)


def mask_from_layer_maps(maps, *, setting: MaskSetting = MAIN_SETTING, frame_size) -> np.ndarray:
  """A clip's mask from its per-layer attention maps, in the order of `background_mask`.

  The last `setting.layers` maps are averaged and min-max scaled per frame, resized to the
  frame, thresholded, then pooled over time across the whole clip.

  Args:
    maps: float `[T, L, h, w]` per-frame maps of L layers in [0, 1], the last layer last.
    setting: layers, threshold and pooling window (paper 000's by default).
    frame_size: (H, W) of the frames.

  Returns:
    float32 `[T, H, W]` soft mask in [0, 1].

  Raises:
    ValueError: `setting.layers` outside 1..L.
  """
  maps = np.asarray(maps)
  count = maps.shape[1]
  if not 1 <= setting.layers <= count:
    raise ValueError(f"setting.layers = {setting.layers}: the maps hold {count} layers")
  # Padded to a multiple of 32 frames with empty maps, so clips of every length share a few
  # compiled programs: padding adds exact zeros to the window sums of real frames, and the
  # counts are those of the real clip.
  length = len(maps)
  padded = -(-length // 32) * 32
  maps = np.concatenate([maps, np.zeros((padded - length,) + maps.shape[1:], maps.dtype)])
  counts = np.concatenate([_window_counts(length, setting.window),
                           np.ones(padded - length, np.int64)]).astype(np.float32)
  mask = _mask_from_maps(maps.astype(np.float32), counts, layers=setting.layers,
                         threshold=float(setting.threshold), window=setting.window,
                         frame_size=tuple(int(s) for s in frame_size))
  return np.asarray(mask)[:length]


@functools.partial(jax.jit, static_argnames=("layers", "threshold", "window", "frame_size"))
def _mask_from_maps(maps, counts, *, layers, threshold, window, frame_size):
  count = maps.shape[1]
  combined = cam_lib.combine_maps([maps[:, k] for k in range(count - layers, count)],
                                  frame_size=frame_size)
  mask = threshold_mask(combined, threshold=threshold)
  return _window_sum(mask, window) / counts[:, None, None]
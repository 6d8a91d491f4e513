"""Slow NumPy references for jaxvad.cam and jaxvad.masking: float64, one frame at a time."""

import numpy as np


def eigen_cam_frame(act):
  """Eigen-CAM of one feature map [H, W, C] by numpy.linalg.svd, with jaxvad's sign rule."""
  act = np.asarray(act, np.float64)
  h, w, c = act.shape
  a = act.reshape(h * w, c)
  mean = a.mean(axis=0)
  centred = a - mean
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  v = vt[0]
  p = centred @ v
  # Orient v so that the uncentred projection a @ v = p + v @ mean has a positive mean; if
  # v @ mean is negligible against the spread of p, make the largest-|p| entry positive.
  if abs(v @ mean) > 1e-3 * np.sqrt(np.mean(p**2)):
    sign = np.sign(v @ mean)
  else:
    sign = np.sign(p[np.argmax(np.abs(p))]) or 1.0
  p = np.maximum(p * sign, 0.0)
  span = p.max() - p.min()
  if span <= 1e-12 * max(np.abs(a).max(), 1e-300):  # constant up to float64 rounding
    return np.zeros((h, w))
  return ((p - p.min()) / span).reshape(h, w)


def eigen_cam(acts):
  """eigen_cam_frame over every leading index of [..., H, W, C]."""
  acts = np.asarray(acts, np.float64)
  lead, (h, w, c) = acts.shape[:-3], acts.shape[-3:]
  flat = acts.reshape(-1, h, w, c)
  return np.array([eigen_cam_frame(f) for f in flat]).reshape(lead + (h, w))


def _linear_taps(n_in, n_out):
  """For each output sample: (i0, i1, weight of i1), half-pixel centres, edges clamped."""
  taps = []
  for j in range(n_out):
    x = (j + 0.5) * n_in / n_out - 0.5
    x = min(max(x, 0.0), n_in - 1.0)
    i0 = int(np.floor(x))
    i1 = min(i0 + 1, n_in - 1)
    taps.append((i0, i1, x - i0))
  return taps


def resize_bilinear(img, size):
  """Upsample a [H, W] image to size with explicit loops (no antialiasing: upsampling only)."""
  img = np.asarray(img, np.float64)
  (h, w), (nh, nw) = img.shape, size
  assert nh >= h and nw >= w, "the reference only upsamples"
  out = np.zeros((nh, nw))
  for r, (r0, r1, fr) in enumerate(_linear_taps(h, nh)):
    for c, (c0, c1, fc) in enumerate(_linear_taps(w, nw)):
      top = (1 - fc) * img[r0, c0] + fc * img[r0, c1]
      bottom = (1 - fc) * img[r1, c0] + fc * img[r1, c1]
      out[r, c] = (1 - fr) * top + fr * bottom
  return out


def _min_max(x):
  span = x.max() - x.min()
  return np.zeros_like(x) if span <= 0 else (x - x.min()) / span


def eigen_cam_layers(acts_list, frame_size, num_frames, time_resize="repeat"):
  """Per layer and frame: Eigen-CAM, bilinear upsampling, time resampling; mean, min-max.

  Each activation is [B, T_l, H_l, W_l, C_l].
  """
  b = acts_list[0].shape[0]
  total = np.zeros((b, num_frames) + tuple(frame_size))
  for acts in acts_list:
    cams = eigen_cam(acts)  # [B, T_l, H_l, W_l]
    length = cams.shape[1]
    for i in range(b):
      up = [resize_bilinear(cams[i, s], frame_size) for s in range(length)]
      taps = _linear_taps(length, num_frames)
      for t in range(num_frames):
        if time_resize == "repeat":
          total[i, t] += up[t * length // num_frames]
        else:
          s0, s1, f = taps[t]
          total[i, t] += (1 - f) * up[s0] + f * up[s1]
  total /= len(acts_list)
  return np.array([[_min_max(total[i, t]) for t in range(num_frames)] for i in range(b)])


def threshold(cam, cut):
  """Values below cut -> 0, others kept."""
  cam = np.array(cam, np.float64)
  out = cam.copy()
  for idx in np.ndindex(cam.shape):
    if cam[idx] < cut:
      out[idx] = 0.0
  return out


def temporal_pool(masks, window):
  """[B, T, H, W]: each frame the mean of frames [t - (w-1)//2, t + w//2] that exist."""
  masks = np.asarray(masks, np.float64)
  b, length = masks.shape[:2]
  left, right = (window - 1) // 2, window // 2
  out = np.zeros_like(masks)
  for i in range(b):
    for t in range(length):
      frames = [masks[i, s] for s in range(t - left, t + right + 1) if 0 <= s < length]
      out[i, t] = sum(frames) / len(frames)
  return out


def masked_mse_psnr(a, b, mask, max_val=1.0):
  """Per frame of [N, H, W, C]: MSE of (m a - m b) over the pixels with m != 0, and PSNR."""
  a, b, mask = (np.asarray(z, np.float64) for z in (a, b, mask))
  mses, psnrs = [], []
  for x, y, m in zip(a, b, mask):
    err, count = 0.0, 0
    for r in range(x.shape[0]):
      for c in range(x.shape[1]):
        if m[r, c] != 0:
          err += np.mean((m[r, c] * x[r, c] - m[r, c] * y[r, c]) ** 2)
          count += 1
    mse = err / count if count else np.nan
    mses.append(mse)
    psnrs.append(10 * np.log10(max_val**2 / max(mse, 1e-10)) if count else np.nan)
  return np.array(mses), np.array(psnrs)


def grad_cam_linear_gap(acts, weight, class_index):
  """Grad-CAM without autodiff for the head logits = mean_hw(A) @ W + b, one image at a time.

  acts [B, H, W, C], weight [C, K], class_index int or [B]. Here d logit_c / dA[h, w, k] =
  W[k, c] / (H W) for every pixel, so alpha = W[:, c] / (H W); the map is ReLU(sum_k alpha_k
  A_k), min-max scaled to [0, 1] (zeros where constant). Float64.
  """
  acts, weight = np.asarray(acts, np.float64), np.asarray(weight, np.float64)
  b, h, w, c = acts.shape
  classes = np.broadcast_to(np.asarray(class_index), (b,))
  maps = []
  for i in range(b):
    alpha = weight[:, classes[i]] / (h * w)
    cam = np.zeros((h, w))
    for k in range(c):
      cam += alpha[k] * acts[i, :, :, k]
    maps.append(_min_max(np.maximum(cam, 0.0)))
  return np.array(maps)

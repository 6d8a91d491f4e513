"""Differentiable training losses (JAX). Each returns a scalar mean; no hidden jit: callers jit.

Frames are float, channels last, `[..., H, W, C]` (so `[N, H, W, C]` and `[B, T, H, W, C]`
both work), scaled to [0, max_val]. Shape checks raise ValueError up front and read only
static shapes, so they also work under jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxvad import scoring

__all__ = ["intensity_loss", "gradient_loss", "ssim_loss", "soft_label_cross_entropy",
           "lsgan_generator_loss", "lsgan_discriminator_loss", "horn_schunck", "flow_loss",
           "TRIPLET_DISTANCES", "triplet_distances", "triplet_loss"]


def _frames(pred, target):
  pred, target = scoring._as_float(pred), scoring._as_float(target)
  scoring._check_pair(pred, target)
  return pred, target


def intensity_loss(pred, target, *, p: float = 2):
  """Mean of |pred - target|**p over every element (paper 004, "Loss Function": L_int).

  p = 2 is the MSE of paper 001 eq. 2.4 and FFP's intensity loss; p = 1 is the L1 error.

  Args:
    pred, target: float frames `[..., H, W, C]` of the same shape.
    p: the exponent, > 0.

  Returns:
    float32 scalar.
  """
  if not p > 0:
    raise ValueError(f"p must be > 0, got {p}")
  pred, target = _frames(pred, target)
  diff = pred - target
  # Even integer p needs no abs, so its gradient at diff == 0 is the smooth one.
  err = diff**p if isinstance(p, int) and p % 2 == 0 else jnp.abs(diff) ** p
  return jnp.mean(err)


def gradient_loss(pred, target, *, alpha: float = 1):
  """FFP's gradient difference loss (paper 004, "Loss Function": L_gd; paper 001 §2.2.3.1).

  `mean(| |dx pred| - |dx target| |**alpha) + mean(| |dy pred| - |dy target| |**alpha)`, where
  dx, dy are the differences between horizontally / vertically neighbouring pixels. Only pairs
  inside the frame count: FFP's zero padding would score the frame border as an edge. Paper
  001 eq. 2.6 writes `||grad I - grad Î||_1` without the inner absolute values; this follows
  FFP (Liu et al. 2018) and paper 004, which compare edge strengths, not signed gradients.

  Args:
    pred, target: float frames `[..., H, W, C]` of the same shape, H, W >= 2.
    alpha: the exponent, > 0.

  Returns:
    float32 scalar.
  """
  if not alpha > 0:
    raise ValueError(f"alpha must be > 0, got {alpha}")
  pred, target = _frames(pred, target)
  if min(pred.shape[-3:-1]) < 2:
    raise ValueError(f"gradient_loss needs H, W >= 2, got shape {pred.shape}")

  def edge_term(axis):
    dp = jnp.abs(jnp.diff(pred, axis=axis))
    dt = jnp.abs(jnp.diff(target, axis=axis))
    return jnp.mean(jnp.abs(dp - dt) ** alpha)

  return edge_term(-2) + edge_term(-3)  # x (along W), then y (along H)


def ssim_loss(pred, target, *, max_val: float = 1.0, sigma: float = 1.5, win_size: int = 11,
              k1: float = 0.01, k2: float = 0.03, mask=None):
  """1 - mean SSIM over every frame (paper 001 §2.2.3.1, eq. 2.5 and the L_SSIM of eq. 3.1).

  Args:
    pred, target: float frames `[..., H, W, C]` of the same shape; H, W >= win_size.
    max_val, sigma, win_size, k1, k2, mask: as in `jaxvad.scoring.ssim`.

  Returns:
    float32 scalar in [0, 2]; 0 for identical frames. NaN if some frame's mask leaves no
    interior pixel.
  """
  per_frame = scoring.ssim(pred, target, max_val=max_val, sigma=sigma, win_size=win_size,
                           k1=k1, k2=k2, mask=mask)
  return 1.0 - jnp.mean(per_frame)


def soft_label_cross_entropy(logits, labels):
  """Mean over the batch of the cross-entropy of softmax(logits) against soft labels.

  For the smoothed partition-order labels (paper 000 §3.2.3; cross-entropy as in §2.4.1):
  `-sum_k labels[k] log_softmax(logits)[k]`, which for one-hot labels is the usual
  integer-label cross-entropy.

  Args:
    logits: float `[..., K]` unnormalised scores.
    labels: float `[..., K]` class probabilities (each row sums to 1), same shape.

  Returns:
    float32 scalar.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  if logits.shape != labels.shape:
    raise ValueError(f"logits and labels shapes differ: {logits.shape} vs {labels.shape}")
  if logits.ndim < 1:
    raise ValueError("logits must have a class axis, got a scalar")
  return jnp.mean(optax.softmax_cross_entropy(logits, labels))


def lsgan_generator_loss(d_fake):
  """FFP's adversarial loss for the generator (least-squares GAN): `mean((d_fake - 1)**2 / 2)`.

  As feiyuhuahuo/Anomaly_Prediction `losses.py` `Adversarial_Loss` and the TF original's
  `adv_loss` (ano_pred_cvpr2018 `Codes/train.py`), both on the discriminator's sigmoid outputs
  (`PatchGAN`'s `out`), not its logits.

  Args:
    d_fake: the discriminator's outputs on predicted frames, any shape (e.g. `[N, h, w, 1]`).

  Returns:
    float32 scalar.
  """
  d_fake = scoring._as_float(d_fake)
  return jnp.mean((d_fake - 1) ** 2 / 2)


def lsgan_discriminator_loss(d_real, d_fake):
  """FFP's discriminator loss (least-squares GAN):
  `mean((d_real - 1)**2 / 2) + mean(d_fake**2 / 2)`.

  As feiyuhuahuo/Anomaly_Prediction `losses.py` `Discriminate_Loss` and the TF original's
  `dis_loss` (ano_pred_cvpr2018 `Codes/train.py`): real frames pushed to 1, predicted ones to 0,
  each term averaged over its own outputs. The caller stops the generator's gradient through
  d_fake (the port's `G_frame.detach()`).

  Args:
    d_real: the discriminator's sigmoid outputs on real frames, any shape.
    d_fake: its outputs on predicted frames, any shape.

  Returns:
    float32 scalar.
  """
  d_real, d_fake = scoring._as_float(d_real), scoring._as_float(d_fake)
  return jnp.mean((d_real - 1) ** 2 / 2) + jnp.mean(d_fake ** 2 / 2)


# Horn & Schunck (1981): derivative kernels average first differences over the 2x2x2 cube of
# the two frames; the smoothness average weights edge neighbours 1/6 and corners 1/12.
_HS_AVERAGE = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))


def _filter2d(image, kernel):
  """Correlation of `[..., H, W]` with a small kernel, edges replicated, same size out."""
  kh, kw = len(kernel), len(kernel[0])
  pad = [(0, 0)] * (image.ndim - 2) + [((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)]
  padded = jnp.pad(image, pad, mode="edge")
  h, w = image.shape[-2:]
  return sum(kernel[i][j] * padded[..., i:i + h, j:j + w]
             for i in range(kh) for j in range(kw) if kernel[i][j])


def horn_schunck(frame1, frame2, *, alpha: float = 1.0, iterations: int = 20):
  """Optical flow from frame1 to frame2 by a fixed number of Horn-Schunck iterations.

  Differentiable in both frames (a fixed-length loop of linear filters and divisions), so a
  flow loss can reach a generator; FFP's FlowNet cannot be had here. The frames' channels are
  averaged to one intensity. Derivatives and the smoothness average are Horn & Schunck's
  (1981): Ix, Iy, It average first differences over the 2x2x2 cube of both frames; the flow
  starts at 0 and each iteration sets (u, v) = (ū, v̄) - (Ix, Iy)(Ix ū + Iy v̄ + It) /
  (alpha² + Ix² + Iy²).

  Args:
    frame1, frame2: float frames `[..., H, W, C]` of the same shape.
    alpha: smoothness weight, in intensity units (frames in [-1, 1]: ~0.1-1).
    iterations: Jacobi iterations (fixed: the cost and the gradient's length).

  Returns:
    float32 `[..., H, W, 2]`: (u, v) in pixels per frame, u along W, v along H.
  """
  if not alpha > 0 or iterations < 1:
    raise ValueError(f"alpha must be > 0 and iterations >= 1, got {alpha}, {iterations}")
  frame1, frame2 = _frames(frame1, frame2)
  i1, i2 = frame1.mean(-1), frame2.mean(-1)
  quarter = lambda k: [[0.25 * v for v in row] for row in k]  # noqa: E731
  kx, ky, kt = quarter([[-1, 1], [-1, 1]]), quarter([[-1, -1], [1, 1]]), quarter([[1, 1], [1, 1]])
  ix = _filter2d(i1, kx) + _filter2d(i2, kx)
  iy = _filter2d(i1, ky) + _filter2d(i2, ky)
  it = _filter2d(i2, kt) - _filter2d(i1, kt)
  denominator = alpha ** 2 + ix ** 2 + iy ** 2

  def step(_, uv):
    u_bar, v_bar = _filter2d(uv[0], _HS_AVERAGE), _filter2d(uv[1], _HS_AVERAGE)
    common = (ix * u_bar + iy * v_bar + it) / denominator
    return jnp.stack([u_bar - ix * common, v_bar - iy * common])

  uv = jax.lax.fori_loop(0, iterations, step, jnp.zeros((2,) + i1.shape, i1.dtype))
  return jnp.moveaxis(uv, 0, -1)


def flow_loss(previous, pred, target, *, alpha: float = 1.0, iterations: int = 20):
  """FFP's motion constraint with Horn-Schunck flow: mean |flow(previous, pred) -
  flow(previous, target)| (the port's `Flow_Loss`, L1 over both flow components).

  Args:
    previous: the last input frame `[..., H, W, C]`.
    pred, target: the predicted and the real next frame, same shape.
    alpha, iterations: `horn_schunck`'s.

  Returns:
    float32 scalar.
  """
  kw = {"alpha": alpha, "iterations": iterations}
  return jnp.mean(jnp.abs(horn_schunck(previous, pred, **kw)
                          - horn_schunck(previous, target, **kw)))


# The axis of a feature map `[N, H, W, C]` that the triplet distance is a norm over.
TRIPLET_DISTANCES = {"channels": -1, "width": 2}


def triplet_distances(anchor, positive, negative, *, margin: float = 0.2,
                      distance: str = "channels"):
  """Per-element hinge of paper 004's triplet loss, `max(d(a, p) - d(a, n) + margin, 0)`.

  `d` is torch's `PairwiseDistance(p=2)`: `||x - y + 1e-6||_2` over one axis. distance =
  "channels" (the paper's meaning: feature vectors per pixel) takes it over channels;
  "width" is the official code's behaviour (`PairwiseDistance` on NCHW maps reduces the last
  axis, the width), which compares each row of each channel instead.

  Args:
    anchor, positive, negative: float feature maps `[N, H, W, C]` of the same shape.
    margin: alpha, the margin (paper: 0.2).
    distance: "channels" or "width".

  Returns:
    float32 `[N, H, W]` ("channels") or `[N, H, C]` ("width").
  """
  if distance not in TRIPLET_DISTANCES:
    raise ValueError(f"distance must be one of {', '.join(TRIPLET_DISTANCES)}, got {distance!r}")
  shapes = {jnp.shape(anchor), jnp.shape(positive), jnp.shape(negative)}
  if len(shapes) != 1 or len(jnp.shape(anchor)) != 4:
    raise ValueError(f"anchor, positive and negative must be [N, H, W, C] of one shape, got "
                     f"{sorted(shapes)}")
  axis = TRIPLET_DISTANCES[distance]
  a, p, n = (jnp.asarray(x, jnp.float32) for x in (anchor, positive, negative))
  d_pos = jnp.linalg.norm(a - p + 1e-6, axis=axis)
  d_neg = jnp.linalg.norm(a - n + 1e-6, axis=axis)
  return jnp.maximum(d_pos - d_neg + margin, 0.0)


def triplet_loss(anchor, positive, negative, *, margin: float = 0.2,
                 distance: str = "channels"):
  """Paper 004's triplet loss L_triplet (FaceNet's, margin alpha): the mean of
  `triplet_distances` (the official `cosine_similarity_loss`).

  Args:
    anchor, positive, negative, margin, distance: as `triplet_distances`.

  Returns:
    float32 scalar.
  """
  return jnp.mean(triplet_distances(anchor, positive, negative, margin=margin,
                                    distance=distance))

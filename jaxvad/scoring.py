"""Jit-able per-frame reconstruction scores (JAX). No hidden jit: callers jit.

Frames are float, channels last, scaled to [0, max_val]. The per-frame reduction runs over
the trailing (H, W, C) axes, so `[N, H, W, C]` and `[B, T, H, W, C]` inputs both work.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["mse", "psnr"]

_FRAME_AXES = (-3, -2, -1)


def _check_pair(a, b):
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  if a.ndim < 3:
    raise ValueError(f"expected [..., H, W, C] frames, got shape {a.shape}")


def mse(a, b):
  """Mean squared error per frame.

  Args:
    a, b: float arrays `[..., H, W, C]` of the same shape.

  Returns:
    float32 `[...]`: the mean over H, W, C of (a - b)**2.
  """
  _check_pair(a, b)
  diff = a.astype(jnp.float32) - b.astype(jnp.float32)
  return jnp.mean(diff * diff, axis=_FRAME_AXES)


def psnr(a, b, *, max_val: float = 1.0, eps: float = 1e-10):
  """Peak signal-to-noise ratio per frame, in dB: 10 log10(max_val**2 / MSE).

  Args:
    a, b: float arrays `[..., H, W, C]` of the same shape.
    max_val: the largest possible pixel value (1.0 for frames scaled to [0, 1]).
    eps: floor on the MSE so identical frames give a large finite PSNR, not inf.

  Returns:
    float32 `[...]`: PSNR per frame; higher means a better reconstruction (more normal).
  """
  return 10.0 * jnp.log10(max_val**2 / jnp.maximum(mse(a, b), eps))

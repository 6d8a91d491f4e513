"""Layers shared by the models: faster XLA:CPU computations of flax's transposed and 3-D convs.

`ConvTranspose` is `flax.linen.ConvTranspose` — same parameters (names, shapes, initialisers),
same outputs — computed differently for stride 2: `lax.conv_transpose` is a convolution of
the input dilated with zeros (`lhs_dilation`), which XLA:CPU runs without its fast
convolution path and which wastes 3/4 of its multiply-adds on the inserted zeros. Here the
four output phases (even/odd row × even/odd column) are read off one stride-1 convolution of
the undilated input with a kernel that holds, per phase, the taps that land on real input
pixels, followed by depth-to-space. Measured fwd+bwd on the 2-core CPU at the decoder shapes
of the demo models: 2.5-3.5x faster (e.g. [80, 16, 16, 32] -> 16 channels: 51.9 -> 17.7 ms);
equal to `lax.conv_transpose` to float rounding (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax import lax

__all__ = ["ConvTranspose", "conv_transpose", "transpose_padding", "Conv3D", "conv3d_as_2d",
           "Conv2D", "conv2d_small_map"]


def transpose_padding(padding, kernel_size: Sequence[int],
                      strides: Sequence[int]) -> list[tuple[int, int]]:
  """The (low, high) padding of the zero-dilated input that `lax.conv_transpose` uses.

  Args:
    padding: "SAME", "VALID" or explicit (low, high) pairs, as `nn.ConvTranspose` takes them
      (explicit pairs pad the dilated input directly).
    kernel_size: kernel extent per spatial axis.
    strides: stride per spatial axis.

  Returns:
    One (low, high) pair per spatial axis.
  """
  if isinstance(padding, str):
    pads = []
    for k, s in zip(kernel_size, strides):
      if padding.upper() == "SAME":    # as jax's _conv_transpose_padding
        total = k + s - 2
        low = k - 1 if s > k - 1 else int(np.ceil(total / 2))
      elif padding.upper() == "VALID":
        total, low = k + s - 2 + max(k - s, 0), k - 1
      else:
        raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high) pairs, got {padding!r}")
      pads.append((low, total - low))
    return pads
  return [(int(lo), int(hi)) for lo, hi in padding]


def _phase_taps(k: int, low: int) -> list[list[tuple[int, int]]]:
  """Per output phase p (0: even, 1: odd), the (tap, input offset) pairs of a stride-2 axis.

  Output o = 2i + p of the dilated-input convolution reads dilated position o + tap - low,
  a real input pixel (i + offset) only when p + tap - low is even.
  """
  return [[(t, (p + t - low) // 2) for t in range(k) if (p + t - low) % 2 == 0] for p in (0, 1)]


def conv_transpose(x, kernel, *, padding, transpose_kernel: bool = False):
  """`lax.conv_transpose(x, kernel, (2, 2), padding, transpose_kernel=...)` for NHWC input,
  computed as one stride-1 convolution + depth-to-space.

  Args:
    x: `[N, H, W, C_in]`.
    kernel: `[kh, kw, C_in, C_out]` (`[kh, kw, C_out, C_in]` with `transpose_kernel`).
    padding: "SAME", "VALID" or (low, high) pairs (see `transpose_padding`).
    transpose_kernel: flip the kernel spatially and swap its in/out axes first (PyTorch's
      ConvTranspose2d semantics), as `lax.conv_transpose`.

  Returns:
    `[N, H', W', C_out]`, equal to `lax.conv_transpose` with strides (2, 2).
  """
  if transpose_kernel:
    kernel = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  (ly, hy), (lx, hx) = transpose_padding(padding, (kh, kw), (2, 2))
  out_h, out_w = 2 * h - 1 + ly + hy - kh + 1, 2 * w - 1 + lx + hx - kw + 1
  taps_y, taps_x = _phase_taps(kh, ly), _phase_taps(kw, lx)
  dys = [d for phase in taps_y for _, d in phase]
  dxs = [d for phase in taps_x for _, d in phase]
  y0, x0 = min(dys), min(dxs)
  # One kernel [ky, kx, C_in, 2, 2, C_out]: phase (py, px) gets the taps that hit real pixels.
  sub = jnp.zeros((max(dys) - y0 + 1, max(dxs) - x0 + 1, cin, 2, 2, cout), kernel.dtype)
  for py in (0, 1):
    for ty, dy in taps_y[py]:
      for px in (0, 1):
        for tx, dx in taps_x[px]:
          sub = sub.at[dy - y0, dx - x0, :, py, px, :].set(kernel[ty, tx])
  sub = sub.reshape(sub.shape[0], sub.shape[1], cin, 4 * cout)
  hh, ww = (out_h + 1) // 2, (out_w + 1) // 2        # rows / columns per phase
  pad_y = (max(0, -y0), max(0, hh + max(dys) - h))
  pad_x = (max(0, -x0), max(0, ww + max(dxs) - w))
  xp = jnp.pad(x, ((0, 0), pad_y, pad_x, (0, 0)))[:, max(0, y0):, max(0, x0):]
  z = lax.conv_general_dilated(xp, sub, (1, 1), "VALID",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, :hh, :ww]
  z = z.reshape(n, hh, ww, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, 2 * hh, 2 * ww, cout)[:, :out_h, :out_w]


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose` for 2-D NHWC input with the stride-2 fast path (module docstring).

  Same fields, parameters and outputs as `nn.ConvTranspose`; strides other than (2, 2) fall
  back to `lax.conv_transpose`.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  transpose_kernel: bool = False
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Any = nn.linear.default_kernel_init
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    ks = tuple(self.kernel_size)
    cin = x.shape[-1]
    shape = ks + ((self.features, cin) if self.transpose_kernel else (cin, self.features))
    kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    if tuple(self.strides) == (2, 2) and x.ndim == 4:
      y = conv_transpose(x, kernel, padding=self.padding, transpose_kernel=self.transpose_kernel)
    else:
      pad = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
      y = lax.conv_transpose(x, kernel, tuple(self.strides), pad,
                             transpose_kernel=self.transpose_kernel,
                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if bias is None else y + bias


# Up to this many stacked input channels (temporal taps x C_in), `conv3d_as_2d` stacks the
# taps into channels for one 2-D convolution; above it, it sums one 2-D convolution per tap.
# Measured fwd+bwd on the 2-core CPU: C_in 8 at 32x32 28.2 -> 15.5 ms stacked, C_in 16 at
# 16x16 5.8 -> 4.5 ms, the gray stem (7x7, stride 2, no input gradient) 21.9 -> 11.7 ms;
# C_in 32 17.2 vs 15.0 ms and C_in 64 7.2 vs 6.5 ms favour the sum.
STACK_TAPS_MAX_CHANNELS = 64


def conv3d_as_2d(x, kernel, *, strides: Sequence[int], padding: Sequence[tuple[int, int]]):
  """A 3-D convolution (NDHWC, kernel DHWIO) as 2-D convolutions with time folded into the batch.

  XLA:CPU has no fast path for 3-D convolutions: measured fwd+bwd on the 2-core CPU at R3D
  shapes, [8, 8, 32, 32, 8] -> 8 channels 81 ms as a 3-D conv vs 16.5 ms as a sum of 2-D
  convolutions, and 264.6 vs 8.8 ms with spatial stride 2. Narrow inputs (kt * C_in <=
  `STACK_TAPS_MAX_CHANNELS`) go further: the kt temporally shifted inputs are stacked into
  channels for a single 2-D convolution (fewer, larger convolutions and one weight gradient
  instead of kt, each of which XLA:CPU transposes its input for). Exact up to float summation
  order.

  Args:
    x: `[N, T, H, W, C_in]`.
    kernel: `[kt, kh, kw, C_in, C_out]`.
    strides: (st, sh, sw).
    padding: ((t_lo, t_hi), (h_lo, h_hi), (w_lo, w_hi)).

  Returns:
    `[N, T', H', W', C_out]`, as `lax.conv_general_dilated` with the same arguments.
  """
  st, sh, sw = strides
  (tlo, thi), hpad, wpad = padding
  n, t, h, w, c = x.shape
  kt, kh, kw, _, c_out = kernel.shape
  x = jnp.pad(x, ((0, 0), (tlo, thi), (0, 0), (0, 0), (0, 0)))
  t_out = (t + tlo + thi - kt) // st + 1
  taps = [x[:, dt:dt + st * (t_out - 1) + 1:st].reshape(n * t_out, h, w, c) for dt in range(kt)]
  conv = lambda frames, k: lax.conv_general_dilated(  # noqa: E731
      frames, k, (sh, sw), [tuple(hpad), tuple(wpad)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if kt * c <= STACK_TAPS_MAX_CHANNELS:
    # channel index dt * C_in + c on both sides
    out = conv(jnp.concatenate(taps, axis=-1),
               jnp.moveaxis(kernel, 0, 2).reshape(kh, kw, kt * c, c_out))
  else:
    out = sum(conv(frames, kernel[dt]) for dt, frames in enumerate(taps))
  return out.reshape(n, t_out, *out.shape[1:])


# A 2-D convolution over at most this many input pixels runs as one matmul on the CPU backend
# (`conv2d_small_map`): XLA:CPU sends a 3x3 convolution of a 2x2 map to a slow generic kernel
# (measured [80, 2, 2, 128] -> 128 channels: 6.3 ms, vs 1.4 ms for a 3x3 map and 0.33 ms as a
# matmul) — ResNet-18's last stage on 64x64 frames.
SMALL_MAP_PIXELS = 4


def conv2d_small_map(x, kernel, *, strides: Sequence[int], padding: Sequence[tuple[int, int]]):
  """A 2-D convolution (NHWC, kernel HWIO) as one matmul with the convolution's matrix.

  The matrix `[H*W*C_in, H'*W'*C_out]` is built from the kernel by a fixed 0/1 selection of
  which tap joins which input and output pixel, so it costs (H*W)*(H'*W') times the kernel's
  size: meant for maps of a few pixels (`SMALL_MAP_PIXELS`). Exact up to float summation order.

  Args:
    x: `[N, H, W, C_in]`.
    kernel: `[kh, kw, C_in, C_out]`.
    strides: (sh, sw).
    padding: ((h_lo, h_hi), (w_lo, w_hi)).

  Returns:
    `[N, H', W', C_out]`, as `lax.conv_general_dilated` with the same arguments.
  """
  n, h, w, c = x.shape
  kh, kw, _, c_out = kernel.shape
  (sh, sw), ((hlo, hhi), (wlo, whi)) = strides, padding
  oh, ow = (h + hlo + hhi - kh) // sh + 1, (w + wlo + whi - kw) // sw + 1
  select = np.zeros((h * w, oh * ow, kh * kw), np.float32)   # [input pixel, output pixel, tap]
  for i, j, a, b in np.ndindex(oh, ow, kh, kw):
    y, x_ = i * sh - hlo + a, j * sw - wlo + b
    if 0 <= y < h and 0 <= x_ < w:
      select[y * w + x_, i * ow + j, a * kw + b] = 1.0
  matrix = jnp.einsum("qpt,tco->qcpo", jnp.asarray(select, kernel.dtype),
                      kernel.reshape(kh * kw, c, c_out)).reshape(h * w * c, oh * ow * c_out)
  return (x.reshape(n, h * w * c) @ matrix).reshape(n, oh, ow, c_out)


class _Conv(nn.Module):
  """`nn.Conv` (same parameter names, shapes, initialisers) with explicit padding, computed in
  an XLA:CPU-friendly form where the subclass says so, else by `lax.conv_general_dilated`.

  Subclasses set `IMPLS` (the `impl` values: automatic, forced fast form, forced XLA conv),
  `DIMENSIONS` (for `lax.conv_general_dilated`), `fast_form` and `use_fast_form`.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: Sequence[tuple[int, int]]
  use_bias: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Any = nn.linear.default_kernel_init
  bias_init: Any = nn.initializers.zeros_init()
  impl: str = "auto"

  IMPLS: ClassVar[tuple[str, str, str]]
  DIMENSIONS: ClassVar[tuple[str, str, str]]

  def fast_form(self, x, kernel, *, strides, padding):
    raise NotImplementedError

  def use_fast_form(self, x, kernel) -> bool:
    """Whether `impl="auto"` takes the fast form for this input."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x):
    auto, fast, xla = self.IMPLS
    if self.impl not in self.IMPLS:
      raise ValueError(f"impl must be '{auto}', '{fast}' or '{xla}', got {self.impl!r}")
    shape = tuple(self.kernel_size) + (x.shape[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    strides, padding = tuple(self.strides), [tuple(p) for p in self.padding]
    if self.impl == fast or (self.impl == auto and self.use_fast_form(x, kernel)):
      y = self.fast_form(x, kernel, strides=strides, padding=padding)
    else:
      y = lax.conv_general_dilated(x, kernel, strides, padding,
                                   dimension_numbers=self.DIMENSIONS)
    return y if bias is None else y + bias


class Conv2D(_Conv):
  """`nn.Conv` for 2-D NHWC input with explicit padding, computed as `conv2d_small_map` on the
  CPU backend for maps of at most `SMALL_MAP_PIXELS` pixels and larger kernels than 1x1
  (`impl="auto"`); `impl="matmul"` / `"xla"` force one.
  """
  strides: Sequence[int] = (1, 1)
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))

  IMPLS = ("auto", "matmul", "xla")
  DIMENSIONS = ("NHWC", "HWIO", "NHWC")

  def fast_form(self, x, kernel, *, strides, padding):
    return conv2d_small_map(x, kernel, strides=strides, padding=padding)

  def use_fast_form(self, x, kernel) -> bool:
    return (x.shape[1] * x.shape[2] <= SMALL_MAP_PIXELS and kernel.shape[0] * kernel.shape[1] > 1
            and jax.default_backend() == "cpu")


class Conv3D(_Conv):
  """`nn.Conv` for 3-D NDHWC input (same parameter name, shape and init), computed as
  `conv3d_as_2d` on the CPU backend and as one 3-D convolution elsewhere (`impl="auto"`);
  `impl="2d"` / `"3d"` force one.
  """
  strides: Sequence[int] = (1, 1, 1)
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0), (0, 0))

  IMPLS = ("auto", "2d", "3d")
  DIMENSIONS = ("NDHWC", "DHWIO", "NDHWC")

  def fast_form(self, x, kernel, *, strides, padding):
    return conv3d_as_2d(x, kernel, strides=strides, padding=padding)

  def use_fast_form(self, x, kernel) -> bool:
    return jax.default_backend() == "cpu"

"""ConvLSTM autoencoder (paper 000 §3.1.1, after Luo et al. 2017, "Remembering history with
convolutional LSTM for anomaly detection").

Each frame is encoded by a small strided conv stack, a ConvLSTM runs over time at the
bottleneck (so every frame's code also remembers the frames before it), and a
transposed-conv decoder reconstructs every frame of the window. Anomalies are frames
the model cannot reconstruct.

Layout: input `[B, T, H, W, C]` float, channels last; H and W divisible by 2**len(features).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvad.models import layers


class Encoder(nn.Module):
  """Per-frame conv encoder: one stride-2 3x3 conv (+ a stride-1 conv) per width."""
  features: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = nn.relu(nn.Conv(f, (3, 3), strides=(2, 2), dtype=self.dtype, name=f"down{i}")(x))
      x = nn.relu(nn.Conv(f, (3, 3), dtype=self.dtype, name=f"conv{i}")(x))
    return x


class Decoder(nn.Module):
  """Mirror of the encoder: stride-2 transposed convs back to the frame size."""
  features: Sequence[int]   # encoder widths, shallow to deep
  out_channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    widths = list(reversed(self.features[:-1])) + [self.features[0]]
    for i, f in enumerate(widths):
      x = nn.relu(layers.ConvTranspose(f, (3, 3), strides=(2, 2), dtype=self.dtype, name=f"up{i}")(x))
    # Linear output: frames are scaled to [0, 1] and the loss is MSE on that scale.
    return nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, name="out")(x)


class ConvLSTMStack(nn.Module):
  """`num_layers` ConvLSTM layers, each scanned over the time axis (axis 1)."""
  features: int
  num_layers: int = 1
  unroll: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # [B, T, h, w, c]
    # nn.scan traces one cell step and loops inside XLA: no Python loop over frames.
    # Fully unrolling that loop (still one scan, at trace level) made the CPU train step 34x
    # faster for T = 8 (1336 -> 40 ms): XLA:CPU runs conv gradients inside a while loop
    # without its fast conv path. The cost is compile time growing with T.
    scan_cell = nn.scan(nn.ConvLSTMCell, variable_broadcast="params",
                        split_rngs={"params": False}, in_axes=1, out_axes=1,
                        unroll=self.unroll)
    for i in range(self.num_layers):
      cell = scan_cell(self.features, kernel_size=(3, 3), dtype=self.dtype, name=f"lstm{i}")
      zeros = jnp.zeros(x.shape[:1] + x.shape[2:4] + (self.features,), x.dtype)
      carry = (zeros, zeros)  # (c, h) start at zero, as ConvLSTMCell's default carry_init
      _, x = cell(carry, x)
    return x


class ConvLSTMAutoencoder(nn.Module):
  """Reconstructs every frame of a window.

  Attributes:
    features: encoder widths, one stride-2 stage each (the decoder mirrors them).
    lstm_features: ConvLSTM width at the bottleneck.
    lstm_layers: number of stacked ConvLSTM layers.
    scan_unroll: unroll the time scan fully inside XLA (see ConvLSTMStack).
    batch_chunks: run the model on this many slices of the batch, as independent computations
      in one XLA program. XLA:CPU runs its YNNPACK convolutions on one thread each and keeps
      several cores busy only with independent ops, which the recurrence leaves few of: 4
      chunks made the demo's train step 1.25x and its scoring 1.65x faster on 2 cores. Same
      outputs and gradients (up to float summation order); `jaxvad.methods.convlstm_ae`
      uses 1 on accelerators.
    out_channels: channels of the reconstruction (1 gray, 3 RGB).
    dtype: compute dtype (parameters stay float32).
  """
  features: Sequence[int] = (32, 64, 64)
  lstm_features: int = 64
  lstm_layers: int = 1
  scan_unroll: bool = True
  out_channels: int = 1
  dtype: Any = jnp.float32
  batch_chunks: int = 1

  @nn.compact
  def __call__(self, frames):
    """Args: frames float [B, T, H, W, C]. Returns (reconstruction [B, T, H, W, C] float32, aux dict)."""
    encoder = Encoder(self.features, dtype=self.dtype, name="encoder")
    lstm = ConvLSTMStack(self.lstm_features, self.lstm_layers, self.scan_unroll,
                         dtype=self.dtype, name="convlstm")
    decoder = Decoder(self.features, self.out_channels, dtype=self.dtype, name="decoder")

    def autoencode(x):
      b, t = x.shape[:2]
      fold = lambda y: y.reshape((b * t,) + y.shape[2:])   # time into batch for per-frame convs
      unfold = lambda y: y.reshape((b, t) + y.shape[1:])
      codes = unfold(encoder(fold(x)))
      memory = lstm(codes)
      return unfold(decoder(fold(memory))).astype(jnp.float32), codes, memory

    # Independent chains of ops for XLA:CPU to run side by side (see `batch_chunks` above);
    # the windows never interact, so the outputs are those of one pass over the whole batch.
    # One chunk for a symbolic batch (`jaxvad export`): its size is not known to split.
    batch = frames.shape[0]
    chunks = max(1, min(self.batch_chunks, batch)) if isinstance(batch, int) else 1
    parts = [autoencode(x) for x in jnp.array_split(frames, chunks)]
    recon, codes, memory = (jnp.concatenate(p) if chunks > 1 else p[0] for p in zip(*parts))
    # big_vision-style aux dict: intermediate activations for explainers and probes.
    return recon, {"codes": codes, "memory": memory}


# A tiny variant for tests: runs a step in well under a second on CPU.
TinyConvLSTMAutoencoder = functools.partial(ConvLSTMAutoencoder, features=(4, 8), lstm_features=8)

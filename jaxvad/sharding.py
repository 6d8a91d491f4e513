"""The data-parallel mesh every jitted step runs on: one `data` axis over all devices.

Models never see sharding: the trainer and the scorers place batches with `shard_batch` and
jit the methods' pure steps with these shardings, so the same step runs on one CPU, 8 forced
CPU devices (the tests), N GPUs or a TPU slice, and across processes after
`jax.distributed.initialize()`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["DATA_AXIS", "make_mesh", "batch_sharding", "replicated", "shard_batch",
           "jit_train_step", "jit_window_step"]

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over all devices (of every process) with the batch axis `data`."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; every other axis whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Assembles this process's slice of the global batch into global, sharded jax.Arrays."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """`step_fn(state, batch) -> (state, metrics)` compiled once, state donated (updated in place)."""
  return jax.jit(step_fn, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=(0,))


def jit_window_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """A per-window step `(state, batch) -> outputs` (scoring, CAMs) jitted with the window batch
  split over the mesh; the state is not donated (it is reused for every batch)."""
  return jax.jit(step_fn, in_shardings=(replicated(mesh), batch_sharding(mesh)))

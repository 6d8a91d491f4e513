"""The data-parallel mesh every jitted step runs on: one `data` axis over all devices.

Models never see sharding: the trainer and the scorers place batches with `shard_batch` and
jit the methods' pure steps with these shardings, so the same step runs on one CPU, 8 forced
CPU devices (the tests), N GPUs or a TPU slice, and across processes after
`initialize_distributed` (`jax.distributed.initialize`).

Across processes the mesh is process-major (process 0's devices first), so each process's
devices hold one contiguous block of the global batch: process p of P holds rows
`[p * B / P, (p + 1) * B / P)`, exactly the rows `data.pipeline.train_dataset` gives it, and
the global batch a step sees is the one a single process would see.
"""

from __future__ import annotations

import atexit
import re
import threading
import time
from typing import Callable, Sequence

import jax
import numpy as np
from jax._src import distributed as _jax_distributed
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvad.errors import ConfigError, TrainingError

__all__ = ["DATA_AXIS", "make_mesh", "batch_sharding", "replicated", "shard_batch",
           "local_batch_block", "jit_train_step", "jit_window_step", "initialize_distributed",
           "stop_peer_watch", "HEARTBEAT_TIMEOUT_S", "SHUTDOWN_TIMEOUT_S",
           "INITIALIZATION_TIMEOUT_S", "PEER_TIMEOUT_S"]

DATA_AXIS = "data"

# `jax.distributed.initialize` timeouts jaxvad sets (jax's defaults: 100, 300, 300 s).
HEARTBEAT_TIMEOUT_S = 30        # jax: a process silent this long is dead; the others abort
SHUTDOWN_TIMEOUT_S = 60         # jax: a finished process waits this long for the others
INITIALIZATION_TIMEOUT_S = 300  # jax: every process must have started within this time
# jaxvad's own watch (`on_failure`): a peer whose sign of life (written every second into the
# coordinator's key-value store) stops this long is dead. Shorter than the heartbeat timeout,
# so the run ends with jaxvad's one-line error before jax's abort.
PEER_TIMEOUT_S = 10
_BEAT_S = 1.0
_ALIVE = "jaxvad/alive/"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over all devices (of every process) with the batch axis `data`.

  Args:
    devices: the mesh's devices; default all (`jax.devices()`).

  Returns:
    The mesh, its devices ordered process-major (each process's in their given order), so
    that each process holds one contiguous block of every batch.
  """
  devices = list(devices if devices is not None else jax.devices())
  devices = sorted(devices, key=lambda d: d.process_index)   # stable: one process: unchanged
  return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; every other axis whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, metrics)."""
  return NamedSharding(mesh, P())


def local_batch_block(mesh: Mesh, global_batch_size: int) -> tuple[int, int]:
  """Which block of every global batch this process's devices hold.

  Args:
    mesh: from `make_mesh`.
    global_batch_size: rows of the global batch (a multiple of the mesh size).

  Returns:
    `(block, blocks)`: the global batch cut into `blocks` equal contiguous blocks, this process
    holds block `block` (one process: `(0, 1)`); the `process_index` / `process_count` to give
    `data.pipeline.train_dataset`.

  Raises:
    ConfigError: this process has no device in the mesh, or its rows are not one block.
  """
  indices = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
  spans = sorted({idx[0].indices(global_batch_size)[:2] for idx in indices.values()})
  if not spans:
    raise ConfigError(f"process {jax.process_index()} has no device in the training mesh; give "
                      f"every process some of the devices")
  start, stop = spans[0][0], spans[-1][1]
  size = stop - start
  if (any(a[1] != b[0] for a, b in zip(spans, spans[1:])) or global_batch_size % size
      or start % size):
    raise ConfigError(f"process {jax.process_index()} holds rows {spans} of the batch of "
                      f"{global_batch_size}, not one block; order the devices process by process")
  return start // size, global_batch_size // size


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Assembles this process's slice of the global batch into global, sharded jax.Arrays.

  Args:
    batch: this process's rows of the global batch (`local_batch_block`), numpy arrays.
    mesh: from `make_mesh`.

  Returns:
    The global batch: jax.Arrays split over `data`.
  """
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


_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")


def initialize_distributed(*, coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None,
                           on_failure: Callable[[str], None] | None = None) -> None:
  """Joins this process to a multi-process (multi-host) run: `jax.distributed.initialize` with
  jaxvad's timeouts. Call before anything else touches jax devices.

  With no arguments, jax finds the cluster in the environment (SLURM, Open MPI's mpirun, a
  Cloud TPU pod; `JAX_COORDINATOR_ADDRESS` names the coordinator). Otherwise give all three:
  every process the same `coordinator` (`HOST:PORT` of process 0, which serves it) and
  `num_processes`, and its own `process_id`.

  Every process must have started within `INITIALIZATION_TIMEOUT_S`. A collective waiting on
  a dead process may never return (gloo's all-reduce on CPU does not), so something must
  notice the death: jax's heartbeat after `HEARTBEAT_TIMEOUT_S` (it aborts the process with
  a C++ stack trace), or first, with `on_failure`, jaxvad's watch after `PEER_TIMEOUT_S`.

  Args:
    coordinator: `HOST:PORT` of process 0, the same for every process.
    num_processes: processes in the run (>= 1).
    process_id: this process, in `[0, num_processes)`.
    on_failure: called once, from a watch thread, with one line saying what happened, when
      another process gave no sign of life for `PEER_TIMEOUT_S` (it died, was killed, or lost
      the network), the coordinator cannot be reached, or the processes have not all joined
      within `INITIALIZATION_TIMEOUT_S`. It should report and end this process (`os._exit`):
      the call the main thread waits in may never return. None: no watch; jax alone stops
      the run, by aborting (a C++ stack trace) after `HEARTBEAT_TIMEOUT_S`.

  Raises:
    ConfigError: a bad or partial set of values, or no cluster found in the environment.
    TrainingError: the processes could not reach each other in time.
  """
  given = {"--coordinator": coordinator, "--num-processes": num_processes,
           "--process-id": process_id}
  missing = [flag for flag, value in given.items() if value is None]
  if len(missing) not in (0, 3):
    raise ConfigError(f"a multi-process run needs --coordinator, --num-processes and "
                      f"--process-id together: give {' and '.join(missing)} too (or none of them "
                      f"on a cluster jax detects: SLURM, Open MPI, a TPU pod)")
  if coordinator is not None and not _ADDRESS.match(coordinator):
    raise ConfigError(f"--coordinator = {coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:1234 "
                      f"(the address of process 0 and a free port there)")
  if coordinator is not None and not 0 < int(_ADDRESS.match(coordinator)[2]) < 65536:
    raise ConfigError(f"--coordinator = {coordinator!r}: the port must be in 1..65535")
  if num_processes is not None and num_processes < 1:
    raise ConfigError(f"--num-processes = {num_processes} must be an integer >= 1")
  if process_id is not None and not 0 <= process_id < num_processes:
    raise ConfigError(f"--process-id = {process_id} must be in 0..{num_processes - 1} (one "
                      f"distinct id per process of --num-processes = {num_processes})")
  who = f"process {process_id} of {num_processes}" if process_id is not None else "this process"
  where = coordinator or "the coordinator"
  join = (f"start every process with the same --coordinator and --num-processes and a distinct "
          f"--process-id, and check that process 0's host and port ({where}) can be reached")
  # jax aborts (a C++ stack trace) when the processes have not all joined in time: a timer
  # reports it first, in one line.
  timer = threading.Timer(max(INITIALIZATION_TIMEOUT_S - 2, 1), on_failure or (lambda _: None),
                          args=(f"{who} stops: the run's processes did not all join within "
                                f"{INITIALIZATION_TIMEOUT_S} s; {join}",))
  timer.daemon = True
  if on_failure is not None:
    timer.start()
  try:
    jax.distributed.initialize(coordinator, num_processes, process_id,
                               initialization_timeout=INITIALIZATION_TIMEOUT_S,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                               shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
  except ValueError as e:
    if coordinator is None and "should be defined" in str(e):
      raise ConfigError("--distributed found no cluster in the environment (SLURM, Open MPI, a "
                        "TPU pod, or JAX_COORDINATOR_ADDRESS): give --coordinator HOST:PORT "
                        "--num-processes N --process-id I") from e
    raise ConfigError(f"cannot start the multi-process run: {_first_line(e)}") from e
  except Exception as e:  # pylint: disable=broad-except  (jax raises XlaRuntimeError)
    raise TrainingError(f"{who} could not join the run ({_first_line(e)}); {join}") from e
  finally:
    timer.cancel()
  if on_failure is not None and _jax_distributed.global_state.num_processes > 1:
    _start_peer_watch(on_failure)


class _PeerWatch(threading.Thread):
  """Writes this process's sign of life into the coordinator's key-value store every
  `_BEAT_S` and calls `on_failure` once a peer's has not changed for `timeout_s` (or the store
  cannot be reached). A peer that finished writes `done` and is not waited for."""

  def __init__(self, client, process_id: int, num_processes: int,
               on_failure: Callable[[str], None], timeout_s: float):
    super().__init__(name="jaxvad-peer-watch", daemon=True)
    self.client, self.process_id, self.num_processes = client, process_id, num_processes
    self.on_failure, self.timeout_s = on_failure, timeout_s
    self.stopped = threading.Event()
    self.lock = threading.Lock()   # no beat is written after `finish` wrote "done"

  def run(self):
    own = f"{_ALIVE}{self.process_id}"
    last_change = {}   # peer -> (its last value, when it changed)
    beat = 0
    while not self.stopped.wait(_BEAT_S):
      beat += 1
      try:
        with self.lock:
          if self.stopped.is_set():
            return
          self.client.key_value_set(own, str(beat), allow_overwrite=True)
        values = {k.rsplit("/", 1)[-1]: v for k, v in self.client.key_value_dir_get(_ALIVE)}
      except Exception as e:  # pylint: disable=broad-except  (jax raises XlaRuntimeError)
        if not self.stopped.is_set():
          self._fail(f"the coordinator (process 0) cannot be reached ({_first_line(e, 120)}): "
                     f"it died, was killed or lost the network")
        return
      now = time.monotonic()
      for peer in range(self.num_processes):
        value = values.get(str(peer))
        if peer == self.process_id or value == "done":
          continue
        if peer not in last_change or last_change[peer][0] != value:
          last_change[peer] = (value, now)
        elif now - last_change[peer][1] > self.timeout_s:
          self._fail(f"process {peer} gave no sign of life for {self.timeout_s:.0f} s: it "
                     f"died, was killed or lost the network")
          return

  def _fail(self, why: str) -> None:
    if not self.stopped.is_set():
      self.stopped.set()
      self.on_failure(f"process {self.process_id} of {self.num_processes} stops: {why}")

  def finish(self) -> None:
    """Stops watching and tells the peers this process finished (not died)."""
    if self.stopped.is_set():
      return
    self.stopped.set()
    try:
      with self.lock:
        self.client.key_value_set(f"{_ALIVE}{self.process_id}", "done", allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except
      pass


_watch: _PeerWatch | None = None


def _start_peer_watch(on_failure: Callable[[str], None]) -> None:
  global _watch
  state = _jax_distributed.global_state   # not jax.process_index(): no backend started here
  _watch = _PeerWatch(state.client, state.process_id, state.num_processes, on_failure,
                      PEER_TIMEOUT_S)
  _watch.start()
  # Registered after jax's own exit handler, so it runs first: the peers learn this process
  # finished before jax's shutdown barrier (after which the store is gone).
  atexit.register(stop_peer_watch, finished=True)


def stop_peer_watch(*, finished: bool = False) -> None:
  """Stops the watch of `initialize_distributed(on_failure=...)` (no-op without one).

  Args:
    finished: also tell the other processes this one finished, so that they do not take its
      silence for a death (at a clean exit). Leave False when failing: they should stop too.
  """
  if _watch is None:
    return
  if finished:
    _watch.finish()
  else:
    _watch.stopped.set()


def _first_line(e: BaseException, limit: int = 160) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"

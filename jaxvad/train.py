"""The one trainer: mesh and sharding, jitted step, orbax checkpoints, resume, progress.

Every method plugs in through its declaration (`jaxvad.methods.base.Method`: `create_state`,
the training phases, an optional `fit`); the loop below knows nothing about models or losses.

Determinism: batch k is a pure function of (seed, k) (see `data.pipeline.train_dataset`)
and step RNG is `fold_in(state.rng, state.step)`, so a run killed and resumed from its
last checkpoint ends with the same parameters as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding
from tqdm.auto import tqdm

import jaxvad
from jaxvad import config as config_lib
from jaxvad import methods
from jaxvad.data import datasets, pipeline
from jaxvad.errors import ConfigError, TrainingError
from jaxvad.sharding import jit_train_step, make_mesh, replicated, shard_batch

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"        # what scoring needs that the config leaves open (frame shape)
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"


# --------------------------------------------------------------------------- checkpoints


def checkpoint_manager(workdir: pathlib.Path, *, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR, options=options)


def abstract_state(method, config, example_batch, sharding):
  """The shapes, dtypes and structure of `method`'s state, placed with `sharding`, without
  computing (or reading) a single parameter: what a restore fills in."""
  shapes = jax.eval_shape(lambda: method.create_state(config, jax.random.PRNGKey(0),
                                                      example_batch, load_pretrained=False))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def restore_state(manager: ocp.CheckpointManager, like_state, step: int | None = None):
  """Restores the checkpoint at `step` (default: latest) into the structure/sharding of `like_state`."""
  step = manager.latest_step() if step is None else step
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def write_json_atomic(path: pathlib.Path, obj) -> None:
  """Writes JSON to a temporary file and renames it over `path` (never half-written)."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


# Keys that may differ between a run and its resumption: they do not change the trajectory.
# Keys a resumed run may change: they do not alter the training trajectory (the whole `score`
# section only affects evaluation).
_RESUMABLE_KEYS = {("train", "steps"), ("train", "log_every"), ("train", "checkpoint_every"),
                   ("train", "keep_checkpoints"), ("name",)}


def _config_differences(saved: dict, current: dict, prefix=()) -> list[str]:
  diffs = []
  for key in sorted(set(saved) | set(current)):
    path = prefix + (key,)
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += _config_differences(a, b, path)
    elif path not in _RESUMABLE_KEYS and path[0] != "score" and a != b:
      diffs.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
  return diffs


def _jsonable(config: config_lib.Config) -> dict:
  return json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as after a round trip


# --------------------------------------------------------------------------- training loop


@jax.jit
def _all_finite(tree) -> jax.Array:
  """Whether every float leaf of `tree` (parameters, optimizer moments, statistics) is finite."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def train(config: config_lib.Config, workdir: str | os.PathLike, *, resume: bool = False,
          clips: Sequence[np.ndarray] | None = None, progress: bool = True,
          hooks: Sequence[Callable[[int, dict], None]] = (),
          devices: Sequence[jax.Device] | None = None):
  """Trains `config.method` and checkpoints into `workdir`.

  Args:
    config: a validated config.
    workdir: run folder: config.json, checkpoints/, train_log.jsonl.
    resume: continue from the latest checkpoint in `workdir`. Without it, a workdir that
      already holds checkpoints is an error (nothing written is overwritten).
    clips: training frames, uint8 `[T_i, H, W, C]` each; default: the config's train split.
    progress: show a progress bar.
    hooks: `hook(step, metrics)` called after every step (metrics are device arrays).
    devices: devices of the mesh; default all.

  Returns:
    The final `TrainState` (replicated over the mesh).
  """
  workdir = pathlib.Path(workdir)
  method = methods.get(config.method)
  cfg = config.train

  # ---- Set up the mesh: one `data` axis over every device of every process.
  mesh = make_mesh(devices)
  if cfg.batch_size % mesh.size:
    raise ConfigError(f"train.batch_size = {cfg.batch_size} must be divisible by the number of "
                      f"devices ({mesh.size}); pick a multiple of {mesh.size}")

  # ---- Input pipeline: batch k is a pure function of (seed, k).
  if clips is None:
    clips = [c.frames for c in datasets.load_split(config.data, "train")]
  # Methods trained on per-frame targets (e.g. weak partition labels) derive them from the
  # training clips once, here; they are windowed with the frames.
  targets = method.training_targets(config, clips) if method.training_targets else None
  dataset = pipeline.train_dataset(clips, window=config.data.window, stride=config.data.stride,
                                   global_batch_size=cfg.batch_size, seed=cfg.seed,
                                   per_frame=targets)

  # ---- Create the state (or restore it).
  workdir.mkdir(parents=True, exist_ok=True)
  manager = checkpoint_manager(workdir, keep=cfg.keep_checkpoints)
  config_json = _jsonable(config)
  config_path = workdir / CONFIG_FILE
  if manager.latest_step() is not None:
    if not resume:
      raise ConfigError(f"{workdir} already holds checkpoints (latest step "
                        f"{manager.latest_step()}); pass --resume to continue that run, or "
                        f"choose a new --workdir")
    diffs = _config_differences(json.loads(config_path.read_text()), config_json)
    if diffs:
      raise ConfigError(f"cannot resume {workdir}: its config differs in {'; '.join(diffs)}")
  rng = jax.random.PRNGKey(cfg.seed)
  example = dataset[0]
  if manager.latest_step() is None:
    state = jax.device_put(method.create_state(config, rng, example), replicated(mesh))
  else:   # every leaf comes from the checkpoint: build the structure only
    state = restore_state(manager, abstract_state(method, config, example, replicated(mesh)))
  write_json_atomic(config_path, config_json)
  # What scoring new footage needs beyond the config, so the run works without its data.
  write_json_atomic(workdir / RUN_FILE, {"frame_shape": list(example["frames"].shape[2:]),
                                         "jaxvad_version": jaxvad.__version__})

  # ---- Update steps: one per phase, each compiled once; the state buffers are donated.
  bounds = method.phase_bounds(config)
  step_fns = {}

  def phase_step(step):
    phase = next(p for p, first, last in bounds if first <= step <= last)
    if phase.name not in step_fns:
      step_fns[phase.name] = jit_train_step(phase.train_step, mesh)
    return phase, step_fns[phase.name]

  # ---- Loop.
  start = int(state.step)
  log_path = workdir / LOG_FILE
  bar = tqdm(total=cfg.steps, initial=start, unit="step", desc=f"train {config.name}",
             disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  batches = pipeline.prefetch(dataset, start_step=start) if start < cfg.steps else iter(())
  try:
    for step in range(start + 1, cfg.steps + 1):
      phase, step_fn = phase_step(step)
      state, metrics = step_fn(state, shard_batch(next(batches), mesh))
      for hook in hooks:
        hook(step, metrics)
      phase_end = any(step == last for _, _, last in bounds)
      if (step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or phase_end):
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not all(math.isfinite(v) for v in host.values()):
          last = manager.latest_step()
          raise TrainingError(
              f"non-finite training metrics at step {step}: {host}. The last good checkpoint "
              f"(step {last}) is kept in {workdir / CHECKPOINT_DIR}; lower train.learning_rate "
              f"or try train.compute_dtype=float32, then rerun with --resume.")
        with open(log_path, "a") as f:
          f.write(json.dumps({"step": step, "phase": phase.name, **host}) + "\n")
        bar.set_postfix({"phase": phase.name, **{k: f"{v:.4g}" for k, v in host.items()}}
                        if len(bounds) > 1 else {k: f"{v:.4g}" for k, v in host.items()})
        if step == cfg.steps and method.fit is not None:
          # Fitted after the last gradient step and saved with it, so a resumed run that
          # reaches this step fits the same statistics from the same parameters.
          state = method.fit(config, state, clips)
        # Checkpoints at phase ends too, so a resume never straddles a phase boundary.
        if step % cfg.checkpoint_every == 0 or phase_end:
          # The metrics describe the state before this update: check the updated one too.
          if not bool(_all_finite(state)):
            raise TrainingError(
                f"parameters became non-finite at step {step}; the last good checkpoint "
                f"(step {manager.latest_step()}) is kept in {workdir / CHECKPOINT_DIR}; lower "
                f"train.learning_rate, then rerun with --resume.")
          manager.save(step, args=ocp.args.StandardSave(state))
      bar.update(1)
  finally:
    bar.close()
    manager.wait_until_finished()  # an interrupted run still leaves its last checkpoint whole
    manager.close()
  return state


def load_trained(workdir: str | os.PathLike, *, step: int | None = None):
  """Rebuilds a trained run from `workdir`: its config and the (latest) checkpointed state.

  Returns:
    (config, state) with the state on the default device.
  """
  workdir = pathlib.Path(workdir)
  config_path = workdir / CONFIG_FILE
  if not config_path.is_file():
    raise ConfigError(f"{workdir} is not a training run folder: {CONFIG_FILE} is missing "
                      f"(train one with `jaxvad train --workdir {workdir}`)")
  config = config_lib.config_from_dict(json.loads(config_path.read_text()), source=str(config_path))
  manager = checkpoint_manager(workdir, keep=config.train.keep_checkpoints)
  try:
    if manager.latest_step() is None:
      raise ConfigError(f"{workdir / CHECKPOINT_DIR} holds no checkpoint yet: training has not "
                        f"reached train.checkpoint_every = {config.train.checkpoint_every} steps")
    method = methods.get(config.method)
    example = {"frames": np.zeros((1, config.data.window) + run_frame_shape(workdir, config),
                                  np.uint8)}
    # Every parameter comes from the checkpoint: no pretrained weight file is read again.
    like = abstract_state(method, config, example, SingleDeviceSharding(jax.devices()[0]))
    state = restore_state(manager, like, step)
  finally:
    manager.close()
  return config, state


def frame_shape(config: config_lib.Config) -> tuple[int, int, int]:
  """(H, W, C) of the frames a config trains on (reads the benchmark when `data.size` is empty)."""
  h, w = config.data.size or datasets.stored_size(config.data)
  return (h, w, 1 if config.data.grayscale else 3)


def run_frame_shape(workdir: str | os.PathLike, config: config_lib.Config) -> tuple[int, int, int]:
  """(H, W, C) a trained run scores: from its run.json, so the training data may be gone (runs
  older than run.json fall back to `frame_shape`)."""
  path = pathlib.Path(workdir) / RUN_FILE
  if path.is_file():
    return tuple(int(s) for s in json.loads(path.read_text())["frame_shape"])
  return frame_shape(config)


__all__ = ["CONFIG_FILE", "RUN_FILE", "checkpoint_manager", "restore_state", "train",
           "load_trained", "frame_shape", "run_frame_shape", "write_json_atomic"]

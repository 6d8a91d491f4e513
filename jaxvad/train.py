"""The one trainer: mesh and sharding, jitted step, orbax checkpoints, resume, progress.

Every method plugs in through its declaration (`jaxvad.methods.base.Method`: `create_state`,
the training phases, an optional `fit`); the loop below knows nothing about models or losses.

Determinism: batch k is a pure function of (seed, k) (see `data.pipeline.train_dataset`)
and step RNG is `fold_in(state.rng, state.step)`, so a run killed and resumed from its
last checkpoint ends with the same parameters as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import pathlib
import re
import time
import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding
from tqdm.auto import tqdm

import jaxvad
from jaxvad import config as config_lib
from jaxvad import fsio, methods
from jaxvad.data import datasets, pipeline
from jaxvad.errors import ConfigError, DataError, JaxvadError, OutputError, TrainingError
from jaxvad.fsio import write_json_atomic
from jaxvad.sharding import (jit_train_step, local_batch_block, make_mesh, replicated,
                             shard_batch)

CONFIG_FILE = fsio.RUN_CONFIG
RUN_FILE = fsio.RUN_INFO          # what scoring needs that the config leaves open (frame shape)
LOG_FILE = fsio.RUN_LOG
CHECKPOINT_DIR = fsio.RUN_CHECKPOINTS


# --------------------------------------------------------------------------- checkpoints


def checkpoint_manager(workdir: pathlib.Path, *, keep: int,
                       read_only: bool = False) -> ocp.CheckpointManager:
  """The orbax manager of `workdir/checkpoints` (created unless `read_only`)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR, options=options)


def _finished_steps(directory: pathlib.Path) -> list[int]:
  """Steps whose checkpoint folder orbax finalised (renamed from `<step>.orbax-checkpoint-tmp`)."""
  try:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())
  except OSError:
    return []


def abstract_state(method, config, example_batch, sharding):
  """The shapes, dtypes and structure of `method`'s state, placed with `sharding`, without
  computing (or reading) a single parameter: what a restore fills in."""
  shapes = jax.eval_shape(lambda: method.create_state(config, jax.random.PRNGKey(0),
                                                      example_batch, load_pretrained=False))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


class _Collect(logging.Filter):
  """Keeps orbax's warnings and errors (tracebacks of its background threads) in `records`
  instead of printing them; info and debug records pass."""

  def __init__(self):
    super().__init__()
    self.records: list[logging.LogRecord] = []

  def filter(self, record):
    if record.levelno < logging.WARNING:
      return True
    self.records.append(record)
    return False


@contextlib.contextmanager
def _quiet_orbax():
  """Holds back orbax's absl warnings and errors while inside: errors only repeat the failure
  that is raised as an exception (and turned into one line), warnings are about options set
  on purpose (a read-only manager)."""
  collect = _Collect()
  logger = logging.getLogger("absl")
  logger.addFilter(collect)
  try:
    yield collect
  finally:
    logger.removeFilter(collect)


def _first_line(e: BaseException, limit: int = 160) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _os_error_in(e: BaseException) -> OSError | None:
  """The OSError behind an exception (orbax wraps them), following causes and contexts."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError):
      return e
    e = e.__cause__ or e.__context__
  return None


def _runtime_error_in(e: BaseException) -> BaseException | None:
  """The jax runtime error behind an exception (orbax wraps them), following causes and
  contexts."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, jax.errors.JaxRuntimeError):
      return e
    e = e.__cause__ or e.__context__
  return None


def _lost_peer_error(e: BaseException, doing: str, directory: pathlib.Path,
                  last: int | None) -> TrainingError | None:
  """In a multi-process run, a jax runtime error in a collective (a step's gradient sum,
  orbax's checkpoint sync) mostly means another process died: that error, as one line.
  None in a one-process run or for other errors."""
  cause = _runtime_error_in(e) if jax.process_count() > 1 else None
  if cause is None:
    return None
  kept = (f"the last good checkpoint (step {last}) is kept in {directory}" if last is not None
          else "no checkpoint was written yet")
  return TrainingError(
      f"process {jax.process_index()} of {jax.process_count()} failed {doing}: "
      f"{_first_line(cause)}; if another process died or was killed, that is the cause; "
      f"{kept}; restart every process with --resume")


# TensorStore reports a full disk / read-only disk as a ValueError with a status code.
_TS_STATUS = {"RESOURCE_EXHAUSTED": "the disk is full", "PERMISSION_DENIED": "permission denied"}
_TS_FILE = re.compile(r'local file "([^"]+)"')


@contextlib.contextmanager
def _checkpoint_errors(directory: pathlib.Path, *, action: str,
                       last_good: Callable[[], int | None]):
  """Turns whatever orbax / TensorStore raise while saving into one `OutputError` line, and
  removes the half-written step folder it leaves (`<step>.orbax-checkpoint-tmp`)."""
  with _quiet_orbax():
    try:
      yield
    except (JaxvadError, KeyboardInterrupt):
      raise
    except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
      fsio.remove_temporaries(directory, ["*.orbax-checkpoint-tmp*"])
      lost = _lost_peer_error(e, "in a checkpoint operation", directory, last_good())
      if lost is not None:
        raise lost from e
      os_error = _os_error_in(e)
      status = next((why for code, why in _TS_STATUS.items() if code in str(e)), None)
      if os_error is not None:
        why = fsio.os_error_message(os_error, directory, action=action)
      elif status is not None:
        free = fsio.free_bytes(directory)
        room = status.startswith("the disk") and free is not None
        why = (f"cannot {action} {directory}: {status}"
               + (f" ({fsio.human_bytes(free)} free)" if room else ""))
      else:
        why = f"cannot {action} {directory}: {_first_line(e)}"
      last = last_good()
      kept = (f"the last good checkpoint (step {last}) is kept" if last is not None
              else "no checkpoint was written yet")
      raise OutputError(f"{why}; {kept}; free some space or fix the folder, then rerun with "
                        f"--resume") from e


def _damaged_checkpoint(directory: pathlib.Path, step: int, steps: list[int], e: Exception):
  # TensorStore names the database folder, then the data file inside it that failed.
  files = [f for f in _TS_FILE.findall(str(e)) if not f.endswith("/")] or _TS_FILE.findall(str(e))
  what = (f"its file {files[-1]} is damaged (truncated, emptied or partly copied)" if files
          else "it is damaged or does not match the run's config.json")
  older = [s for s in steps if s < step]
  fallback = (f"delete {directory / str(step)} to fall back to step {older[-1]}"
              if older else "retrain the run")
  return DataError(f"cannot restore the checkpoint of step {step} in {directory}: {what} "
                   f"({_first_line(e, 100)}); {fallback}")


def restore_state(manager: ocp.CheckpointManager, like_state, step: int | None = None):
  """Restores the checkpoint at `step` (default: latest) into the structure/sharding of
  `like_state`.

  Raises:
    DataError: the checkpoint's files are damaged (one line naming the file and the fix).
  """
  step = manager.latest_step() if step is None else step
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
  with _quiet_orbax():
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except (JaxvadError, KeyboardInterrupt):
      raise
    except Exception as e:  # pylint: disable=broad-except  (orbax / TensorStore / JSON errors)
      raise _damaged_checkpoint(pathlib.Path(manager.directory), step,
                                sorted(manager.all_steps()), e) from e


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


def _read_run_json(workdir: pathlib.Path, name: str) -> dict:
  """config.json / run.json of a run folder; a damaged one is a one-line ConfigError."""
  path = workdir / name
  if not path.is_file():
    raise ConfigError(f"{workdir} is not a training run folder: {name} is missing (train one "
                      f"with `jaxvad train --workdir {workdir}`)")
  data = fsio.read_json(path, what=f"the run's {name}",
                        fix="restore it from a backup or retrain into a new --workdir")
  if not isinstance(data, dict):
    raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not the object jaxvad wrote: "
                      f"it is corrupt; restore it from a backup or retrain into a new --workdir")
  return data


def data_root(data_cfg) -> pathlib.Path:
  """The folder a config's frames and labels are read from (synth: `<root>/<scene>`)."""
  root = pathlib.Path(data_cfg.root)
  return root / data_cfg.scene if data_cfg.dataset == "synth" else root


def normal_training_frames(clips, *, window: int) -> tuple[list[np.ndarray], dict]:
  """The frames to train on: each clip's runs of normal frames (`normal_runs`).

  Returns:
    (frames per run, what was dropped as `normal_runs` says).
  """
  spans, dropped = normal_runs(clips, window=window)
  return [clips[i].frames[s:e] for i, s, e in spans], dropped


def normal_runs(clips, *, window: int) -> tuple[list[tuple[int, int, int]], dict]:
  """The spans to train on: each clip's runs of normal frames.

  Training data must be normal. A clip whose labels mark anomalous frames (an `intervals`
  train event with a labels.json listing some) is cut into its normal runs; runs shorter than
  `window` cannot form a window and go too. Dropping, not refusing: the rest of such an event
  is good normal footage. A warning says what was dropped.

  Returns:
    ((clip index, start, end) per run, {clip name: {"label_source", "anomalous": [[start,
    end), ...], "dropped_short_runs": [[start, end), ...]}} for every clip that lost frames).
  """
  spans, dropped = [], {}
  for i, clip in enumerate(clips):
    labels = None if clip.labels is None else np.asarray(clip.labels, bool)
    if labels is None or not labels.any():
      spans.append((i, 0, len(clip.frames)))
      continue
    edges = np.flatnonzero(np.diff(np.concatenate([[1], labels.astype(np.int8), [1]])))
    runs = [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]
    anomalous = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
    short = [[s, e] for s, e in runs if e - s < window]
    spans += [(i, s, e) for s, e in runs if e - s >= window]
    dropped[clip.name] = {
        "label_source": (clip.meta or {}).get("label_source"),
        "anomalous": [[int(s), int(e)] for s, e in zip(anomalous[::2], anomalous[1::2])],
        "dropped_short_runs": short}
  if not spans:
    raise DataError(f"no normal run of at least data.window = {window} frames is left in the "
                    f"train split once its anomalous frames are dropped; add normal footage")
  if dropped:
    total = sum(e - s for d in dropped.values()
                for s, e in d["anomalous"] + d["dropped_short_runs"])
    names = ", ".join(f"{n} ({d['label_source'] or 'labels'}: {d['anomalous']})"
                      for n, d in list(dropped.items())[:3])
    warnings.warn(f"the train split has anomalous frames, which are left out of training: "
                  f"{total} frames of {len(dropped)} clip(s) dropped ({names}"
                  f"{', ...' if len(dropped) > 3 else ''}; normal runs shorter than "
                  f"data.window = {window} go too); recorded in run.json", stacklevel=2)
  return spans, dropped


# --------------------------------------------------------------------------- training loop


@jax.jit
def _all_finite(tree) -> jax.Array:
  """Whether every float leaf of `tree` (parameters, optimizer moments, statistics) is finite."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _check_resume(workdir: pathlib.Path, config_json: dict, steps: int, *, resume: bool,
                  latest: int | None) -> None:
  """Refuses to overwrite a run without --resume, and a resume that would change its
  trajectory or go back in steps."""
  if latest is None:
    return
  if not resume:
    raise ConfigError(f"{workdir} already holds checkpoints (latest step {latest}); pass "
                      f"--resume to continue that run, or choose a new --workdir")
  # The saved config through today's schema: keys added since it was written take their
  # defaults, so a new option with a default never blocks resuming an older run.
  saved = _jsonable(config_lib.config_from_dict(_read_run_json(workdir, CONFIG_FILE),
                                                source=str(workdir / CONFIG_FILE)))
  diffs = _config_differences(saved, config_json)
  if diffs:
    raise ConfigError(f"cannot resume {workdir}: its config differs in {'; '.join(diffs)} "
                      f"(a new run needs another --workdir, or that folder removed)")
  if latest > steps:
    # Training on would do nothing while config.json would claim fewer steps than the
    # checkpoint holds: refuse instead of rewriting it.
    raise ConfigError(f"cannot resume {workdir} to train.steps = {steps}: its latest checkpoint "
                      f"is already at step {latest}; give train.steps >= {latest} to train on, "
                      f"or choose a new --workdir")


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

  In a multi-process run (after `jaxvad.sharding.initialize_distributed`) every process calls
  this with the same arguments and the same `workdir` (a shared folder): each reads its own
  block of every batch, all write the checkpoints together, and process 0 alone writes
  config.json, run.json and the log and shows the progress bar.

  Returns:
    The final `TrainState` (replicated over the mesh).

  Raises:
    TrainingError: also when another process of a multi-process run died (one line).
  """
  workdir = pathlib.Path(workdir)
  method = methods.get(config.method)
  cfg = config.train

  # ---- Set up the mesh: one `data` axis over every device of every process.
  mesh = make_mesh(devices)
  if cfg.batch_size % mesh.size:
    raise ConfigError(f"train.batch_size = {cfg.batch_size} must be divisible by the number of "
                      f"devices ({mesh.size}); pick a multiple of {mesh.size}")

  # ---- Before any long work: the run folder must be writable and must not hold the data,
  # and a resume must fit the run it continues.
  if clips is None:
    fsio.check_outputs({f"--workdir file {name}": path
                        for name, path in fsio.run_files(workdir).items()},
                       {"dataset folder (data.root)": data_root(config.data)})
  fsio.check_writable_dir(workdir, what="run folder (--workdir)")
  config_json = _jsonable(config)
  _check_resume(workdir, config_json, cfg.steps, resume=resume, latest=latest_step(workdir))

  # ---- Input pipeline: batch k is a pure function of (seed, k); this process reads the block
  # of it that its devices hold.
  block, blocks = local_batch_block(mesh, cfg.batch_size)
  main_process = jax.process_index() == 0
  dropped, inputs = {}, {}
  if clips is None:
    loaded = datasets.load_split(config.data, "train")
    spans, dropped = normal_runs(loaded, window=config.data.window)
    clips = [loaded[i].frames[s:e] for i, s, e in spans]
    if method.frame_inputs:   # from whole clips (a run's first flow needs the frame before)
      whole = [method.frame_inputs(config, c.frames, c) for c in loaded]
      inputs = {k: [whole[i][k][s:e] for i, s, e in spans] for k in whole[0]}
  elif method.frame_inputs:
    given = [method.frame_inputs(config, c, None) for c in clips]
    inputs = {k: [g[k] for g in given] for k in given[0]} if given else {}
  # Methods trained on per-frame targets (e.g. weak partition labels) derive them from the
  # training clips once, here; they are windowed with the frames, as the frame inputs are.
  targets = method.training_targets(config, clips) if method.training_targets else {}
  dataset = pipeline.train_dataset(clips, window=config.data.window, stride=config.data.stride,
                                   global_batch_size=cfg.batch_size, seed=cfg.seed,
                                   per_frame={**inputs, **targets} or None,
                                   transform=(functools.partial(method.host_transform, config)
                                              if method.host_transform else None),
                                   process_index=block, process_count=blocks)

  # ---- Create the state (or restore it).
  fsio.ensure_dir(workdir, what="run folder (--workdir)")
  ckpt_dir = workdir.absolute() / CHECKPOINT_DIR
  with _checkpoint_errors(ckpt_dir, action="open the checkpoints in", last_good=lambda: None):
    manager = checkpoint_manager(workdir, keep=cfg.keep_checkpoints)
  config_path = workdir / CONFIG_FILE
  latest = manager.latest_step()
  try:
    _check_resume(workdir, config_json, cfg.steps, resume=resume, latest=latest)
  except JaxvadError:
    manager.close()
    raise
  rng = jax.random.PRNGKey(cfg.seed)
  example = dataset[0]
  if latest is None:
    state = jax.device_put(method.create_state(config, rng, example), replicated(mesh))
  else:   # every leaf comes from the checkpoint: build the structure only
    try:
      state = restore_state(manager, abstract_state(method, config, example, replicated(mesh)))
    except JaxvadError:
      manager.close()
      raise
  # A finished run resumed as is: nothing is rewritten; other processes leave it to process 0.
  if main_process and (latest is None or latest < cfg.steps):
    write_json_atomic(config_path, config_json)
    # What scoring new footage needs beyond the config, so the run works without its data.
    run_info = {"frame_shape": list(example["frames"].shape[2:]),
                "jaxvad_version": jaxvad.__version__}
    if config.data.roi:   # the size new footage is read at before the crop
      run_info["read_size"] = list(config.data.size or datasets.stored_size(config.data))
    if dropped:
      run_info["dropped_train_frames"] = dropped
    write_json_atomic(workdir / RUN_FILE, run_info)

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
  last_good = lambda: _finished_steps(ckpt_dir)[-1] if _finished_steps(ckpt_dir) else None
  # Asynchronous saves log their failures from a background thread, at any later step: held
  # back for the whole loop (the failure itself is raised by the next save or the final wait).
  quiet = contextlib.ExitStack()
  quiet.enter_context(_quiet_orbax())
  step = start
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
        if main_process:
          fsio.append_text(log_path,
                           json.dumps({"step": step, "phase": phase.name, **host}) + "\n")
        bar.set_postfix({"phase": phase.name, **{k: f"{v:.4g}" for k, v in host.items()}}
                        if len(bounds) > 1 else {k: f"{v:.4g}" for k, v in host.items()})
        if step == cfg.steps and method.fit is not None:
          # Fitted after the last gradient step and saved with it, so a resumed run that
          # reaches this step fits the same statistics from the same parameters.
          # Back onto the mesh: fitted statistics come back as host or single-device
          # arrays, which a multi-process checkpoint cannot save.
          state = jax.device_put(method.fit(config, state, clips), replicated(mesh))
        # Checkpoints at phase ends too, so a resume never straddles a phase boundary.
        if step % cfg.checkpoint_every == 0 or phase_end:
          # The metrics describe the state before this update: check the updated one too.
          if not bool(_all_finite(state)):
            raise TrainingError(
                f"parameters became non-finite at step {step}; the last good checkpoint "
                f"(step {manager.latest_step()}) is kept in {workdir / CHECKPOINT_DIR}; lower "
                f"train.learning_rate, then rerun with --resume.")
          _check_checkpoint_space(ckpt_dir, state, step, last_good())
          with _checkpoint_errors(ckpt_dir, action="save a checkpoint in", last_good=last_good):
            manager.save(step, args=ocp.args.StandardSave(state))
      bar.update(1)
  except BaseException as e:
    # An interrupted run still leaves its last checkpoint whole; the error that stopped the
    # run is the one to report, not a second one from a pending save.
    with contextlib.suppress(Exception):
      with _checkpoint_errors(ckpt_dir, action="save a checkpoint in", last_good=last_good):
        manager.wait_until_finished()
    _close(manager, ckpt_dir)
    lost = (None if isinstance(e, JaxvadError)
            else _lost_peer_error(e, f"in step {step}", ckpt_dir, last_good()))
    if lost is not None:   # e.g. gloo's "Connection closed by peer" in the gradient sum
      raise lost from e
    raise
  else:
    try:
      # Asynchronous saves report a failure here at the latest (or at the next save).
      with _checkpoint_errors(ckpt_dir, action="save a checkpoint in", last_good=last_good):
        manager.wait_until_finished()
    finally:
      _close(manager, ckpt_dir)
  finally:
    bar.close()
    quiet.close()
  return state


def _close(manager, ckpt_dir: pathlib.Path, *, settle_s: float = 1.0,
           limit_s: float = 5.0) -> None:
  """Closes the checkpoint manager, then removes what a failed save left. TensorStore's writes
  of a failed commit can outlive the error and `close()`, re-creating files in the
  half-written step folder after `_checkpoint_errors` removed it, so the folder is removed
  until it has stayed gone for `settle_s` (at most `limit_s`). After a clean close there is
  no such folder and this returns at once."""
  with contextlib.suppress(Exception), _quiet_orbax():
    manager.close()
  pattern = "*.orbax-checkpoint-tmp*"
  if not ckpt_dir.is_dir() or not any(ckpt_dir.glob(pattern)):
    return
  deadline = time.monotonic() + limit_s
  while True:
    fsio.remove_temporaries(ckpt_dir, [pattern])
    time.sleep(settle_s)
    if not any(ckpt_dir.glob(pattern)) or time.monotonic() > deadline:
      return


def _state_bytes(state) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state) if hasattr(x, "dtype"))


def _disk_bytes(folder: pathlib.Path) -> int:
  total = 0
  for p in folder.rglob("*"):
    with contextlib.suppress(OSError):
      st = p.lstat()
      total += max(st.st_size, st.st_blocks * 512)
  return total


def _check_checkpoint_space(directory: pathlib.Path, state, step: int,
                            last: int | None) -> None:
  """Refuses a save the disk cannot hold, before orbax starts it: a full disk found mid-save
  surfaces only at the next save, as a flood of TensorStore errors."""
  free = fsio.free_bytes(directory)
  if free is None:
    return
  previous = _disk_bytes(directory / str(last)) if last is not None else 0
  # The old checkpoint is deleted only after the new one is committed: room for a whole one.
  need = int(max(_state_bytes(state), previous) * 1.1) + 256 * 1024
  if free < need:
    kept = (f"the last good checkpoint (step {last}) is kept" if last is not None
            else "no checkpoint was written yet")
    raise OutputError(f"cannot save the checkpoint of step {step} in {directory}: it needs "
                      f"about {fsio.human_bytes(need)} but the disk has {fsio.human_bytes(free)} "
                      f"free; "
                      f"{kept}; free some space, then rerun with --resume")


def load_trained(workdir: str | os.PathLike, *, step: int | None = None):
  """Rebuilds a trained run from `workdir`: its config and the (latest) checkpointed state.

  Returns:
    (config, state) with the state on the default device.
  """
  workdir = pathlib.Path(workdir)
  config = load_run_config(workdir)
  shape = run_frame_shape(workdir, config)
  if not _finished_steps(workdir.absolute() / CHECKPOINT_DIR):
    raise ConfigError(f"{workdir / CHECKPOINT_DIR} holds no checkpoint yet: training has not "
                      f"reached train.checkpoint_every = {config.train.checkpoint_every} steps")
  # Read-only: scoring must work (and create nothing) in a run folder on a read-only disk.
  with _quiet_orbax():
    try:
      manager = checkpoint_manager(workdir, keep=config.train.keep_checkpoints, read_only=True)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"cannot open the checkpoints in {workdir / CHECKPOINT_DIR}: "
                      f"{_first_line(e)}; retrain the run") from e
  try:
    if manager.latest_step() is None:
      raise ConfigError(f"{workdir / CHECKPOINT_DIR} holds no checkpoint yet: training has not "
                        f"reached train.checkpoint_every = {config.train.checkpoint_every} steps")
    method = methods.get(config.method)
    example = {"frames": np.zeros((1, config.data.window) + shape, np.uint8)}
    # Every parameter comes from the checkpoint: no pretrained weight file is read again.
    like = abstract_state(method, config, example, SingleDeviceSharding(jax.devices()[0]))
    state = restore_state(manager, like, step)
  finally:
    with _quiet_orbax():
      manager.close()
  return config, state


def latest_step(workdir: str | os.PathLike) -> int | None:
  """The step of a run folder's latest finished checkpoint (None: none yet), without orbax."""
  steps = _finished_steps(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR)
  return steps[-1] if steps else None


def load_run_config(workdir: str | os.PathLike) -> config_lib.Config:
  """The config of a trained run, read and validated without touching its checkpoints (fast:
  commands check their inputs with it before the seconds a restore takes).

  Raises:
    ConfigError: `workdir` is not a run folder, or its config.json is corrupt or invalid.
  """
  workdir = pathlib.Path(workdir)
  return config_lib.config_from_dict(_read_run_json(workdir, CONFIG_FILE),
                                     source=str(workdir / CONFIG_FILE))


def frame_shape(config: config_lib.Config) -> tuple[int, int, int]:
  """(H, W, C) of the frames a config trains on, after the `data.roi` crop (reads the benchmark
  when `data.size` is empty)."""
  h, w = datasets.frame_size(config.data)
  return (h, w, 1 if config.data.grayscale else 3)


def run_read_size(workdir: str | os.PathLike, config: config_lib.Config) -> tuple[int, int]:
  """(H, W) a run with `data.roi` reads new footage at before cropping it (from its run.json:
  `data.size`, or the benchmark's stored size when that is empty)."""
  if not config.data.roi:
    return run_frame_shape(workdir, config)[:2]
  workdir = pathlib.Path(workdir)
  size = (_read_run_json(workdir, RUN_FILE).get("read_size")
          if (workdir / RUN_FILE).is_file() else None)
  size = size or config.data.size or datasets.stored_size(config.data)
  if (not isinstance(size, (list, tuple)) or len(size) != 2
      or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
    raise ConfigError(f"{workdir / RUN_FILE} has read_size = {size!r}, not the [H, W] jaxvad "
                      f"wrote: it is corrupt; restore it from a backup or retrain")
  return tuple(size)


def run_frame_shape(workdir: str | os.PathLike, config: config_lib.Config) -> tuple[int, int, int]:
  """(H, W, C) a trained run scores: from its run.json, so the training data may be gone (runs
  older than run.json fall back to `frame_shape`)."""
  workdir = pathlib.Path(workdir)
  if not (workdir / RUN_FILE).is_file():
    return frame_shape(config)
  shape = _read_run_json(workdir, RUN_FILE).get("frame_shape")
  if (not isinstance(shape, list) or len(shape) != 3
      or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
    raise ConfigError(f"{workdir / RUN_FILE} has frame_shape = {shape!r}, not the [H, W, C] "
                      f"jaxvad wrote: it is corrupt; restore it from a backup or retrain")
  return tuple(shape)


__all__ = ["CONFIG_FILE", "RUN_FILE", "checkpoint_manager", "restore_state", "train",
           "load_trained", "load_run_config", "frame_shape", "run_frame_shape", "run_read_size",
           "data_root",
           "normal_training_frames", "normal_runs", "latest_step"]

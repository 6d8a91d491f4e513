"""`jaxvad` command line: synth, train, score, eval, demo."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pathlib
import sys
import textwrap
import time
import warnings

from jaxvad import fsio
from jaxvad.errors import ConfigError, DataError, JaxvadError, OutputError

OVERRIDES_HELP = ("config overrides as section.key=value, e.g. train.steps=200 "
                  "model.features=[16,32] data.scene=conveyor")


def _progress(desc: str):
  from tqdm.auto import tqdm
  return lambda items: tqdm(items, desc=desc, unit="clip", dynamic_ncols=True)


def _progress_named(items, desc: str):
  return _progress(desc)(items)


# --------------------------------------------------------------------------- commands


def _check_number(flag: str, value, ok: bool, expected: str) -> None:
  """A command-line number checked like a config key: the message names the flag and the fix."""
  if value is not None and not ok:
    raise ConfigError(f"{flag} = {value!r} must be {expected}")


def cmd_synth(args) -> None:
  from jaxvad.data import synth
  _check_number("--seed", args.seed, args.seed >= 0, "an integer >= 0")
  scenes = synth.SCENES if args.scene == "all" else (args.scene,)
  out_dir = args.out or f"data/synth/{args.preset}"
  fsio.check_writable_dir(out_dir, what="benchmark folder (--out)")
  for scene in scenes:
    path = pathlib.Path(out_dir) / scene
    if synth.benchmark_is_complete(path) and not args.force:
      print(f"{path} is already rendered (pass --force to render it again)")
      continue
    size = tuple(args.size) if args.size else None
    out = synth.write_benchmark(out_dir, scene=scene, preset=args.preset, size=size,
                                seed=args.seed, progress=True)
    print(f"wrote {out}")


def _exit_now(code: int) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


@contextlib.contextmanager
def _exit_at_once_on_failure(distributed: bool):
  """A failed multi-process run exits as soon as its error is printed. jax's own exit handler
  (registered when jax is imported, so it runs after this one) waits at a shutdown barrier for
  every process: with a dead peer, until the heartbeat timeout, then it aborts with a C++
  stack trace. Skipping it is safe: the trainer has already settled its checkpoints, and the
  other processes see this one leave (their peer watch, `sharding.initialize_distributed`)
  instead of waiting for it."""
  try:
    yield
  except BaseException as e:
    if distributed:
      import jax
      from jaxvad import sharding
      if jax.distributed.is_initialized():   # not after a bad flag
        sharding.stop_peer_watch()   # this error is the one to report
        code = (130 if isinstance(e, KeyboardInterrupt)
                else 2 if isinstance(e, (JaxvadError, OSError)) else 1)
        atexit.register(_exit_now, code)
    raise


def _peer_failure(workdir, train):
  """What a process of a multi-process run does when another one died, the coordinator is
  gone or the processes did not all join: one error line, then exit 2 at once (the call the
  main thread waits in may never return)."""
  def report(what: str) -> None:
    last = train.latest_step(workdir)
    if last is not None:
      what += (f"; the last good checkpoint (step {last}) is kept in "
               f"{pathlib.Path(workdir).absolute() / fsio.RUN_CHECKPOINTS}: restart every "
               f"process with --resume")
    elif "every process" not in what:
      what += "; restart every process"
    # The new line first ends process 0's progress bar (no jax call here: this may run while
    # jax is still connecting).
    print(f"\njaxvad train: error: {what}", file=sys.stderr)
    _exit_now(2)
  return report


def cmd_train(args) -> None:
  from jaxvad import config as config_lib
  if args.list_configs:
    print("\n".join(config_lib.available_configs()))
    return
  # Multi-process: --distributed alone joins the cluster jax detects (SLURM, Open MPI, a TPU
  # pod); --coordinator/--num-processes/--process-id launch one by hand (and imply it).
  distributed = args.distributed or any(
      v is not None for v in (args.coordinator, args.num_processes, args.process_id))
  from jaxvad import train
  config = config_lib.load_config(args.config, args.overrides)
  workdir = pathlib.Path(args.workdir or f"runs/{config.name}")
  config_file = pathlib.Path(args.config)
  fsio.check_outputs({f"--workdir file {name}": path
                      for name, path in fsio.run_files(workdir).items()}, {
      "config file (--config)": config_file if config_file.is_file() else None,
      "dataset folder (data.root)": train.data_root(config.data)})
  before = train.latest_step(workdir) if args.resume else None
  with _exit_at_once_on_failure(distributed):
    if distributed:   # after the cheap checks, before anything touches a device
      from jaxvad import sharding
      sharding.initialize_distributed(coordinator=args.coordinator,
                                      num_processes=args.num_processes,
                                      process_id=args.process_id,
                                      on_failure=_peer_failure(workdir, train))
    if before is not None and before == config.train.steps:
      # Nothing to train; train() checks the config matches and rewrites nothing.
      train.train(config, workdir, resume=True, progress=False)
      print(f"{workdir} is already trained to step {before} = train.steps; nothing to do "
            f"(raise train.steps to train on)")
      return
    start = time.perf_counter()
    train.train(config, workdir, resume=args.resume)
  done = f" from step {before}" if before else ""
  print(f"trained {config.name}{done} to step {config.train.steps} in "
        f"{time.perf_counter() - start:.0f}s; checkpoints in {workdir}")


def _check_masker(path) -> None:
  """Fails fast (config only, no restore) unless --mask-from names a masking model's run."""
  if path is None:
    return
  from jaxvad import methods, train
  config = train.load_run_config(path)
  if methods.get(config.method).masker is None:
    raise ConfigError(f"--mask-from {path}: that run trained {config.method!r}, which makes no "
                      f"background masks (train one with `jaxvad train --config "
                      f"r3d_partition_demo`)")


def _load_masker(path):
  """(config, state) of a masking model's run for --mask-from, or None."""
  if path is None:
    return None
  from jaxvad import train
  _check_masker(path)
  return train.load_trained(path)


def _run_inputs(workdir, mask_from=None) -> dict:
  """The files of the run(s) a command reads, which no output may replace."""
  inputs = {f"run file ({name})": path for name, path in fsio.run_files(workdir).items()}
  if mask_from is not None:
    inputs.update({f"--mask-from run file ({name})": path
                   for name, path in fsio.run_files(mask_from).items()})
  return inputs


def _check_run_folder(*runs) -> None:
  for run in runs:
    if run is not None and not (pathlib.Path(run) / fsio.RUN_CONFIG).is_file():
      raise ConfigError(f"{run} is not a training run folder: {fsio.RUN_CONFIG} is missing "
                        f"(train one with `jaxvad train --workdir {run}`)")


def _check_file_out(out: pathlib.Path, example: str) -> None:
  if out.is_dir():
    raise OutputError(f"--out {out} is a folder; give a file name such as {out / example}")
  fsio.check_writable_dir(out.parent, what="folder of --out", must_exist=True)


def _live_calibration(config, scorer, *, smoothing: int):
  """The live calibration on the run's normal validation clips, or None (with the reason
  printed) when the run's dataset has none or is gone."""
  from jaxvad import live
  from jaxvad.data import datasets
  try:
    val = datasets.load_split(config.data, "val")
    return live.calibrate(scorer, val, threshold=config.score.threshold,
                          threshold_param=config.score.threshold_param, smoothing=smoothing,
                          progress=_progress_named)
  except DataError as e:
    print(f"no live calibration (the run's normal validation clips are needed): {e}",
          file=sys.stderr)
    return None


def _check_roi_flag(roi, config, workdir) -> None:
  if config.data.roi and roi:
    raise ConfigError(f"the run in {workdir} crops its frames to data.roi = "
                      f"{list(config.data.roi)} itself: drop --roi")


def _read_size(workdir, config) -> tuple[tuple[int, int], tuple[int, int, int]]:
  """(the size new footage is resized to, the (H, W, C) the model scores after data.roi)."""
  from jaxvad import train
  shape = train.run_frame_shape(workdir, config)
  return (train.run_read_size(workdir, config) if config.data.roi else shape[:2]), shape


def cmd_export(args) -> None:
  platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
  out = pathlib.Path(args.out)
  fsio.check_outputs({"--out": out}, _run_inputs(args.workdir))
  _check_file_out(out, "scorer.bin")
  _check_run_folder(args.workdir)
  from jaxvad import export, train
  from jaxvad.evaluation import evaluate
  config = train.load_run_config(args.workdir)
  evaluate.detector_spec(config, run=args.workdir)
  bad = [p for p in platforms if p not in export.PLATFORMS]
  if bad or not platforms:
    raise ConfigError(f"--platforms {args.platforms}: a comma-separated list of "
                      f"{', '.join(export.PLATFORMS)}")
  read_size, shape = _read_size(args.workdir, config)
  preprocessing = {"resize_to": list(read_size),
                   "resize": "cv2.resize, INTER_AREA when shrinking, INTER_LINEAR otherwise",
                   "crop_after_resize": list(config.data.roi) if config.data.roi else None}
  config, state = train.load_trained(args.workdir)
  calibration = None if args.no_calibration else _live_calibration(
      config, evaluate.Scorer(config, state), smoothing=config.score.smoothing)
  start = time.perf_counter()
  blob = export.export_scorer(config, state, frame_shape=shape, platforms=platforms,
                              preprocessing=preprocessing, live=calibration,
                              source={"workdir": str(args.workdir), "step": int(state.step)})
  fsio.write_atomic(out, blob)
  print(f"exported {config.method} ({config.name}, step {int(state.step)}) for "
        f"{', '.join(platforms)} -> {out} ({fsio.human_bytes(len(blob))}, "
        f"{time.perf_counter() - start:.1f}s); load it with jaxvad.load_scorer or the one file "
        f"jaxvad/exported.py (jax + numpy only)")


def cmd_score(args) -> None:
  if (args.input is None) == (args.stream is None):
    raise ConfigError("give a video file or frame folder to score, or --stream SOURCE, "
                      "not both")
  if args.stream is not None:
    return _score_stream(args)
  from jaxvad.data import video
  # Everything that can be checked is checked first: before importing jax and scikit-learn
  # (seconds on a small machine) the arguments, the paths and the input's first frame; then,
  # before the restore, the run's config and every frame.
  _check_number("--smoothing", args.smoothing, args.smoothing is None or args.smoothing >= 1,
                "an integer >= 1 (the moving-average window in frames; 1 = no smoothing)")
  if args.roi:
    _check_number("--roi", args.roi, args.roi[0] >= 0 and args.roi[1] >= 0
                  and args.roi[2] > 0 and args.roi[3] > 0,
                  "X Y W H with X, Y >= 0 and W, H > 0 (pixels of the stored frames)")
  out = pathlib.Path(args.out or pathlib.Path(args.input).with_suffix("").name + "_scores.csv")
  fsio.check_outputs({"--out": out}, {"input video or frame folder": args.input,
                                      **_run_inputs(args.workdir, args.mask_from)})
  _check_file_out(out, "scores.csv")
  _check_run_folder(args.workdir, args.mask_from)
  video.check_readable(args.input)

  import numpy as np
  from jaxvad import train
  from jaxvad.data.clips import Clip, crop_clip
  from jaxvad.evaluation import evaluate, metrics
  config = train.load_run_config(args.workdir)
  spec = evaluate.detector_spec(config, run=args.workdir)
  _check_masker(args.mask_from)
  h, w, c = train.run_frame_shape(args.workdir, config)
  _check_roi_flag(args.roi, config, args.workdir)
  if config.data.roi:   # as in training: resized to the read size, then cropped
    frames = video.read_frames(args.input, size=train.run_read_size(args.workdir, config),
                               grayscale=c == 1)
    frames = crop_clip(Clip(name="", frames=frames, labels=None, distractors=None,
                            workspace_mask=None, meta={}), config.data.roi).frames
  else:
    frames = video.read_frames(args.input, size=(h, w), grayscale=c == 1,
                               roi=tuple(args.roi) if args.roi else None)
  if len(frames) < config.data.window:
    raise JaxvadError(f"{args.input} has {len(frames)} frames; the model scores windows of "
                      f"{config.data.window} frames, so it needs at least that many")
  _, state = train.load_trained(args.workdir)
  masker = _load_masker(args.mask_from)
  # A bare video's clip: its name finds per-clip side files (e.g. f2lm's .npz class maps).
  clip = Clip(name=pathlib.Path(args.input).stem, frames=frames, labels=None, distractors=None,
              workspace_mask=None, meta={})
  raw = evaluate.Scorer(config, state, masker=masker).score(frames, clip)
  smoothing = args.smoothing if args.smoothing is not None else config.score.smoothing
  scored = np.isfinite(raw)   # a frame predictor leaves the first window - 1 frames unscored
  oriented = raw if spec.higher_is_anomalous else -raw
  score = np.full_like(raw, np.nan)
  score[scored] = metrics.moving_average(oriented[scored], window=smoothing)
  rows = [f"frame,{spec.name},score"] + [f"{t},{p:.4f},{s:.4f}"
                                          for t, (p, s) in enumerate(zip(raw, score))]
  fsio.write_atomic(out, "\n".join(rows) + "\n")
  sign = "" if spec.higher_is_anomalous else "-"
  masked = f", inside the masks of {args.mask_from}" if masker else ""
  print(f"scored {len(frames)} frames of {args.input} -> {out} "
        f"(score = {sign}{spec.name}: {spec.description}{masked}; moving average {smoothing}"
        f"{'' if scored.all() else f'; the first {int((~scored).sum())} frames are unscored'})")


def _score_stream(args) -> None:
  """`jaxvad score --stream`: live scoring (`jaxvad.live`)."""
  if args.mask_from:
    raise ConfigError("--stream does not score inside masks yet: drop --mask-from")
  _check_number("--buffer", args.buffer, args.buffer >= 1, "an integer >= 1 (frames)")
  _check_number("--idle-timeout", args.idle_timeout, args.idle_timeout > 0, "seconds > 0")
  out = pathlib.Path(args.out) if args.out else None
  if out is not None:
    fsio.check_outputs({"--out": out}, {"--stream source": args.stream,
                                        **_run_inputs(args.workdir)})
    _check_file_out(out, "scores.jsonl")
  _check_run_folder(args.workdir)
  from jaxvad import live, train
  from jaxvad.data import video
  from jaxvad.evaluation import evaluate
  config = train.load_run_config(args.workdir)
  evaluate.detector_spec(config, run=args.workdir)
  _check_roi_flag(args.roi, config, args.workdir)
  read_size, shape = _read_size(args.workdir, config)
  frames = live.capture_frames(args.stream, pace=args.pace, follow=args.follow,
                               idle_timeout=args.idle_timeout)
  prep = video.FramePrep(size=read_size, roi=tuple(args.roi) if args.roi else None,
                         grayscale=shape[2] == 1, source=args.stream)

  def prepare(raw):
    frame = prep(raw, f"frame of {args.stream}")
    if config.data.roi:
      x, y, w, h = config.data.roi
      frame = frame[y:y + h, x:x + w]
    return frame

  config, state = train.load_trained(args.workdir)
  scorer = evaluate.Scorer(config, state)
  scorer.resolve(shape[:2])
  smoothing = args.smoothing if args.smoothing is not None else config.score.smoothing
  calibration = None
  if args.threshold is None or scorer.spec.combined:
    calibration = _live_calibration(config, scorer, smoothing=smoothing)
  scorer_live = live.LiveScorer(scorer, calibration=calibration, threshold=args.threshold,
                                smoothing=smoothing, batch_size=config.score.batch_size)
  scorer_live.warm_up(shape)
  if scorer_live.threshold is None:
    print("no threshold: frames are scored without alarms (give --threshold)", file=sys.stderr)
  else:
    print(f"alarm at anomaly score >= {scorer_live.threshold:.6g} (trailing mean of "
          f"{smoothing} frames)", file=sys.stderr)
  sink = open(out, "w", buffering=1) if out else sys.stdout   # a live log: readable as it grows
  try:
    result = live.run(scorer_live, frames, prepare, lambda line: print(line, file=sink),
                      buffer=args.buffer)
  finally:
    if out:
      sink.close()
  lat = (f"latency p50 {result['latency_ms_p50']:.1f} ms, p95 {result['latency_ms_p95']:.1f} ms"
         if result["latency_ms_p50"] is not None else "no frame scored")
  print(f"{'interrupted' if result['interrupted'] else 'stream ended'}: {result['frames']} frames "
        f"({result['scored']} scored, {result['unscored']} unscored, {result['dropped_buffer']} "
        f"dropped behind, {result['dropped_source']} skipped by the source), "
        f"{result['alarms']} alarms, {result['frames_per_s']:.1f} frames/s, {lat}",
        file=sys.stderr)
  if result["source_error"]:
    raise DataError(f"--stream {args.stream}: {result['source_error']}")


REPORT_FILES = ("metrics.json", "scores.csv", "per_video.csv", "report.html", "overview.png",
                "roc.png", "worst_frames.png", "plots")


def _check_report_dir(report_dir, inputs: dict) -> None:
  """Before scoring: the report folder replaces no input and can be written (with room)."""
  report_dir = pathlib.Path(report_dir)
  fsio.check_outputs({f"--report file {name}": report_dir / name for name in REPORT_FILES},
                     inputs)
  fsio.check_writable_dir(report_dir, what="report folder", need_bytes=2 * 2**20)


def _label_record(clips) -> dict:
  """Which label files the metrics were computed against (for metrics.json and the report)."""
  sources = sorted({str(c.meta["label_source"]) for c in clips
                    if c.meta and c.meta.get("label_source")})
  record = {"files": sources if len(sources) <= 4 else
            f"{len(sources)} per-clip files, e.g. {sources[0]}"}
  agreeing = sorted({str(p) for c in clips
                     for p in (c.meta or {}).get("label_files_agreeing", [])})
  if agreeing:
    record["also_found_and_agreeing"] = agreeing
  return record


def _evaluate_to_report(config, load_state, report_dir, *, split: str,
                        extra: dict | None = None, load_masker=lambda: None):
  """Loads the split (labels checked first), then the state(s), scores and writes the report."""
  from jaxvad.data import datasets
  from jaxvad.evaluation import evaluate, report
  clips = datasets.load_split(config.data, split)
  val_clips = []
  if config.score.threshold != "none" and split != "val":
    try:
      val_clips = datasets.load_split(config.data, "val")
    except DataError as e:  # public layouts mostly have no validation split
      print(f"no validation split, so no threshold is calibrated: {e}")
  result = evaluate.evaluate_clips(config, load_state(), clips, val_clips=val_clips,
                                   masker=load_masker(), progress=_progress_named)
  extra = {"config": config.to_dict(), "split": split, "labels": _label_record(clips),
           **(extra or {})}
  out = report.write_report(report_dir, result, extra=extra)
  print(f"protocol {result['protocol']['name']!r}: {result['protocol']['description']}")
  print(f"score: {result['protocol']['score']}"
        + (f", inside the masks of a {result['mask']['method']} run" if result["mask"] else ""))
  if result["threshold"]:
    t = result["threshold"]
    print(f"threshold {t['value']:.4g} ({t['method']} {t['params']}, calibrated on "
          f"{t['stats'].get('val_clips')} normal validation clips)")
  print(report.format_table(result["metrics"]))
  print(f"report: {out / 'report.html'} (and metrics.json, per_video.csv, scores.csv, PNGs)")
  return result


def cmd_eval(args) -> None:
  report_dir = pathlib.Path(args.report or pathlib.Path(args.workdir) / (
      f"report_{args.split}" + ("_masked" if args.mask_from else "")))
  from jaxvad import config as config_lib
  from jaxvad import train
  from jaxvad.evaluation import evaluate
  config = train.load_run_config(args.workdir)
  evaluate.detector_spec(config, run=args.workdir)   # a masking model: say what to run instead
  _check_masker(args.mask_from)
  if args.overrides:
    # Only how scores are evaluated may change; the model and its data are the run's.
    bad = [o for o in args.overrides if not o.strip().startswith("score.")]
    if bad:
      raise ConfigError(f"eval accepts only score.* overrides (protocol, threshold, smoothing), "
                        f"got {bad}; retrain to change anything else")
    raw = config.to_dict()
    for override in args.overrides:
      config_lib.apply_override(raw, override)
    config = config_lib.config_from_dict(raw, source=f"{args.workdir} + overrides")
  _check_report_dir(report_dir, {**_run_inputs(args.workdir, args.mask_from),
                                  "dataset folder (data.root)": train.data_root(config.data)})
  extra = {"workdir": str(args.workdir)}
  if args.mask_from:
    extra["mask_from"] = str(args.mask_from)
  _evaluate_to_report(config, lambda: train.load_trained(args.workdir)[1], report_dir,
                      split=args.split, extra=extra,
                      load_masker=lambda: _load_masker(args.mask_from))


def cmd_demo(args) -> None:
  from jaxvad import config as config_lib
  from jaxvad import train
  from jaxvad.data import datasets
  timings = {}
  config = config_lib.load_config(args.config, args.overrides)
  workdir = pathlib.Path(args.workdir)
  # Minutes of rendering and training must not end in a report that cannot be written.
  _check_report_dir(args.out, {**_run_inputs(workdir),
                               "dataset folder (data.root)": train.data_root(config.data)})
  t0 = time.perf_counter()
  datasets.ensure_benchmark(config.data)
  timings["render_s"] = round(time.perf_counter() - t0, 1)
  t0 = time.perf_counter()
  # resume=True: a finished demo run is reused, an interrupted one continues.
  train.train(config, workdir, resume=True)
  timings["train_s"] = round(time.perf_counter() - t0, 1)
  t0 = time.perf_counter()
  config = train.load_run_config(workdir)
  _evaluate_to_report(config, lambda: train.load_trained(workdir)[1], args.out, split="test",
                      extra={"timings": timings, "workdir": str(workdir)})
  timings["eval_s"] = round(time.perf_counter() - t0, 1)
  print(f"timings: {timings}")


def cmd_reproduce(args) -> None:
  workdir = pathlib.Path(args.workdir or f"runs/{args.paper}_{args.preset}")
  out = pathlib.Path(args.out or f"reports/{args.paper}_{args.preset}")
  fsio.check_writable_dir(workdir, what="runs folder (--workdir)")
  fsio.check_writable_dir(out, what="tables folder (--out)")
  start = time.perf_counter()
  results = {"preset": args.preset, "scenes": {}}
  if args.paper == "paper000":
    from jaxvad.reproduce import paper000 as paper
    if (args.set or args.variants or args.augments or args.finetune or args.tasks
        or args.ablations is not None):
      raise ConfigError("paper000 takes --ae / --masker overrides, not --set / --variants / "
                        "--augments / --finetune (paper001's) or --ablations (paper004's)")
    for scene in args.scenes:
      results["scenes"][scene] = paper.run_scene(
          scene, preset=args.preset, workdir=workdir, ae_overrides=args.ae,
          masker_overrides=args.masker, detector=args.detector, progress=_progress_named)
    files = "tables.md, tables.json, <scene>/masks.png, scores.png"
  elif args.paper == "paper002":
    from jaxvad.reproduce import paper002 as paper
    if (args.ae or args.masker or args.detector or args.variants or args.augments
        or args.finetune or args.ablations is not None or args.preset != "tiny"):
      raise ConfigError("paper002 takes cutpaste_demo overrides with --set KEY=VALUE and "
                        "--tasks, at --preset tiny (--ae / --masker / --detector are "
                        "paper000's, --variants / --augments / --finetune paper001's, "
                        "--ablations paper004's)")
    for scene in args.scenes:
      results["scenes"][scene] = paper.run_scene(
          scene, workdir=workdir, overrides=args.set, tasks=args.tasks or paper.TASKS,
          progress=_progress_named)
    files = "tables.md, tables.json"
  elif args.paper == "paper004":
    from jaxvad.reproduce import paper004 as paper
    if (args.ae or args.masker or args.detector or args.variants or args.augments
        or args.finetune or args.tasks):
      raise ConfigError("paper004 takes F2LM overrides with --set KEY=VALUE and --ablations "
                        "(--ae / --masker / --detector are paper000's, --variants / --augments "
                        "/ --finetune paper001's)")
    for scene in args.scenes:
      results["scenes"][scene] = paper.run_scene(
          scene, preset=args.preset, workdir=workdir, overrides=args.set,
          ablations=paper.ABLATIONS if args.ablations is None else args.ablations,
          progress=_progress_named)
    files = "tables.md, tables.json"
  else:
    from jaxvad.reproduce import paper001 as paper
    if args.ae or args.masker or args.detector or args.tasks or args.ablations is not None:
      raise ConfigError("paper001 has one model: give its overrides with --set KEY=VALUE "
                        "(--ae / --masker / --detector are paper000's, --ablations paper004's)")
    for scene in args.scenes:
      results["scenes"][scene] = paper.run_scene(
          scene, preset=args.preset, workdir=workdir,
          overrides=[*args.set, *(["model.finetune=true"] if args.finetune else [])],
          variants=args.variants or paper.VARIANTS, augments=args.augments or paper.AUGMENTS,
          progress=_progress_named)
    files = "tables.md, tables.json, <scene>/<variant>_<augment>/report.html"
  paper.write_results(out, results)
  print(paper.markdown_tables(results))
  print(f"tables and figures: {out}/ ({files}); {time.perf_counter() - start:.0f} s")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxvad",
      description="Industrial video anomaly detection in JAX: learn normal operation of a "
                  "repetitive machine process from normal footage, flag the frames where it "
                  "goes wrong.",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=textwrap.dedent("""\
          quick start:
            jaxvad demo                                  render, train, evaluate, report
            jaxvad synth --scene all --preset small      render the synthetic benchmark
            jaxvad train --config demo train.steps=300   train from a config (+ overrides)
            jaxvad eval --workdir runs/demo              score the test split, write a report
            jaxvad score --workdir runs/demo clip.mp4    per-frame scores of any video/folder
            jaxvad reproduce paper000 --preset tiny      paper 000's tables: masks vs false alarms
            jaxvad reproduce paper001 --preset tiny      paper 001's variants x augmentations
          """))
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

  p = sub.add_parser("synth", help="render the synthetic industrial benchmark",
                     description="Render the deterministic synthetic benchmark (robot pick-and-"
                                 "place or conveyor) with anomalies, distractors, per-frame labels "
                                 "and ideal workspace masks. Same seed -> byte-identical files.")
  p.add_argument("--scene", default="pickplace", choices=["pickplace", "conveyor", "all"])
  p.add_argument("--preset", default="tiny", choices=["tiny", "medium", "small", "paper"],
                 help="size of the benchmark: tiny renders in seconds (default: tiny)")
  p.add_argument("--out", help="output folder; the benchmark goes to <out>/<scene> "
                               "(default: data/synth/<preset>, where configs look)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame size override")
  p.add_argument("--force", action="store_true", help="render again even if already complete")
  p.set_defaults(func=cmd_synth)

  p = sub.add_parser("train", help="train a method from a config",
                     description="Train the method of a config; checkpoints go to --workdir and "
                                 "--resume continues a killed run exactly where it stopped.")
  p.add_argument("--config", default="demo", help="shipped config name or .toml path (default: demo)")
  p.add_argument("--workdir", help="run folder (default: runs/<config name>)")
  p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
  p.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
  p.add_argument("--distributed", action="store_true",
                 help="multi-host: join the cluster jax finds in the environment (SLURM, Open "
                      "MPI's mpirun, a Cloud TPU pod) before training; every process runs the "
                      "same command with the same --workdir (a shared folder)")
  p.add_argument("--coordinator", metavar="HOST:PORT",
                 help="multi-host by hand (implies --distributed): address of process 0 and a "
                      "free port there, the same for every process; with --num-processes and "
                      "--process-id")
  p.add_argument("--num-processes", type=int, metavar="N",
                 help="multi-host by hand: number of processes (one per host)")
  p.add_argument("--process-id", type=int, metavar="I",
                 help="multi-host by hand: this process, 0..N-1 (0 serves the coordinator)")
  p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("score", help="score a video file or frame folder with a trained run",
                     description="Write the per-frame raw score the method declares and the "
                                 "anomaly score (CSV) of a new video "
                                 "file or frame folder, using a trained run's latest checkpoint. "
                                 "Frames are resized to the run's frame size.")
  p.add_argument("input", nargs="?", help="video file (.mp4/.avi/...) or folder of frames")
  p.add_argument("--workdir", required=True, help="a run folder written by `jaxvad train`")
  p.add_argument("--out", help="CSV path (default: <input name>_scores.csv); with --stream: "
                               "the JSON-lines log (default: stdout)")
  p.add_argument("--stream", metavar="SOURCE",
                 help="score live instead: a camera index (0), a URL OpenCV opens "
                      "(rtsp://..., http://...) or a video file; one JSON line per frame "
                      "{index, timestamp, raw, score, alarm, latency_ms}; Ctrl-C stops cleanly")
  p.add_argument("--threshold", type=float,
                 help="--stream: alarm when the (trailing-mean) anomaly score >= this "
                      "(default: calibrated on the run's normal validation clips)")
  p.add_argument("--pace", action="store_true",
                 help="--stream of a file: deliver frames at the file's frame rate (a replay)")
  p.add_argument("--follow", action="store_true",
                 help="--stream of a file still being written: wait for new frames")
  p.add_argument("--idle-timeout", type=float, default=5.0,
                 help="--stream: seconds without a frame after which a camera, URL or "
                      "followed file has ended (default: 5)")
  p.add_argument("--buffer", type=int, default=64,
                 help="--stream: ring-buffer size in frames; when scoring falls behind the "
                      "oldest are dropped, each reported (default: 64)")
  p.add_argument("--roi", type=int, nargs=4, metavar=("X", "Y", "W", "H"),
                 help="crop this region before resizing")
  p.add_argument("--smoothing", type=int, help="moving-average window (default: the run's)")
  p.add_argument("--mask-from", metavar="MASKER_RUN",
                 help="score inside the background masks of a masking model's run (paper 000: "
                      "an r3d_partition run)")
  p.set_defaults(func=cmd_score)

  p = sub.add_parser("export", help="export a trained detector's scorer (jax.export)",
                     description="Write the run's scoring function as serialized StableHLO "
                                 "(jax.export, batch dimension symbolic, weights inside) with its "
                                 "input contract in the file's metadata. Load it with "
                                 "jaxvad.load_scorer(path), or with the single file "
                                 "jaxvad/exported.py where only jax and numpy are installed.")
  p.add_argument("--workdir", required=True, help="a run folder written by `jaxvad train`")
  p.add_argument("--out", required=True, help="the scorer file to write (e.g. scorer.bin)")
  p.add_argument("--platforms", default="cpu",
                 help="comma-separated platforms the scorer runs on: cpu, cuda, rocm, tpu "
                      "(default: cpu; no device of that kind is needed to export)")
  p.add_argument("--no-calibration", action="store_true",
                 help="skip the live threshold calibrated on the run's validation clips")
  p.set_defaults(func=cmd_export)

  p = sub.add_parser("eval", help="evaluate a trained run on a labelled split",
                     description="Score every clip of a labelled split under a named protocol "
                                 "and write report.html with frame AUROC/AUPR/EER, event-level "
                                 "(case-by-case) ROC, confusion counts at a threshold calibrated "
                                 "on the normal validation split, score curves, ROC curves and "
                                 "error heat maps of the worst frames, plus metrics.json and CSVs.")
  p.add_argument("--workdir", required=True, help="a run folder written by `jaxvad train`")
  p.add_argument("--split", default="test", help="split to evaluate (default: test)")
  p.add_argument("--report", help="report folder (default: <workdir>/report_<split>, "
                                  "+ _masked with --mask-from)")
  p.add_argument("--mask-from", metavar="MASKER_RUN",
                 help="score inside the background masks of a masking model's run (paper 000: "
                      "an r3d_partition run trained on the same frames); recorded in "
                      "metrics.json")
  p.add_argument("overrides", nargs="*", metavar="score.KEY=VALUE",
                 help="evaluation settings, e.g. score.protocol=ano_pred (jaxvad | ano_pred | "
                      "macro), score.threshold=target_false_alarm_rate score.threshold_param=0.01 "
                      "(mean_k_std | margin_from_worst | target_false_alarm_rate | none), "
                      "score.smoothing=10")
  p.set_defaults(func=cmd_eval)

  p = sub.add_parser("demo", help="render, train and evaluate end to end (minutes on a CPU)",
                     description="Render the tiny synthetic benchmark (cached), train the "
                                 "demo's detector (paper 001's predictive autoencoder, chosen on "
                                 "a held-out benchmark: see configs/demo.toml), score the test "
                                 "clips by their worst SSIM patch and write a report with "
                                 "metrics.json, scores.csv and score-curve plots.")
  p.add_argument("--config", default="demo", help="config (default: demo)")
  p.add_argument("--workdir", default="runs/demo", help="run folder (default: runs/demo)")
  p.add_argument("--out", default="reports/demo", help="report folder (default: reports/demo)")
  p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
  p.set_defaults(func=cmd_demo)

  p = sub.add_parser("reproduce", help="reproduce a paper's experiment tables",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="paper000: train the ConvLSTM autoencoder and the R3D-18 "
                                 "background masking model per scene, then print and save the "
                                 "analogues of Tables 4.2-4.7 (no mask / ideal mask / learned "
                                 "mask; TP, FN, FP, AUROC, AUPR; ablations of layers, threshold "
                                 "and window). paper001: train the predictive autoencoder's four "
                                 "variants x three augmentations per scene and tabulate frame and "
                                 "case AUC by clip group (§4.1-4.2). paper004: train FFP, the "
                                 "F2LM generator + Destroyer and the generator's ablations per "
                                 "scene; frame AUROC per clip group and anomaly type (Fig. 8, "
                                 "Tables 3-5). paper002: train the CutPaste / CropLiq / 3-way "
                                 "classifiers per scene; frame AUROC by GDE and softmax score, "
                                 "Grad-CAM pixel AUROC and PRO, box and softmax thresholds chosen "
                                 "on a second benchmark. Thresholds are calibrated on validation data only; "
                                 "finished runs are reused.",
                     epilog=textwrap.dedent("""\
                         examples:
                           jaxvad reproduce paper000 --preset tiny          minutes on a CPU
                           jaxvad reproduce paper000 --preset small         a GPU job
                           jaxvad reproduce paper000 --ae train.steps=100 --masker train.steps=100
                           jaxvad reproduce paper001 --preset tiny --scenes pickplace
                           jaxvad reproduce paper001 --variants base skiptwice --augments none lighting
                           jaxvad reproduce paper001 --preset small --set model.pretrained=resnet18.pth
                           jaxvad reproduce paper002 --scenes pickplace     about half an hour on a CPU
                           jaxvad reproduce paper002 --tasks both --set model.localize=patch_gde
                           jaxvad reproduce paper004 --scenes pickplace     about an hour on a CPU
                           jaxvad reproduce paper004 --ablations no_motion no_labels --set model.motion=farneback
                         """))
  p.add_argument("paper", choices=["paper000", "paper001", "paper002", "paper004"])
  p.add_argument("--preset", default="tiny", choices=["tiny", "medium", "small"],
                 help="tiny: 64x64 demo-sized models (minutes); medium: 96x96, 48 test clips "
                      "(paper000: about an hour on a 2-core CPU); small: 128x128, sized for a "
                      "GPU (default: tiny)")
  p.add_argument("--scenes", nargs="+", default=["pickplace", "conveyor"],
                 choices=["pickplace", "conveyor"])
  p.add_argument("--workdir", help="runs go to <workdir>/<scene>/... (default: "
                                   "runs/<paper>_<preset>); finished runs are reused")
  p.add_argument("--out", help="tables and figures (default: reports/<paper>_<preset>)")
  p.add_argument("--ae", action="append", default=[], metavar="KEY=VALUE",
                 help="paper000: override of the autoencoder config (repeatable)")
  p.add_argument("--masker", action="append", default=[], metavar="KEY=VALUE",
                 help="paper000: override of the masking-model config (repeatable)")
  p.add_argument("--detector", metavar="CONFIG",
                 help="paper000: config of the detector whose scores are masked (default: the "
                      "preset's ConvLSTM autoencoder, the paper's); e.g. `demo` for the "
                      "predictive autoencoder scored by its worst SSIM patch")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="paper001: override of the predictive autoencoder config; paper002: of "
                      "cutpaste_demo; paper004: of the F2LM config (repeatable)")
  p.add_argument("--tasks", nargs="+",
                 choices=["cutpaste", "cropliq", "both", "cropliq_strong", "both_strong"],
                 help="paper002: self-supervised tasks to train (default: all five)")
  p.add_argument("--ablations", nargs="*", metavar="NAME",
                 choices=["no_motion", "no_labels", "no_se", "add", "no_triplet",
                          "code_distance"],
                 help="paper004: generator ablations to train (default: all six; none: give "
                      "the flag alone)")
  p.add_argument("--variants", nargs="+", choices=["base", "dropout", "skiptwice", "attention"],
                 help="paper001: variants to run (default: all four)")
  p.add_argument("--augments", nargs="+", choices=["none", "general", "lighting"],
                 help="paper001: augmentations to run (default: all three)")
  p.add_argument("--finetune", action="store_true",
                 help="paper001: train the ResNet-18 encoder too (default: frozen, as the paper; "
                      "= --set model.finetune=true)")
  p.set_defaults(func=cmd_reproduce)
  return parser


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _quiet_unraisable(unraisable) -> None:
  """Drops the exceptions TensorStore's callbacks raise into an event loop orbax already closed
  after a failed restore or save (printed from other threads, seconds later, as bare
  tracebacks); the failure itself was reported in one line. Anything else is printed."""
  e = unraisable.exc_value
  if ((isinstance(e, RuntimeError) and str(e) == "Event loop is closed")
      or (isinstance(e, ImportError) and sys.is_finalizing())):
    return
  sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
  """Runs one command. Exit codes: 0 done, 2 a problem with the input or the disk (one line on
  stderr naming the file or key and the fix, never a traceback), 130 interrupted."""
  args = build_parser().parse_args(argv)
  command = args.command
  sys.unraisablehook = _quiet_unraisable

  def show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"jaxvad {command}: warning: {_one_line(message)}", file=sys.stderr)

  try:
    with warnings.catch_warnings():
      warnings.showwarning = show_warning
      args.func(args)
  except JaxvadError as e:
    print(f"jaxvad {command}: error: {_one_line(e)}", file=sys.stderr)
    return 2
  except OSError as e:
    # A file-system fault the command did not foresee: still one line naming the path.
    print(f"jaxvad {command}: error: {_one_line(fsio.os_error_message(e, action='access'))}",
          file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"jaxvad {command}: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())

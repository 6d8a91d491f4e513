"""`jaxvad` command line: synth, train, score, eval, demo."""

from __future__ import annotations

import argparse
import pathlib
import sys
import textwrap
import time

from jaxvad.errors import ConfigError, JaxvadError

OVERRIDES_HELP = ("config overrides as section.key=value, e.g. train.steps=200 "
                  "model.features=[16,32] data.scene=conveyor")


def _progress(desc: str):
  from tqdm.auto import tqdm
  return lambda items: tqdm(items, desc=desc, unit="clip", dynamic_ncols=True)


def _progress_named(items, desc: str):
  return _progress(desc)(items)


# --------------------------------------------------------------------------- commands


def cmd_synth(args) -> None:
  from jaxvad.data import synth
  scenes = synth.SCENES if args.scene == "all" else (args.scene,)
  out_dir = args.out or f"data/synth/{args.preset}"
  for scene in scenes:
    path = pathlib.Path(out_dir) / scene
    if synth.benchmark_is_complete(path) and not args.force:
      print(f"{path} is already rendered (pass --force to render it again)")
      continue
    size = tuple(args.size) if args.size else None
    out = synth.write_benchmark(out_dir, scene=scene, preset=args.preset, size=size,
                                seed=args.seed, progress=True)
    print(f"wrote {out}")


def cmd_train(args) -> None:
  from jaxvad import config as config_lib
  if args.list_configs:
    print("\n".join(config_lib.available_configs()))
    return
  if args.distributed:
    import jax
    jax.distributed.initialize()  # reads the cluster from the environment (TPU, SLURM, ...)
  from jaxvad import train
  config = config_lib.load_config(args.config, args.overrides)
  workdir = pathlib.Path(args.workdir or f"runs/{config.name}")
  start = time.perf_counter()
  train.train(config, workdir, resume=args.resume)
  print(f"trained {config.name} in {time.perf_counter() - start:.0f}s; checkpoints in {workdir}")


def _load_masker(path):
  """(config, state) of a masking model's run for --mask-from, or None."""
  if path is None:
    return None
  from jaxvad import methods, train
  config, state = train.load_trained(path)
  if methods.get(config.method).masker is None:
    raise ConfigError(f"--mask-from {path}: that run trained {config.method!r}, which makes no "
                      f"background masks (train one with `jaxvad train --config "
                      f"r3d_partition_demo`)")
  return config, state


def cmd_score(args) -> None:
  import numpy as np
  from jaxvad import train
  from jaxvad.data import video
  from jaxvad.evaluation import evaluate, metrics
  if args.smoothing is not None and args.smoothing < 1:
    raise ConfigError(f"--smoothing {args.smoothing}: the moving-average window must be >= 1 "
                      "frames (1 = no smoothing)")
  config, state = train.load_trained(args.workdir)
  spec = evaluate.detector_spec(config, run=args.workdir)
  masker = _load_masker(args.mask_from)
  h, w, c = train.run_frame_shape(args.workdir, config)
  frames = video.read_frames(args.input, size=(h, w), grayscale=c == 1,
                             roi=tuple(args.roi) if args.roi else None)
  if len(frames) < config.data.window:
    raise JaxvadError(f"{args.input} has {len(frames)} frames; the model scores windows of "
                      f"{config.data.window} frames, so it needs at least that many")
  raw = evaluate.Scorer(config, state, masker=masker).score(frames)
  smoothing = args.smoothing or config.score.smoothing
  scored = np.isfinite(raw)   # a frame predictor leaves the first window - 1 frames unscored
  oriented = raw if spec.higher_is_anomalous else -raw
  score = np.full_like(raw, np.nan)
  score[scored] = metrics.moving_average(oriented[scored], window=smoothing)
  out = pathlib.Path(args.out or pathlib.Path(args.input).with_suffix("").name + "_scores.csv")
  rows = [f"frame,{spec.name},score"] + [f"{t},{p:.4f},{s:.4f}"
                                          for t, (p, s) in enumerate(zip(raw, score))]
  tmp = out.with_name(out.name + ".tmp")
  tmp.write_text("\n".join(rows) + "\n")
  tmp.replace(out)
  sign = "" if spec.higher_is_anomalous else "-"
  masked = f", inside the masks of {args.mask_from}" if masker else ""
  print(f"scored {len(frames)} frames of {args.input} -> {out} "
        f"(score = {sign}{spec.name}: {spec.description}{masked}; moving average {smoothing}"
        f"{'' if scored.all() else f'; the first {int((~scored).sum())} frames are unscored'})")


def _evaluate_to_report(config, state, report_dir, *, split: str, extra: dict | None = None,
                        masker=None):
  from jaxvad.data import datasets
  from jaxvad.errors import DataError
  from jaxvad.evaluation import evaluate, report
  clips = datasets.load_split(config.data, split)
  val_clips = []
  if config.score.threshold != "none" and split != "val":
    try:
      val_clips = datasets.load_split(config.data, "val")
    except DataError as e:  # public layouts mostly have no validation split
      print(f"no validation split, so no threshold is calibrated: {e}")
  result = evaluate.evaluate_clips(config, state, clips, val_clips=val_clips, masker=masker,
                                   progress=_progress_named)
  extra = {"config": config.to_dict(), "split": split, **(extra or {})}
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
  from jaxvad import config as config_lib
  from jaxvad import train
  from jaxvad.evaluation import evaluate
  config, state = train.load_trained(args.workdir)
  evaluate.detector_spec(config, run=args.workdir)   # a masking model: say what to run instead
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
  report_dir = args.report or pathlib.Path(args.workdir) / (
      f"report_{args.split}" + ("_masked" if args.mask_from else ""))
  extra = {"workdir": str(args.workdir)}
  if args.mask_from:
    extra["mask_from"] = str(args.mask_from)
  _evaluate_to_report(config, state, report_dir, split=args.split, extra=extra,
                      masker=_load_masker(args.mask_from))


def cmd_demo(args) -> None:
  from jaxvad import config as config_lib
  from jaxvad import train
  from jaxvad.data import datasets
  timings = {}
  config = config_lib.load_config(args.config, args.overrides)
  t0 = time.perf_counter()
  datasets.ensure_benchmark(config.data)
  timings["render_s"] = round(time.perf_counter() - t0, 1)
  workdir = pathlib.Path(args.workdir)
  t0 = time.perf_counter()
  # resume=True: a finished demo run is reused, an interrupted one continues.
  state = train.train(config, workdir, resume=True)
  timings["train_s"] = round(time.perf_counter() - t0, 1)
  t0 = time.perf_counter()
  config, state = train.load_trained(workdir)
  _evaluate_to_report(config, state, args.out, split="test",
                      extra={"timings": timings, "workdir": str(workdir)})
  timings["eval_s"] = round(time.perf_counter() - t0, 1)
  print(f"timings: {timings}")


def cmd_reproduce(args) -> None:
  workdir = pathlib.Path(args.workdir or f"runs/{args.paper}_{args.preset}")
  out = pathlib.Path(args.out or f"reports/{args.paper}_{args.preset}")
  start = time.perf_counter()
  results = {"preset": args.preset, "scenes": {}}
  if args.paper == "paper000":
    from jaxvad.reproduce import paper000 as paper
    if args.set or args.variants or args.augments or args.finetune:
      raise ConfigError("paper000 takes --ae / --masker overrides, not --set / --variants / "
                        "--augments / --finetune (those are paper001's)")
    for scene in args.scenes:
      results["scenes"][scene] = paper.run_scene(
          scene, preset=args.preset, workdir=workdir, ae_overrides=args.ae,
          masker_overrides=args.masker, progress=_progress_named)
    files = "tables.md, tables.json, <scene>/masks.png, scores.png"
  else:
    from jaxvad.reproduce import paper001 as paper
    if args.ae or args.masker:
      raise ConfigError("paper001 has one model: give its overrides with --set KEY=VALUE")
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
  p.add_argument("--preset", default="tiny", choices=["tiny", "small", "paper"],
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
                 help="multi-host: call jax.distributed.initialize() first")
  p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("score", help="score a video file or frame folder with a trained run",
                     description="Write the per-frame raw score the method declares and the "
                                 "anomaly score (CSV) of a new video "
                                 "file or frame folder, using a trained run's latest checkpoint. "
                                 "Frames are resized to the run's frame size.")
  p.add_argument("input", help="video file (.mp4/.avi/...) or folder of frames")
  p.add_argument("--workdir", required=True, help="a run folder written by `jaxvad train`")
  p.add_argument("--out", help="CSV path (default: <input name>_scores.csv)")
  p.add_argument("--roi", type=int, nargs=4, metavar=("X", "Y", "W", "H"),
                 help="crop this region before resizing")
  p.add_argument("--smoothing", type=int, help="moving-average window (default: the run's)")
  p.add_argument("--mask-from", metavar="MASKER_RUN",
                 help="score inside the background masks of a masking model's run (paper 000: "
                      "an r3d_partition run)")
  p.set_defaults(func=cmd_score)

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
                     description="Render the tiny synthetic benchmark (cached), train the ConvLSTM "
                                 "autoencoder, score the test clips and write a report with "
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
                                 "case AUC by clip group (§4.1-4.2). Thresholds are calibrated on "
                                 "validation data only; finished runs are reused.",
                     epilog=textwrap.dedent("""\
                         examples:
                           jaxvad reproduce paper000 --preset tiny          minutes on a CPU
                           jaxvad reproduce paper000 --preset small         a GPU job
                           jaxvad reproduce paper000 --ae train.steps=100 --masker train.steps=100
                           jaxvad reproduce paper001 --preset tiny --scenes pickplace
                           jaxvad reproduce paper001 --variants base skiptwice --augments none lighting
                           jaxvad reproduce paper001 --preset small --set model.pretrained=resnet18.pth
                         """))
  p.add_argument("paper", choices=["paper000", "paper001"])
  p.add_argument("--preset", default="tiny", choices=["tiny", "small"],
                 help="tiny: 64x64 demo-sized models; small: 128x128 (default: tiny)")
  p.add_argument("--scenes", nargs="+", default=["pickplace", "conveyor"],
                 choices=["pickplace", "conveyor"])
  p.add_argument("--workdir", help="runs go to <workdir>/<scene>/... (default: "
                                   "runs/<paper>_<preset>); finished runs are reused")
  p.add_argument("--out", help="tables and figures (default: reports/<paper>_<preset>)")
  p.add_argument("--ae", action="append", default=[], metavar="KEY=VALUE",
                 help="paper000: override of the autoencoder config (repeatable)")
  p.add_argument("--masker", action="append", default=[], metavar="KEY=VALUE",
                 help="paper000: override of the masking-model config (repeatable)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="paper001: override of the predictive autoencoder config (repeatable)")
  p.add_argument("--variants", nargs="+", choices=["base", "dropout", "skiptwice", "attention"],
                 help="paper001: variants to run (default: all four)")
  p.add_argument("--augments", nargs="+", choices=["none", "general", "lighting"],
                 help="paper001: augmentations to run (default: all three)")
  p.add_argument("--finetune", action="store_true",
                 help="paper001: train the ResNet-18 encoder too (default: frozen, as the paper; "
                      "= --set model.finetune=true)")
  p.set_defaults(func=cmd_reproduce)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except JaxvadError as e:
    print(f"jaxvad {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"jaxvad {args.command}: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())

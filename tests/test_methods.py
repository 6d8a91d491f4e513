"""Every registered method through the command line: train 2 steps, resume bit-exactly, eval,
score a video file after its benchmark (and pretrained weights) are deleted.

A new method gets a tiny config in `TINY` below; the first test fails until it has one.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import exported, methods, train
from jaxvad.data import datasets, synth, video
from jaxvad.evaluation import evaluate
from tests.test_cli import run_cli

HERE = pathlib.Path(__file__).parent
STEPS = ["train.checkpoint_every=1", "train.log_every=1", "train.batch_size=8"]

# method -> (config, overrides): the smallest run of each that still exercises it.
TINY = {
    "convlstm_ae": ("convlstm_ae_demo", ["model.features=[4,8]", "model.lstm_features=8", "data.window=4",
                             "data.stride=4", "data.size=[16,16]"]),
    # Host-made defect views, the Gaussian fit after the last step, Grad-CAM maps.
    "cutpaste": ("cutpaste_demo", ["model.width=0.0625", "model.head_layers=[16]",
                                   "model.embed_dim=16", "data.size=[32,32]", "data.roi=[]",
                                   "score.batch_size=16"]),
    "ffp": ("ffp_demo", ["model.width=0.0625", "model.d_width=0.0625", "data.size=[32,32]",
                         "data.stride=4"]),
    # Step 1 trains the generator, step 2 the Destroyer: the resume crosses the phase boundary.
    # No label encoder: `jaxvad score` of a bare video has no class maps.
    "f2lm": ("f2lm_demo", ["model.width=0.0625", "model.d_width=0.0625", "data.size=[32,32]",
                           "data.stride=4", "model.patch_grid=4", "model.label_source=none",
                           "model.generator_steps=1"]),
    "predictive_ae": ("predictive_ae_demo", ["model.width=0.125", "data.size=[32,32]",
                                             "data.stride=4", "model.pretrained={pth}"]),
    "r3d_partition": ("r3d_partition_demo", ["data.size=[32,32]", "data.window=4",
                                             "data.stride=4"]),
    "tiny_test": (str(HERE / "configs" / "tiny_test.toml"), []),
}


def tiny_state(name, *, seed=0):
  """(config, freshly initialised state, (H, W, C)) of a method's tiny config, in process (no
  pretrained weights)."""
  config_name, overrides = TINY[name]
  config = config_lib.load_config(config_name, [o for o in overrides if "{pth}" not in o])
  h, w = config.data.size
  method = methods.get(name)
  example = {"frames": np.zeros((8, config.data.window, h, w, 1 if config.data.grayscale else 3),
                                np.uint8)}
  if method.example_targets is not None:
    example.update(method.example_targets(config, (8, config.data.window),
                                          np.random.default_rng(0)))
  state = method.create_state(config, jax.random.key(seed), example, load_pretrained=False)
  return config, state, example["frames"].shape[2:]


def test_every_registered_method_has_a_tiny_config():
  assert set(TINY) == set(methods.names())


def _resnet18_pth(path):
  """A torchvision-layout resnet18 state dict at width 0.125 (random), saved as a .pth."""
  torch = pytest.importorskip("torch")
  from tests import torch_reference
  ref = torch_reference.resnet18(width=0.125)
  torch_reference.randomize_bn(ref, torch.Generator().manual_seed(0))
  torch.save(ref.state_dict(), path)
  return path


def _train(tmp_path, capsys, name, workdir, steps, *, resume=False):
  config, overrides = TINY[name]
  overrides = [o.format(pth=tmp_path / "weights.pth") for o in overrides]
  argv = ["train", "--config", config, "--workdir", workdir, f"data.root={tmp_path / 'data'}",
          *STEPS, *overrides, f"train.steps={steps}"]
  code, out, err = run_cli(argv + (["--resume"] if resume else []), capsys)
  assert code == 0, err
  return out


STANDALONE = HERE.parent / "bench" / "standalone_scorer.py"   # jax + numpy only


def _standalone_scores(tmp_path, scorer_file, config):
  """The exported scorer's raw scores and terms of clip.avi (read as `jaxvad score` reads it),
  from a subprocess without flax or jaxvad; and the frames."""
  h, w, c = train.run_frame_shape(tmp_path / "run", config)
  frames = video.read_frames(tmp_path / "clip.avi", size=(h, w), grayscale=c == 1)
  needed = exported.read_metadata(scorer_file)["input"]["inputs"]
  method = methods.get(config.method)
  inputs = method.frame_inputs(config, frames, None) if needed else {}
  np.savez(tmp_path / "clip.npz", frames=frames, **{k: inputs[k] for k in needed})
  alone = tmp_path / "alone"
  alone.mkdir()
  shutil.copy(exported.__file__, alone / "exported.py")
  subprocess.run([sys.executable, STANDALONE, alone, scorer_file, tmp_path / "clip.npz",
                  tmp_path / "exported.npz"], cwd=alone, check=True, timeout=300)
  return dict(np.load(tmp_path / "exported.npz")), frames


def _leaves(workdir):
  _, state = train.load_trained(workdir)
  return jax.tree_util.tree_leaves_with_path(jax.device_get(state))


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_resume_eval_score_through_the_cli(name, tmp_path, capsys):
  synth.write_benchmark(tmp_path / "data", scene="pickplace", preset="tiny", progress=False)
  if "{pth}" in " ".join(TINY[name][1]):
    _resnet18_pth(tmp_path / "weights.pth")
  method = methods.get(name)

  # ---- 2 steps straight vs 1 step, killed, resumed to 2: bit-identical states.
  _train(tmp_path, capsys, name, tmp_path / "run", 2)
  _train(tmp_path, capsys, name, tmp_path / "resumed", 1)
  _train(tmp_path, capsys, name, tmp_path / "resumed", 2, resume=True)
  straight, resumed = _leaves(tmp_path / "run"), _leaves(tmp_path / "resumed")
  assert [p for p, _ in straight] == [p for p, _ in resumed]
  for (path, a), (_, b) in zip(straight, resumed):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  config, _ = train.load_trained(tmp_path / "run")
  log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
  assert [r["step"] for r in log] == [1, 2]
  phase_of = {s: p.name for p, first, last in method.phase_bounds(config)
              for s in range(first, last + 1)}
  assert [r["phase"] for r in log] == [phase_of[1], phase_of[2]]

  # ---- eval: a detector evaluates; a masking model says in one line what to run instead.
  code, out, err = run_cli(["eval", "--workdir", tmp_path / "run", "--report",
                            tmp_path / "report"], capsys)
  if method.is_detector:
    assert code == 0, err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert 0 <= metrics["metrics"]["all"]["auroc"] <= 1
    assert metrics["score"]["name"] == method.score(config).name
    header = (tmp_path / "report" / "scores.csv").read_text().splitlines()[0].split(",")
    assert header[4] == metrics["score"]["name"]
  else:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--mask-from" in err
    assert "Traceback" not in err

  # ---- export, and a live replay of a video file (a combined score's live statistics come
  # from the validation clips, so before the benchmark is deleted).
  clip = datasets.load_split(config.data, "test")[0]
  frames = clip.frames if clip.frames.shape[-1] == 3 else np.repeat(clip.frames, 3, axis=-1)
  video.write_video(tmp_path / "clip.avi", frames)
  code, out, err = run_cli(["export", "--workdir", tmp_path / "run", "--out",
                            tmp_path / "scorer.bin", "--no-calibration"], capsys)
  assert (code == 0) == method.is_detector, err
  combined = method.is_detector and method.score(config).combined
  code, out, err = run_cli(["score", "--workdir", tmp_path / "run", "--stream",
                            tmp_path / "clip.avi", "--out", tmp_path / "live.jsonl",
                            *([] if combined else ["--threshold", "0"])], capsys)
  assert (code == 0) == method.is_detector, err
  if not method.is_detector:
    assert "--mask-from" in err and "Traceback" not in err

  # ---- score a video file with the run alone: benchmark and pretrained weights deleted.
  shutil.rmtree(tmp_path / "data")
  (tmp_path / "weights.pth").unlink(missing_ok=True)
  code, out, err = run_cli(["score", "--workdir", tmp_path / "run", tmp_path / "clip.avi",
                            "--out", tmp_path / "scores.csv"], capsys)
  if method.is_detector:
    assert code == 0, err
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(frames)
    scored = [r.split(",")[2] for r in rows[1:]]
    unscored = method.score(config).unscored_first(config.data.window)
    assert all(s == "nan" for s in scored[:unscored])
    assert all(np.isfinite(float(s)) for s in scored[unscored:])
    raw = np.array([float(r.split(",")[1]) for r in rows[1:]])

    # The exported scorer, with jax and numpy only: `jaxvad score`'s raw scores (its CSV
    # rounds them to 1e-4). A combined score z-scores its terms per clip, which multiplies
    # float noise by 1 / std (a term nearly constant after 2 steps): there the terms are
    # compared, with the run's own scorer on the same frames.
    outputs, read = _standalone_scores(tmp_path, tmp_path / "scorer.bin", config)
    if combined:
      own = evaluate.Scorer(*train.load_trained(tmp_path / "run")).terms(read)
      for name, values in own.items():
        np.testing.assert_allclose(outputs[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    else:
      np.testing.assert_allclose(outputs["raw"], raw, atol=1e-4, rtol=0)

    # Live: every frame once, in order; the same raw scores where the terms are not
    # standardised live (a combined score uses the validation clips' statistics).
    records = [json.loads(line) for line in (tmp_path / "live.jsonl").open()]
    assert [r["index"] for r in records] == list(range(len(frames)))
    live_raw = np.array([np.nan if r["raw"] is None else r["raw"] for r in records])
    if combined:
      assert np.isfinite(live_raw[unscored:]).all()
    else:
      np.testing.assert_allclose(live_raw, raw, atol=1e-4, rtol=0)
      assert all(r["alarm"] in (True, False) for r in records[unscored:])
  else:
    assert code == 2 and "--mask-from" in err and "Traceback" not in err

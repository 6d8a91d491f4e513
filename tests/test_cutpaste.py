"""Paper 002's method (`jaxvad.methods.cutpaste`) piece by piece: object boxes, the host-made
defect views and their exact replay in the pipeline, the frozen backbone, the schedule, the
Grad-CAM head, the Gaussian fit, and MVTec-layout data end to end through the command line.
(Train / resume / eval / score through the CLI: tests/test_methods.py; learning:
tests/test_learns.py; the PyTorch baseline's parity: tests/test_torch_baselines.py.)
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import density, methods, train
from jaxvad.data import datasets, pipeline, synth
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate
from jaxvad.methods import cutpaste
from jaxvad.models import cutpaste as cutpaste_model
from tests import layouts
from tests.test_cli import run_cli

TINY = ["data.size=[32,32]", "data.roi=[]", "model.width=0.0625", "model.head_layers=[8]",
        "model.embed_dim=8", "train.batch_size=8"]


def _config(*overrides):
  return config_lib.load_config("cutpaste_demo", [*TINY, *overrides])


def _batch(config, seed=0, b=8):
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (b, 1, 32, 32, 3), dtype=np.uint8)
  items = [cutpaste.pseudo_anomaly_views(
      config, {"frames": frames[i], "box": np.array([[4, 4, 28, 28]])}, rng) for i in range(b)]
  return {k: np.stack([item[k] for item in items]) for k in items[0]}


# --------------------------------------------------------------------------- host side


def test_object_boxes_frame_the_rendered_objects_with_a_margin():
  arm = synth.SEMANTIC_CLASSES.index("arm")
  person = synth.SEMANTIC_CLASSES.index("person")
  classes = np.zeros((3, 40, 50), np.uint8)
  classes[0, 10:20, 5:30] = arm                 # a big object: its box + 2 px
  classes[1, 0:2, 48:50] = arm                  # a tiny one in the corner: grown to 8 x 8
  classes[2, 10:20, 10:20] = person             # not an object: the whole frame
  boxes = cutpaste.object_boxes(classes)
  np.testing.assert_array_equal(boxes, [[3, 8, 32, 22], [42, 0, 50, 8], [0, 0, 50, 40]])


def test_views_are_seeded_and_stay_inside_the_box():
  config = _config()
  frame = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
  item = {"frames": frame, "box": np.array([[4, 6, 20, 26]])}
  a = cutpaste.pseudo_anomaly_views(config, item, np.random.default_rng(7))
  b = cutpaste.pseudo_anomaly_views(config, item, np.random.default_rng(7))
  c = cutpaste.pseudo_anomaly_views(config, item, np.random.default_rng(8))
  assert a["views"].shape == (2, 32, 32, 3) and a["views"].dtype == np.uint8
  np.testing.assert_array_equal(a["views"], b["views"])
  assert not np.array_equal(a["views"], c["views"])
  outside = np.ones((32, 32), bool)
  outside[6:26, 4:20] = False
  for view in a["views"]:
    np.testing.assert_array_equal(view[outside], frame[0][outside])
    assert not np.array_equal(view, frame[0])


def test_cropliq_settings_reach_the_views():
  ramp = np.arange(32, dtype=np.uint8) * 8     # smooth: the change grows with the shift
  frame = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128 + 0 * ramp[:, None]),
                   axis=-1)[None].astype(np.uint8)
  item = {"frames": frame, "box": np.array([[0, 0, 32, 32]])}
  changed = {}
  for strength in ("[0.01,0.02]", "[0.5,0.6]"):
    config = _config("model.kinds=['cropliq']", f"model.cropliq_strength={strength}",
                     "model.cropliq_region=[0.6,0.6]")
    view = cutpaste.pseudo_anomaly_views(config, item, np.random.default_rng(0))["views"][0]
    changed[strength] = np.abs(view.astype(int) - frame[0]).sum()
  assert changed["[0.5,0.6]"] > 3 * changed["[0.01,0.02]"]


def test_the_pipeline_replays_the_views_of_every_step():
  config = _config()
  clips = [np.random.default_rng(i).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
           for i in range(2)]
  boxes = [np.tile([[0, 0, 32, 32]], (6, 1)) for _ in clips]

  def dataset():
    return pipeline.train_dataset(
        clips, window=1, stride=1, global_batch_size=4, seed=3, per_frame={"box": boxes},
        transform=lambda item, rng: cutpaste.pseudo_anomaly_views(config, item, rng))

  first, again = dataset(), dataset()
  for step in (0, 5, 17):
    np.testing.assert_array_equal(first[step]["views"], again[step]["views"])
  # The same window in another epoch gets other defects (12 windows = 3 steps an epoch).
  assert not np.array_equal(first[0]["views"], first[3]["views"])
  resumed = next(pipeline.prefetch(dataset(), start_step=5, num_threads=0))
  np.testing.assert_array_equal(resumed["views"], first[5]["views"])


# --------------------------------------------------------------------------- optimisation


def test_the_backbone_is_frozen_for_its_first_steps_then_trains():
  config = _config("model.freeze_steps=2", "model.pretrained=resnet18.pth")
  batch = _batch(config)
  # No weight file is read (as on a resume): the freezing is the same.
  state = cutpaste.create_state(config, jax.random.PRNGKey(0), batch, load_pretrained=False)
  step = jax.jit(cutpaste.train_step)
  before = state.params
  for n in range(1, 4):
    state, _ = step(state, batch)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, state.params)
    backbone = jax.tree.leaves(moved[cutpaste_model.BACKBONE])
    assert any(jax.tree.leaves(moved["out"]))
    assert any(backbone) == (n > 2), n
    # Frozen means untouched by weight decay and momentum too.
    if n <= 2:
      assert not any(backbone)


def test_cosine_schedule_restarts():
  config = _config("train.steps=30", "model.restart_every=10", "train.learning_rate=0.03")
  lr = cutpaste.learning_rate(config)
  assert float(lr(0)) == pytest.approx(0.03)
  assert float(lr(5)) == pytest.approx(0.015, rel=1e-5)
  assert float(lr(10)) == pytest.approx(0.03)
  assert float(cutpaste.learning_rate(_config("train.steps=30"))(15)) == pytest.approx(0.015,
                                                                                     rel=1e-5)


@pytest.mark.parametrize("override", ["model.kinds=[]", "model.kinds=['cutpaste','cutpaste']",
                                      "model.kinds=['dent']", "model.score=psnr",
                                      "model.cam_layer=layer5", "model.momentum=1.0",
                                      "model.localize=eigen", "model.object_box=yolo",
                                      "model.freeze_steps=5",
                                      "model.cropliq_strength=[0.5,0.2]",
                                      "model.cropliq_region=[0,0.5]"])
def test_bad_model_settings_name_the_key(override):
  with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[1]):
    _config(override)


def test_a_window_of_several_frames_is_refused():
  config = _config("data.window=2")
  frames = np.zeros((8, 2, 32, 32, 3), np.uint8)
  with pytest.raises(ConfigError, match="data.window = 2"):
    cutpaste.create_state(config, jax.random.PRNGKey(0), {"frames": frames})


# --------------------------------------------------------------------------- scoring


def test_grad_cam_head_is_the_network_after_the_layer():
  config = _config()
  batch = _batch(config)
  state = cutpaste.create_state(config, jax.random.PRNGKey(0), batch)
  x = cutpaste.encoder_input(cutpaste.to_float(batch["frames"][:, 0]))
  logits, aux = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x)
  path = (cutpaste_model.BACKBONE, "layer3_1")

  def head(a):
    with nn.intercept_methods(cutpaste._replace_output(path, a)):  # pylint: disable=protected-access
      return state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x)[0]

  np.testing.assert_allclose(head(aux["layer3"]), logits, rtol=1e-5, atol=1e-6)
  assert not np.allclose(head(aux["layer3"] * 0.5), logits, atol=1e-4)   # a function of `a`
  out = jax.jit(cutpaste.score_step)(state, batch)
  assert out["map"].shape == (8, 1, 32, 32)
  assert float(out["map"].min()) >= 0 and float(out["map"].max()) <= 1 + 1e-6
  np.testing.assert_allclose(out["probs"].sum(-1), 1, rtol=1e-5)
  np.testing.assert_allclose(out["softmax"][:, 0], 1 - out["probs"][:, 0, 0], rtol=1e-5)


@pytest.mark.parametrize("localize", ["gradcam", "patch_gde"])
def test_fit_sets_the_gaussians_of_the_training_frames(localize):
  config = _config(f"model.localize={localize}", "score.batch_size=5")
  batch = _batch(config)
  state = cutpaste.create_state(config, jax.random.PRNGKey(0), batch)
  clips = [np.random.default_rng(i).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
           for i in range(2)]
  fitted = cutpaste.fit(config, state, clips)
  pooled, dense = cutpaste.features(state, np.concatenate(clips))
  want = density.fit_gaussian(np.asarray(pooled))
  np.testing.assert_allclose(fitted.density.mean, want.mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fitted.density.precision, want.precision, rtol=1e-4, atol=1e-3)
  patch = fitted.patch_density.precision
  if localize == "patch_gde":
    dense = np.asarray(dense).reshape(-1, dense.shape[-1])
    np.testing.assert_allclose(fitted.patch_density.mean, dense.mean(0), rtol=1e-4, atol=1e-6)
    out = jax.jit(cutpaste.score_step)(fitted, {"frames": clips[0][:, None]})
    assert out["map"].shape == (7, 1, 32, 32) and bool(jnp.isfinite(out["map"]).all())
  else:   # untouched placeholder
    np.testing.assert_array_equal(patch, np.eye(patch.shape[0]))


def test_localization_metrics_of_perfect_and_per_type_maps():
  masks = [np.zeros((3, 8, 8), bool) for _ in range(3)]
  masks[0][1, 2:4, 2:5] = True
  masks[1][2, 5:7, 1:3] = True
  maps = [m.astype(np.float32) * 0.9 + 0.05 for m in masks]
  maps[2][0] = np.nan       # an unscored frame is left out
  result = evaluate.localization_metrics(masks, maps, ["dent", "scratch", ""], bootstrap=50)
  assert result["pixel_auroc"] == pytest.approx(1.0)
  assert result["pro"] == pytest.approx(1.0)
  assert result["frames"] == 8 and result["clips"] == 3
  assert set(result["per_type"]) == {"dent", "scratch"}
  assert result["per_type"]["dent"]["clips"] == 2      # its clip and the normal one
  assert result["pixel_auroc_ci"] == pytest.approx([1.0, 1.0])


# --------------------------------------------------------------------------- end to end


def test_mvtec_category_trains_and_reports_localisation(tmp_path, capsys):
  root = layouts.write_mvtec(tmp_path / "bottle")
  common = [f"data.root={root}", "data.dataset=mvtec", "data.val_from_train=1",
            "model.object_box=frame", "train.checkpoint_every=2", "train.log_every=1",
            "score.bootstrap=20", "score.batch_size=4", *TINY]
  code, _, err = run_cli(["train", "--config", "cutpaste_demo", "--workdir", tmp_path / "run",
                          "train.steps=2", *common], capsys)
  assert code == 0, err
  code, _, err = run_cli(["eval", "--workdir", tmp_path / "run", "--report",
                          tmp_path / "report"], capsys)
  assert code == 0, err
  result = json.loads((tmp_path / "report" / "metrics.json").read_text())
  loc = result["localization"]
  assert loc["frames"] == len(layouts.MVTEC_TEST) and 0 <= loc["pixel_auroc"] <= 1
  assert set(loc["per_type"]) == {"crack", "scratch"}
  assert "Localisation" in (tmp_path / "report" / "report.html").read_text()
  assert not (tmp_path / "report" / "plots").exists() or not any(
      (tmp_path / "report" / "plots").iterdir())   # still images: no score curves

  # The maps come from the scoring pass (no second Grad-CAM pass): the same as on their own.
  config, state = train.load_trained(tmp_path / "run")
  clips = datasets.load_split(config.data, "test")
  scorer = evaluate.Scorer(config, state)
  scorer.keep_maps = True
  for clip in clips:
    scorer.score(clip.frames, clip)
  assert set(scorer.maps) == {c.name for c in clips}
  for clip in clips:
    np.testing.assert_allclose(scorer.maps[clip.name], evaluate.pixel_maps(scorer, clip),
                               atol=1e-6)


def test_score_crops_new_footage_to_the_runs_roi(tmp_path, capsys):
  from jaxvad.data import video   # pylint: disable=g-import-not-at-top
  synth.write_benchmark(tmp_path / "data", scene="pickplace", preset="tiny", progress=False)
  overrides = [*TINY[2:], "data.size=[64,64]", "data.roi=[0,24,64,40]",
               f"data.root={tmp_path / 'data'}", "train.steps=1", "score.batch_size=8"]
  code, _, err = run_cli(["train", "--config", "cutpaste_demo", "--workdir", tmp_path / "run",
                          *overrides], capsys)
  assert code == 0, err
  assert json.loads((tmp_path / "run" / "run.json").read_text())["read_size"] == [64, 64]
  frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
  video.write_video(tmp_path / "clip.avi", frames)
  code, out, err = run_cli(["score", "--workdir", tmp_path / "run", tmp_path / "clip.avi",
                            "--out", tmp_path / "scores.csv"], capsys)
  assert code == 0, err
  assert len((tmp_path / "scores.csv").read_text().splitlines()) == 1 + 5
  code, _, err = run_cli(["score", "--workdir", tmp_path / "run", tmp_path / "clip.avi",
                          "--roi", "0", "0", "32", "32", "--out", tmp_path / "s2.csv"], capsys)
  assert code == 2 and "data.roi" in err and "--roi" in err


def test_registered():
  assert methods.get("cutpaste").host_transform is cutpaste.pseudo_anomaly_views

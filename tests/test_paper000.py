"""Paper 000's pipeline: the R3D-18 partition-order method, learned masks, the reproduction."""

import csv
import json

import jax
import numpy as np
import pytest

from jaxvad import cam, masking
from jaxvad.evaluation import evaluate
from jaxvad.reproduce import paper000
from jaxvad import config as config_lib
from jaxvad import train
from jaxvad.data import datasets, synth, video
from jaxvad.errors import ConfigError
from jaxvad.methods import r3d_partition
from tests.test_cli import run_cli

SIZE = ["data.size=[32,32]"]  # R3D's layer4 then has 2x2 maps: the smallest with a CAM
SMALL_RUN = ["train.steps=2", "train.batch_size=8", "train.checkpoint_every=2",
             "train.log_every=2", "data.window=4", "data.stride=4", *SIZE]
AE_RUN = [*SMALL_RUN, "model.features=[4,8]", "model.lstm_features=8"]


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synth")
  for scene in ("pickplace",):
    synth.write_benchmark(root, scene=scene, preset="tiny", progress=False)
  return root


def test_training_targets_are_smoothed_partition_labels(bench_root):
  cfg = config_lib.load_config("r3d_partition_demo", [f"data.root={bench_root}"])
  clips = [c.frames for c in datasets.load_split(cfg.data, "train")]
  labels = r3d_partition.training_targets(cfg, clips)["labels"]
  assert [len(y) for y in labels] == [len(c) for c in clips]
  for y in labels:
    assert y.shape[1] == cfg.model.num_classes
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
  # Every partition of the cycle occurs. (Not in every clip: a clip with global lighting drift
  # has a signal dominated by the drift, and its phase stalls; see kernels/partition.py.)
  hard = np.concatenate([np.argmax(y, axis=1) for y in labels])
  assert set(hard) == set(range(cfg.model.num_classes))


def test_partition_model_trains_and_gives_per_layer_cams(bench_root, tmp_path):
  cfg = config_lib.load_config("r3d_partition_demo",
                               [f"data.root={bench_root}", *SMALL_RUN, "train.steps=3",
                                "train.log_every=1"])
  logged = []
  state = train.train(cfg, tmp_path / "run", progress=False,
                      hooks=[lambda step, m: logged.append(jax.device_get(m))])
  assert int(state.step) == 3 and all(np.isfinite(m["loss"]) for m in logged)
  assert all(0 <= m["accuracy"] <= 1 for m in logged)
  cfg, state = train.load_trained(tmp_path / "run")
  frames = np.random.default_rng(0).integers(0, 256, (8, 4, 32, 32, 1), np.uint8)
  cams = np.asarray(jax.jit(r3d_partition.cam_step)(state, {"frames": frames})["cams"])
  assert cams.shape == (8, 4, 4, 2, 2)
  assert cams.min() >= 0 and cams.max() <= 1
  probs = np.asarray(r3d_partition.partition_step(state, {"frames": frames})["partition_probs"])
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  # A detector's RGB frames: the masker converts them as the video reader reads them gray (at
  # the stored size to the grey level; resized, the reader converts first: levels may differ
  # by 1), also inside clip_cams.
  root = [f"data.root={bench_root}"]
  rgb = datasets.load_split(config_lib.load_config("demo", root).data, "test")[0].frames
  gray = datasets.load_split(config_lib.load_config("r3d_partition_demo", root).data,
                             "test")[0].frames
  np.testing.assert_array_equal(r3d_partition.in_masker_colour(cfg, rgb), gray)
  assert r3d_partition.in_masker_colour(cfg, gray) is gray
  small = datasets.load_split(config_lib.load_config("demo", [*root, *SIZE]).data,
                              "test")[0].frames[:8]
  np.testing.assert_array_equal(
      r3d_partition.clip_cams(cfg, state, small),
      r3d_partition.clip_cams(cfg, state, r3d_partition.in_masker_colour(cfg, small)))


@pytest.mark.parametrize("setting", [masking.MAIN_SETTING, *paper000.ABLATIONS[
    "Table 4.5: layers for Eigen-CAM (threshold 0, window 1)"]])
def test_learned_mask_from_cached_cams_equals_the_masking_chain(setting):
  """The reproduction caches each layer's CAM once and combines them per ablation setting;
  that must give the mask `masking.background_mask` computes from the activations."""
  rng = np.random.default_rng(1)
  acts = [rng.normal(size=(12, 3, 3, 16)).astype(np.float32) for _ in range(4)]
  cams = np.stack([np.asarray(cam.eigen_cam(a)) for a in acts], axis=1)  # [T, 4, h, w]
  got = paper000.learned_mask(cams, setting, (24, 24))
  want = masking.background_mask([a[None] for a in acts], frame_size=(24, 24),
                                 layers=setting.layers, threshold=setting.threshold,
                                 window=setting.window)[0]
  np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)


def test_reproduce_writes_tables_with_consistent_counts(bench_root, tmp_path, capsys):
  data = [f"data.root={bench_root}"]
  argv = ["reproduce", "paper000", "--preset", "tiny", "--scenes", "pickplace",
          "--workdir", tmp_path / "runs", "--out", tmp_path / "out"]
  for o in data + AE_RUN:
    argv += ["--ae", o]
  for o in data + SMALL_RUN:
    argv += ["--masker", o]
  code, out, err = run_cli(argv, capsys)
  assert code == 0, err
  assert "Table 4.5" in out and "learned mask" in out
  tables = json.loads((tmp_path / "out" / "tables.json").read_text())
  scene = tables["scenes"]["pickplace"]
  test_clips = datasets.load_split(
      config_lib.load_config("convlstm_ae_demo", data + SIZE).data, "test")
  anomalous = sum(int(c.labels.sum()) for c in test_clips)
  rows = [*scene["rows"].values(), *(r for t in scene["ablations"].values() for r in t.values())]
  assert len(rows) == 4 + 9
  for row in rows:
    g = row["all"]
    # Every row counts the same test frames, whatever its mask.
    assert g["TP"] + g["FN"] == anomalous
    assert g["TP"] + g["FN"] + g["FP"] + g["TN"] == sum(len(c.frames) for c in test_clips)
    assert row["threshold"]["stats"]["frames"] > 0  # calibrated on validation frames
  assert scene["rows"]["no mask"]["empty_frames"] == 0
  # "No mask" is the plain autoencoder: the same AUROC as `jaxvad eval` of that run.
  ae_cfg, ae_state = train.load_trained(tmp_path / "runs" / "pickplace" / "ae")
  plain = evaluate.evaluate_clips(ae_cfg, ae_state, test_clips)["metrics"]["all"]
  assert scene["rows"]["no mask"]["all"]["auroc"] == pytest.approx(plain["auroc"], abs=1e-3)
  assert set(scene["target"]) == {"fp_removed", "tp_kept", "met"}
  # The overlap rates are those of the rendered distractor flags.
  distracted = [c for c in test_clips if c.meta.get("distractors")]
  lab = np.concatenate([c.labels.astype(bool) for c in distracted])
  seen = np.concatenate([c.distractors.any(axis=1) for c in distracted])
  assert scene["overlap"]["given_anomalous"] == pytest.approx(seen[lab].mean())
  assert scene["overlap"]["given_normal"] == pytest.approx(seen[~lab].mean())

  # The learned-mask row is what `jaxvad eval --mask-from` computes for the same two runs.
  runs = tmp_path / "runs" / "pickplace"
  code, out, err = run_cli(["eval", "--workdir", runs / "ae", "--mask-from", runs / "masker",
                            "--report", tmp_path / "masked"], capsys)
  assert code == 0, err
  masked = json.loads((tmp_path / "masked" / "metrics.json").read_text())
  assert masked["mask"]["method"] == "r3d_partition" and masked["mask_from"] == str(runs / "masker")
  learned = scene["rows"]["learned mask"]["all"]
  assert masked["metrics"]["all"]["auroc"] == pytest.approx(learned["auroc"], abs=1e-12)
  assert {k: masked["metrics"]["all"]["confusion"][k] for k in ("TP", "FN", "FP", "TN")} == \
      {k: learned[k] for k in ("TP", "FN", "FP", "TN")}
  # A masking model is not a detector: one line naming what to run instead.
  code, out, err = run_cli(["eval", "--workdir", runs / "masker"], capsys)
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "--mask-from" in err and "Traceback" not in err
  # jaxvad score --mask-from: the same masked raw scores for one clip's frames.
  clip = test_clips[0]
  video.write_frames(tmp_path / "clip", clip.frames)
  code, out, err = run_cli(["score", "--workdir", runs / "ae", tmp_path / "clip", "--mask-from",
                            runs / "masker", "--out", tmp_path / "clip.csv"], capsys)
  assert code == 0, err
  rows = (tmp_path / "clip.csv").read_text().splitlines()
  assert rows[0] == "frame,psnr,score" and len(rows) == 1 + len(clip.frames)
  with open(tmp_path / "masked" / "scores.csv") as f:
    want = [r["psnr"] for r in csv.DictReader(f) if r["clip"] == clip.name]
  got = [r.split(",")[1] for r in rows[1:]]
  np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), atol=2e-4)
  for name in ("tables.md", "pickplace/masks.png", "pickplace/scores.png"):
    assert (tmp_path / "out" / name).stat().st_size > 0


def test_detector_and_masker_configs_must_read_the_same_frames():
  """--detector: an RGB detector with the gray masker is fine (the masker converts, see
  test_partition_model_trains_and_gives_per_layer_cams); frames that differ otherwise are
  refused with the flag that fixes it."""
  ae, masker = paper000._load_configs("tiny", "conveyor", [], [], "demo")
  assert ae.method == "predictive_ae" and not ae.data.grayscale
  assert masker.method == "r3d_partition" and masker.data.grayscale
  assert masker.data.scene == ae.data.scene == "conveyor"
  with pytest.raises(ConfigError, match=r"data.root is 'x' vs .*--ae data.root=\.\.\."):
    paper000._load_configs("tiny", "pickplace", ["data.root=x"], [])
  with pytest.raises(ConfigError, match="data.preset is 'tiny' vs 'medium'"):
    paper000._load_configs("medium", "pickplace", [], [], "demo")


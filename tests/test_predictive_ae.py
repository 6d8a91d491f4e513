"""Predictive autoencoder of paper 001: shapes, variants, frozen encoder, PyTorch geometry of
the transposed convs, and training + evaluation end to end on the tiny benchmark."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad.evaluation import evaluate
from jaxvad import train
from jaxvad.data import datasets, pipeline, synth
from jaxvad.errors import ConfigError
from jaxvad.methods import predictive_ae as method
from jaxvad.models import predictive_ae

TINY = dict(width=0.125, out_channels=3)
RUN = ["model.width=0.125", "data.size=[32,32]", "train.steps=2", "train.batch_size=8",
       "train.checkpoint_every=2", "train.log_every=1"]


def _init(variant, shape=(2, 4, 64, 96, 3), **kw):
  model = predictive_ae.PredictiveAE(variant=variant, **{**TINY, **kw})
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  return model, model.init(jax.random.key(0), x, train=False), x


@pytest.mark.parametrize("variant", predictive_ae.VARIANTS)
def test_every_variant_predicts_one_full_size_frame(variant):
  model, variables, x = _init(variant)
  out, aux = model.apply(variables, x, train=False)
  assert out.shape == (2, 64, 96, 3) and out.dtype == jnp.float32 and aux == {}
  names = set(variables["params"])
  assert ("skip_layer3" in names) == (variant == "skiptwice")
  assert ("attention0" in names) == (variant == "attention")


def test_skip_convs_reduce_the_folded_channels_by_four():
  _, variables, _ = _init("skiptwice")
  widths = predictive_ae.resnet.stage_features(TINY["width"])
  # [1, 1, T*C, T*C/4] for layer3 (C = widths[2]) and layer2 (C = widths[1]), T = 4.
  assert variables["params"]["skip_layer3"]["kernel"].shape == (1, 1, 4 * widths[2], widths[2])
  assert variables["params"]["skip_layer2"]["kernel"].shape == (1, 1, 4 * widths[1], widths[1])


def test_dropout_is_random_in_training_only():
  model, variables, x = _init("dropout")
  run = lambda k: model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)},  # noqa: E731
                              mutable=["batch_stats"])[0][0]
  assert not np.allclose(run(1), run(2))
  np.testing.assert_array_equal(model.apply(variables, x, train=False)[0],
                                model.apply(variables, x, train=False)[0])


def test_time_folding_is_pytorchs_frame_major_flatten():
  b, t, h, w, c = 2, 4, 3, 5, 6
  x = np.random.default_rng(0).normal(size=(b * t, h, w, c)).astype(np.float32)
  # PyTorch: [B*T, C, h, w] -> [B, T, C, h, w] -> flatten(1, 2) -> [B, T*C, h, w].
  torch_like = x.transpose(0, 3, 1, 2).reshape(b, t, c, h, w).reshape(b, t * c, h, w)
  np.testing.assert_array_equal(predictive_ae._fold_time(jnp.asarray(x), b),
                                torch_like.transpose(0, 2, 3, 1))


def test_up_conv_matches_torch_conv_transpose2d():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 7, 4)).astype(np.float32)
  ref = torch.nn.ConvTranspose2d(4, 3, kernel_size=3, stride=2, padding=1, output_padding=1)
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  layer = predictive_ae.up_conv(3)
  # torch weight [in, out, kh, kw] -> flax (transpose_kernel) [kh, kw, out, in].
  params = {"kernel": ref.weight.detach().numpy().transpose(2, 3, 1, 0),
            "bias": ref.bias.detach().numpy()}
  got = layer.apply({"params": params}, x)
  assert got.shape == want.shape == (2, 10, 14, 3)
  np.testing.assert_allclose(got, want, atol=1e-5)


def _tiny_config(root, *overrides):
  return config_lib.load_config("predictive_ae_demo", [f"data.root={root}", *RUN, *overrides])


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synth")
  synth.write_benchmark(root, scene="pickplace", preset="tiny", progress=False)
  return root


def _batch(config, seed=0):
  h, w = config.data.size
  frames = np.random.default_rng(seed).integers(0, 256, (8, 5, h, w, 3), np.uint8)
  return {"frames": frames}


@pytest.mark.parametrize("finetune", [False, True])
def test_frozen_encoder_does_not_change_and_has_no_optimizer_state(bench_root, finetune):
  config = _tiny_config(bench_root, f"model.finetune={str(finetune).lower()}",
                        "model.variant=skiptwice")
  batch = _batch(config)
  state = method.create_state(config, jax.random.key(0), batch)
  before = jax.device_get(state.params)
  stats_before = jax.device_get(state.batch_stats)
  state, metrics = jax.jit(method.train_step)(state, batch)
  after, stats_after = jax.device_get(state.params), jax.device_get(state.batch_stats)
  assert np.isfinite(metrics["loss"])
  enc_same = jax.tree_util.tree_map(np.array_equal, before["encoder"], after["encoder"])
  dec_same = jax.tree_util.tree_map(np.array_equal, before["up0"], after["up0"])
  assert all(jax.tree_util.tree_leaves(enc_same)) == (not finetune)
  assert not any(jax.tree_util.tree_leaves(dec_same))
  stats_same = jax.tree_util.tree_map(np.array_equal, stats_before["encoder"],
                                      stats_after["encoder"])
  assert all(jax.tree_util.tree_leaves(stats_same)) == (not finetune)
  # Frozen: Adam keeps no moments for the encoder (set_to_zero has no state).
  n_opt = sum(x.size for x in jax.tree_util.tree_leaves(state.opt_state))
  n_enc = sum(x.size for x in jax.tree_util.tree_leaves(before["encoder"]))
  n_all = sum(x.size for x in jax.tree_util.tree_leaves(before))
  trainable = n_all - (0 if finetune else n_enc)
  assert n_opt == 2 * trainable + 1   # Adam's first and second moments, and its step count


def test_loss_is_the_weighted_sum_of_table_3_1():
  rng = np.random.default_rng(0)
  a, b = (jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32) for _ in range(2))
  total, terms = method.prediction_loss(a, b)
  want = 0.6 * terms["mse"] + 0.25 * terms["gradient"] + 0.15 * terms["ssim"]
  np.testing.assert_allclose(total, want, rtol=1e-6)
  np.testing.assert_allclose(terms["mse"], np.mean((np.asarray(a) - np.asarray(b)) ** 2),
                             rtol=1e-5)


def test_sliding_windows_own_each_predicted_frame_once():
  starts, owner = pipeline.eval_windows(9, window=5, last_only=True)
  np.testing.assert_array_equal(starts, np.arange(5))
  assert (owner[:4] == -1).all()
  # frame t is the last frame of the window starting at t - 4
  np.testing.assert_array_equal(starts[owner[4:, 0]] + 4, np.arange(4, 9))


def test_trains_and_evaluates_end_to_end_with_four_frames_dropped(bench_root, tmp_path):
  config = _tiny_config(bench_root, "model.augment=general")
  state = train.train(config, tmp_path / "run", progress=False)
  assert int(state.step) == 2
  config, state = train.load_trained(tmp_path / "run")
  assert state.augment == "general"
  test_clips = datasets.load_split(config.data, "test")[:2]
  val_clips = datasets.load_split(config.data, "val")[:1]
  result = evaluate.evaluate_clips(config, state, test_clips, val_clips=val_clips)
  assert result["protocol"]["drop_first"] == 4
  for clip, r in zip(test_clips, result["clips"]):
    assert np.isnan(r["raw"][:4]).all() and np.isfinite(r["raw"][4:]).all()
    assert np.isnan(r["score"][:4]).all() and np.isfinite(r["score"][4:]).all()
  # Each scored frame's PSNR is that of the window ending at it.
  fn = jax.jit(method.score_step)
  clip = test_clips[0]
  t = 7
  window = clip.frames[None, t - 4:t + 1]
  window = np.repeat(window, 8, axis=0)   # one full, shardable batch
  want = float(np.asarray(fn(state, {"frames": window})["psnr"])[0, 0])
  assert result["clips"][0]["raw"][t] == pytest.approx(want, rel=1e-5)
  assert 0 <= result["metrics"]["all"]["auroc"] <= 1
  # The report's heat maps show the prediction of a frame the model did predict.
  for w in result["worst_frames"]:
    assert w["model_output"] == "prediction" and w["frame"] >= 4


def test_rejects_frames_not_divisible_by_32(bench_root):
  config = _tiny_config(bench_root, "data.size=[48,48]")
  with pytest.raises(ConfigError, match="divisible by 32"):
    method.create_state(config, jax.random.key(0),
                        {"frames": np.zeros((1, 5, 48, 48, 3), np.uint8)})


def test_pretrained_encoder_is_loaded_from_a_torchvision_file(bench_root, tmp_path):
  torch = pytest.importorskip("torch")
  from tests import torch_reference
  ref = torch_reference.resnet18(width=0.125)
  torch_reference.randomize_bn(ref, torch.Generator().manual_seed(0))
  path = tmp_path / "resnet18.pth"
  torch.save(ref.state_dict(), path)
  config = _tiny_config(bench_root, f"model.pretrained={path}")
  state = method.create_state(config, jax.random.key(0), _batch(config))
  sd = ref.state_dict()
  np.testing.assert_array_equal(state.params["encoder"]["conv1"]["kernel"],
                                sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(state.batch_stats["encoder"]["layer4_1"]["bn2"]["var"],
                                sd["layer4.1.bn2.running_var"].numpy())


def test_reproduce_paper001_tabulates_every_run(bench_root, tmp_path, capsys):
  from tests.test_cli import run_cli
  argv = ["reproduce", "paper001", "--scenes", "pickplace", "--variants", "skiptwice",
          "--augments", "lighting", "--workdir", tmp_path / "runs",
          "--out", tmp_path / "out", "--set", f"data.root={bench_root}"]
  for o in RUN:
    argv += ["--set", o]
  code, out, err = run_cli(argv, capsys)
  assert code == 0, err
  tables = json.loads((tmp_path / "out" / "tables.json").read_text())["scenes"]["pickplace"]
  assert set(tables["runs"]) == {"skiptwice_lighting"}
  # Each cell is that run's own evaluation.
  config, state = train.load_trained(tmp_path / "runs" / "pickplace" / "skiptwice_lighting")
  assert config.model.augment == "lighting" and config.model.variant == "skiptwice"
  clips = {s: datasets.load_split(config.data, s) for s in ("val", "test")}
  result = evaluate.evaluate_clips(config, state, clips["test"], val_clips=clips["val"])
  row = tables["runs"]["skiptwice_lighting"]
  assert row["all"]["frame_auc"] == pytest.approx(result["metrics"]["all"]["auroc"])
  assert row["all"]["case_auc"] == pytest.approx(result["metrics"]["all"]["events"]["auc"])
  assert "| skiptwice | " in out and "frame AUC / case AUC [95% CIs]" in out
  assert (tmp_path / "out" / "pickplace" / "skiptwice_lighting" / "report.html").stat().st_size > 0
  # paper001 takes --set, not paper000's per-model overrides.
  code, _, err = run_cli(["reproduce", "paper001", "--ae", "train.steps=1"], capsys)
  assert code == 2 and "--set" in err
  code, _, err = run_cli(["reproduce", "paper000", "--finetune"], capsys)
  assert code == 2 and "paper001's" in err

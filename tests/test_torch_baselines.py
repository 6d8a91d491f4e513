"""The PyTorch baselines of bench/torch_baselines against jaxvad's models, on the same weights.

For each method (`convlstm_ae`, `r3d_partition`, `predictive_ae` and its variants, `ffp`,
`f2lm`, `cutpaste`): random jaxvad variables (every bias, BN scale / shift and running
statistic random, so no layer is an identity) are copied into the torch model with its
`load_flax_variables`; the eval forward (the method's `score_step` output) and the training
loss (`train_step`'s, or for the other predictive variants the train-mode prediction and eq.
3.1; for ffp every loss of the step of both networks and the parameters after it; for f2lm
every loss of both training phases and the score's terms; for cutpaste the GDE and softmax
scores, the Grad-CAM and patch-GDE maps, the loss and every parameter's first SGD update) must
then agree. Tolerances are relative to the output's magnitude; the measured values are in the
comments.

Sizes are tiny (width 0.125, ffp and f2lm 0.0625, 16..32 px, T = 4, f2lm 5) and the jaxvad
variables are drawn with numpy from `jax.eval_shape` shapes, not `model.init`: the file ran in
~30 s on 2 CPU cores before the ffp tests, most of it XLA compiling the jaxvad steps (measured
28 s; 55 s while another job held 1.4 cores); the two ffp tests add ~25 s (measured alone,
under load), the fast f2lm tests ~4 s; the f2lm phases test (~45 s) is slow-marked; the three
cutpaste tests ~25 s (under load).
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvad import config as config_lib
from jaxvad import scoring
from jaxvad.methods.base import TrainState
from jaxvad.methods import convlstm_ae, f2lm, ffp, predictive_ae, r3d_partition
from jaxvad.models import convert_torch

torch = pytest.importorskip("torch")
from bench import torch_baselines  # noqa: E402  pylint: disable=g-import-not-at-top  # needs torch
from bench.torch_baselines import common  # noqa: E402  pylint: disable=g-import-not-at-top

RTOL = 1e-5     # max |jax - torch| / max |jax|


def _rel_diff(got, want):
  got = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
  want = np.asarray(want, np.float64)
  assert got.shape == want.shape, (got.shape, want.shape)
  return float(np.abs(got - want).max() / np.abs(want).max())


def _random_variables(shapes, seed=0):
  """Random values for a `jax.eval_shape(model.init)` tree, scaled so activations stay O(1)."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    name = path[-1].key
    if name == "kernel":   # fan-in: all but the output axis (transpose_kernel: a rough scale)
      return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
    if name == "scale":
      return (0.5 + rng.random(s.shape)).astype(np.float32)
    if name == "var":
      return (0.5 + rng.random(s.shape)).astype(np.float32)
    return (0.2 * rng.standard_normal(s.shape)).astype(np.float32)   # bias, mean

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def _variables(model, x, **kw):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), x, **kw))
  return _random_variables(dict(shapes))


def _frames(shape, seed=1):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_get_names_every_method():
  assert torch_baselines.METHODS == ("convlstm_ae", "r3d_partition", "predictive_ae", "ffp",
                                     "f2lm", "cutpaste")
  for name in torch_baselines.METHODS:
    module = torch_baselines.get(name)
    for fn in ("build", "train_loss", "score", "load_flax_variables"):
      assert callable(getattr(module, fn)), (name, fn)
  for name in ("ffp", "f2lm", "cutpaste"):   # their own updates (2 Adams; 3 AdamWs; SGD)
    for fn in ("optimizers", "train_losses", "train_step"):
      assert callable(getattr(torch_baselines.get(name), fn)), (name, fn)
  # A baseline's phases are the method's, by name (bench/models.py times each).
  assert list(torch_baselines.get("f2lm").PHASES) == [p.name for p in f2lm.METHOD.phases]
  with pytest.raises(KeyError, match="no PyTorch baseline"):
    torch_baselines.get("nope")


# --------------------------------------------------------------------------- convlstm_ae


@pytest.fixture(scope="module")
def convlstm():
  config = config_lib.load_config("convlstm_ae_demo", ["model.features=[4, 8]", "model.lstm_features=6",
                                           "model.lstm_layers=2", "data.window=4"])
  frames = _frames((2, 4, 16, 16, 1))
  model = convlstm_ae.build_model(config)
  variables = _variables(model, convlstm_ae.to_float(frames))
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                                      tx=optax.adam(1e-3), rng=jax.random.key(0))
  batch = {"frames": frames}
  return dict(config=config, frames=frames, variables=variables,
              score=jax.jit(convlstm_ae.score_step)(state, batch),
              loss=float(jax.jit(convlstm_ae.train_step)(state, batch)[1]["loss"]))


@pytest.mark.parametrize("channels_last", [True, False])
def test_convlstm_ae_matches_jaxvad(convlstm, channels_last):
  baseline = torch_baselines.get("convlstm_ae")
  model = baseline.build(convlstm["config"], channels_last=channels_last)
  baseline.load_flax_variables(model, convlstm["variables"])
  frames = torch.from_numpy(convlstm["frames"])
  model.eval()
  with torch.no_grad():
    recon = model(frames.float() / 255)
  assert _rel_diff(recon, convlstm["score"]["recon"]) < RTOL   # measured 3e-7
  psnr = baseline.score(model, frames)
  assert psnr.shape == (2, 4)
  np.testing.assert_allclose(psnr.numpy(), convlstm["score"]["psnr"], rtol=1e-5)
  loss = baseline.train_loss(model, frames)
  assert loss.item() == pytest.approx(convlstm["loss"], rel=1e-5)   # measured 0 to 5e-7
  loss.backward()
  assert all(p.grad is not None for p in model.parameters())


def test_convlstm_ae_torch_padding_keeps_shapes_and_parameters(convlstm):
  """The timing variant with PyTorch's usual paddings: same shapes and weights, other grid."""
  baseline = torch_baselines.get("convlstm_ae")
  exact = baseline.load_flax_variables(baseline.build(convlstm["config"]), convlstm["variables"])
  usual = baseline.build(convlstm["config"], torch_padding=True)
  usual.load_state_dict(exact.state_dict())
  frames = torch.from_numpy(convlstm["frames"]).float() / 255
  with torch.no_grad():
    a, b = exact.eval()(frames), usual.eval()(frames)
  assert a.shape == b.shape == frames.shape and not torch.allclose(a, b)


# --------------------------------------------------------------------------- r3d_partition


@pytest.mark.parametrize("grayscale", [True, False])
def test_r3d_partition_matches_jaxvad(grayscale):
  config = config_lib.load_config("r3d_partition_demo", [
      "model.num_classes=4", f"data.grayscale={str(grayscale).lower()}"])
  frames = _frames((2, 4, 32, 32, 1 if grayscale else 3))
  labels = np.random.default_rng(2).dirichlet(np.ones(4), (2, 4)).astype(np.float32)
  model = r3d_partition.build_model(config)
  variables = _variables(model, r3d_partition.to_input(frames, pretrained=False), train=False)
  state = TrainState.create(
      apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"],
      tx=optax.adam(1e-3), rng=jax.random.key(0))
  batch = {"frames": frames, "labels": labels}

  baseline = torch_baselines.get("r3d_partition")
  torch_model = baseline.build(config)
  assert torch_model.stem[0].in_channels == (1 if grayscale else 3)
  baseline.load_flax_variables(torch_model, variables)
  frames_t = torch.from_numpy(frames)
  x = baseline.to_input(torch_model, frames_t)
  if not grayscale:   # the permuted batch is channels-last memory: no copy
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
  torch_model.eval()
  with torch.no_grad():
    logits = torch_model(x)
  want, probs = jax.jit(lambda s, b: (
      model.apply({"params": s.params, "batch_stats": s.batch_stats},
                  r3d_partition.to_input(b["frames"], pretrained=False), train=False)[0],
      r3d_partition.partition_step(s, b)["partition_probs"]))(state, batch)
  assert logits.shape == (2, 4, 4)
  assert _rel_diff(logits, want) < RTOL   # measured 5e-7 (gray), 8e-7 (RGB)
  assert np.abs(np.asarray(want)).max() > 1   # not a comparison of near-zeros
  assert _rel_diff(baseline.score(torch_model, frames_t), probs) < RTOL
  if grayscale:   # the training loss (BN on batch statistics) of the method's own step
    loss = float(jax.jit(r3d_partition.train_step)(state, batch)[1]["loss"])
    loss_t = baseline.train_loss(torch_model, frames_t, torch.from_numpy(labels))
    assert loss_t.item() == pytest.approx(loss, rel=1e-5)   # measured 1e-7
    with pytest.raises(ValueError, match="targets"):
      baseline.train_loss(torch_model, frames_t, None)


# --------------------------------------------------------------------------- predictive_ae


def _predictive(variant):
  config = config_lib.load_config("predictive_ae_demo", ["model.width=0.125",
                                                         f"model.variant={variant}"])
  frames = _frames((2, 5, 32, 32, 3))
  model = predictive_ae.build_model(config)
  x = predictive_ae.encoder_input(predictive_ae.to_float(frames[:, :-1]))
  variables = _variables(model, x, train=False)
  baseline = torch_baselines.get("predictive_ae")
  torch_model = baseline.build(config)
  baseline.load_flax_variables(torch_model, variables)
  return config, frames, model, x, variables, baseline, torch_model


@pytest.mark.parametrize("variant", ["base", "dropout", "skiptwice", "attention"])
def test_predictive_ae_matches_jaxvad(variant):
  config, frames, model, x, variables, baseline, torch_model = _predictive(variant)
  frames_t = torch.from_numpy(frames)
  target = predictive_ae.to_float(frames[:, -1])
  train = variant != "dropout"   # training draws other dropout masks in the two frameworks

  @jax.jit
  def run(v, x):
    """Eval: the predicted frame in pixels and score_step's PSNR. Train (decoder BN on batch
    statistics, the frozen encoder on its running ones): the prediction and eq. 3.1."""
    pred = predictive_ae.to_pixels(model.apply(v, x, train=False)[0])
    out = {"pred": pred, "psnr": scoring.psnr(jnp.clip(pred, 0, 1), target)[:, None]}
    if train:
      (pred, _), _ = model.apply(v, x, train=True, mutable=["batch_stats"])
      out["train_pred"] = predictive_ae.to_pixels(pred)
      out["loss"], out["terms"] = predictive_ae.prediction_loss(
          out["train_pred"], target, weights=config.model.loss_weights)
    return out

  want = run(variables, x)
  got = baseline.predict(torch_model, frames_t).permute(0, 2, 3, 1)
  assert _rel_diff(got, want["pred"]) < RTOL   # measured <= 4e-7
  np.testing.assert_allclose(baseline.score(torch_model, frames_t).numpy(), want["psnr"],
                             rtol=1e-5)
  if not train:
    return
  torch_model.train()
  assert not torch_model.encoder.training and torch_model.bn0.training
  inputs, target_t = baseline._split(torch_model, frames_t)
  pred_t = baseline.to_pixels(torch_model(inputs))
  assert _rel_diff(pred_t.permute(0, 2, 3, 1), want["train_pred"]) < RTOL   # measured <= 6e-7
  # SSIM of random frames is ~0.014: compared absolutely (measured 3e-8).
  assert common.ssim(pred_t, target_t).mean().item() == pytest.approx(
      1 - float(want["terms"]["ssim"]), abs=1e-6)
  assert common.gradient_loss(pred_t, target_t).item() == pytest.approx(
      float(want["terms"]["gradient"]), rel=1e-5)   # measured 0
  loss_t = baseline.train_loss(torch_model, frames_t)
  assert loss_t.item() == pytest.approx(float(want["loss"]), rel=1e-5)   # measured <= 9e-8
  loss_t.backward()
  assert all(p.grad is None for p in torch_model.encoder.parameters())   # frozen
  assert torch_model.merge.weight.grad is not None


def test_predictive_ae_loss_is_the_methods_train_step():
  """The full train_step of the method (augment none) gives the baseline's loss."""
  config, frames, model, _, variables, baseline, torch_model = _predictive("base")
  state = predictive_ae.State.create(
      apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"],
      tx=optax.adam(1e-3), rng=jax.random.key(0), loss_weights=tuple(config.model.loss_weights))
  metrics = jax.jit(predictive_ae.train_step)(state, {"frames": frames})[1]
  loss_t = baseline.train_loss(torch_model, torch.from_numpy(frames))
  assert loss_t.item() == pytest.approx(float(metrics["loss"]), rel=1e-5)


def test_predictive_ae_time_folding_is_frame_major_and_channels_last():
  from bench.torch_baselines import predictive_ae as baseline  # pylint: disable=g-import-not-at-top
  x = torch.randn(8, 6, 3, 5).contiguous(memory_format=torch.channels_last)   # [B·T, C, h, w]
  folded = baseline._fold_time(x, 2)
  assert torch.equal(folded, x.unflatten(0, (2, 4)).flatten(1, 2))   # [B, T·C, h, w]
  assert folded.is_contiguous(memory_format=torch.channels_last)


def test_ssim_matches_jaxvad_on_smooth_and_flat_frames():
  """Interior-only SSIM as jaxvad's, including flat regions where E[x^2] - E[x]^2 cancels."""
  rng = np.random.default_rng(3)
  a = rng.random((3, 24, 20, 2)).astype(np.float32)
  b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
  a[0], b[0] = 0.7, 0.7 + 1e-3 * rng.standard_normal(a.shape[1:])   # nearly flat frame
  a[1] = 0.1                                                          # two flat halves
  a[1, 12:] = 0.95
  b[1] = a[1] + 1e-3 * rng.standard_normal(a.shape[1:])
  want = np.asarray(scoring.ssim(a, b))
  got = common.ssim(torch.from_numpy(a).permute(0, 3, 1, 2),
                    torch.from_numpy(b).permute(0, 3, 1, 2)).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5)   # measured 5e-6


def test_build_rejects_augmentation():
  config = config_lib.load_config("predictive_ae_demo", ["model.augment=general"])
  with pytest.raises(ValueError, match="augment"):
    torch_baselines.get("predictive_ae").build(config)


# --------------------------------------------------------------------------- ffp


def test_ffp_step_and_score_match_jaxvad():
  """One training step of both networks and the score, on the same weights and batch.

  jaxvad's `ffp.train_step` against the baseline's `train_step` with its `optimizers`: the
  losses (the generator's intensity, gradient and adversarial terms and total, the
  discriminator's LSGAN loss), then every parameter after the Adam updates, the generator's BN
  running means, and `score_step`'s PSNR of the weights before the step. The gradient loss is
  jaxvad's on both sides (pairs inside the frame; the port's zero-padded border pairs would
  not agree).

  Adam's first step is `lr · g / (|g| + eps)`, with the default eps 1e-8 the sign of g only; both
  sides run it with eps = 1, where the update is about `lr · g`, so the comparison checks the
  gradients (the generator's adversarial term must not reach the discriminator) and the two
  learning rates (set large, and unequal, so the float32 parameter deltas keep their digits).
  """
  config = config_lib.load_config("ffp_demo", [
      "model.width=0.0625", "model.d_width=0.0625", "train.batch_size=2", "data.size=[32, 32]",
      "train.learning_rate=0.5", "model.d_learning_rate=0.2"])
  frames = _frames((2, 5, 32, 32, 3))
  generator, discriminator = ffp.build_models(config)
  x, target = ffp.stack_inputs(ffp.to_signed(frames))
  g_vars = _variables(generator, x, train=False)
  d_vars = _random_variables(dict(jax.eval_shape(
      lambda: discriminator.init(jax.random.key(0, impl="rbg"), target))), seed=1)
  key = jax.random.key(0)
  eps = 1.0
  state = ffp.State(
      step=jnp.zeros((), jnp.int32), rng=key, loss_weights=tuple(config.model.loss_weights),
      generator=TrainState.create(apply_fn=generator.apply, params=g_vars["params"],
                                  batch_stats=g_vars["batch_stats"], rng=key,
                                  tx=optax.adam(config.train.learning_rate, eps=eps)),
      discriminator=TrainState.create(apply_fn=discriminator.apply, params=d_vars["params"],
                                      rng=key,
                                      tx=optax.adam(config.model.d_learning_rate, eps=eps)))
  batch = {"frames": frames}
  scores = jax.jit(ffp.score_step)(state, batch)
  new_state, metrics = jax.jit(ffp.train_step)(state, batch)

  baseline = torch_baselines.get("ffp")
  model = baseline.build(config)
  baseline.load_flax_variables(model, {"generator": g_vars, "discriminator": d_vars})
  frames_t = torch.from_numpy(frames)
  assert _rel_diff(baseline.predict(model, frames_t).permute(0, 2, 3, 1),
                   scores["recon"][:, 0]) < RTOL   # measured 1.6e-7
  psnr = baseline.score(model, frames_t)
  assert psnr.shape == (2, 1)
  np.testing.assert_allclose(psnr.numpy(), scores["psnr"], rtol=1e-5)   # measured 9e-8
  single = copy.deepcopy(model)   # for train_loss, one backward pass (below)
  optimizers = baseline.optimizers(model, config)
  assert [o.param_groups[0]["lr"] for o in optimizers] == [0.5, 0.2]
  for o in optimizers:
    o.param_groups[0]["eps"] = eps
  losses = baseline.train_step(model, optimizers, frames_t)
  for name in ("intensity", "gradient", "adversarial", "loss", "d_loss"):
    assert losses[name].item() == pytest.approx(float(metrics[name]), rel=1e-5), name  # <= 4e-7
  assert float(metrics["adversarial"]) > 0.01 and float(metrics["d_loss"]) > 0.01

  # train_loss (the interface's single scalar): loss + d_loss, and its one backward pass gives
  # each network the gradient train_step gave it.
  total = baseline.train_loss(single, frames_t)
  assert total.item() == pytest.approx(float(metrics["loss"] + metrics["d_loss"]), rel=1e-5)
  total.backward()
  for (name, p), p_single in zip(model.named_parameters(), single.parameters()):
    np.testing.assert_allclose(p_single.grad.numpy(), p.grad.numpy(), rtol=0,
                               atol=1e-6 * float(p.grad.abs().max()) + 1e-12,
                               err_msg=name)   # measured <= 1e-7 of the largest

  for name, arch in (("generator", "ffp_unet"), ("discriminator", "ffp_patchgan")):
    net = getattr(new_state, name)
    before = common.state_dict_from_flax(
        {"generator": g_vars, "discriminator": d_vars}[name], arch=arch)
    after = common.state_dict_from_flax({"params": net.params, "batch_stats": net.batch_stats},
                                        arch=arch)
    got = getattr(model, name).state_dict()
    params = [k for k in before if k.endswith(("weight", "bias"))]
    want_delta = np.concatenate([(after[k] - before[k]).numpy().ravel() for k in params])
    got_delta = np.concatenate([(got[k] - before[k]).numpy().ravel() for k in params])
    assert np.abs(want_delta).max() > 1e-3, name   # the step moved the parameters
    # measured 3.5e-6 (generator), 3.8e-6 (discriminator); 0.28 for the discriminator when the
    # generator's backward pass also reaches it
    assert _rel_diff(got_delta, want_delta) < 1e-4, name
    for k in (k for k in before if k.endswith("running_mean")):
      assert _rel_diff(got[k], after[k]) < RTOL, k   # measured <= 1.7e-7


def test_ffp_tf_form_matches_jaxvad():
  """The TF original's networks (`model.form = "tf"`: U-Net without BN, with conv biases and
  ReLU after the transposed convs; reflect-padded discriminator) load and score as jaxvad's."""
  config = config_lib.load_config("ffp_demo", [
      "model.form=tf", "model.width=0.0625", "model.d_width=0.0625", "data.size=[32, 32]"])
  frames = _frames((2, 5, 32, 32, 3), seed=2)
  generator, discriminator = ffp.build_models(config)
  x, target = ffp.stack_inputs(ffp.to_signed(frames))
  g_vars = _variables(generator, x)
  d_vars = _variables(discriminator, target)
  assert "bias" in g_vars["params"]["inc"]["conv1"] and "bn1" not in g_vars["params"]["inc"]
  pred, d_out = jax.jit(lambda g, d: (generator.apply(g, x)[0],
                                      discriminator.apply(d, target)[0]))(g_vars, d_vars)
  baseline = torch_baselines.get("ffp")
  model = baseline.build(config)
  baseline.load_flax_variables(model, {"generator": g_vars, "discriminator": d_vars})
  frames_t = torch.from_numpy(frames)
  assert _rel_diff(baseline.predict(model, frames_t).permute(0, 2, 3, 1),
                   (pred + 1) / 2) < RTOL   # measured 2e-7
  _, target_t = baseline._split(model, frames_t)
  with torch.no_grad():
    assert _rel_diff(model.discriminator(target_t).permute(0, 2, 3, 1), d_out) < RTOL  # 1.7e-7


# --------------------------------------------------------------------------- f2lm


F2LM_TINY = ["model.width=0.0625", "model.d_width=0.0625", "data.size=[32,32]",
             "model.patch_grid=4", "train.batch_size=2"]


def _f2lm_random_state(config, batch):
  """An `f2lm.State` with random generator, discriminator and Destroyer variables (no layer an
  identity, BN running statistics random: the Destroyer phase runs the generator on them),
  drawn for `jax.eval_shape` shapes (no init compiled), and those variables by network."""
  s = f2lm.settings(config)
  x, motion, labels, target = f2lm.model_inputs(s, batch)
  models = f2lm.build_models(config)
  m, key = config.model, jax.random.key(0)
  rates = (config.train.learning_rate, m.d_learning_rate, m.destroyer_learning_rate)
  nets, trained = {}, {}
  for i, (name, model, inputs) in enumerate(zip(
      ("generator", "discriminator", "destroyer"), models,
      ((x, motion, labels), (target,), (target,)))):
    shapes = jax.eval_shape(lambda model=model, inputs=inputs: model.init(
        jax.random.key(0, impl="rbg"), *inputs, **({} if name == "discriminator"
                                                   else {"train": False})))
    nets[name] = _random_variables(dict(shapes), seed=10 + i)
    trained[name] = TrainState.create(
        apply_fn=model.apply, params=nets[name]["params"],
        batch_stats=nets[name].get("batch_stats"), rng=key,
        tx=optax.adamw(rates[i], weight_decay=m.weight_decay))
  return f2lm.State(step=jnp.zeros((), jnp.int32), rng=key, settings=s, **trained), nets


# ~45 s on 2 shared cores, nearly all XLA compiling jaxvad's two phase steps and score step
@pytest.mark.slow
def test_f2lm_phases_and_score_match_jaxvad():
  """Both training phases and the score on the same weights and batch (per-frame flow and class
  maps included): the generator phase's every loss (intensity, gradient, adversarial, both
  triplets, total, the discriminator's), the Destroyer phase's loss and mean gate (noise
  "none": the noise draws differ between the frameworks; `noise_patches` is checked below),
  the four score terms; and the generator's BN running means after its step."""
  config = config_lib.load_config("f2lm_demo", [*F2LM_TINY, "model.noise=none"])
  rng = np.random.default_rng(3)
  batch = {"frames": _frames((2, 5, 32, 32, 3), seed=3),
           **f2lm.example_inputs(config, (2, 5), rng)}
  state, nets = _f2lm_random_state(config, batch)
  scores = jax.device_get(jax.jit(f2lm.score_step)(state, batch))
  new_state, g_metrics = jax.jit(f2lm.generator_step)(state, batch)
  _, a_metrics = jax.jit(f2lm.destroyer_step)(state, batch)

  baseline = torch_baselines.get("f2lm")
  model = baseline.build(config)
  baseline.load_flax_variables(model, nets)
  frames_t = torch.from_numpy(batch["frames"])
  inputs_t = {k: torch.from_numpy(v) for k, v in batch.items() if k != "frames"}
  got = baseline.score(model, frames_t, inputs_t)
  assert set(got) == {"generator_error", "destroyer_error", "label_triplet", "motion_triplet"}
  for name, value in got.items():
    assert value.shape == (2, 1), name
    np.testing.assert_allclose(value.numpy(), scores[name], rtol=1e-4,
                               err_msg=name)   # measured <= 2.3e-6 (label triplet)
  optimizers = baseline.optimizers(model, config)
  assert [o.param_groups[0]["lr"] for o in optimizers] == [
      config.train.learning_rate, config.model.d_learning_rate,
      config.model.destroyer_learning_rate]
  losses = baseline.train_step(model, optimizers, frames_t, inputs_t)
  assert set(losses) == set(g_metrics) - {"psnr"}
  for name, value in losses.items():   # measured <= 5e-7
    assert value.item() == pytest.approx(float(g_metrics[name]), rel=1e-4, abs=1e-6), name
  assert float(g_metrics["label_triplet"]) > 0 and float(g_metrics["adversarial"]) > 0.01
  got_sd = model.generator.state_dict()
  g = new_state.generator
  n_checked = 0
  for key, (_, path) in convert_torch.key_mapping(arch="f2lm").items():
    if key.endswith("running_mean"):
      want = g.batch_stats
      for name in path:
        want = want[name]
      assert _rel_diff(got_sd[key], want) < 1e-4, key   # measured <= 3.2e-7
      n_checked += 1
  assert n_checked > 0

  # The Destroyer phase, from the weights before the generator's step. (The gate d is 1 on
  # every patch of these random frames, measured; the gated mix is the next test's.)
  baseline.load_flax_variables(model, nets)
  d_losses = baseline.destroyer_step(model, optimizers, frames_t, inputs_t)
  for name in ("loss", "zero_weight"):   # measured <= 1.2e-7
    assert d_losses[name].item() == pytest.approx(float(a_metrics[name]), rel=1e-4), name
  assert 0 < float(a_metrics["zero_weight"]) <= 1


def test_f2lm_destroyer_loss_and_patch_ssim_match_jaxvad():
  """The patch-gated loss and its per-patch SSIM (the frame's SSIM map averaged over each
  patch's interior pixels) on random model-space frames with some patches alike."""
  rng = np.random.default_rng(2)
  out, pred, noisy, frame = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
                             for _ in range(4))
  noisy[:, :16] = frame[:, :16] + 0.01   # some patches alike (d < 1), the rest not
  want_loss, want_d = f2lm.destroyer_loss(out, pred, noisy, frame, grid=4, lam=4.0)
  baseline = torch_baselines.get("f2lm")
  nchw = [torch.from_numpy(x).permute(0, 3, 1, 2) for x in (out, pred, noisy, frame)]
  loss, d = baseline.destroyer_loss(*nchw, grid=4, lam=4.0)
  assert loss.item() == pytest.approx(float(want_loss), rel=1e-5)   # measured 1e-7
  assert _rel_diff(d, want_d) < 1e-5   # measured 7e-7
  assert 0 < float(np.min(want_d)) < 1.0 and float(np.max(want_d)) == 1.0
  ssim = baseline.patch_ssim(((nchw[2] + 1) / 2).clamp(0, 1), (nchw[3] + 1) / 2, grid=4)
  want = scoring.patch_scores(np.clip((noisy + 1) / 2, 0, 1), (frame + 1) / 2, metric="ssim",
                              patch_size=8, stride=8)
  assert _rel_diff(ssim, want) < 1e-5   # measured 1.8e-7


@pytest.mark.parametrize("kind", ["ci", "cd"])
def test_f2lm_noise_patches_touch_only_chosen_patches(kind):
  """As jaxvad's (tests/test_f2lm.py): noised patches lose whole channels, scaled 1 / (1 - p)
  ("ci"), or pixels in every channel ("cd"); the others are unchanged."""
  torch.manual_seed(0)
  images = torch.rand(3, 3, 16, 16) * 0.7 + 0.2
  out = torch_baselines.get("f2lm").noise_patches(images, grid=4, kind=kind,
                                                  noise_rate=(0.5, 0.5),
                                                  dropout_rate=(0.4, 0.4)).numpy()
  images = images.numpy()
  changed = 0
  for b, r, c in np.ndindex(3, 4, 4):
    patch = out[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
    clean = images[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
    if np.array_equal(patch, clean):
      continue
    changed += 1
    if kind == "ci":
      for ch in range(3):
        assert (np.all(patch[ch] == 0) or np.allclose(patch[ch], clean[ch] / 0.6, rtol=1e-6))
    else:
      zero = np.all(patch == 0, axis=0)
      np.testing.assert_array_equal(patch[:, ~zero], clean[:, ~zero])
  assert 0 < changed < 48


# --------------------------------------------------------------------------- cutpaste

from jaxvad import density as density_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvad.methods import cutpaste as cutpaste_method  # noqa: E402

CUTPASTE_TINY = ["model.width=0.125", "model.head_layers=[16]", "model.embed_dim=16",
                 "data.roi=[]", "data.size=[32,32]", "train.batch_size=4"]


def _random_gaussian(dim, rng):
  """A random GaussianDensity: mean ~ 0.1 N(0, 1), a random SPD precision."""
  a = rng.standard_normal((dim, dim)) / np.sqrt(dim)
  return density_lib.GaussianDensity(
      mean=jnp.asarray(0.1 * rng.standard_normal(dim), jnp.float32),
      precision=jnp.asarray(a @ a.T + 0.5 * np.eye(dim), jnp.float32))


@pytest.fixture(scope="module")
def cutpaste_setup():
  """A batch of 4 frames 32x32 with their K = 2 views (the method's host transform, whole-frame
  boxes), random `CutPasteNet` variables and random Gaussians (pooled and layer3)."""
  config = config_lib.load_config("cutpaste_demo", CUTPASTE_TINY)
  rng = np.random.default_rng(4)
  frames = _frames((4, 1, 32, 32, 3), seed=4)
  items = [cutpaste_method.pseudo_anomaly_views(
      config, {"frames": frames[i], "box": np.array([[0, 0, 32, 32]], np.int32)}, rng)
      for i in range(4)]
  batch = {k: np.stack([item[k] for item in items]) for k in items[0]}
  model = cutpaste_method.build_model(config)
  x = cutpaste_method.encoder_input(cutpaste_method.to_float(frames[:, 0]))
  variables = _variables(model, x, train=False)
  dims = cutpaste_method._feature_dims(config)   # pylint: disable=protected-access
  gaussians = {"density": _random_gaussian(dims["pooled"], rng),
               "patch_density": _random_gaussian(dims["layer3"], rng)}
  return dict(config=config, batch=batch, variables=variables, gaussians=gaussians)


def _cutpaste_state(config, setup):
  state = cutpaste_method.create_state(config, jax.random.key(0),
                                       {"frames": setup["batch"]["frames"]})
  return state.replace(params=setup["variables"]["params"],
                       batch_stats=setup["variables"]["batch_stats"], **setup["gaussians"])


def _cutpaste_torch(config, setup):
  baseline = torch_baselines.get("cutpaste")
  model = baseline.build(config)
  baseline.load_flax_variables(model, setup["variables"], **setup["gaussians"])
  batch = setup["batch"]
  return (baseline, model, torch.from_numpy(batch["frames"]),
          {k: torch.from_numpy(v) for k, v in batch.items() if k != "frames"})


@pytest.mark.parametrize("localize", ["gradcam", "patch_gde"])
def test_cutpaste_score_matches_jaxvad(cutpaste_setup, localize):
  """`score` against `cutpaste.score_step` on the same weights and Gaussians: the GDE distance,
  1 - p(normal), the class probabilities and the map (Grad-CAM at layer3, min-max, upsampled
  bilinearly; or the per-position Mahalanobis distance, upsampled)."""
  config = config_lib.load_config("cutpaste_demo",
                                  [*CUTPASTE_TINY, f"model.localize={localize}"])
  state = _cutpaste_state(config, cutpaste_setup)
  want = jax.device_get(jax.jit(cutpaste_method.score_step)(state, cutpaste_setup["batch"]))
  baseline, model, frames_t, inputs_t = _cutpaste_torch(config, cutpaste_setup)
  got = baseline.score(model, frames_t, inputs_t)
  assert set(got) == {"gde", "softmax", "probs", "map"}
  assert got["gde"].shape == got["softmax"].shape == (4, 1)
  assert got["probs"].shape == (4, 1, 3) and got["map"].shape == (4, 1, 32, 32)
  # measured: gde 0 (identical), softmax 3.5e-7, probs 3.0e-7
  for name in ("gde", "softmax", "probs"):
    assert _rel_diff(got[name], want[name]) < RTOL, name
  # Grad-CAM maps (min-max of a 2x2 layer3 map, then x16 bilinear): measured 8.3e-7;
  # patch_gde maps: 2.7e-7. The min-max amplifies rounding where a map's span is small,
  # hence the looser bound.
  assert _rel_diff(got["map"], want["map"]) < 1e-4
  if localize == "gradcam":   # not trivially all zeros: every frame's map spans [0, 1]
    assert np.all(want["map"].max(axis=(1, 2, 3)) > 0.5) and np.min(want["map"]) == 0.0
  assert not any(p.grad is not None for p in model.parameters())   # autograd.grad only


def test_cutpaste_train_step_matches_jaxvad(cutpaste_setup):
  """One training step on the same weights, frames and views: the cross-entropy loss and the
  accuracy of jaxvad's `train_step` (train-mode BN, frame-major images, labels 0..K), and
  every parameter's update of its first SGD step (lr = the cosine's start, weight decay,
  momentum) against torch's SGD."""
  config = cutpaste_setup["config"]
  state = _cutpaste_state(config, cutpaste_setup)
  new_state, metrics = jax.jit(cutpaste_method.train_step)(state, cutpaste_setup["batch"])
  baseline, model, frames_t, inputs_t = _cutpaste_torch(config, cutpaste_setup)
  before = {k: v.detach().clone() for k, v in model.named_parameters()}
  optimizers = baseline.optimizers(model, config)
  group = optimizers[0].param_groups[0]
  assert (group["lr"], group["momentum"], group["weight_decay"]) == (
      config.train.learning_rate, config.model.momentum, config.model.weight_decay)
  losses = baseline.train_step(model, optimizers, frames_t, inputs_t)
  assert losses["loss"].item() == pytest.approx(float(metrics["loss"]), rel=1e-5)  # 6e-7
  assert losses["accuracy"].item() == pytest.approx(float(metrics["accuracy"]))
  stepped = baseline.load_flax_variables(baseline.build(config), {
      "params": new_state.params, "batch_stats": new_state.batch_stats})
  want = dict(stepped.named_parameters())
  # Each update against jaxvad's, relative to the tensor's largest update, beyond 2 float32
  # ulps of the parameter (both sides round p - lr (g + wd p) to float32: for BN scales ~1.5
  # with updates ~1e-3 one ulp alone is 1.2e-4 of the update). Measured: 1.4e-5 beyond.
  worst = 0.0
  for name, p in model.named_parameters():
    b, got_p, want_p = (t.detach().numpy() for t in (before[name], p, want[name]))
    ulp = np.spacing(np.maximum(np.abs(b), np.abs(want_p)))
    excess = np.maximum(np.abs(got_p - want_p) - 2 * ulp, 0).max()
    worst = max(worst, float(excess / np.abs(want_p - b).max()))
  assert worst < 1e-4, worst


def test_cutpaste_train_loss_needs_views(cutpaste_setup):
  baseline, model, frames_t, inputs_t = _cutpaste_torch(cutpaste_setup["config"],
                                                        cutpaste_setup)
  with pytest.raises(ValueError, match="views"):
    baseline.train_loss(model, frames_t, {"box": inputs_t["box"]})

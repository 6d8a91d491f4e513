"""Paper 004's F2LM generator (jaxvad.models.f2lm) and its converter entry ("f2lm"), checked
against PyTorch.

The PyTorch side is bench/torch_baselines/f2lm.py's `F2LMGenerator`: the official
SkiddieAhn/Paper-Making-Anomalies-More-Anomalous `F2LM_Generator/network/unet.py` `UNet` module
for module (same state-dict keys), with a width multiplier and `F2LM`'s ablations. Weights go
torch -> Flax through `convert_torch`, so the parity tests check the converter as well. torch
is part of the `test` extra; the parity tests skip without it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import convert_torch
from jaxvad.models.f2lm import F2LM
from tests.layouts import channels_last, leaf

WIDTH = 0.125            # encoders 8/16/32/64 channels, SE 64 -> 8 -> 64: seconds on 2 cores
CLASSES = 3              # K: the label input is 4 frames x K class maps
IN_CHANNELS = (12, 6, 4 * CLASSES)   # frames (4 RGB), motion (3 flows), labels
OFFICIAL_IN_CHANNELS = (12, 6, 84)   # the official K = 21 (deeplabv3's VOC classes)
HW = (32, 32)
BATCH = 2
VARIANTS = {"full": {}, "no_motion": {"motion": False}, "no_labels": {"labels": False},
            "concat": {"fusion": "concat"}, "add": {"fusion": "add"}}
# The torch model's outputs after the frame, in order, and aux's names for them.
FEATURES = ("frame", "motion", "to_motion", "label", "to_label")
# Width 1, official inputs: FFP's U-Net (7,707,011, tests/test_unet.py) + motion encoder
# (4,685,568 + 576 · 6) + label encoder (+ 576 · 84) + 2 transforms (4,720,640 each) + fusion
# conv (1536 · 512 · 9 + 512 · 512 · 9 + 2 · 1024) + SE (2 · 512 · 64 + 64 + 512).
F2LM_PARAMS = 36_076_611
# Down-sampling of each module's output (what its BNs see per image), by module name.
_STRIDE = {"inc": 1, "down1": 2, "down2": 4, "down3": 8, "transform_xtoy": 8,
           "transform_xtoz": 8, "fusion_conv": 8, "up1": 4, "up2": 2, "up3": 1}


def _n_params(tree):
  return sum(math.prod(p.shape) for p in jax.tree.leaves(tree))


def _inputs_on(variant):
  """Which of (frames, motion, labels) a variant takes."""
  return (True, variant.get("motion", True), variant.get("labels", True))


@pytest.fixture(scope="module")
def torch_mod():
  torch = pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top  # needs torch
  return torch, torch_reference


def _torch_f2lm(torch, module, variant, *, seed=0, width=WIDTH, in_channels=IN_CHANNELS):
  """A random torch F2LM in eval mode: seeded weights, random BN statistics."""
  torch.manual_seed(seed)   # weight init draws from the global generator
  gen = torch.Generator().manual_seed(seed)
  model = module.F2LMGenerator(*in_channels, width=width, **variant)
  module.randomize_bn(model, gen)
  return model.eval(), gen


def _torch_inputs(torch, gen, variant):
  """NCHW (frames in [-1, 1], flows, label logits), None where the variant has no encoder."""
  h, w = HW
  frames = torch.rand(BATCH, IN_CHANNELS[0], h, w, generator=gen) * 2 - 1
  motion = torch.randn(BATCH, IN_CHANNELS[1], h, w, generator=gen)
  labels = torch.randn(BATCH, IN_CHANNELS[2], h, w, generator=gen)   # deeplab logits
  return tuple(t if on else None for t, on in zip((frames, motion, labels), _inputs_on(variant)))


def _nhwc(inputs):
  return tuple(None if t is None else channels_last(t) for t in inputs)


def _unit_scale_outc(torch, module, model, inputs):
  """Shifts and scales outc so its output has mean 0, std 1 per channel in the model's mode:
  with default init tanh's input is |.| ~ 0.1, where tanh is near-linear and a comparison says
  little; and one scale does not fit both modes (random running statistics make eval-mode
  activations ~5x smaller), where float32 rounding grows with tanh's input. A train-mode pass's
  running-statistics update is undone."""
  buffers = {k: v.clone() for k, v in model.named_buffers()}
  store, handles = module.hooked_activations(model, ["outc"])
  with torch.no_grad():
    model(*inputs)
    y = store["outc"].transpose(0, 1).flatten(1)   # [C_out, everything else]
    mean, std = y.mean(1), y.std(1)
    model.outc.weight.div_(std[:, None, None, None])
    model.outc.bias.sub_(mean).div_(std)
    for k, v in model.named_buffers():
      v.copy_(buffers[k])
  for h in handles:
    h.remove()


def _torch_forward(torch, model, inputs):
  """(out NHWC, {feature: NHWC}) of the torch model; absent features left out."""
  with torch.no_grad():
    out, *feats = model(*inputs)
  return channels_last(out), {k: channels_last(v) for k, v in zip(FEATURES, feats)
                              if v is not None}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_and_batch_stats_match_torch(torch_mod, name):
  """Eval and train mode, outputs and the five normalised features, converted weights; the
  running statistics train mode leaves follow torch's (var up to n / (n - 1)). Each mode has
  its own outc scale (`_unit_scale_outc`), so two weight sets."""
  torch, module = torch_mod
  variant = VARIANTS[name]
  model_t, gen = _torch_f2lm(torch, module, variant, seed=list(VARIANTS).index(name))
  inputs = _torch_inputs(torch, gen, variant)
  _unit_scale_outc(torch, module, model_t, inputs)
  out_t, feats_t = _torch_forward(torch, model_t, inputs)
  state_t = {k: v.clone() for k, v in model_t.state_dict().items()}   # train mode updates BN
  model_t.train()
  _unit_scale_outc(torch, module, model_t, inputs)
  train_state_t = {k: v.clone() for k, v in model_t.state_dict().items()}
  train_out_t, train_feats_t = _torch_forward(torch, model_t, inputs)
  new_t = model_t.state_dict()

  model = F2LM(width=WIDTH, **variant)
  x = _nhwc(inputs)
  init = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *x))
  # The model's variant is read from its variables: the checkpoint must have just its modules.
  variables = convert_torch.load_torch_weights(init, state_t, arch="f2lm")
  train_variables = convert_torch.torch_to_flax(train_state_t, arch="f2lm")
  assert _n_params(init["params"]) == sum(p.numel() for p in model_t.parameters())
  keys = [k for k in state_t if not k.endswith("num_batches_tracked")]
  assert keys == convert_torch.torchvision_keys(arch="f2lm", variant=variant)

  @jax.jit   # one compilation for both modes
  def both(v, train_v, x):
    return model.apply(v, *x), model.apply(train_v, *x, train=True, mutable=["batch_stats"])

  (out, aux), ((train_out, train_aux), updates) = both(variables, train_variables, x)
  assert set(aux) == set(train_aux) == set(feats_t)
  assert out.shape == (BATCH, *HW, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, out_t, rtol=0, atol=1e-5)   # measured <= 2.9e-6
  np.testing.assert_allclose(train_out, train_out_t, rtol=0, atol=1e-5)   # measured <= 4.6e-6
  assert np.abs(out_t).max() > 0.5 and np.abs(train_out_t).max() > 0.5   # tanh's curved range
  for k in feats_t:
    assert aux[k].shape == (BATCH, HW[0] // 8, HW[1] // 8, 64), k
    # measured <= 3.3e-7 (eval), 2.0e-6 (train)
    np.testing.assert_allclose(aux[k], feats_t[k], rtol=0, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(train_aux[k], train_feats_t[k], rtol=0, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(np.linalg.norm(aux[k], axis=-1), 1, rtol=1e-5, err_msg=k)

  n_checked = 0
  for key, (collection, path) in convert_torch.key_mapping(arch="f2lm", variant=variant).items():
    if collection != "batch_stats":
      continue
    old, new = leaf(train_variables["batch_stats"], path), leaf(updates["batch_stats"], path)
    assert not np.allclose(new, old), key
    if path[-1] == "mean":
      np.testing.assert_allclose(new, new_t[key], rtol=1e-5, atol=1e-5, err_msg=key)
    else:  # torch adds 0.1 x the unbiased batch variance, Flax 0.1 x the biased one
      stride = _STRIDE[path[0].rsplit("_", 1)[0] if path[0].endswith(("_x", "_y", "_z"))
                       else path[0]]
      n = BATCH * (HW[0] // stride) * (HW[1] // stride)
      batch_var_t = (new_t[key].numpy() - 0.9 * old) / 0.1
      np.testing.assert_allclose(new, 0.9 * old + 0.1 * batch_var_t * (n - 1) / n,
                                 rtol=1e-4, atol=1e-5, err_msg=key)
    n_checked += 1
  double_convs = 4 * sum(_inputs_on(variant)) + (sum(_inputs_on(variant)) - 1) + 3 + (
      variant.get("fusion") != "add")   # encoders, transforms, ups, fusion conv
  assert n_checked == 2 * 2 * double_convs   # mean and var of 2 BNs in each


def test_official_width_has_the_official_parameter_count(torch_mod):
  """Width 1 with the official 12 / 6 / 84 inputs: `F2LM` = torch `F2LMGenerator(12, 6, 84)`,
  for the paper's model and each ablation (shapes only: jax.eval_shape)."""
  torch, module = torch_mod
  h = w = 32
  x = [jnp.zeros((1, h, w, c)) for c in OFFICIAL_IN_CHANNELS]
  for name, variant in VARIANTS.items():
    model = F2LM(**variant)
    inputs = [t if on else None for t, on in zip(x, _inputs_on(variant))]
    shapes = jax.eval_shape(lambda model=model, inputs=inputs: model.init(
        jax.random.PRNGKey(0), *inputs))
    model_t = module.F2LMGenerator(*OFFICIAL_IN_CHANNELS, **variant)
    n_t = sum(p.numel() for p in model_t.parameters())
    assert _n_params(shapes["params"]) == n_t, name
    assert _n_params(shapes["batch_stats"]) == sum(b.numel() for b in model_t.buffers()) - sum(
        1 for m in model_t.modules() if isinstance(m, torch.nn.BatchNorm2d)), name
    if name == "full":
      assert n_t == F2LM_PARAMS
      assert shapes["params"]["se"]["fc1"]["kernel"].shape == (512, 64)
      assert shapes["params"]["inc_z"]["conv1"]["kernel"].shape == (3, 3, 84, 64)
      assert shapes["params"]["fusion_conv"]["conv1"]["kernel"].shape == (3, 3, 1536, 512)


def test_conversion_errors_name_the_problem(torch_mod, tmp_path):
  torch, module = torch_mod
  model_t, _ = _torch_f2lm(torch, module, {})
  sd = model_t.state_dict()

  def init(variant, width=WIDTH, in_channels=IN_CHANNELS):
    x = [jnp.zeros((1, *HW, c)) for c in in_channels]
    inputs = [t if on else None for t, on in zip(x, _inputs_on(variant))]
    return jax.eval_shape(lambda: F2LM(width=width, **variant).init(jax.random.PRNGKey(0),
                                                                       *inputs))

  # The official training checkpoint ({"net_g", "net_d", "optimizer_g", ...}): "net_g" is read.
  path = tmp_path / "0_g_best_auc_avenue.pth"
  disc_t = module.PixelDiscriminator(3, width=WIDTH)
  torch.save({"net_g": sd, "optimizer_g": {}, "net_d": disc_t.state_dict(), "step": 7}, path)
  loaded = convert_torch.load_torch_weights(init({}), path, arch="f2lm")
  np.testing.assert_array_equal(loaded["params"]["se"]["fc1"]["kernel"],
                                model_t.se.fc1.weight.detach().numpy().T)   # [in, out]
  np.testing.assert_array_equal(loaded["batch_stats"]["transform_xtoz"]["bn2"]["mean"],
                                model_t.transform_xtoz.conv[4].running_mean.numpy())

  # A full model's checkpoint into an ablation: its extra modules are unknown keys.
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not a SkiddieAhn/Paper-Making-Anomalies-More-Anomalous F2LM UNet "
                           r"state dict: unknown 50 key\(s\): down1_y\.mpconv\.1\.conv\.0\.weight"
                           r".* \(the checkpoint is an F2LM\(motion=True, labels=True, "
                           r"fusion='concat_se'\), not the F2LM\(motion=False, labels=True, "
                           r"fusion='concat_se'\) asked for\)"):
    convert_torch.load_torch_weights(init({"motion": False}), sd, arch="f2lm")
  with pytest.raises(convert_torch.ConversionError, match=r"unknown 4 key\(s\): se\.fc1\.bias"):
    convert_torch.load_torch_weights(init({"fusion": "concat"}), sd, arch="f2lm")
  # An ablation's checkpoint into the full model: missing keys, in forward order.
  no_labels_t, _ = _torch_f2lm(torch, module, {"labels": False})
  with pytest.raises(convert_torch.ConversionError,
                     match=r"missing 50 key\(s\): inc_z\.conv\.conv\.0\.weight, "
                           r"inc_z\.conv\.conv\.1\.weight"):
    convert_torch.load_torch_weights(init({}), no_labels_t.state_dict(), arch="f2lm")
  # Without a model the variant comes from the keys: an ablation's checkpoint converts.
  converted = convert_torch.torch_to_flax(no_labels_t.state_dict(), arch="f2lm")
  assert "inc_z" not in converted["params"] and "transform_xtoy" in converted["params"]
  # An encoder F2LM has no slot for, whatever the variant.
  extra = {**sd, "inc_w.conv.conv.0.weight": sd["inc_x.conv.conv.0.weight"]}
  with pytest.raises(convert_torch.ConversionError,
                     match=r"unknown 1 key\(s\): inc_w\.conv\.conv\.0\.weight$"):
    convert_torch.torch_to_flax(extra, arch="f2lm")
  # The wrong arch either way: the hint names the right one.
  unet_t = module.FFPUNet(12, 3, width=WIDTH)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not a SkiddieAhn.* F2LM UNet state dict: missing .* \(this is a "
                           r"feiyuhuahuo/Anomaly_Prediction UNet state dict: pass "
                           r"arch='ffp_unet'\)"):
    convert_torch.torch_to_flax(unet_t.state_dict(), arch="f2lm")
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not a feiyuhuahuo/Anomaly_Prediction UNet state dict: .* \(this is "
                           r"a SkiddieAhn/Paper-Making-Anomalies-More-Anomalous F2LM UNet state "
                           r"dict: pass arch='f2lm'\)"):
    convert_torch.torch_to_flax(no_labels_t.state_dict(), arch="ffp_unet")
  # Bad ranks: the SE's Linear and a conv.
  with pytest.raises(convert_torch.ConversionError,
                     match=r"se\.fc2\.weight: expected a Linear weight \[out, in\], got shape "
                           r"\(64, 8, 1, 1\)"):
    convert_torch.torch_to_flax({**sd, "se.fc2.weight": sd["se.fc2.weight"][:, :, None, None]},
                                arch="f2lm")
  with pytest.raises(convert_torch.ConversionError,
                     match=r"transform_xtoy\.conv\.3\.weight: expected a Conv2d weight"):
    convert_torch.torch_to_flax(
        {**sd, "transform_xtoy.conv.3.weight": sd["transform_xtoy.conv.3.weight"][0]},
        arch="f2lm")
  # Another width, and the official 21-class label maps for a K = 3 model: both named.
  official_t, _ = _torch_f2lm(torch, module, {}, width=0.25, in_channels=OFFICIAL_IN_CHANNELS)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"width 0.25 \(16 inc_x channels\), the model 0.125 \(8\); the "
                           r"checkpoint's label encoder takes 84 input channels, the model's "
                           r"12; shape"):
    convert_torch.load_torch_weights(init({}), official_t.state_dict(), arch="f2lm")
  with pytest.raises(convert_torch.ConversionError, match="variant is F2LM's"):
    convert_torch.key_mapping(arch="ffp_unet", variant={})
  with pytest.raises(convert_torch.ConversionError, match="fusion must be one of"):
    convert_torch.key_mapping(arch="f2lm", variant={"fusion": "sum"})


def test_official_init_leaves_bn_and_transposed_convs_at_torch_defaults(torch_mod):
  """The official generator init (`proposed_weights_init`): conv / Linear weights N(0, 0.02)
  with zero biases; BatchNorm2d and ConvTranspose2d keep torch's defaults."""
  torch, module = torch_mod
  torch.manual_seed(0)
  model = module.init_weights(module.F2LMGenerator(*IN_CHANNELS, width=0.25))
  w = model.fusion_conv.conv[0].weight.detach()   # 3x3, 384 -> 128: 442k weights
  assert abs(w.std().item() - 0.02) < 0.0005 and w.abs().max().item() < 0.2
  assert model.outc.bias.abs().max().item() == 0 and model.se.fc1.bias.abs().max().item() == 0
  assert abs(model.se.fc1.weight.std().item() - 0.02) < 0.003
  bn = model.down2_y.mpconv[1].conv[1]
  assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
  up = model.up1.up   # kaiming-uniform, bound 1 / sqrt(out · 2 · 2) = 1 / 16
  assert 0.9 / 16 < up.weight.abs().max().item() <= 1 / 16
  assert up.bias.abs().max().item() > 0

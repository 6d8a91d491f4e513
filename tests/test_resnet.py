"""ResNet-18 (jaxvad.models.resnet) and its torchvision converter, checked against PyTorch.

The PyTorch side is tests/torch_reference.py, torchvision's resnet18 module for module (same
state-dict keys); torch is part of the `test` extra, and these tests skip without it.

Tolerances: with random BN running statistics (eval mode is then no identity) the residual sums
grow to |x| ~ 10..50 by layer4, and float32 rounding differences grow with them (measured
max |diff| / max |ref| ~ 1e-6), so stage outputs are compared relative to their largest value.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import convert_torch
from jaxvad.models.resnet import (IMAGENET_MEAN, IMAGENET_STD, STAGE_NAMES, ResNet18,
                                  imagenet_normalize, stage_features)
from tests.layouts import channels_last, leaf

WIDTH = 0.125       # 8/16/32/64 channels: the whole file runs in seconds on 2 CPU cores
CLASSES = 5
TORCHVISION_RESNET18_PARAMS = 11_689_512   # torchvision's ResNet18_Weights meta["num_params"]
ARCH = "resnet18"


def _torch_model(torch, module, *, width, num_classes, seed=0):
  """A random torch resnet18 in eval mode: seeded convs, random BN stats, O(1)-scale fc."""
  torch.manual_seed(seed)   # conv init draws from the global generator
  gen = torch.Generator().manual_seed(seed)
  model = module.resnet18(num_classes=num_classes, width=width)
  module.randomize_bn(model, gen)
  with torch.no_grad():
    # nn.Linear's default init makes logits small; unit-variance logits make the check meaningful.
    fc = model.fc
    fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) / math.sqrt(fc.in_features))
    fc.bias.copy_(torch.randn(fc.bias.shape, generator=gen))
  return model.eval(), gen


def _run_torch(torch, module, model, x):
  """(stage outputs NHWC, logits) of a torch resnet18 on an NCHW input."""
  store, handles = module.hooked_activations(model, STAGE_NAMES)
  with torch.no_grad():
    logits = model(x).numpy()
  for h in handles:
    h.remove()
  return {k: channels_last(v) for k, v in store.items()}, logits


def _max_rel_diff(a, ref):
  """max |a - ref| / max |ref|."""
  return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def ref():
  """A random tiny torch resnet18, its [2, 3, 64, 64] input and eval outputs."""
  torch = pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top  # needs torch
  model, gen = _torch_model(torch, torch_reference, width=WIDTH, num_classes=CLASSES)
  x = torch.randn(2, 3, 64, 64, generator=gen)
  stages, logits = _run_torch(torch, torch_reference, model, x)
  return dict(torch=torch, module=torch_reference, x=x, stages=stages, logits=logits,
              state_dict={k: v.clone() for k, v in model.state_dict().items()})


def test_reference_has_torchvision_layout():
  """Key names per torchvision/models/resnet.py; full-width size = torchvision's."""
  pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  model = torch_reference.resnet18()
  keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
  assert keys == convert_torch.torchvision_keys(arch=ARCH)
  assert keys[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"] and keys[-2:] == [
      "fc.weight", "fc.bias"]
  assert "layer2.0.downsample.0.weight" in keys and "layer1.0.downsample.0.weight" not in keys
  n_torch = sum(p.numel() for p in model.parameters())
  shapes = jax.eval_shape(lambda: ResNet18(num_classes=1000).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  n_flax = sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
  assert n_torch == n_flax == TORCHVISION_RESNET18_PARAMS


def test_eval_forward_matches_torch_every_stage(ref):
  variables = convert_torch.torch_to_flax(ref["state_dict"], arch=ARCH)
  model = ResNet18(width=WIDTH, num_classes=CLASSES)
  logits, out = jax.jit(lambda v, x: model.apply(v, x))(variables, channels_last(ref["x"]))
  assert set(out) == set(STAGE_NAMES) and logits.dtype == jnp.float32
  for name in STAGE_NAMES:
    assert out[name].shape == ref["stages"][name].shape, name
    assert _max_rel_diff(out[name], ref["stages"][name]) < 5e-6, name   # measured <= 4.2e-7
  np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=5e-5)  # measured 3.3e-6
  assert np.abs(ref["logits"]).max() > 1   # the comparison is not between near-zeros


def test_full_width_matches_torch_on_a_non_square_image():
  torch = pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  model_t, gen = _torch_model(torch, torch_reference, width=1.0, num_classes=1000, seed=1)
  x = torch.randn(1, 3, 64, 96, generator=gen)
  stages, logits = _run_torch(torch, torch_reference, model_t, x)
  variables = convert_torch.torch_to_flax(model_t.state_dict(), arch=ARCH)
  model = ResNet18(num_classes=1000)
  logits_j, out = jax.jit(lambda v, x: model.apply(v, x))(variables, channels_last(x))
  assert out["layer4"].shape == (1, 2, 3, 512) and logits_j.shape == (1, 1000)
  for name in STAGE_NAMES:
    assert _max_rel_diff(out[name], stages[name]) < 1e-5, name   # measured <= 1.3e-6
  assert _max_rel_diff(logits_j, logits) < 1e-5


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (160, 64), (224, 224)])
def test_stage_shapes_for_sizes_divisible_by_32(hw):
  h, w = hw
  x = jnp.zeros((2, h, w, 3))
  model = ResNet18(width=WIDTH)   # backbone only
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  assert "fc" not in variables["params"]
  feats, out = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert set(out) == set(STAGE_NAMES) and feats.shape == out["layer4"].shape
  for name, f, stride in zip(STAGE_NAMES, stage_features(WIDTH), (4, 8, 16, 32)):
    assert out[name].shape == (2, h // stride, w // stride, f), name
  assert stage_features(1.0) == (64, 128, 256, 512) and stage_features(WIDTH) == (8, 16, 32, 64)


def test_odd_sizes_give_torch_shapes(ref):
  """Explicit paddings: every size maps as in torch, not just multiples of 32."""
  torch, module = ref["torch"], ref["module"]
  model_t = module.resnet18(num_classes=CLASSES, width=WIDTH).eval()
  x = torch.zeros(1, 3, 37, 50)
  stages, _ = _run_torch(torch, module, model_t, x)
  model = ResNet18(width=WIDTH, num_classes=CLASSES)
  x = jnp.zeros((1, 37, 50, 3))
  _, out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x)[0])
  assert {k: v.shape for k, v in out.items()} == {
      k: v.shape for k, v in stages.items()}
  assert out["layer4"].shape[1:3] == (2, 2)


def test_train_mode_matches_torch_and_updates_batch_stats(ref):
  """Batch-statistics forward agrees; running stats follow torch (var up to n / (n - 1))."""
  torch = ref["torch"]
  model_t = ref["module"].resnet18(num_classes=CLASSES, width=WIDTH)
  model_t.load_state_dict(ref["state_dict"])
  model_t.train()
  with torch.no_grad():
    logits_t = model_t(ref["x"]).numpy()
  new_t = model_t.state_dict()
  variables = convert_torch.torch_to_flax(ref["state_dict"], arch=ARCH)
  model = ResNet18(width=WIDTH, num_classes=CLASSES)
  (logits, out), updates = jax.jit(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
          variables, channels_last(ref["x"]))
  np.testing.assert_allclose(logits, logits_t, rtol=1e-5, atol=1e-4)
  for key, (collection, path) in convert_torch.key_mapping(arch=ARCH).items():
    if collection != "batch_stats":
      continue
    old = leaf(variables["batch_stats"], path)
    new = leaf(updates["batch_stats"], path)
    assert not np.allclose(new, old), key
    if path[-1] == "mean":
      np.testing.assert_allclose(new, new_t[key], rtol=1e-5, atol=1e-5, err_msg=key)
    else:  # torch adds 0.1 x the unbiased batch variance, Flax 0.1 x the biased one
      # n: the values per channel the BN averaged (bn1: N·H/2·W/2; a block's: its stage's).
      n = 2 * 32 * 32 if path[0] == "bn1" else math.prod(
          out[path[0].split("_")[0]].shape[:-1])
      batch_var_t = (new_t[key].numpy() - 0.9 * old) / 0.1
      np.testing.assert_allclose(new, 0.9 * old + 0.1 * batch_var_t * (n - 1) / n,
                                 rtol=1e-4, atol=1e-5, err_msg=key)


def test_backbone_only_loads_with_include_fc_false(ref, tmp_path):
  model = ResNet18(width=WIDTH)   # num_classes=None: no fc
  x = channels_last(ref["x"])
  init = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not in the model: params/fc/kernel, params/fc/bias; the model has "
                           r"no fc: pass include_fc=False"):
    convert_torch.load_torch_weights(init, ref["state_dict"], arch=ARCH)
  path = tmp_path / "resnet18.pth"
  ref["torch"].save(ref["state_dict"], path)
  loaded = convert_torch.load_torch_weights(init, path, arch=ARCH, include_fc=False)
  assert "fc" not in loaded["params"]
  kernel = loaded["params"]["layer2_0"]["downsample"]["conv"]["kernel"]
  assert kernel.shape == (1, 1, 8, 16)   # HWIO
  np.testing.assert_array_equal(
      kernel[0, 0], ref["state_dict"]["layer2.0.downsample.0.weight"].numpy()[:, :, 0, 0].T)
  np.testing.assert_array_equal(loaded["batch_stats"]["layer3_1"]["bn2"]["var"],
                                ref["state_dict"]["layer3.1.bn2.running_var"].numpy())
  feats, out = jax.jit(lambda v, x: model.apply(v, x))(loaded, x)
  assert set(out) == set(STAGE_NAMES)
  np.testing.assert_array_equal(feats, out["layer4"])   # backbone only: the main output
  assert _max_rel_diff(out["layer4"], ref["stages"]["layer4"]) < 5e-6


def test_conversion_errors_name_the_keys_and_the_file(ref, tmp_path):
  sd = dict(ref["state_dict"])
  path = tmp_path / "broken.pth"
  ref["torch"].save({k: v for k, v in sd.items() if k != "layer3.1.bn2.running_var"}, path)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not a torchvision resnet18 state dict in '.*broken\.pth': "
                           r"missing 1 key\(s\): layer3\.1\.bn2\.running_var"):
    convert_torch.torch_to_flax(path, arch=ARCH)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"unknown 1 key\(s\): layer5\.0\.conv1\.weight"):
    convert_torch.torch_to_flax({**sd, "layer5.0.conv1.weight": sd["conv1.weight"]}, arch=ARCH)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"conv1\.weight: expected a Conv2d weight \[out, in, H, W\], got "
                           r"shape \(8, 3, 1, 7, 7\)"):
    convert_torch.torch_to_flax({**sd, "conv1.weight": sd["conv1.weight"][:, :, None]},
                                arch=ARCH)
  # The default arch is r3d_18: a resnet18 checkpoint says which arch to pass.
  with pytest.raises(convert_torch.ConversionError, match="pass arch='resnet18'"):
    convert_torch.torch_to_flax(sd)
  with pytest.raises(convert_torch.ConversionError, match="unknown arch 'resnet50'"):
    convert_torch.torch_to_flax(sd, arch="resnet50")
  # Another width: every mismatching leaf is a shape error.
  wide = jax.eval_shape(lambda: ResNet18(width=0.25, num_classes=CLASSES).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"width 0.125 \(8 conv1 channels\), the model 0.25 \(16\); "
                           r"shape \(checkpoint vs model\): "
                           r"params/conv1/kernel \(7, 7, 3, 8\) vs \(7, 7, 3, 16\)"):
    convert_torch.load_torch_weights(wide, sd, arch=ARCH)
  # Another class count: the fc alone mismatches.
  other = jax.eval_shape(lambda: ResNet18(width=WIDTH, num_classes=7).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"another class count.*params/fc/kernel \(64, 5\) vs \(64, 7\)"):
    convert_torch.load_torch_weights(other, sd, arch=ARCH)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = ResNet18(width=WIDTH, num_classes=4, dtype=jnp.bfloat16)
  x = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, out = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert logits.dtype == jnp.float32 and out["layer4"].dtype == jnp.bfloat16


def test_init_follows_torchvision():
  """Kaiming fan_out convs, BN 1 / 0, fc (and bias) U(±1/sqrt(fan_in)) as torch's nn.Linear."""
  model = ResNet18(width=0.25, num_classes=10)
  # An rbg key: compiling init with threefry keys takes ~10 s on 2 CPU cores, rbg a fraction.
  params = jax.jit(lambda: model.init(jax.random.key(0, impl="rbg"),
                                      jnp.zeros((1, 32, 32, 3))))()["params"]
  kernel = np.asarray(params["layer4_1"]["conv2"]["kernel"])    # 3x3, 128 -> 128
  np.testing.assert_allclose(kernel.std(), math.sqrt(2 / (9 * 128)), rtol=0.02)
  np.testing.assert_array_equal(params["layer2_0"]["bn1"]["scale"], 1)
  np.testing.assert_array_equal(params["layer2_0"]["bn1"]["bias"], 0)
  bound = 1 / math.sqrt(128)
  kernel, bias = np.asarray(params["fc"]["kernel"]), np.asarray(params["fc"]["bias"])
  assert 0.9 * bound < np.abs(kernel).max() <= bound
  assert 0 < np.abs(bias).max() <= bound


def test_imagenet_normalize():
  x = np.stack([np.zeros((2, 3)), np.ones((2, 3))]).astype(np.float32)   # [2, 2, 3]
  y = np.asarray(imagenet_normalize(x))
  np.testing.assert_allclose(y[0, 0], -np.array(IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
  np.testing.assert_allclose(y[1, 1], (1 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, rtol=1e-6)
  assert imagenet_normalize(jnp.zeros((3,), jnp.bfloat16)).dtype == jnp.bfloat16
  with pytest.raises(TypeError, match="255"):
    imagenet_normalize(np.zeros((4, 4, 3), np.uint8))

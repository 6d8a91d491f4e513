"""R3D-18 (jaxvad.models.r3d) and the torchvision converter, checked against PyTorch.

The PyTorch side is tests/torch_reference.py, torchvision's r3d_18 module for module (same
state-dict keys); torch is part of the `test` extra, and these tests skip without it.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import convert_torch
from jaxvad.models.r3d import (ACTIVATION_NAMES, R3D18, R3D18Tiny, TorchvisionR3D18,
                               output_frames, stage_features)
from tests.layouts import channels_last, leaf

WIDTH = 0.125       # 8/16/32/64 channels: the whole file runs in seconds on 2 CPU cores
CLASSES = 5
TORCHVISION_R3D18_PARAMS = 33_371_472   # torchvision's R3D_18_Weights meta["num_params"]


@pytest.fixture(scope="module")
def ref():
  """A random torch r3d_18 (tiny width, random BN stats, O(1) logits), its input and outputs."""
  torch = pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top  # needs torch
  gen = torch.Generator().manual_seed(0)
  model = torch_reference.r3d_18(num_classes=CLASSES, width=WIDTH)
  torch_reference.randomize_bn(model, gen)
  with torch.no_grad():
    # torchvision's N(0, 0.01) fc makes logits ~1e-2; a larger fc makes the check meaningful.
    model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=gen))
    model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=gen))
  model.eval()
  x = torch.randn(2, 3, 8, 32, 32, generator=gen)
  store, handles = torch_reference.hooked_activations(model, ACTIVATION_NAMES)
  with torch.no_grad():
    logits = model(x)
  for h in handles:
    h.remove()
  return dict(torch=torch, module=torch_reference, model=model, x=x, logits=logits.numpy(),
              acts={k: channels_last(v) for k, v in store.items()},
              state_dict={k: v.clone() for k, v in model.state_dict().items()})


def test_reference_has_torchvision_layout():
  """Key names per torchvision/models/video/resnet.py; full-width size = torchvision's."""
  pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  model = torch_reference.r3d_18()
  keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
  assert keys == convert_torch.torchvision_keys()
  assert keys[:4] == ["stem.0.weight", "stem.1.weight", "stem.1.bias", "stem.1.running_mean"]
  assert "layer2.0.downsample.0.weight" in keys and "layer1.0.downsample.0.weight" not in keys
  n_torch = sum(p.numel() for p in model.parameters())
  shapes = jax.eval_shape(lambda: TorchvisionR3D18().init(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 32, 32, 3)), train=False))
  n_flax = sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
  assert n_torch == n_flax == TORCHVISION_R3D18_PARAMS


def test_eval_forward_matches_torch_layer_by_layer(ref):
  variables = convert_torch.torch_to_flax(ref["state_dict"])
  model = TorchvisionR3D18(num_classes=CLASSES, width=WIDTH)
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, channels_last(ref["x"]))
  acts = aux["activations"]
  assert logits.shape == (2, CLASSES) and len(acts) == len(ACTIVATION_NAMES) == 17
  for name, act in zip(ACTIVATION_NAMES, acts):
    np.testing.assert_allclose(act, ref["acts"][name], rtol=0, atol=1e-4, err_msg=name)
  np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=1e-4)
  assert np.abs(ref["logits"]).max() > 0.5   # the comparison is not between near-zeros


def test_train_mode_matches_torch_and_updates_batch_stats(ref):
  """Batch-statistics forward agrees; running stats follow torch (var up to n / (n - 1))."""
  torch = ref["torch"]
  model_t = ref["module"].r3d_18(num_classes=CLASSES, width=WIDTH)
  model_t.load_state_dict(ref["state_dict"])
  model_t.train()
  with torch.no_grad():
    logits_t = model_t(ref["x"]).numpy()
  new_t = model_t.state_dict()
  variables = convert_torch.torch_to_flax(ref["state_dict"])
  model = TorchvisionR3D18(num_classes=CLASSES, width=WIDTH)
  (logits, aux), updates = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=["batch_stats"]))(variables, channels_last(ref["x"]))
  acts = aux["activations"]
  np.testing.assert_allclose(logits, logits_t, rtol=0, atol=1e-4)
  # n = B·T'·H'·W': the values per channel each BN averaged (a downsample's = its block's).
  count = {name: math.prod(a.shape[:-1]) for name, a in zip(ACTIVATION_NAMES, acts)}
  for key, (collection, path) in convert_torch.key_mapping().items():
    if collection != "batch_stats":
      continue
    old = leaf(variables["batch_stats"], path)
    new = leaf(updates["batch_stats"], path)
    assert not np.allclose(new, old), key
    if path[-1] == "mean":
      np.testing.assert_allclose(new, new_t[key], rtol=1e-5, atol=1e-5, err_msg=key)
    else:  # torch adds 0.1 x the unbiased batch variance, Flax 0.1 x the biased one
      n = count[key.split(".1.running_var")[0].replace("downsample", "conv2")]
      batch_var_t = (new_t[key].numpy() - 0.9 * old) / 0.1
      np.testing.assert_allclose(new, 0.9 * old + 0.1 * batch_var_t * (n - 1) / n,
                                 rtol=1e-4, atol=1e-5, err_msg=key)


def test_pth_file_and_numpy_dict_give_the_same_variables(ref, tmp_path):
  path = tmp_path / "r3d_18.pth"
  ref["torch"].save(ref["state_dict"], path)
  from_file = convert_torch.torch_to_flax(path)
  from_numpy = convert_torch.torch_to_flax({k: v.numpy() for k, v in ref["state_dict"].items()})
  jax.tree.map(np.testing.assert_array_equal, from_file, from_numpy)
  kernel = from_numpy["params"]["layer2_0"]["downsample"]["conv"]["kernel"]
  assert kernel.shape == (1, 1, 1, 8, 16)   # DHWIO
  np.testing.assert_array_equal(
      kernel[0, 0, 0], ref["state_dict"]["layer2.0.downsample.0.weight"].numpy()[:, :, 0, 0, 0].T)


def test_per_frame_head_shapes_and_activations():
  x = jnp.zeros((2, 9, 32, 48, 3))
  for temporal_strides in (False, True):
    model = R3D18Tiny(num_classes=4, temporal_strides=temporal_strides)
    variables = jax.eval_shape(lambda m=model: m.init(jax.random.PRNGKey(0), x, train=False))
    logits, aux = jax.eval_shape(lambda v, m=model: m.apply(v, x, train=False), variables)
    acts = aux["activations"]
    t_out = output_frames(9, temporal_strides=temporal_strides)
    assert t_out == (2 if temporal_strides else 9)   # 9 -> 5 -> 3 -> 2 = ceil(9 / 8)
    assert logits.shape == (2, t_out, 4)
    assert acts[0].shape == (2, 9, 16, 24, 8)                          # stem keeps T
    assert acts[-1].shape == (2, t_out, 2, 3, stage_features(WIDTH)[-1])  # H' = ceil(H / 16)
  assert stage_features(1.0) == (64, 128, 256, 512) and stage_features(WIDTH) == (8, 16, 32, 64)


def test_per_frame_logits_average_to_the_clip_logits(ref):
  """Same weights, two heads: fc is affine, so mean_t(fc(pool_hw)) = fc(pool_thw)."""
  variables = convert_torch.torch_to_flax(ref["state_dict"])
  x = channels_last(ref["x"])
  model = R3D18(num_classes=CLASSES, width=WIDTH, temporal_strides=True)
  per_frame, _ = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert per_frame.shape == (2, 1, CLASSES)
  np.testing.assert_allclose(per_frame.mean(1), ref["logits"], rtol=0, atol=1e-4)


def test_backbone_loads_into_a_head_with_another_class_count(ref):
  model = R3D18(num_classes=3, width=WIDTH)
  x = jnp.zeros((1, 4, 16, 16, 3))
  # Stand-in for model.init (whose compile alone takes ~8 s on 2 CPU cores): shapes, and a
  # random fc that loading must keep.
  init = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  rng = np.random.default_rng(0)
  init["params"]["fc"] = {k: rng.normal(size=v.shape).astype(np.float32)
                          for k, v in init["params"]["fc"].items()}
  with pytest.raises(convert_torch.ConversionError, match="include_fc=False"):
    convert_torch.load_torch_weights(init, ref["state_dict"])
  loaded = convert_torch.load_torch_weights(init, ref["state_dict"], include_fc=False)
  converted = convert_torch.torch_to_flax(ref["state_dict"], include_fc=False)
  assert "fc" not in converted["params"]
  np.testing.assert_array_equal(loaded["params"]["fc"]["kernel"], init["params"]["fc"]["kernel"])
  np.testing.assert_array_equal(loaded["params"]["stem"]["conv"]["kernel"],
                                converted["params"]["stem"]["conv"]["kernel"])
  np.testing.assert_array_equal(loaded["batch_stats"]["layer3_0"]["downsample"]["bn"]["var"],
                                ref["state_dict"]["layer3.0.downsample.1.running_var"].numpy())
  out, _ = jax.jit(functools.partial(model.apply, train=False))(loaded, x)
  assert out.shape == (1, 4, 3)


def test_conversion_errors_name_the_keys(ref, tmp_path):
  sd = dict(ref["state_dict"])
  missing = {k: v for k, v in sd.items() if k != "layer3.1.conv2.1.running_var"}
  with pytest.raises(convert_torch.ConversionError,
                     match=r"missing 1 key.*layer3\.1\.conv2\.1\.running_var"):
    convert_torch.torch_to_flax(missing)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"unknown 1 key.*layer5\.0\.conv1\.0\.weight"):
    convert_torch.torch_to_flax({**sd, "layer5.0.conv1.0.weight": sd["stem.0.weight"]})
  with pytest.raises(convert_torch.ConversionError, match="DataParallel"):
    convert_torch.torch_to_flax({"module." + k: v for k, v in sd.items()})
  with pytest.raises(convert_torch.ConversionError, match="no checkpoint file"):
    convert_torch.torch_to_flax(tmp_path / "absent.pth")
  # The fc of a state dict is ignored, present or absent, with include_fc=False.
  no_fc = {k: v for k, v in sd.items() if not k.startswith("fc.")}
  assert "fc" not in convert_torch.torch_to_flax(no_fc, include_fc=False)["params"]
  with pytest.raises(convert_torch.ConversionError, match="fc.weight"):
    convert_torch.torch_to_flax(no_fc)
  # Another width: every mismatching leaf is a shape error.
  wide = jax.eval_shape(lambda: TorchvisionR3D18(num_classes=CLASSES, width=0.25).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 32, 32, 3)), train=False))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"width 0.125 \(8 stem channels\), the model 0.25 \(16\); "
                           r"shape \(checkpoint vs model\): "
                           r"params/stem/conv/kernel \(3, 7, 7, 3, 8\) vs \(3, 7, 7, 3, 16\)"):
    convert_torch.load_torch_weights(wide, sd)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = R3D18Tiny(num_classes=4, dtype=jnp.bfloat16)
  x = jnp.zeros((1, 4, 16, 16, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, aux = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert logits.dtype == jnp.float32 and aux["activations"][-1].dtype == jnp.bfloat16

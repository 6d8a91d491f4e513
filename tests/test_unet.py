"""FFP's generator (jaxvad.models.unet) and discriminator (jaxvad.models.patchgan), their converter
entries and the LSGAN losses, checked against PyTorch.

The PyTorch side is tests/torch_reference.py: feiyuhuahuo/Anomaly_Prediction's `UNet` and
`PixelDiscriminator` module for module (same state-dict keys), with a width multiplier and the
TF original's variants (the U-Net without BN, with biases and ReLU after the transposed convs;
the discriminator with reflect padding). torch is part of the `test` extra; the parity tests
skip without it.

Tolerances: outputs are compared relative to their largest value (float32 rounding differences
grow with the activations; random BN running statistics make eval mode no identity).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import losses
from jaxvad.models import convert_torch
from jaxvad.models.patchgan import PatchGAN, patch_map_size, patchgan_features
from jaxvad.models.unet import LEVEL_NAMES, UNet, Up, unet_features
from tests.layouts import channels_last, leaf

WIDTH = 0.125          # U-Net 8/16/32/64 channels, discriminator 16/32/64/64: seconds on 2 cores
FRAMES = 4             # FFP's input: 4 RGB frames stacked in channels
IN_CHANNELS = 3 * FRAMES
# Parameter counts at width 1, for 4 RGB frames in (12 channels) and 1 RGB frame out; the
# discriminator on RGB frames. Summed by hand from the layer lists in the module docstrings
# (e.g. inc: 12·64·9 + 2·64 + 64·64·9 + 2·64 = 44,032); the TF form trades each double conv's
# BN (2 per channel) for conv biases (1 per channel): 2,816 fewer.
FFP_UNET_PARAMS = 7_707_011
FFP_UNET_TF_PARAMS = 7_704_195
FFP_PATCHGAN_PARAMS = 6_831_489
DISC_NAMES = ("conv0", "conv1", "conv2", "conv3")
DISC_HOOKS = {"conv0": "net.1", "conv1": "net.3", "conv2": "net.5", "conv3": "net.7",
              "logits": "net.8"}   # the port's Sequential indices of the same activations


def _max_rel_diff(a, ref):
  """max |a - ref| / max |ref|."""
  return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


def _n_params(tree):
  return sum(math.prod(p.shape) for p in jax.tree.leaves(tree))


def _torch_unet(torch, module, *, form="pytorch", width=WIDTH, seed=0):
  """A random torch FFP U-Net in eval mode: seeded convs, random BN statistics."""
  torch.manual_seed(seed)   # conv init draws from the global generator
  gen = torch.Generator().manual_seed(seed)
  model = module.FFPUNet(IN_CHANNELS, 3, width=width, form=form)
  module.randomize_bn(model, gen)
  return model.eval(), gen


def _unit_scale_last_conv(torch, module, model, conv_name, x):
  """Shifts and scales the last conv so its output on x has mean 0, std 1: torch's default init
  leaves tanh's (sigmoid's) input at |.| ~ 0.1, where the final nonlinearity is near-linear and
  a comparison of its outputs says little."""
  store, handles = module.hooked_activations(model, [conv_name])
  with torch.no_grad():
    model(x)
    conv = dict(model.named_modules())[conv_name]
    y = store[conv_name].transpose(0, 1).flatten(1)   # [C_out, everything else]
    mean, std = y.mean(1), y.std(1)
    conv.weight.div_(std[:, None, None, None])
    conv.bias.sub_(mean).div_(std)
  for h in handles:
    h.remove()


def _run(torch, module, model, x, names):
  """(hooked module outputs NHWC, output NHWC) of a torch model on an NCHW input."""
  store, handles = module.hooked_activations(model, names)
  with torch.no_grad():
    out = channels_last(model(x))
  for h in handles:
    h.remove()
  return {k: channels_last(v) for k, v in store.items()}, out


def _tf_form_variables(state_dict):
  """The TF-form reference's weights -> `UNet(form="tf")` params: the port's module tree less
  its BNs, every conv with a bias; kernels permuted as `convert_torch` does."""
  mapping = convert_torch.key_mapping(arch="ffp_unet")
  params = {}
  for key, value in state_dict.items():
    name, leaf = key.rsplit(".", 1)
    _, path = mapping[f"{name}.weight"]
    node = params
    for p in path[:-1]:
      node = node.setdefault(p, {})
    value = value.numpy()
    node["kernel" if leaf == "weight" else "bias"] = (
        value.transpose(2, 3, 1, 0) if leaf == "weight" else value)
  return {"params": params}


@pytest.fixture(scope="module")
def torch_mod():
  torch = pytest.importorskip("torch")
  from tests import torch_reference  # pylint: disable=g-import-not-at-top  # needs torch
  return torch, torch_reference


def test_references_have_the_ports_layout_and_size(torch_mod):
  """Keys per the port's modules; width-1 parameter counts = the port's = the Flax models'."""
  _, module = torch_mod
  unet_t = module.FFPUNet(IN_CHANNELS, 3)
  keys = [k for k in unet_t.state_dict() if not k.endswith("num_batches_tracked")]
  assert keys == convert_torch.torchvision_keys(arch="ffp_unet")
  assert keys[:6] == ["inc.conv.conv.0.weight", "inc.conv.conv.1.weight",
                      "inc.conv.conv.1.bias", "inc.conv.conv.1.running_mean",
                      "inc.conv.conv.1.running_var", "inc.conv.conv.3.weight"]
  assert "down3.mpconv.1.conv.4.running_var" in keys and "up1.up.bias" in keys
  assert "inc.conv.conv.0.bias" not in keys and keys[-2:] == ["outc.weight", "outc.bias"]
  disc_t = module.PixelDiscriminator(3)
  assert list(disc_t.state_dict()) == convert_torch.torchvision_keys(arch="ffp_patchgan") == [
      f"net.{i}.{leaf}" for i in (0, 2, 4, 6, 8) for leaf in ("weight", "bias")]
  x = jnp.zeros((1, 32, 32, IN_CHANNELS))
  counts = {}
  for form in ("pytorch", "tf"):
    shapes = jax.eval_shape(lambda form=form: UNet(form=form).init(jax.random.PRNGKey(0), x))
    counts[form] = _n_params(shapes["params"])
  shapes = jax.eval_shape(lambda: PatchGAN().init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  n_tf_t = sum(p.numel() for p in module.FFPUNet(IN_CHANNELS, 3, form="tf").parameters())
  assert sum(p.numel() for p in unet_t.parameters()) == counts["pytorch"] == FFP_UNET_PARAMS
  assert n_tf_t == counts["tf"] == FFP_UNET_TF_PARAMS
  assert sum(p.numel() for p in disc_t.parameters()) == _n_params(shapes["params"]) == (
      FFP_PATCHGAN_PARAMS)
  assert unet_features(1.0) == (64, 128, 256, 512) and unet_features(WIDTH) == (8, 16, 32, 64)
  assert patchgan_features(1.0) == (128, 256, 512, 512)
  assert patchgan_features(WIDTH) == (16, 32, 64, 64)


@pytest.mark.parametrize("hw", [(32, 32), (37, 50)])   # 37x50: the port's pad of odd skips
def test_unet_eval_forward_matches_torch(torch_mod, hw):
  torch, module = torch_mod
  model_t, gen = _torch_unet(torch, module)
  x = torch.rand(2, IN_CHANNELS, *hw, generator=gen) * 2 - 1    # frames in [-1, 1]
  _unit_scale_last_conv(torch, module, model_t, "outc", x)
  feats_t, out_t = _run(torch, module, model_t, x, LEVEL_NAMES)
  variables = convert_torch.torch_to_flax(model_t.state_dict(), arch="ffp_unet")
  model = UNet(width=WIDTH)
  out, aux = jax.jit(lambda v, x: model.apply(v, x))(variables, channels_last(x))
  assert set(aux) == set(LEVEL_NAMES) and out.dtype == jnp.float32
  for name in LEVEL_NAMES:
    assert aux[name].shape == feats_t[name].shape, name
    assert _max_rel_diff(aux[name], feats_t[name]) < 5e-6, name   # measured <= 4.9e-7
  assert out.shape == (2, *hw, 3)
  np.testing.assert_allclose(out, out_t, rtol=0, atol=2e-5)   # measured <= 3.4e-6
  assert np.abs(out_t).max() > 0.5   # tanh's input is O(1): not a comparison of near-zeros
  if hw == (37, 50):
    assert aux["down3"].shape[1:3] == (4, 6)    # floored poolings: 37 -> 18 -> 9 -> 4


def test_unet_train_mode_matches_torch_and_updates_batch_stats(torch_mod):
  """Batch-statistics forward agrees; running stats follow torch (var up to n / (n - 1))."""
  torch, module = torch_mod
  model_t, gen = _torch_unet(torch, module, seed=1)
  x = torch.rand(2, IN_CHANNELS, 32, 32, generator=gen) * 2 - 1
  variables = convert_torch.torch_to_flax(model_t.state_dict(), arch="ffp_unet")
  model_t.train()
  with torch.no_grad():
    out_t = channels_last(model_t(x))
  new_t = model_t.state_dict()
  model = UNet(width=WIDTH)
  (out, aux), updates = jax.jit(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
          variables, channels_last(x))
  np.testing.assert_allclose(out, out_t, rtol=0, atol=2e-5)   # measured 1.7e-6
  n_checked = 0
  for key, (collection, path) in convert_torch.key_mapping(arch="ffp_unet").items():
    if collection != "batch_stats":
      continue
    old, new = leaf(variables["batch_stats"], path), leaf(updates["batch_stats"], path)
    assert not np.allclose(new, old), key
    if path[-1] == "mean":
      np.testing.assert_allclose(new, new_t[key], rtol=1e-5, atol=1e-5, err_msg=key)
    else:  # torch adds 0.1 x the unbiased batch variance, Flax 0.1 x the biased one
      n = math.prod(aux[path[0]].shape[:-1])   # values per channel at the module's resolution
      batch_var_t = (new_t[key].numpy() - 0.9 * old) / 0.1
      np.testing.assert_allclose(new, 0.9 * old + 0.1 * batch_var_t * (n - 1) / n,
                                 rtol=1e-4, atol=1e-5, err_msg=key)
    n_checked += 1
  assert n_checked == 2 * 2 * 7   # mean and var of 2 BNs in each of the 7 modules


def test_tf_form_matches_its_torch_transcription(torch_mod):
  torch, module = torch_mod
  model_t, gen = _torch_unet(torch, module, form="tf", seed=2)
  x = torch.rand(2, IN_CHANNELS, 32, 40, generator=gen) * 2 - 1
  _unit_scale_last_conv(torch, module, model_t, "outc", x)
  feats_t, out_t = _run(torch, module, model_t, x,
                        LEVEL_NAMES + tuple(f"up{k}.up" for k in (1, 2, 3)))
  variables = _tf_form_variables(model_t.state_dict())
  model = UNet(form="tf", width=WIDTH)
  init = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), channels_last(x)))
  assert set(init) == {"params"}   # no batch_stats: the TF original has no BN
  assert jax.tree.map(lambda a: a.shape, init["params"]) == jax.tree.map(
      lambda a: a.shape, variables["params"])
  out, aux = jax.jit(lambda v, x: model.apply(v, x, train=True))(variables, channels_last(x))
  for name in LEVEL_NAMES:
    assert _max_rel_diff(aux[name], feats_t[name]) < 5e-6, name   # measured <= 5.6e-7
  np.testing.assert_allclose(out, out_t, rtol=0, atol=2e-5)   # measured 9.6e-7
  assert np.abs(out_t).max() > 0.5
  # The ReLU after each transposed conv has something to cut (so the match checks it).
  assert all(feats_t[f"up{k}.up"].min() < 0 for k in (1, 2, 3))


@pytest.mark.parametrize("form", ["pytorch", "tf"])
def test_patchgan_matches_torch(torch_mod, form):
  torch, module = torch_mod
  torch.manual_seed(3)
  gen = torch.Generator().manual_seed(3)
  model_t = module.PixelDiscriminator(
      3, width=WIDTH, padding_mode="zeros" if form == "pytorch" else "reflect").eval()
  x = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
  _unit_scale_last_conv(torch, module, model_t, "net.8", x)
  acts_t, out_t = _run(torch, module, model_t, x, DISC_HOOKS.values())
  variables = convert_torch.torch_to_flax(model_t.state_dict(), arch="ffp_patchgan")
  model = PatchGAN(form=form, width=WIDTH)
  out, aux = jax.jit(lambda v, x: model.apply(v, x))(variables, channels_last(x))
  assert set(aux) == set(DISC_HOOKS) and out.dtype == jnp.float32
  assert out.shape == out_t.shape == (2, 11, 11, 1)
  for name, hook in DISC_HOOKS.items():
    assert _max_rel_diff(aux[name], acts_t[hook]) < 2e-5, name   # measured <= 2.0e-6
  np.testing.assert_allclose(out, out_t, rtol=0, atol=1e-5)   # measured <= 8.4e-7
  assert out_t.min() < 0.25 and out_t.max() > 0.75   # the sigmoid's curved range


def test_the_two_discriminator_paddings_differ(torch_mod):
  """Reflect ("tf") vs zero ("pytorch") padding: the same weights score the border apart."""
  x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
  key = jax.random.key(1, impl="rbg")   # rbg: threefry init compiles far slower on 2 cores

  @jax.jit
  def both(x):
    variables = PatchGAN(width=WIDTH).init(key, x)
    return (PatchGAN(width=WIDTH).apply(variables, x)[0],
            PatchGAN(form="tf", width=WIDTH).apply(variables, x)[0])

  out_pt, out_tf = both(x)
  assert out_pt.shape == out_tf.shape == (1, 7, 7, 1)
  assert np.abs(np.asarray(out_pt) - np.asarray(out_tf)).max() > 1e-4


@pytest.mark.parametrize("form", ["pytorch", "tf"])
@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (256, 256)])
def test_unet_keeps_the_frame_size(form, hw):
  h, w = hw
  x = jnp.zeros((2, h, w, IN_CHANNELS))
  model = UNet(form=form, width=WIDTH)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  out, aux = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert out.shape == (2, h, w, 3) and out.dtype == jnp.float32
  feats = unet_features(WIDTH)
  assert aux["down3"].shape == (2, h // 8, w // 8, feats[3])      # the bottleneck
  for name, f, stride in zip(LEVEL_NAMES[4:], feats[-2::-1], (4, 2, 1)):
    assert aux[name].shape == (2, h // stride, w // stride, f), name


def test_unet_takes_any_input_channels_and_out_channels():
  """3 -> 3 (paper 004's Destroyer) and 4 gray frames -> 1: C_in comes from the input."""
  for c_in, c_out in ((3, 3), (4, 1)):
    x = jnp.zeros((1, 32, 32, c_in))
    model = UNet(width=WIDTH, out_channels=c_out)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert variables["params"]["inc"]["conv1"]["kernel"].shape == (3, 3, c_in, 8)
    assert variables["params"]["outc"]["kernel"].shape == (3, 3, 8, c_out)
    out, _ = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert out.shape == (1, 32, 32, c_out)


@pytest.mark.parametrize("size, patches", [(64, 11), (256, 35), (32, 7)])
def test_patchgan_patch_map_size(size, patches):
  assert patch_map_size(size) == patches
  for form in ("pytorch", "tf"):
    x = jnp.zeros((2, size, size, 3))
    model = PatchGAN(form=form, width=WIDTH)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    out, aux = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert out.shape == aux["logits"].shape == (2, patches, patches, 1)
    assert aux["conv3"].shape[-1] == patchgan_features(WIDTH)[-1]


def test_bad_sizes_and_forms_raise():
  def init(model, shape):   # the checks read static shapes: tracing is enough
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))

  with pytest.raises(ValueError, match="divisible by 8"):
    init(UNet(form="tf", width=WIDTH), (1, 36, 32, 3))
  init(UNet(width=WIDTH), (1, 36, 32, 3))   # the port's form pads odd skips instead
  with pytest.raises(ValueError, match="at least 8"):
    init(UNet(width=WIDTH), (1, 7, 32, 3))
  with pytest.raises(ValueError, match="form must be one of 'pytorch', 'tf', got 'torch'"):
    init(UNet(form="torch"), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="form must be one of"):
    init(PatchGAN(form="keras"), (1, 32, 32, 3))
  with pytest.raises(ValueError, match=r"H, W >= 10 .* conv3 got \(1, 2, 2, 64\)"):
    init(PatchGAN(form="tf", width=WIDTH), (1, 9, 9, 3))
  init(PatchGAN(form="tf", width=WIDTH), (1, 10, 10, 3))   # the smallest size it takes


def test_lsgan_losses_match_hand_computed_values():
  d_fake = np.array([[0.2, 0.9], [0.5, 1.0]], np.float32)
  d_real = np.array([0.7, 0.4, 1.0], np.float32)     # another shape: each term is its own mean
  # generator: ((0.8² + 0.1² + 0.5² + 0²) / 2) / 4 = 0.45 / 4
  np.testing.assert_allclose(losses.lsgan_generator_loss(d_fake), 0.1125, rtol=1e-6)
  # discriminator: (0.3² + 0.6² + 0²) / 2 / 3 + (0.2² + 0.9² + 0.5² + 1²) / 2 / 4
  np.testing.assert_allclose(losses.lsgan_discriminator_loss(d_real, d_fake),
                             0.075 + 0.2625, rtol=1e-6)
  # the optimum: real scored 1, fake 0 for D; fake scored 1 for G
  assert float(losses.lsgan_discriminator_loss(np.ones(4), np.zeros(5))) == 0.0
  assert float(losses.lsgan_generator_loss(np.ones((2, 3, 3, 1)))) == 0.0
  # d/d d_fake of mean((d - 1)² / 2) = (d - 1) / n; d/d d_real of D's loss = (d - 1) / n
  np.testing.assert_allclose(jax.grad(losses.lsgan_generator_loss)(d_fake), (d_fake - 1) / 4,
                             rtol=1e-6)
  g_real, g_fake = jax.grad(losses.lsgan_discriminator_loss, argnums=(0, 1))(d_real, d_fake)
  np.testing.assert_allclose(g_real, (d_real - 1) / 3, rtol=1e-6)
  np.testing.assert_allclose(g_fake, d_fake / 4, rtol=1e-6)
  assert losses.lsgan_generator_loss(jnp.asarray(d_fake, jnp.bfloat16)).dtype == jnp.float32


def test_converter_reads_the_ports_training_checkpoint_and_checks_shapes(torch_mod, tmp_path):
  """The port's `torch.save({"net_g", "net_d", "optimizer_g", ...})` file, read per arch."""
  torch, module = torch_mod
  unet_t, _ = _torch_unet(torch, module)
  disc_t = module.PixelDiscriminator(3, width=WIDTH)
  opt = torch.optim.Adam(disc_t.parameters())
  path = tmp_path / "avenue_5000.pth"
  torch.save({"net_g": unet_t.state_dict(), "optimizer_g": opt.state_dict(),
              "net_d": disc_t.state_dict(), "optimizer_d": opt.state_dict()}, path)
  x = jnp.zeros((1, 32, 32, IN_CHANNELS))
  init = jax.eval_shape(lambda: UNet(width=WIDTH).init(jax.random.PRNGKey(0), x))
  loaded = convert_torch.load_torch_weights(init, path, arch="ffp_unet")
  up = loaded["params"]["up2"]["up"]["kernel"]
  assert up.shape == (2, 2, 16, 32)   # [kh, kw, out, in]
  np.testing.assert_array_equal(up[1, 0], unet_t.up2.up.weight.detach().numpy()[:, :, 1, 0].T)
  np.testing.assert_array_equal(loaded["batch_stats"]["down2"]["bn2"]["var"],
                                unet_t.down2.mpconv[1].conv[4].running_var.numpy())
  disc = convert_torch.torch_to_flax(path, arch="ffp_patchgan")
  assert set(disc) == {"params", "batch_stats"} and not disc["batch_stats"]
  np.testing.assert_array_equal(disc["params"]["conv4"]["bias"], disc_t.net[8].bias.detach())
  # A discriminator's state dict given as the generator's: the hint names the arch.
  with pytest.raises(convert_torch.ConversionError,
                     match=r"not a feiyuhuahuo/Anomaly_Prediction UNet state dict: missing .* "
                           r"\(this is a feiyuhuahuo/Anomaly_Prediction PixelDiscriminator "
                           r"state dict: pass arch='ffp_patchgan'\)"):
    convert_torch.torch_to_flax(disc_t.state_dict(), arch="ffp_unet")
  sd = unet_t.state_dict()
  with pytest.raises(convert_torch.ConversionError,
                     match=r"up1\.up\.weight: expected a ConvTranspose2d weight \[in, out, H, W\]"):
    convert_torch.torch_to_flax({**sd, "up1.up.weight": sd["up1.up.weight"][0]}, arch="ffp_unet")
  # Another width, and a generator for gray frames (4 channels): both named.
  other = jax.eval_shape(lambda: UNet(width=0.25).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, FRAMES))))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"width 0.125 \(8 inc channels\), the model 0.25 \(16\); the "
                           r"checkpoint takes 12 input channels, the model 4; shape"):
    convert_torch.load_torch_weights(other, sd, arch="ffp_unet")
  wide = jax.eval_shape(lambda: PatchGAN(width=0.25).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(convert_torch.ConversionError,
                     match=r"width 0.125 \(16 conv0 channels\), the model 0.25 \(32\)"):
    convert_torch.load_torch_weights(wide, disc_t.state_dict(), arch="ffp_patchgan")


def test_init_follows_the_originals():
  """"pytorch": weights_init_normal (N(0, 0.02), BN scale N(1, 0.02)), torch default biases;
  "tf": Xavier-uniform kernels, zero biases."""
  key = jax.random.key(0, impl="rbg")   # rbg: threefry init compiles far slower on 2 cores
  # An up block holds every kind of U-Net layer but outc, and compiles in a fraction of the
  # whole net's init (which is the cost here): up1 at width 0.25, 128 -> 64 channels.
  x, skip = jnp.zeros((1, 4, 4, 128)), jnp.zeros((1, 8, 8, 64))

  @jax.jit   # one compilation for the three
  def init_all():
    return (Up(64).init(key, x, skip, False)["params"],
            Up(64, form="tf").init(key, x, skip, False)["params"],
            PatchGAN(width=0.25).init(key, jnp.zeros((1, 16, 16, 3)))["params"])

  pt, tf, disc = init_all()
  kernel = np.asarray(pt["conv1"]["kernel"])     # 3x3, 128 -> 64: 74k weights
  np.testing.assert_allclose(kernel.std(), 0.02, rtol=0.02)
  assert abs(kernel.mean()) < 1e-3
  np.testing.assert_allclose(np.asarray(pt["up"]["kernel"]).std(), 0.02, rtol=0.05)
  scale = np.asarray(pt["bn1"]["scale"])
  assert 0.01 < scale.std() < 0.03 and abs(scale.mean() - 1) < 0.01
  np.testing.assert_array_equal(pt["bn1"]["bias"], 0)
  bias = np.asarray(pt["up"]["bias"])   # torch: fan_in = out channels · 2 · 2
  assert 0.8 / math.sqrt(64 * 4) < np.abs(bias).max() <= 1 / math.sqrt(64 * 4)
  kernel = np.asarray(tf["conv1"]["kernel"])
  np.testing.assert_allclose(kernel.std(), math.sqrt(2 / (9 * 128 + 9 * 64)), rtol=0.02)
  np.testing.assert_array_equal(tf["conv1"]["bias"], 0)
  np.testing.assert_array_equal(tf["up"]["bias"], 0)
  np.testing.assert_allclose(np.asarray(disc["conv2"]["kernel"]).std(), 0.02, rtol=0.02)
  bias = np.asarray(disc["conv2"]["bias"])      # fan_in = 16 · 64
  assert 0.8 / math.sqrt(16 * 64) < np.abs(bias).max() <= 1 / math.sqrt(16 * 64)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  x = jnp.zeros((1, 32, 32, IN_CHANNELS))
  model = UNet(width=WIDTH, dtype=jnp.bfloat16)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, aux = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert out.dtype == jnp.float32 and aux["down3"].dtype == jnp.bfloat16
  disc = PatchGAN(width=WIDTH, dtype=jnp.bfloat16)
  variables = jax.eval_shape(lambda: disc.init(jax.random.PRNGKey(0), x[..., :3]))
  out, aux = jax.eval_shape(lambda v: disc.apply(v, x[..., :3]), variables)
  assert out.dtype == jnp.float32 and aux["logits"].dtype == jnp.bfloat16

"""The stride-2 sub-pixel ConvTranspose equals flax's nn.ConvTranspose (lax.conv_transpose)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvad.models import layers

PADDINGS = ["SAME", "VALID", ((1, 2), (1, 2)), ((2, 1), (0, 3)), ((0, 0), (2, 2))]


@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("kernel_size", [(3, 3), (4, 2), (1, 5)])
def test_same_parameters_and_outputs_as_flax(padding, transpose_kernel, kernel_size):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 6, 3)), jnp.float32)
  kw = dict(features=4, kernel_size=kernel_size, strides=(2, 2), padding=padding,
            transpose_kernel=transpose_kernel)
  ref, ours = nn.ConvTranspose(**kw), layers.ConvTranspose(**kw)
  variables = ref.init(jax.random.key(1), x)
  assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.key(1), x)) == \
      jax.tree_util.tree_map(jnp.shape, variables)
  variables = jax.tree_util.tree_map(
      lambda v: jnp.asarray(np.random.default_rng(2).normal(size=v.shape), v.dtype), variables)
  want, got = ref.apply(variables, x), ours.apply(variables, x)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_gradients_match_flax(jit):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)
  kw = dict(features=2, kernel_size=(3, 3), strides=(2, 2))
  variables = nn.ConvTranspose(**kw).init(jax.random.key(0), x)

  def grads(module):
    fn = jax.grad(lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))), argnums=(0, 1))
    return (jax.jit(fn) if jit else fn)(variables, x)

  for a, b in zip(jax.tree_util.tree_leaves(grads(nn.ConvTranspose(**kw))),
                  jax.tree_util.tree_leaves(grads(layers.ConvTranspose(**kw)))):
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_other_strides_fall_back_to_lax():
  x = jnp.ones((1, 3, 3, 2))
  kw = dict(features=2, kernel_size=(3, 3), strides=(3, 1))
  v = nn.ConvTranspose(**kw).init(jax.random.key(0), x)
  np.testing.assert_allclose(layers.ConvTranspose(**kw).apply(v, x),
                             nn.ConvTranspose(**kw).apply(v, x), atol=1e-6)


def test_bad_padding_names_the_argument():
  with pytest.raises(ValueError, match="padding"):
    layers.transpose_padding("FULL", (3, 3), (2, 2))


@pytest.mark.parametrize("strides,padding,kernel", [
    ((1, 1, 1), ((1, 1), (1, 1), (1, 1)), (3, 3, 3)),
    ((1, 2, 2), ((1, 1), (3, 3), (3, 3)), (3, 7, 7)),
    ((2, 2, 2), ((1, 1), (1, 1), (1, 1)), (3, 3, 3)),
    ((2, 2, 2), ((0, 0), (0, 0), (0, 0)), (1, 1, 1))])
@pytest.mark.parametrize("impl", ["2d", "3d", "auto"])
def test_conv3d_equals_flax_conv(strides, padding, kernel, impl):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 9, 10, 3)), jnp.float32)
  kw = dict(features=4, kernel_size=kernel, strides=strides, padding=padding, use_bias=False)
  ref = nn.Conv(**kw)
  variables = ref.init(jax.random.key(0), x)
  ours = layers.Conv3D(**kw, impl=impl)
  assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.key(0), x)) == \
      jax.tree_util.tree_map(jnp.shape, variables)
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=2e-5)
  g_ref = jax.grad(lambda v: jnp.sum(jnp.sin(ref.apply(v, x))))(variables)
  g_ours = jax.jit(jax.grad(lambda v: jnp.sum(jnp.sin(ours.apply(v, x)))))(variables)
  np.testing.assert_allclose(g_ours["params"]["kernel"], g_ref["params"]["kernel"], atol=1e-4)


@pytest.mark.parametrize("max_channels", [0, 10**6])   # per-tap sum / taps stacked in channels
def test_conv3d_as_2d_both_forms_equal_the_3d_conv(monkeypatch, max_channels):
  monkeypatch.setattr(layers, "STACK_TAPS_MAX_CHANNELS", max_channels)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 6, 8, 9, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5, 4)), jnp.float32)
  kw = dict(strides=(2, 1, 2), padding=((1, 1), (1, 1), (0, 1)))
  ref = lambda x, k: lax.conv_general_dilated(  # noqa: E731
      x, k, kw["strides"], kw["padding"], dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  ours = lambda x, k: layers.conv3d_as_2d(x, k, **kw)  # noqa: E731
  np.testing.assert_allclose(jax.jit(ours)(x, kernel), ref(x, kernel), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))  # noqa: E731
  for a, b in zip(jax.grad(loss(ours), argnums=(0, 1))(x, kernel),
                  jax.grad(loss(ref), argnums=(0, 1))(x, kernel)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw,kernel,strides,padding", [
    ((2, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),     # ResNet-18 layer4 on 64x64 frames
    ((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((4, 4), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((3, 2), (3, 1), (2, 1), ((1, 0), (0, 2))),
    ((2, 3), (1, 1), (1, 1), ((0, 0), (0, 0)))])
def test_conv2d_small_map_equals_the_xla_conv(hw, kernel, strides, padding):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(3, *hw, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(*kernel, 5, 4)), jnp.float32)
  ref = lambda x, k: lax.conv_general_dilated(  # noqa: E731
      x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, k: layers.conv2d_small_map(x, k, strides=strides, padding=padding)  # noqa: E731
  np.testing.assert_allclose(jax.jit(ours)(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))  # noqa: E731
  for a, b in zip(jax.grad(loss(ours), argnums=(0, 1))(x, k),
                  jax.grad(loss(ref), argnums=(0, 1))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv2d_module_has_nn_conv_params_and_picks_the_matmul_on_small_maps(monkeypatch):
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 2, 2, 6)), jnp.float32)
  kw = dict(features=3, kernel_size=(3, 3), padding=((1, 1), (1, 1)), use_bias=True)
  ref = nn.Conv(**kw)
  variables = ref.init(jax.random.key(0), x)
  for impl in ("auto", "matmul", "xla"):
    ours = layers.Conv2D(**kw, impl=impl)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == \
        jax.tree.map(jnp.shape, variables)
    np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=1e-5)
  calls = []
  monkeypatch.setattr(layers, "conv2d_small_map",
                      lambda *a, **k: calls.append(1) or ref.apply(variables, x) - variables["params"]["bias"])
  layers.Conv2D(**kw).apply(variables, x)
  assert calls == ([1] if jax.default_backend() == "cpu" else [])
  layers.Conv2D(**kw).apply(variables, jnp.zeros((2, 3, 2, 6)))   # 6 pixels: the XLA conv
  assert len(calls) == (1 if jax.default_backend() == "cpu" else 0)
  with pytest.raises(ValueError, match="impl"):
    layers.Conv2D(**kw, impl="fast").init(jax.random.key(0), x)

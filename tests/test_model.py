import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvad.models.convlstm import ConvLSTMAutoencoder, TinyConvLSTMAutoencoder


def test_shapes_gray_and_rgb():
  for channels in (1, 3):
    model = TinyConvLSTMAutoencoder(out_channels=channels)
    x = jnp.ones((2, 5, 16, 24, channels))
    variables = model.init(jax.random.PRNGKey(0), x)
    recon, aux = model.apply(variables, x)
    assert recon.shape == x.shape and recon.dtype == jnp.float32
    assert aux["memory"].shape == (2, 5, 4, 6, 8)


def test_bfloat16_compute_keeps_float32_params():
  model = TinyConvLSTMAutoencoder(dtype=jnp.bfloat16)
  x = jnp.ones((1, 3, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert model.apply(variables, x)[1]["memory"].dtype == jnp.bfloat16


def test_scanned_convlstm_equals_a_step_by_step_unroll():
  """The nn.scan recurrence is the plain ConvLSTM recurrence, frame by frame."""
  model = TinyConvLSTMAutoencoder()
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 6, 16, 16, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  _, aux = model.apply(variables, x)
  codes = aux["codes"]
  cell = nn.ConvLSTMCell(8, kernel_size=(3, 3))
  cell_params = {"params": variables["params"]["convlstm"]["lstm0"]}
  zeros = jnp.zeros(codes.shape[:1] + codes.shape[2:4] + (8,))
  carry, outs = (zeros, zeros), []
  for t in range(codes.shape[1]):
    carry, h = cell.apply(cell_params, carry, codes[:, t])
    outs.append(h)
  np.testing.assert_allclose(aux["memory"], jnp.stack(outs, 1), rtol=1e-5, atol=1e-6)


def test_reconstruction_is_causal_in_time():
  """Frame t's reconstruction depends on frames <= t only (the LSTM runs forward)."""
  model = ConvLSTMAutoencoder(features=(4,), lstm_features=4)
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 5, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  changed = x.at[:, 3:].set(0.0)
  a, _ = model.apply(variables, x)
  b, _ = model.apply(variables, changed)
  np.testing.assert_array_equal(a[:, :3], b[:, :3])
  assert not np.allclose(a[:, 3:], b[:, 3:])


def test_batch_chunks_give_the_outputs_and_gradients_of_one_pass():
  """Slicing the batch into independent computations (uneven: 5 windows in 3 chunks) changes
  neither the parameters nor the outputs, the aux activations or the gradients."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (5, 3, 8, 8, 1))
  whole, chunked = TinyConvLSTMAutoencoder(), TinyConvLSTMAutoencoder(batch_chunks=3)
  variables = whole.init(jax.random.PRNGKey(0), x)
  assert jax.tree.structure(chunked.init(jax.random.PRNGKey(0), x)) == jax.tree.structure(variables)

  def loss(model, params):
    recon, aux = model.apply({"params": params}, x)
    return jnp.mean((recon - x) ** 2) + jnp.mean(aux["memory"] ** 2), (recon, aux)

  grad = lambda model: jax.jit(jax.value_and_grad(lambda p: loss(model, p), has_aux=True))  # noqa: E731
  (l1, out1), g1 = grad(whole)(variables["params"])
  (l2, out2), g2 = grad(chunked)(variables["params"])
  np.testing.assert_allclose(l2, l1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out2), jax.tree.leaves(out1)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(g2), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_default_batch_chunks_only_slice_on_a_single_cpu_device():
  from jaxvad import config as config_lib
  from jaxvad.methods import convlstm_ae
  expected = 4 if jax.default_backend() == "cpu" and jax.device_count() == 1 else 1
  assert convlstm_ae.default_batch_chunks() == expected
  assert convlstm_ae.build_model(config_lib.load_config("convlstm_ae_demo", [])).batch_chunks == expected
  assert convlstm_ae.build_model(
      config_lib.load_config("convlstm_ae_demo", ["model.batch_chunks=2"])).batch_chunks == 2

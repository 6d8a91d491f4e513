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

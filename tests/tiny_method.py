"""A tiny method that uses every part of the method contract no shipped method uses yet.

Registered for the tests only (`tests/conftest.py`), it has what the coming methods need
(paper 004's GAN and Destroyer, paper 002's density):
  * several parameter trees and optimizers in one state: a one-conv "generator" reconstructs
    each frame and a "critic" tells frames from reconstructions; one jitted step updates both
    (with two optax optimizers);
  * two training phases: phase "refine" trains a third network on the generator's output with
    the generator and critic frozen (they are not in its step);
  * `fit` after the last step: the mean and std of the training frames' errors;
  * a score of two named terms combined after per-video normalisation, an image output and a
    per-pixel map.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvad.errors import ConfigError
from jaxvad.methods.base import Method, Phase, ScoreSpec, ScoreTerm, TrainState, init_variables

NAME = "tiny_test"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  features: int = 4
  joint_steps: int = 1           # phase 1's steps; phase 2 runs from there to train.steps

  def validate(self):
    if self.features < 1 or self.joint_steps < 0:
      raise ConfigError("model.features must be >= 1 and model.joint_steps >= 0")


class Conv(nn.Module):
  """Two 3x3 convs in `dtype` (`train.compute_dtype`); parameters and the output float32."""
  features: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype)(x))
    return nn.Conv(self.out, (3, 3), dtype=self.dtype)(x).astype(jnp.float32), {}


class State(flax.struct.PyTreeNode):
  step: jax.Array
  rng: jax.Array
  generator: TrainState
  critic: TrainState
  refiner: TrainState
  error_stats: jax.Array        # mean, std of training frames' error (from `fit`)


def _frames(batch):
  x = jnp.asarray(batch["frames"], jnp.float32) / 255.0
  return x.reshape((-1,) + x.shape[2:])      # frames of all windows, [B*T, H, W, C]


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  del load_pretrained
  x = _frames({"frames": example_batch["frames"][:1]})
  c = x.shape[-1]
  keys = jax.random.split(rng, 4)
  nets = {}
  for key, (name, out) in zip(keys, (("generator", c), ("critic", 1), ("refiner", c))):
    model = Conv(config.model.features, out, dtype=jnp.dtype(config.train.compute_dtype))
    nets[name] = TrainState.create(apply_fn=model.apply, params=init_variables(model, key, x)["params"],
                                   tx=optax.adam(config.train.learning_rate), rng=key)
  return State(step=jnp.zeros((), jnp.int32), rng=keys[3], error_stats=jnp.zeros(2), **nets)


def _recon(state, x):
  return state.generator.apply_fn({"params": state.generator.params}, x)[0]


def joint_step(state, batch):
  """Generator and critic updated together (LSGAN-style critic, MSE + 0.05 adversarial)."""
  x = _frames(batch)

  def gen_loss(g_params):
    recon = state.generator.apply_fn({"params": g_params}, x)[0]
    fake = state.critic.apply_fn({"params": state.critic.params}, recon)[0]
    return jnp.mean((recon - x) ** 2) + 0.05 * jnp.mean((fake - 1) ** 2), recon

  def critic_loss(c_params, recon):
    real = state.critic.apply_fn({"params": c_params}, x)[0]
    fake = state.critic.apply_fn({"params": c_params}, jax.lax.stop_gradient(recon))[0]
    return jnp.mean((real - 1) ** 2) / 2 + jnp.mean(fake ** 2) / 2

  (g_loss, recon), g_grads = jax.value_and_grad(gen_loss, has_aux=True)(state.generator.params)
  c_loss, c_grads = jax.value_and_grad(critic_loss)(state.critic.params, recon)
  return state.replace(step=state.step + 1,
                       generator=state.generator.apply_gradients(grads=g_grads),
                       critic=state.critic.apply_gradients(grads=c_grads)), \
      {"loss": g_loss, "critic_loss": c_loss}


def refine_step(state, batch):
  """Phase 2: the refiner learns the residual of the frozen generator."""
  x = _frames(batch)
  recon = jax.lax.stop_gradient(_recon(state, x))

  def loss(r_params):
    out = recon + state.refiner.apply_fn({"params": r_params}, recon)[0]
    return jnp.mean((out - x) ** 2)

  value, grads = jax.value_and_grad(loss)(state.refiner.params)
  return state.replace(step=state.step + 1,
                       refiner=state.refiner.apply_gradients(grads=grads)), {"loss": value}


def _outputs(state, batch):
  x = _frames(batch)
  recon = _recon(state, x)
  recon = jnp.clip(recon + state.refiner.apply_fn({"params": state.refiner.params}, recon)[0],
                   0.0, 1.0)
  error_map = jnp.mean((recon - x) ** 2, axis=-1)
  return x, recon, error_map


@jax.jit
def _frame_errors(state, frames):
  return jnp.mean(_outputs(state, {"frames": frames[None]})[2], axis=(1, 2))


def fit(config, state, clips):
  """Mean and std of every training frame's error: the `error` term is z-scored by them."""
  del config
  errors = np.concatenate([np.asarray(_frame_errors(state, c)) for c in clips])
  return state.replace(error_stats=jnp.asarray([errors.mean(), errors.std() + 1e-12]))


def score_step(state, batch):
  b, t = batch["frames"].shape[:2]
  x, recon, error_map = _outputs(state, batch)
  critic = state.critic.apply_fn({"params": state.critic.params}, recon)[0]
  error = (jnp.mean(error_map, axis=(1, 2)) - state.error_stats[0]) / state.error_stats[1]
  shape = lambda a: a.reshape((b, t) + a.shape[1:])  # noqa: E731
  return {"error": shape(error), "critic": shape(-jnp.mean(critic, axis=(1, 2, 3))),
          "recon": shape(recon), "error_map": shape(error_map)}


SCORE = ScoreSpec(
    terms=(ScoreTerm("error", "z-scored reconstruction MSE", higher_is_anomalous=True, weight=1.0),
           ScoreTerm("critic", "critic's realness of the reconstruction",
                     higher_is_anomalous=False, weight=0.5)),
    image="recon", pixel_map="error_map")

METHOD = Method(
    name=NAME, model_config=ModelConfig, create_state=create_state,
    phases=(Phase("joint", joint_step,
                  until=lambda config: config.model.joint_steps),
            Phase("refine", refine_step)),
    score=lambda config: SCORE, score_step=score_step, fit=fit)

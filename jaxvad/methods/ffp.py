"""Future Frame Prediction (FFP; Liu et al., CVPR 2018), the base of paper 004: a U-Net predicts
frame t+1 from frames t-3..t, a PatchGAN discriminator tells predicted frames from real ones,
and the anomaly score is the PSNR of the prediction (low PSNR = anomalous).

Windows are `data.window` frames (FFP: 4 inputs + the target = 5), scaled to [-1, 1] as FFP
feeds them; the inputs are stacked frame-major in channels (`[B, H, W, 4 C]`).

Training follows the PyTorch port (feiyuhuahuo/Anomaly_Prediction `train.py`), in one jitted
step: generator loss = 1 · intensity (MSE) + 1 · gradient difference (alpha 1) + 0.05 ·
LSGAN adversarial (`model.loss_weights`), discriminator loss = LSGAN on real target vs
predicted frame (the prediction's gradient stopped, the port's `.detach()`). Both gradients
are taken at the step's incoming parameters and both Adam optimizers step together, as the
port does (its discriminator step lands before the generator's backward pass, whose graph was
built with the old discriminator). Learning rates: the generator's `train.learning_rate`, the
discriminator's `model.d_learning_rate`; `model.lr_boundaries` multiplies both by
`model.lr_decay` at those steps (the TF original's Ped2 schedule: 1e-4 / 1e-5, x0.1 at 7000).

Optical-flow loss (`model.flow_weight`, FFP's LAM_FLOW = 2; off by default): FFP compares
FlowNet flows of (frame t, prediction) and (frame t, target). FlowNet weights cannot be had
here, and the PyTorch port detaches both flows, so there the term gives the generator no
gradient at all (the port reports Ped2 95.6 so); a flow computed by OpenCV on the host would
be the same constant. Here the flow is a fixed number of Horn-Schunck iterations in JAX
(`losses.horn_schunck`), differentiable, so the term does train the generator.

Score: PSNR of the predicted frame on the [0, 1] scale (ano_pred's `psnr_error`); the first
`window - 1` frames of a clip have no prediction (`ScoreSpec.last_only`).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxvad import losses, scoring
from jaxvad.errors import ConfigError
from jaxvad.methods.base import PREDICTED_FRAME_PSNR, Method, Phase, TrainState, init_variables
from jaxvad.models import convert_torch, patchgan, unet


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  form: str = "pytorch"                 # pytorch (the port: BN, bias-free convs) | tf (original)
  width: float = 1.0                    # U-Net channels (1.0 = FFP's 64..512)
  d_width: float = 1.0                  # PatchGAN channels (1.0 = 128..512)
  d_learning_rate: float = 2e-5         # discriminator Adam (port: 2e-5 RGB, 1e-5 gray)
  lr_boundaries: tuple[int, ...] = ()   # steps where both learning rates are x lr_decay
  lr_decay: float = 0.1
  loss_weights: tuple[float, ...] = (1.0, 1.0, 0.05)   # intensity, gradient, adversarial
  flow_weight: float = 0.0              # Horn-Schunck flow loss weight (FFP: 2); 0 = off
  flow_alpha: float = 0.5               # its smoothness weight (frames in [-1, 1])
  flow_iterations: int = 20             # its fixed Jacobi iterations
  pretrained: str = ""                  # the port's training checkpoint (.pth: net_g, net_d)

  def validate(self):
    if self.form not in unet.FORMS:
      raise ConfigError(f"model.form = {self.form!r}: choose one of {', '.join(unet.FORMS)}")
    if not (self.width > 0 and self.d_width > 0):
      raise ConfigError(f"model.width = {self.width} and model.d_width = {self.d_width} must "
                        "be > 0")
    if not self.d_learning_rate > 0:
      raise ConfigError(f"model.d_learning_rate = {self.d_learning_rate} must be > 0")
    if list(self.lr_boundaries) != sorted(set(self.lr_boundaries)) or any(
        b < 1 for b in self.lr_boundaries):
      raise ConfigError(f"model.lr_boundaries = {list(self.lr_boundaries)} must be increasing "
                        "steps >= 1")
    if not self.lr_decay > 0:
      raise ConfigError(f"model.lr_decay = {self.lr_decay} must be > 0")
    if self.flow_weight < 0 or not self.flow_alpha > 0 or self.flow_iterations < 1:
      raise ConfigError(f"model.flow_weight = {self.flow_weight} must be >= 0, model.flow_alpha "
                        f"= {self.flow_alpha} > 0 and model.flow_iterations = "
                        f"{self.flow_iterations} >= 1")
    if len(self.loss_weights) != 3 or min(self.loss_weights) < 0:
      raise ConfigError(f"model.loss_weights = {list(self.loss_weights)} must be 3 weights "
                        "(intensity, gradient, adversarial) >= 0")


class State(flax.struct.PyTreeNode):
  """Both networks in one pytree: the trainer checkpoints, shards and donates it whole."""
  step: jax.Array
  rng: jax.Array
  generator: TrainState          # with the U-Net's batch statistics (form "pytorch")
  discriminator: TrainState
  loss_weights: tuple[float, ...] = flax.struct.field(pytree_node=False,
                                                      default=(1.0, 1.0, 0.05))
  # (flow_weight, flow_alpha, flow_iterations): static, so a step without flow computes none
  flow: tuple[float, float, int] = flax.struct.field(pytree_node=False, default=(0.0, 0.5, 20))


def to_signed(frames):
  """uint8 frames -> float32 in [-1, 1], as FFP feeds them."""
  return jnp.asarray(frames, jnp.float32) / 127.5 - 1.0


def stack_channels(frames):
  """`[B, T, H, W, C]` -> `[B, H, W, T C]`, frame-major (the port's `torch.cat(..., dim=1)`)."""
  b, t, h, w, c = frames.shape
  return frames.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)


def stack_inputs(frames):
  """`[B, T, H, W, C]` -> the inputs `[B, H, W, (T-1) C]` (frame-major) and the target
  `[B, H, W, C]`, the port's `clips[:, 0:12]` / `clips[:, 12:15]`."""
  return stack_channels(frames[:, :-1]), frames[:, -1]


def _schedule(rate: float, m: ModelConfig):
  if not m.lr_boundaries:
    return rate
  return optax.piecewise_constant_schedule(rate, {b: m.lr_decay for b in m.lr_boundaries})


def build_models(config) -> tuple[unet.UNet, patchgan.PatchGAN]:
  m, dtype = config.model, jnp.dtype(config.train.compute_dtype)
  channels = 1 if config.data.grayscale else 3
  return (unet.UNet(form=m.form, width=m.width, out_channels=channels, dtype=dtype),
          patchgan.PatchGAN(form=m.form, width=m.d_width, dtype=dtype))


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  frames = example_batch["frames"]
  t, h, w = frames.shape[1:4]
  if t < 2:
    raise ConfigError(f"data.window = {t}: FFP needs at least 2 frames per window (inputs + "
                      "the predicted frame; the paper uses 5)")
  if h % 8 or w % 8:
    raise ConfigError(f"frames of {h}x{w}: the U-Net pools three times; set data.size to "
                      "multiples of 8 (e.g. [64, 64] or [256, 256])")
  x, target = stack_inputs(to_signed(frames[:1]))
  generator, discriminator = build_models(config)
  g_rng, d_rng, state_rng = jax.random.split(rng, 3)
  g_vars = init_variables(generator, g_rng, x)
  d_vars = init_variables(discriminator, d_rng, target)
  if config.model.pretrained and load_pretrained:
    g_vars = convert_torch.load_torch_weights(g_vars, config.model.pretrained, arch="ffp_unet")
    d_vars = convert_torch.load_torch_weights(d_vars, config.model.pretrained,
                                              arch="ffp_patchgan")
  m = config.model
  g = TrainState.create(apply_fn=generator.apply, params=g_vars["params"],
                        batch_stats=g_vars.get("batch_stats", {}),
                        tx=optax.adam(_schedule(config.train.learning_rate, m)), rng=g_rng)
  d = TrainState.create(apply_fn=discriminator.apply, params=d_vars["params"],
                        tx=optax.adam(_schedule(m.d_learning_rate, m)), rng=d_rng)
  return State(step=jnp.zeros((), jnp.int32), rng=state_rng, generator=g, discriminator=d,
               loss_weights=tuple(m.loss_weights),
               flow=(m.flow_weight, m.flow_alpha, m.flow_iterations))


def discriminate(d: TrainState, params, frames):
  """The PatchGAN's per-patch outputs for `frames` with discriminator parameters `params`."""
  return d.apply_fn({"params": params}, frames)[0]


def train_step(state, batch):
  frames = to_signed(batch["frames"])
  x, target = stack_inputs(frames)
  g, d = state.generator, state.discriminator
  w_int, w_grad, w_adv = state.loss_weights
  w_flow, flow_alpha, flow_iterations = state.flow

  def generator_loss(g_params):
    (pred, _), updates = g.apply_fn({"params": g_params, "batch_stats": g.batch_stats}, x,
                                    train=True, mutable=["batch_stats"])
    terms = {"intensity": losses.intensity_loss(pred, target, p=2),
             "gradient": losses.gradient_loss(pred, target, alpha=1),
             "adversarial": losses.lsgan_generator_loss(discriminate(d, d.params, pred))}
    total = w_int * terms["intensity"] + w_grad * terms["gradient"] + w_adv * terms["adversarial"]
    if w_flow:   # static: no flow computed when off
      terms["flow"] = losses.flow_loss(frames[:, -2], pred, target, alpha=flow_alpha,
                                       iterations=flow_iterations)
      total = total + w_flow * terms["flow"]
    return total, (pred, terms, updates)

  (g_loss, (pred, terms, updates)), g_grads = jax.value_and_grad(
      generator_loss, has_aux=True)(g.params)

  state, gan_metrics = gan_update(state, g_grads, updates["batch_stats"], pred, target)
  return state, {"loss": g_loss, **terms, **gan_metrics}


def gan_update(state, g_grads, g_batch_stats, pred, target):
  """The rest of a generator + PatchGAN step (FFP's and F2LM's): the discriminator's LSGAN
  gradient on the real target vs the detached prediction, taken at its incoming parameters as
  the generator's was, then both optimizers step and the step counts.

  Args:
    state: a state with `step`, `generator` and `discriminator` (`TrainState`s).
    g_grads: the generator's gradients; g_batch_stats: its new batch statistics.
    pred, target: the prediction and the true frame, model space `[B, H, W, C]`.

  Returns:
    (the new state, {"d_loss", "psnr" (of the prediction, on [0, 1])}).
  """
  g, d = state.generator, state.discriminator

  def discriminator_loss(d_params):
    return losses.lsgan_discriminator_loss(discriminate(d, d_params, target),
                                           discriminate(d, d_params,
                                                         jax.lax.stop_gradient(pred)))

  d_loss, d_grads = jax.value_and_grad(discriminator_loss)(d.params)
  state = state.replace(
      step=state.step + 1,
      generator=g.apply_gradients(grads=g_grads).replace(batch_stats=g_batch_stats),
      discriminator=d.apply_gradients(grads=d_grads))
  return state, {"d_loss": d_loss,
                 "psnr": jnp.mean(scoring.psnr((pred + 1) / 2, (target + 1) / 2))}


def predict(state, frames_uint8):
  """The predicted last frame of each window, float32 `[B, H, W, C]` on the [0, 1] scale."""
  x, _ = stack_inputs(to_signed(frames_uint8))
  g = state.generator
  pred, _ = g.apply_fn({"params": g.params, "batch_stats": g.batch_stats}, x, train=False)
  return (pred + 1.0) / 2.0


def score_step(state, batch):
  """PSNR of each window's predicted last frame: {"psnr": [B, 1], "recon": [B, 1, H, W, C]}."""
  pred = jnp.clip(predict(state, batch["frames"]), 0.0, 1.0)
  target = jnp.asarray(batch["frames"][:, -1], jnp.float32) / 255.0
  return {"psnr": scoring.psnr(pred, target)[:, None], "recon": pred[:, None]}


SCORE = PREDICTED_FRAME_PSNR

METHOD = Method(name="ffp", model_config=ModelConfig, create_state=create_state,
                phases=(Phase("train", train_step),), score=lambda config: SCORE,
                score_step=score_step, bench_config="ffp_demo")

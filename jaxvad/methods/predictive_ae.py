"""Predictive autoencoder method of paper 001: four frames in, the fifth predicted, scored by
the PSNR of the prediction (low PSNR = anomalous).

Windows are `data.window` frames: the first `window - 1` are the input, the last the target
(paper: 4 + 1). The encoder sees ImageNet-normalised RGB (gray is repeated); the decoder
predicts the target in that normalised space (1 or 3 channels as the data), mapped back to
[0, 1] (`to_pixels`) before the losses and PSNR, which so keep their usual range.

Training (Table 3.1): 0.6 MSE + 0.25 gradient loss + 0.15 (1 - SSIM), Adam; the encoder is
frozen unless `model.finetune` — its gradients are stopped in the model and its parameters
masked out of the optimizer (`optax.multi_transform`: no Adam moments are even allocated for
them). Augmentation (`model.augment`, §3.2.2) runs inside the jitted step on the device,
identically on the input frames and the target (`jaxvad.augment`).

Only each window's last frame is predicted (`ScoreSpec.last_only`): scoring slides windows with
stride 1 and the first `window - 1` frames of a clip get no score (the evaluation protocol
drops them, as ano_pred does).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxvad import augment, losses, scoring
from jaxvad.errors import ConfigError
from jaxvad.methods.base import PREDICTED_FRAME_PSNR, Method, Phase, TrainState, init_variables
from jaxvad.models import convert_torch, predictive_ae, resnet


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  variant: str = "base"                 # base | dropout | skiptwice | attention (§3.3.1.1)
  width: float = 1.0                    # channel multiplier (1.0 = ResNet-18 and the paper)
  finetune: bool = False                # train the encoder too (paper: frozen)
  pretrained: str = ""                  # torchvision resnet18 .pth (ImageNet); "" = random
                                        # encoder (see README for what that costs)
  augment: str = "none"                 # none | general | lighting (§3.2.2)
  loss_weights: tuple[float, ...] = (0.6, 0.25, 0.15)   # MSE, gradient, SSIM (Table 3.1)

  def validate(self):
    if self.variant not in predictive_ae.VARIANTS:
      raise ConfigError(f"model.variant = {self.variant!r}: choose one of "
                        f"{', '.join(predictive_ae.VARIANTS)}")
    if not self.width > 0:
      raise ConfigError(f"model.width = {self.width} must be > 0")
    if self.augment not in augment.KINDS:
      raise ConfigError(f"model.augment = {self.augment!r}: choose one of "
                        f"{', '.join(augment.KINDS)}")
    if len(self.loss_weights) != 3 or min(self.loss_weights) < 0:
      raise ConfigError(f"model.loss_weights = {list(self.loss_weights)} must be 3 weights "
                        "(MSE, gradient, SSIM) >= 0")


class State(TrainState):
  """TrainState + how to train, static so the jitted step specialises on it."""
  augment: str = flax.struct.field(pytree_node=False, default="none")
  loss_weights: tuple[float, ...] = flax.struct.field(pytree_node=False,
                                                      default=(0.6, 0.25, 0.15))


def build_model(config) -> predictive_ae.PredictiveAE:
  m = config.model
  return predictive_ae.PredictiveAE(variant=m.variant, width=m.width, finetune=m.finetune,
                                    out_channels=1 if config.data.grayscale else 3,
                                    dtype=jnp.dtype(config.train.compute_dtype))


def to_float(frames):
  """uint8 frames -> float32 in [0, 1], on device (the pipeline ships uint8)."""
  return jnp.asarray(frames, jnp.float32) / 255.0


def encoder_input(frames):
  """float `[..., C]` in [0, 1] -> ImageNet-normalised RGB (gray repeated to 3 channels)."""
  if frames.shape[-1] == 1:
    frames = jnp.repeat(frames, 3, axis=-1)
  return resnet.imagenet_normalize(frames)


def to_pixels(out):
  """The decoder's output, a frame in the encoder's normalised space, -> [0, 1] pixel scale.

  As in the paper's pipeline, where the target frame is ImageNet-normalised like the inputs:
  a fresh decoder (output ~ 0) then starts at the mean image, not at black, which Adam at
  3e-4 would take ~1,500 steps to leave. Gray uses the mean of the three channels' constants.
  """
  mean, std = jnp.asarray(resnet.IMAGENET_MEAN), jnp.asarray(resnet.IMAGENET_STD)
  if out.shape[-1] == 1:
    mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
  return out * std + mean


def _split(frames):
  """`[B, T, ...]` -> inputs `[B, T-1, ...]`, target `[B, ...]`."""
  return frames[:, :-1], frames[:, -1]


def _param_labels(params, finetune: bool):
  return {k: ("frozen" if k == "encoder" and not finetune else "train") for k in params}


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  frames = example_batch["frames"]
  t, h, w = frames.shape[1:4]
  if t < 2:
    raise ConfigError(f"data.window = {t}: the predictive autoencoder needs at least 2 frames "
                      "per window (inputs + the predicted frame; the paper uses 5)")
  if h % 32 or w % 32:
    raise ConfigError(f"frames of {h}x{w}: ResNet-18 needs H and W divisible by 32; set "
                      "data.size (e.g. [64, 64] or [224, 224])")
  inputs, _ = _split(to_float(frames[:1]))
  model = build_model(config)
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(model, init_rng, encoder_input(inputs))
  params, batch_stats = variables["params"], variables["batch_stats"]
  if config.model.pretrained and load_pretrained:
    enc = {"params": params["encoder"], "batch_stats": batch_stats["encoder"]}
    enc = convert_torch.load_torch_weights(enc, config.model.pretrained, arch="resnet18",
                                           include_fc=False)
    params = {**params, "encoder": enc["params"]}
    batch_stats = {**batch_stats, "encoder": enc["batch_stats"]}
  tx = optax.multi_transform({"train": optax.adam(config.train.learning_rate),
                              "frozen": optax.set_to_zero()},
                             _param_labels(params, config.model.finetune))
  return State.create(apply_fn=model.apply, params=params, batch_stats=batch_stats, tx=tx,
                      rng=state_rng, augment=config.model.augment,
                      loss_weights=tuple(config.model.loss_weights))


def prediction_loss(pred, target, *, weights=(0.6, 0.25, 0.15)):
  """Paper 001 eq. 3.1: a·MSE + b·gradient (L1) + c·(1 - SSIM).

  Args:
    pred, target: float frames `[B, H, W, C]` in [0, 1].
    weights: (a, b, c), Table 3.1's by default.

  Returns:
    (total, {"mse", "gradient", "ssim"}): float32 scalars; "ssim" is the loss term 1 - SSIM.
  """
  terms = {"mse": losses.intensity_loss(pred, target, p=2),
           "gradient": losses.gradient_loss(pred, target, alpha=1),
           "ssim": losses.ssim_loss(pred, target)}
  total = sum(w * terms[k] for w, k in zip(weights, ("mse", "gradient", "ssim")))
  return total, terms


def train_step(state, batch):
  rng = jax.random.fold_in(state.rng, state.step)
  aug_rng, dropout_rng = jax.random.split(rng)
  frames = augment.augment_batch(to_float(batch["frames"]), aug_rng, kind=state.augment)
  inputs, target = _split(frames)
  x = encoder_input(inputs)

  def loss_fn(params):
    (pred, _), updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    loss, terms = prediction_loss(to_pixels(pred), target, weights=state.loss_weights)
    return loss, (terms, updates)

  (loss, (terms, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])
  return state, {"loss": loss, **terms}


def predict(state, frames_uint8) -> Any:
  """The predicted last frame of each window, float32 `[B, H, W, C]` on the [0, 1] scale
  (unclipped)."""
  inputs, _ = _split(to_float(frames_uint8))
  pred, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                           encoder_input(inputs), train=False)
  return to_pixels(pred)


def score_step(state, batch):
  """PSNR of each window's predicted last frame: {"psnr": [B, 1], "recon": [B, 1, H, W, C]}."""
  pred = jnp.clip(predict(state, batch["frames"]), 0.0, 1.0)
  target = to_float(batch["frames"][:, -1])
  return {"psnr": scoring.psnr(pred, target)[:, None], "recon": pred[:, None]}


SCORE = PREDICTED_FRAME_PSNR

METHOD = Method(name="predictive_ae", model_config=ModelConfig, create_state=create_state,
                phases=(Phase("train", train_step),), score=lambda config: SCORE,
                score_step=score_step, bench_config="predictive_ae_demo")

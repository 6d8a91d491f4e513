"""ConvLSTM autoencoder method (paper 000 §3.1.1): reconstruct every frame of a window,
score each frame by the PSNR of its reconstruction (low PSNR = anomalous)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jaxvad import scoring
from jaxvad.errors import ConfigError
from jaxvad.methods.base import Method, Phase, ScoreSpec, ScoreTerm, TrainState, init_variables
from jaxvad.models.convlstm import ConvLSTMAutoencoder


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  features: tuple[int, ...] = (32, 64, 64)   # encoder widths, one stride-2 stage each
  lstm_features: int = 64
  lstm_layers: int = 1
  scan_unroll: bool = True                   # unroll the time loop in XLA (fast on CPU)
  batch_chunks: int = 0                      # independent batch slices; 0: 4 on a 1-device CPU

  def validate(self):
    if not self.features or min(self.features) < 1:
      raise ConfigError(f"model.features = {list(self.features)} must be positive widths")
    if self.lstm_features < 1 or self.lstm_layers < 1:
      raise ConfigError("model.lstm_features and model.lstm_layers must be >= 1")
    if self.batch_chunks < 0:
      raise ConfigError(f"model.batch_chunks = {self.batch_chunks} must be >= 0 (0: automatic)")


def default_batch_chunks() -> int:
  """4 on a single CPU device (its single-threaded convolutions need independent work, see
  `ConvLSTMAutoencoder.batch_chunks`), else 1: GPUs want the large kernels, and slicing a batch
  sharded over several devices would reshard it."""
  return 4 if jax.default_backend() == "cpu" and jax.device_count() == 1 else 1


def build_model(config) -> ConvLSTMAutoencoder:
  m = config.model
  return ConvLSTMAutoencoder(features=m.features, lstm_features=m.lstm_features,
                             lstm_layers=m.lstm_layers, scan_unroll=m.scan_unroll,
                             batch_chunks=m.batch_chunks or default_batch_chunks(),
                             out_channels=1 if config.data.grayscale else 3,
                             dtype=jnp.dtype(config.train.compute_dtype))


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  del load_pretrained  # no pretrained weights
  frames = example_batch["frames"]
  h, w = frames.shape[2:4]
  factor = 2 ** len(config.model.features)
  if h % factor or w % factor:
    raise ConfigError(f"frames of {h}x{w} do not fit model.features = {list(config.model.features)}: "
                      f"H and W must be divisible by {factor}; set data.size or fewer features")
  model = build_model(config)
  init_rng, state_rng = jax.random.split(rng)
  params = init_variables(model, init_rng, to_float(frames[:1]))["params"]
  return TrainState.create(apply_fn=model.apply, params=params,
                           tx=optax.adam(config.train.learning_rate), rng=state_rng)


def to_float(frames):
  """uint8 frames -> float32 in [0, 1]; done on device so the pipeline ships uint8."""
  return jnp.asarray(frames, jnp.float32) / 255.0


def train_step(state, batch):
  frames = to_float(batch["frames"])

  def loss_fn(params):
    recon, _ = state.apply_fn({"params": params}, frames)
    return jnp.mean((recon - frames) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), {"loss": loss}


def score_step(state, batch):
  """{"psnr": [B, T] dB of each frame's clipped reconstruction, "recon": [B, T, H, W, C]}."""
  frames = to_float(batch["frames"])
  recon, _ = state.apply_fn({"params": state.params}, frames)
  return {"psnr": scoring.psnr(jnp.clip(recon, 0.0, 1.0), frames), "recon": recon}


SCORE = ScoreSpec(
    terms=(ScoreTerm("psnr", "PSNR (dB) of the reconstructed frame", higher_is_anomalous=False),),
    image="recon", image_kind="reconstruction", image_metric="psnr")

METHOD = Method(name="convlstm_ae", model_config=ModelConfig, create_state=create_state,
                phases=(Phase("train", train_step),), score=lambda config: SCORE,
                score_step=score_step, bench_config="convlstm_ae_demo")

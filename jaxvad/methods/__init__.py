"""Paper pipelines, one module each, behind one contract.

A method module provides:
  NAME: str                       the `method` key of configs.
  ModelConfig                     frozen dataclass: the schema of the config's `model` table.
  create_state(config, rng, example_batch) -> TrainState
                                  builds model(s) and optimizer(s); `example_batch` is one
                                  host batch `{"frames": uint8 [B, T, H, W, C]}` (shapes only).
  train_step(state, batch) -> (state, metrics)
                                  pure; the trainer jits it once with the state donated.
  score_step(state, batch) -> {"psnr": float [B, T], ...}
                                  pure; per-frame scores of every frame of each window.
and optionally:
  PREDICTS_LAST = True            score_step returns outputs for each window's last frame only
                                  (`[B, 1, ...]`: a frame predictor); evaluation then slides
                                  windows with stride 1 and drops the first window - 1 frames.
  training_targets(config, clips) -> {name: [per-clip array [T_i, ...]]}
                                  per-frame training targets computed once from the training
                                  clips (uint8 [T_i, H, W, C]); batches then carry them as
                                  `batch[name]` [B, T, ...] next to `batch["frames"]`.

so that the trainer, `jaxvad score`, evaluation and benchmarks treat every method alike.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jaxvad.errors import ConfigError

# name -> module path; modules import lazily so `jaxvad --help` stays fast.
_REGISTRY = {
    "convlstm_ae": "jaxvad.methods.convlstm_ae",
    "predictive_ae": "jaxvad.methods.predictive_ae",
    "r3d_partition": "jaxvad.methods.r3d_partition",
}


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> ModuleType:
  """Returns the method module registered as `name`."""
  if name not in _REGISTRY:
    raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(names())}")
  return importlib.import_module(_REGISTRY[name])

"""PyTorch baselines of jaxvad's models, for benchmarks and for the parity tests.

Straightforward PyTorch, as a competent user writes it: NCHW / NCDHW modules kept in
channels-last memory (the uint8 `[B, T, H, W, C]` batches jaxvad's pipeline delivers permute
into it without a copy), `cudnn.benchmark` on GPU (`configure`), AMP left to the caller
(`torch.autocast`). torchvision's r3d_18 and resnet18 are transcribed module for module
(`r3d.py`, `resnet.py`; also the references of tests/test_r3d.py and test_resnet.py).

Every method name of `METHODS` maps to a module with the same four functions:

  build(config, *, channels_last=True) -> torch.nn.Module
      The model of a jaxvad `Config` of that method (sizes from its `model` and `data`
      sections), on the CPU, in train mode.
  train_loss(model, frames, targets=None) -> scalar tensor
      The loss of the jaxvad method's `train_step` (its first phase's) on a uint8
      `[B, T, H, W, C]` batch (moved to the model's device inside), in train mode; the caller
      runs backward and the optimizer. `targets`: r3d_partition's per-frame soft labels
      `[B, T, C]`; for a method with per-frame inputs (`Method.frame_inputs`: f2lm) the dict of
      them, `{"flow": [B, T, H, W, 2], "classes": [B, T, H, W]}` (cutpaste: `{"box": [B, 1, 4],
      "views": [B, K, H, W, C]}`, the host transform's pseudo-anomaly views); unused by the
      others.
  score(model, frames) -> tensor or dict of tensors
      As the method's `score_step`, in eval mode without autograd: per-frame PSNR (`[B, T]`
      convlstm_ae, `[B, 1]` predictive_ae and ffp), partition probabilities (`[B, T, C]`
      r3d_partition), f2lm's score terms (`[B, 1]` each), or cutpaste's ("gde", "softmax"
      `[B, 1]`, "probs" `[B, 1, K]`, the Grad-CAM "map" `[B, 1, H, W]`; eval mode, autograd
      only for the Grad-CAM backward). A method with per-frame inputs takes them as a third
      argument, `score(model, frames, inputs)`.
  load_flax_variables(model, variables) -> model
      Copies a jaxvad model's `{"params", "batch_stats"}` into it, so both frameworks run the
      same weights (tests/test_torch_baselines.py); ffp takes `{"generator": ...,
      "discriminator": ...}`, one such dict per network, f2lm also `"destroyer": ...`;
      cutpaste also takes the fitted Gaussians (`density=`, `patch_density=`, or those keys).

  from bench.torch_baselines import get
  baseline = get(config.method)
  model = baseline.build(config).to(device)
  loss = baseline.train_loss(model, frames); loss.backward(); optimizer.step()

A method that trains several networks with optimizers of their own (ffp: a generator and a
discriminator, two Adams at two learning rates; f2lm: three AdamWs), or whose optimizer is not
Adam (cutpaste: SGD with momentum and weight decay), also has

  optimizers(model, config) -> tuple of torch.optim.Optimizer
  train_losses(model, frames, targets=None) -> dict of scalar tensors
      The forward pass and the losses of every network (what `torch.compile` takes).
  train_step(model, optimizers, frames, targets=None, *, losses_fn=train_losses) -> dict
      The whole update (`losses_fn`, the backward passes, the optimizer steps), which the
      benchmark times instead of `train_loss` + one Adam; `train_loss` stays for callers with a
      single optimizer.

and a method with several training phases (`Method.phases`; f2lm: "generator", "destroyer")

  PHASES: {phase name: (losses_fn, step_fn)}
      Each phase's `train_losses` and `train_step` counterparts (same signatures; the step
      takes the whole `optimizers` tuple and steps its own). bench/models.py times each phase
      the method declares with them; a phase missing here is reported, not timed.
"""

from __future__ import annotations

import types

from bench.torch_baselines import (convlstm_ae, cutpaste, f2lm, ffp, predictive_ae,
                                   r3d_partition)
from bench.torch_baselines.common import configure

__all__ = ["METHODS", "BASELINES", "get", "configure", "convlstm_ae", "r3d_partition",
           "predictive_ae", "ffp", "f2lm", "cutpaste"]

METHODS = ("convlstm_ae", "r3d_partition", "predictive_ae", "ffp", "f2lm", "cutpaste")
BASELINES: dict[str, types.ModuleType] = {
    "convlstm_ae": convlstm_ae, "r3d_partition": r3d_partition, "predictive_ae": predictive_ae,
    "ffp": ffp, "f2lm": f2lm, "cutpaste": cutpaste}


def get(method: str) -> types.ModuleType:
  """The baseline module of a jaxvad method name (`build`, `train_loss`, `score`,
  `load_flax_variables`).

  Raises:
    KeyError: a method without a PyTorch baseline.
  """
  try:
    return BASELINES[method]
  except KeyError:
    raise KeyError(f"no PyTorch baseline for method {method!r}; have {', '.join(METHODS)}") \
        from None

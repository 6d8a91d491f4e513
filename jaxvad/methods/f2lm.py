"""Paper 004: the F2LM generator and the Destroyer (Hong, Ahn, Jo, Park).

Phase 1 ("generator", steps 1 .. `model.generator_steps`) trains the F2LM generator
(`models/f2lm.py`) with FFP's PatchGAN, as FFP's step does (`methods/ffp.py`: both gradients at
the step's incoming parameters, the prediction detached for the discriminator), on
  1 · intensity + 1 · gradient + 0.05 · adversarial + 1 · (L_m + L_l)      (`model.loss_weights`)
where L_m = triplet(T_m(x), motion feature, frame feature) and L_l likewise with the labels
(anchor, positive, negative; margin `model.margin`, `losses.triplet_loss`).

Phase 2 ("destroyer", the steps after it up to `train.steps`) freezes the generator (batch
norm on its running statistics) and trains the Destroyer, FFP's U-Net 3 -> 3
(`models/unet.py`). Its input N is the detached prediction A with noise patches: a grid of
`model.patch_grid`² patches (paper: 8 x 8 of 32 px at 256²), each noised with probability
r ~ U(`model.noise_rate`) by channel dropout with p ~ U(`model.dropout_rate`), r and p drawn
per step as the code does ("ci": `Dropout2d`, whole channels of a patch zeroed, the rest scaled
by 1 / (1 - p), the paper's best; "cd": pixels zeroed in every channel; "none"). Its target
per patch is gated by d_p = min(λ (1 - SSIM(N_p, I_p)), 1), I the true frame:
  L = mean over the batch of sum_p [d_p ||Z_p - D(N)_p||² + (1 - d_p) ||A_p - D(N)_p||²]
with Z the zero patch (-1 in model space: the code's black background image) and ||·||² the
patch's mean square (the code's `torch.mean(..., dim=(2, 3, 4))`). The code sums over the batch
too; the mean keeps the learning rate independent of the batch size. SSIM is
`jaxvad.scoring.patch_scores` (the frame's SSIM map averaged over the patch) on [0, 1].
Training with `train.steps = model.generator_steps` leaves the Destroyer out of the score.

Inputs beside the frames (`frame_inputs`, computed on the host once per clip): the optical flow
of consecutive frames (`model.motion`: OpenCV DIS or Farneback, `jaxvad.data.flow`; FlowNet2
weights cannot be had) and per-frame class maps (`model.label_source`: "rendered" by the
synthetic benchmark, "npz" files for other data, `jaxvad.data.semantic`; the paper's
DeepLabv3 logits need weights this project cannot download). A window of 5 frames feeds the
flows into frames 2, 3, 4 (the 3 input pairs, 6 channels) and the one-hot class maps of
frames 1-4 (4 K channels).

Score (the official `eval_test.py`): per window, the label and motion triplet losses, the
generator's MSE and the Destroyer's MSE (of D(prediction), no noise) against the true frame
on [0, 1]; evaluation z-scores each per video and sums them with `model.score_weights` (γ1..γ4;
`ScoreSpec` combined terms), then the protocol (ano_pred: min-max per video).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvad import losses, scoring
from jaxvad.data import datasets, flow, semantic
from jaxvad.errors import ConfigError
from jaxvad.methods import ffp
from jaxvad.methods.base import Method, Phase, ScoreSpec, ScoreTerm, TrainState, init_variables
from jaxvad.models import convert_torch, f2lm, patchgan, unet

MOTIONS = ("dis", "farneback", "none")
LABEL_SOURCES = ("rendered", "npz", "none")
NOISES = ("ci", "cd", "none")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  width: float = 1.0                    # generator and Destroyer channels (1.0 = 64..512)
  d_width: float = 1.0                  # PatchGAN channels (1.0 = 128..512)
  d_learning_rate: float = 1e-5         # discriminator AdamW (code: 1e-5 Ped2, 2e-5 others)
  destroyer_learning_rate: float = 1e-4   # Destroyer AdamW (code: 1e-4 Ped2, 2e-4 others)
  weight_decay: float = 1e-4            # AdamW weight decay of all three (code: 1e-4 / 2e-4)
  generator_steps: int = 1000           # phase 1 ends here; the Destroyer trains after it
  loss_weights: tuple[float, ...] = (1.0, 1.0, 0.05, 1.0)  # intensity, gradient, adv, triplet
  margin: float = 0.2                   # triplet margin alpha
  triplet_distance: str = "channels"    # channels (paper) | width (the official code)
  motion: str = "dis"                   # dis | farneback | none (no motion encoder)
  flow_scale: float = 1.0               # flow (pixels) is divided by this before the encoder
  label_source: str = "rendered"        # rendered | npz | none (no label encoder)
  label_dir: str = ""                   # label_source = npz: folder of <clip name>.npz
  num_classes: int = 7                  # classes of the maps (rendered: 7)
  fusion: str = "concat_se"             # concat_se (paper) | concat | add (Table 4)
  noise: str = "ci"                     # Destroyer noise: ci (paper) | cd | none (Table 6)
  patch_grid: int = 8                   # patches per side (paper: 8 x 8 of 32 px at 256)
  destroyer_lambda: float = 4.0         # lambda of d_p (Table 8)
  noise_rate: tuple[float, float] = (0.05, 0.5)    # range of the chance a patch is noised
  dropout_rate: tuple[float, float] = (0.05, 0.5)  # range of the dropout probability
  score_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)   # gamma: label, motion, gen, destroyer
  pretrained: str = ""                  # official checkpoint (.pth) of the generator (net_g)

  def validate(self):
    def bad(key, value, want):
      raise ConfigError(f"model.{key} = {value!r}: {want}")
    for key, choices in (("motion", MOTIONS), ("label_source", LABEL_SOURCES),
                         ("noise", NOISES), ("fusion", f2lm.FUSIONS),
                         ("triplet_distance", tuple(losses.TRIPLET_DISTANCES))):
      if getattr(self, key) not in choices:
        bad(key, getattr(self, key), f"choose one of {', '.join(choices)}")
    for key in ("width", "d_width", "d_learning_rate", "destroyer_learning_rate", "flow_scale",
                "destroyer_lambda"):
      if not getattr(self, key) > 0:
        bad(key, getattr(self, key), "must be > 0")
    if self.weight_decay < 0 or self.margin < 0:
      bad("weight_decay / margin", (self.weight_decay, self.margin), "must be >= 0")
    if self.generator_steps < 1:
      bad("generator_steps", self.generator_steps, "must be >= 1 (phase 1 trains the generator)")
    if len(self.loss_weights) != 4 or min(self.loss_weights) < 0:
      bad("loss_weights", list(self.loss_weights),
          "4 weights >= 0 (intensity, gradient, adversarial, triplet)")
    if len(self.score_weights) != 4 or min(self.score_weights) < 0:
      bad("score_weights", list(self.score_weights),
          "4 weights >= 0 (label triplet, motion triplet, generator, destroyer)")
    if self.label_source == "npz" and not self.label_dir:
      bad("label_dir", self.label_dir, "set it to the folder of per-clip .npz class maps "
          "(model.label_source = npz)")
    if not 1 <= self.num_classes <= 256:
      bad("num_classes", self.num_classes, "must be in [1, 256]")
    if self.patch_grid < 1:
      bad("patch_grid", self.patch_grid, "must be >= 1")
    for key in ("noise_rate", "dropout_rate"):
      lo, hi = getattr(self, key)
      if not 0 <= lo <= hi < 1:
        bad(key, [lo, hi], "a range [lo, hi] with 0 <= lo <= hi < 1")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the jitted steps need from the config: static (hashable), kept in the state."""
  motion: bool = True
  labels: bool = True
  num_classes: int = 7
  flow_scale: float = 1.0
  loss_weights: tuple[float, ...] = (1.0, 1.0, 0.05, 1.0)
  margin: float = 0.2
  triplet_distance: str = "channels"
  noise: str = "ci"
  patch_grid: int = 8
  destroyer_lambda: float = 4.0
  noise_rate: tuple[float, float] = (0.05, 0.5)
  dropout_rate: tuple[float, float] = (0.05, 0.5)


def settings(config) -> Settings:
  m = config.model
  return Settings(motion=m.motion != "none", labels=m.label_source != "none",
                  num_classes=m.num_classes, flow_scale=m.flow_scale,
                  loss_weights=tuple(m.loss_weights), margin=m.margin,
                  triplet_distance=m.triplet_distance, noise=m.noise, patch_grid=m.patch_grid,
                  destroyer_lambda=m.destroyer_lambda, noise_rate=tuple(m.noise_rate),
                  dropout_rate=tuple(m.dropout_rate))


class State(flax.struct.PyTreeNode):
  """Generator, discriminator and Destroyer in one pytree (checkpointed, sharded, donated
  whole); `step` counts both phases."""
  step: jax.Array
  rng: jax.Array
  generator: TrainState          # F2LM, with its batch statistics
  discriminator: TrainState
  destroyer: TrainState          # U-Net 3 -> 3, with its batch statistics
  settings: Settings = flax.struct.field(pytree_node=False, default=Settings())


# --------------------------------------------------------------------------- inputs


def frame_inputs(config, frames: np.ndarray, clip=None) -> dict[str, np.ndarray]:
  """The per-frame inputs beside the frames, computed on the host once per clip.

  Returns:
    {"flow": float32 `[T, H, W, 2]` (flow from frame t-1 to t; zero at t = 0), "classes":
    uint8 `[T, H, W]`} as enabled by `model.motion` / `model.label_source`.

  Raises:
    ConfigError / DataError: class maps that cannot be had for this clip (none rendered, a
      missing or misaligned .npz); the message names the clip or file and the fix.
  """
  m, out = config.model, {}
  if m.motion != "none":
    out["flow"] = flow.clip_flow(frames, method=m.motion)
  if m.label_source != "none":
    if clip is None:
      raise ConfigError(f"method f2lm with model.label_source = {m.label_source!r} needs class "
                        "maps of these frames: score clips of a dataset (jaxvad eval), or set "
                        "model.label_source = none")
    out["classes"] = semantic.class_maps(clip, source=m.label_source, directory=m.label_dir,
                                         size=frames.shape[1:3], num_classes=m.num_classes)
  return out


def example_inputs(config, shape: tuple[int, ...], rng: np.random.Generator):
  """Random per-frame inputs of the right shapes, `shape` = (B, T) (benchmarks) or (B, T, H,
  W) (default H, W: the config's frame size, `data.size` or the benchmark's)."""
  if len(shape) == 2:   # the shipped synthetic configs leave `data.size` empty: the benchmark's
    shape = tuple(shape) + tuple(datasets.frame_size(config.data))
  b, t, h, w = shape
  out = {}
  if config.model.motion != "none":
    out["flow"] = rng.normal(size=(b, t, h, w, 2)).astype(np.float32)
  if config.model.label_source != "none":
    out["classes"] = rng.integers(0, config.model.num_classes, (b, t, h, w), dtype=np.uint8)
  return out


def model_inputs(s: Settings, batch):
  """A batch -> (frames `[B, H, W, 4 C]`, motion `[B, H, W, 6]` or None, labels
  `[B, H, W, 4 K]` or None, target `[B, H, W, C]`), in model space."""
  x, target = ffp.stack_inputs(ffp.to_signed(batch["frames"]))
  motion = labels = None
  if s.motion:   # flows into the input frames 2..T-1: the T-2 pairs of the inputs
    motion = ffp.stack_channels(jnp.asarray(batch["flow"][:, 1:-1], jnp.float32) / s.flow_scale)
  if s.labels:
    labels = ffp.stack_channels(jax.nn.one_hot(batch["classes"][:, :-1], s.num_classes,
                                               dtype=jnp.float32))
  return x, motion, labels, target


# --------------------------------------------------------------------------- state


def build_models(config):
  m, dtype = config.model, jnp.dtype(config.train.compute_dtype)
  channels = 1 if config.data.grayscale else 3
  return (f2lm.F2LM(width=m.width, out_channels=channels, motion=m.motion != "none",
                    labels=m.label_source != "none", fusion=m.fusion, dtype=dtype),
          patchgan.PatchGAN(width=m.d_width, dtype=dtype),
          unet.UNet(width=m.width, out_channels=channels, dtype=dtype))


def _adamw(rate, m: ModelConfig):
  return optax.adamw(rate, weight_decay=m.weight_decay)


def create_state(config, rng, example_batch, *, load_pretrained: bool = True):
  frames = example_batch["frames"]
  t, h, w = frames.shape[1:4]
  if t != 5:
    raise ConfigError(f"data.window = {t}: F2LM takes 4 frames and predicts the 5th (its "
                      "motion input is the flow of the 3 input pairs); set data.window = 5")
  if h % 8 or w % 8:
    raise ConfigError(f"frames of {h}x{w}: the U-Nets pool three times; set data.size to "
                      "multiples of 8 (e.g. [64, 64] or [256, 256])")
  m = config.model
  if h % m.patch_grid or w % m.patch_grid:
    raise ConfigError(f"model.patch_grid = {m.patch_grid} does not divide the {h}x{w} frames "
                      "into whole patches; pick a divisor of both")
  s = settings(config)
  example = {"frames": frames[:1],
             **example_inputs(config, (1, t, h, w), np.random.default_rng(0))}
  x, motion, labels, target = model_inputs(s, example)
  generator, discriminator, destroyer = build_models(config)
  g_rng, d_rng, a_rng, state_rng = jax.random.split(rng, 4)
  g_vars = init_variables(generator, g_rng, x, motion, labels)
  d_vars = init_variables(discriminator, d_rng, target)
  a_vars = init_variables(destroyer, a_rng, target)
  if m.pretrained and load_pretrained:
    g_vars = convert_torch.load_torch_weights(g_vars, m.pretrained, arch="f2lm")
  g = TrainState.create(apply_fn=generator.apply, params=g_vars["params"],
                        batch_stats=g_vars["batch_stats"],
                        tx=_adamw(config.train.learning_rate, m), rng=g_rng)
  d = TrainState.create(apply_fn=discriminator.apply, params=d_vars["params"],
                        tx=_adamw(m.d_learning_rate, m), rng=d_rng)
  a = TrainState.create(apply_fn=destroyer.apply, params=a_vars["params"],
                        batch_stats=a_vars["batch_stats"],
                        tx=_adamw(m.destroyer_learning_rate, m), rng=a_rng)
  return State(step=jnp.zeros((), jnp.int32), rng=state_rng, generator=g, discriminator=d,
               destroyer=a, settings=s)


def _generate(g: TrainState, params, inputs, *, train: bool):
  x, motion, labels = inputs
  variables = {"params": params, "batch_stats": g.batch_stats}
  if train:
    return g.apply_fn(variables, x, motion, labels, train=True, mutable=["batch_stats"])
  return g.apply_fn(variables, x, motion, labels, train=False), None


def _triplets(s: Settings, feats, *, per_sample: bool = False):
  """{"label_triplet", "motion_triplet"} of the enabled encoders: scalars, or `[B]`."""
  out = {}
  for key, on in (("label", s.labels), ("motion", s.motion)):
    if on:
      hinge = losses.triplet_distances(feats[f"to_{key}"], feats[key], feats["frame"],
                                       margin=s.margin, distance=s.triplet_distance)
      out[f"{key}_triplet"] = hinge.mean(axis=(1, 2)) if per_sample else hinge.mean()
  return out


# --------------------------------------------------------------------------- phase 1


def generator_step(state: State, batch):
  s = state.settings
  x, motion, labels, target = model_inputs(s, batch)
  g, d = state.generator, state.discriminator
  w_int, w_grad, w_adv, w_tri = s.loss_weights

  def generator_loss(g_params):
    (pred, feats), updates = _generate(g, g_params, (x, motion, labels), train=True)
    terms = {"intensity": losses.intensity_loss(pred, target, p=2),
             "gradient": losses.gradient_loss(pred, target, alpha=1),
             "adversarial": losses.lsgan_generator_loss(ffp.discriminate(d, d.params, pred)),
             **_triplets(s, feats)}
    total = w_int * terms["intensity"] + w_grad * terms["gradient"] + w_adv * terms["adversarial"]
    for key in ("label_triplet", "motion_triplet"):
      if key in terms:
        total = total + w_tri * terms[key]
    return total, (pred, terms, updates)

  (g_loss, (pred, terms, updates)), g_grads = jax.value_and_grad(
      generator_loss, has_aux=True)(g.params)

  state, gan_metrics = ffp.gan_update(state, g_grads, updates["batch_stats"], pred, target)
  return state, {"loss": g_loss, **terms, **gan_metrics}


# --------------------------------------------------------------------------- phase 2


def _to_patches(x, grid: int):
  """`[B, H, W, C]` -> `[B, grid, grid, H/grid, W/grid, C]`."""
  b, h, w, c = x.shape
  x = x.reshape(b, grid, h // grid, grid, w // grid, c)
  return x.transpose(0, 1, 3, 2, 4, 5)


def _from_patches(x):
  b, gh, gw, ph, pw, c = x.shape
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * ph, gw * pw, c)


def noise_patches(rng, images, *, grid: int, kind: str = "ci",
                  noise_rate: tuple[float, float] = (0.05, 0.5),
                  dropout_rate: tuple[float, float] = (0.05, 0.5)):
  """The Destroyer's input: `images` (model space `[B, H, W, C]`) with noised patches.

  One chance r ~ U(noise_rate) and one dropout probability p ~ U(dropout_rate) per call (the
  code draws them per step); each of the `grid`² patches of each image is noised with
  probability r. "ci": torch's `Dropout2d` on the patch (each channel zeroed with probability
  p, the others scaled by 1 / (1 - p)); "cd": each pixel zeroed in all channels with
  probability p (unscaled, the code's "channel dependent" dropout); "none": no noise.

  Returns:
    (noised images `[B, H, W, C]`, bool `[B, grid, grid]` which patches were noised).
  """
  b, h, w, c = images.shape
  if kind == "none":
    return images, jnp.zeros((b, grid, grid), bool)
  r_key, p_key, which_key, drop_key = jax.random.split(rng, 4)
  rate = jax.random.uniform(r_key, (), minval=noise_rate[0], maxval=noise_rate[1])
  p = jax.random.uniform(p_key, (), minval=dropout_rate[0], maxval=dropout_rate[1])
  noised = jax.random.uniform(which_key, (b, grid, grid)) < rate
  patches = _to_patches(images, grid)
  if kind == "ci":
    keep = jax.random.uniform(drop_key, (b, grid, grid, 1, 1, c)) >= p
    noisy = jnp.where(keep, patches / (1 - p), 0.0)
  else:
    keep = jax.random.uniform(drop_key, patches.shape[:-1] + (1,)) >= p
    noisy = jnp.where(keep, patches, 0.0)
  out = jnp.where(noised[..., None, None, None], noisy, patches)
  return _from_patches(out), noised


def destroyer_loss(output, prediction, noisy, frame, *, grid: int, lam: float):
  """Paper 004's Destroyer loss (see the module docstring), mean over the batch.

  Args:
    output: D(N), model space `[B, H, W, C]`.
    prediction: A, the detached prediction (model space).
    noisy: N, the Destroyer's input (model space).
    frame: the true frame (model space).
    grid: patches per side; lam: lambda.

  Returns:
    (loss, d `[B, grid, grid]`: the per-patch weights of the zero target).
  """
  size = output.shape[1] // grid
  ssim = scoring.patch_scores(jnp.clip((noisy + 1) / 2, 0, 1), (frame + 1) / 2, metric="ssim",
                              patch_size=size, stride=size)
  d = jax.lax.stop_gradient(jnp.minimum(lam * (1 - ssim), 1.0))
  to_zero = jnp.mean(_to_patches((-1.0 - output) ** 2, grid), axis=(3, 4, 5))
  to_prediction = jnp.mean(_to_patches((prediction - output) ** 2, grid), axis=(3, 4, 5))
  per_image = jnp.sum(d * to_zero + (1 - d) * to_prediction, axis=(1, 2))
  return jnp.mean(per_image), d


def destroyer_step(state: State, batch):
  s = state.settings
  x, motion, labels, target = model_inputs(s, batch)
  g, a = state.generator, state.destroyer
  pred = jax.lax.stop_gradient(_generate(g, g.params, (x, motion, labels), train=False)[0][0])
  rng = jax.random.fold_in(state.rng, state.step)
  noisy, _ = noise_patches(rng, pred, grid=s.patch_grid, kind=s.noise, noise_rate=s.noise_rate,
                           dropout_rate=s.dropout_rate)

  def loss_fn(params):
    (out, _), updates = a.apply_fn({"params": params, "batch_stats": a.batch_stats}, noisy,
                                   train=True, mutable=["batch_stats"])
    loss, d = destroyer_loss(out, pred, noisy, target, grid=s.patch_grid, lam=s.destroyer_lambda)
    return loss, (d, updates)

  (loss, (d, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(a.params)
  a = a.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])
  return state.replace(step=state.step + 1, destroyer=a), {
      "loss": loss, "zero_weight": jnp.mean(d)}


# --------------------------------------------------------------------------- score


def destroyer_trained(config) -> bool:
  return config.train.steps > config.model.generator_steps


def score_step(state: State, batch):
  """Per window: the four terms of the official evaluation, each `[B, 1]` (triplets of the
  enabled encoders only), the prediction "recon" and the Destroyer's output "destroyed"
  `[B, 1, H, W, C]` on [0, 1]."""
  s = state.settings
  x, motion, labels, target = model_inputs(s, batch)
  g, a = state.generator, state.destroyer
  (pred, feats), _ = _generate(g, g.params, (x, motion, labels), train=False)
  destroyed, _ = a.apply_fn({"params": a.params, "batch_stats": a.batch_stats}, pred,
                            train=False)
  frame = (target + 1) / 2
  pred, destroyed = (pred + 1) / 2, (destroyed + 1) / 2
  out = {"generator_error": scoring.mse(pred, frame), "destroyer_error": scoring.mse(destroyed, frame),
         **_triplets(s, feats, per_sample=True)}
  out = {k: v[:, None] for k, v in out.items()}
  return {**out, "recon": pred[:, None], "destroyed": destroyed[:, None]}


_TERMS = (("label_triplet", "label triplet loss of the window (T_l(frame feature) vs label "
           "feature)"),
          ("motion_triplet", "motion triplet loss of the window (T_m(frame feature) vs motion "
           "feature)"),
          ("generator_error", "MSE of the F2LM prediction (pixels in [0, 1])"),
          ("destroyer_error", "MSE of the Destroyer's output on the prediction (pixels in "
           "[0, 1])"))


def score(config) -> ScoreSpec:
  """The enabled terms of the official score with their weights gamma (`model.score_weights`);
  the triplets' descriptions name their input's source, so every result file records it."""
  m = config.model
  on = {"label_triplet": m.label_source != "none", "motion_triplet": m.motion != "none",
        "generator_error": True, "destroyer_error": destroyer_trained(config)}
  source = {"label_triplet": {"rendered": "; labels: the class maps the synthetic benchmark "
                                          "renders",
                              "npz": f"; labels: .npz class maps in {m.label_dir}"}.get(
                                  m.label_source, ""),
            "motion_triplet": f"; motion: OpenCV {m.motion} optical flow"}
  terms = tuple(ScoreTerm(name, text + source.get(name, ""), higher_is_anomalous=True,
                          weight=float(w))
                for (name, text), w in zip(_TERMS, m.score_weights) if on[name] and w > 0)
  if not terms:
    raise ConfigError("model.score_weights leave no enabled score term with a weight > 0")
  return ScoreSpec(terms=terms, last_only=True, image="recon", image_kind="prediction")


METHOD = Method(
    name="f2lm", model_config=ModelConfig, create_state=create_state,
    phases=(Phase("generator", generator_step, until=lambda c: c.model.generator_steps),
            Phase("destroyer", destroyer_step)),
    score=score, score_step=score_step, frame_inputs=frame_inputs,
    example_targets=example_inputs, bench_config="f2lm_demo")

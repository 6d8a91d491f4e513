"""Paper 004's F2LM method (jaxvad.methods.f2lm): the triplet loss both ways, the Destroyer's
noise and loss against slow references, the generator step's loss as the sum of its terms,
the score's terms, and the config's checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import losses, scoring
from jaxvad.errors import ConfigError
from jaxvad.methods import f2lm
from tests.naive import losses as naive

TINY = ["model.width=0.0625", "model.d_width=0.0625", "data.size=[32,32]", "model.patch_grid=4"]


@pytest.mark.parametrize("distance, axis", [("channels", -1), ("width", 2)])
def test_triplet_loss_matches_the_reference_both_ways(distance, axis):
  rng = np.random.default_rng(0)
  a, p, n = (rng.normal(size=(2, 3, 4, 5)).astype(np.float32) for _ in range(3))
  got = losses.triplet_loss(a, p, n, margin=0.7, distance=distance)
  np.testing.assert_allclose(got, naive.triplet_loss(a, p, n, margin=0.7, axis=axis), rtol=1e-5)
  # The two readings differ: the official code's axis is not the paper's.
  other = "width" if distance == "channels" else "channels"
  assert abs(float(got) - float(losses.triplet_loss(a, p, n, margin=0.7, distance=other))) > 1e-3


def test_triplet_loss_rejects_mismatched_shapes_and_unknown_distance():
  x = np.zeros((1, 2, 2, 3), np.float32)
  with pytest.raises(ValueError, match="one shape"):
    losses.triplet_loss(x, x, x[..., :2])
  with pytest.raises(ValueError, match="distance"):
    losses.triplet_loss(x, x, x, distance="height")


@pytest.mark.parametrize("kind", ["ci", "cd"])
def test_noise_touches_only_the_chosen_patches_and_drops_as_declared(kind):
  images = jnp.asarray(np.random.default_rng(1).uniform(0.2, 0.9, (3, 16, 16, 3)), jnp.float32)
  out, noised = f2lm.noise_patches(jax.random.key(3), images, grid=4, kind=kind,
                                   noise_rate=(0.5, 0.5), dropout_rate=(0.4, 0.4))
  out, noised, images = np.asarray(out), np.asarray(noised), np.asarray(images)
  assert 0 < noised.sum() < noised.size
  for b, r, c in np.ndindex(*noised.shape):
    patch = out[b, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
    clean = images[b, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
    if not noised[b, r, c]:
      np.testing.assert_array_equal(patch, clean)
    elif kind == "ci":   # Dropout2d: whole channels zeroed, the rest scaled by 1 / (1 - p)
      for ch in range(3):
        assert (np.all(patch[..., ch] == 0)
                or np.allclose(patch[..., ch], clean[..., ch] / 0.6, rtol=1e-6))
    else:                # pixels zeroed in every channel at once, the rest untouched
      zero = np.all(patch == 0, axis=-1)
      np.testing.assert_array_equal(patch[~zero], clean[~zero])
  same, none = f2lm.noise_patches(jax.random.key(3), images, grid=4, kind="none")
  np.testing.assert_array_equal(same, images)
  assert not np.asarray(none).any()


def test_destroyer_loss_matches_the_patch_by_patch_reference():
  rng = np.random.default_rng(2)
  out, pred, noisy, frame = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
                             for _ in range(4))
  noisy[:, :16] = frame[:, :16]        # some patches alike (d < 1), the rest not
  loss, d = f2lm.destroyer_loss(out, pred, noisy, frame, grid=4, lam=4.0)
  ssim = scoring.patch_scores((noisy + 1) / 2, (frame + 1) / 2, metric="ssim", patch_size=8,
                              stride=8)
  np.testing.assert_allclose(loss, naive.destroyer_loss(out, pred, np.asarray(ssim), 4, 4.0),
                             rtol=1e-5)
  assert 0 <= float(np.min(d)) and float(np.max(d)) == 1.0 and float(np.min(d)) < 1.0


def _batch(config, rng, b=2):
  return {"frames": rng.integers(0, 256, (b, 5, 32, 32, 3), np.uint8),
          **f2lm.example_inputs(config, (b, 5), rng)}


def test_generator_step_loss_is_the_weighted_sum_and_the_destroyer_step_freezes_it():
  config = config_lib.load_config("f2lm_demo", [*TINY, "model.loss_weights=[1, 0.5, 0.05, 2]"])
  batch = _batch(config, np.random.default_rng(0))
  state = f2lm.create_state(config, jax.random.PRNGKey(0), batch)
  state, m = jax.jit(f2lm.generator_step)(state, batch)
  m = jax.device_get(m)
  want = (m["intensity"] + 0.5 * m["gradient"] + 0.05 * m["adversarial"]
          + 2 * (m["label_triplet"] + m["motion_triplet"]))
  np.testing.assert_allclose(m["loss"], want, rtol=1e-6)
  frozen = jax.device_get((state.generator, state.discriminator))
  state, m = jax.jit(f2lm.destroyer_step)(state, batch)
  assert np.isfinite(float(m["loss"])) and int(state.step) == 2
  for a, b in zip(jax.tree_util.tree_leaves(frozen),
                  jax.tree_util.tree_leaves(jax.device_get((state.generator,
                                                            state.discriminator)))):
    np.testing.assert_array_equal(a, b)
  assert int(state.destroyer.step) == 1


@pytest.mark.parametrize("overrides, terms", [
    ([], ["label_triplet", "motion_triplet", "generator_error", "destroyer_error"]),
    (["model.motion=none", "train.steps=1500"], ["label_triplet", "generator_error"]),
    (["model.label_source=none", "model.score_weights=[1, 1, 1, 0]"],
     ["motion_triplet", "generator_error"])])
def test_score_declares_the_enabled_terms_with_their_weights(overrides, terms):
  config = config_lib.load_config("f2lm_demo", overrides)
  spec = f2lm.score(config)
  assert [t.name for t in spec.terms] == terms and spec.last_only
  assert all(t.higher_is_anomalous for t in spec.terms)


@pytest.mark.parametrize("override, message", [
    ("model.motion=flownet", "model.motion"), ("model.label_source=npz", "model.label_dir"),
    ("model.noise=gaussian", "model.noise"), ("model.fusion=max", "model.fusion"),
    ("model.score_weights=[1, 1]", "model.score_weights"),
    ("model.noise_rate=[0.5, 0.1]", "model.noise_rate"),
    ("model.triplet_distance=height", "model.triplet_distance")])
def test_bad_model_options_name_the_key(override, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config("f2lm_demo", [override])


def test_window_and_patch_grid_that_do_not_fit_are_config_errors():
  config = config_lib.load_config("f2lm_demo", [*TINY, "model.patch_grid=5"])
  with pytest.raises(ConfigError, match="patch_grid"):
    f2lm.create_state(config, jax.random.PRNGKey(0), _batch(config, np.random.default_rng(0)))
  config = config_lib.load_config("f2lm_demo", [*TINY, "data.window=4"])
  with pytest.raises(ConfigError, match="data.window"):
    f2lm.create_state(config, jax.random.PRNGKey(0), {"frames": np.zeros((1, 4, 32, 32, 3),
                                                                      np.uint8)})

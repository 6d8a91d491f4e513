"""FFP's training step (jaxvad.methods.ffp): the generator's loss is the configured sum of its
terms, the Horn-Schunck flow term included when switched on; the discriminator's is LSGAN's."""

import jax
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad.errors import ConfigError
from jaxvad.methods import ffp

TINY = ["model.width=0.0625", "model.d_width=0.0625", "data.size=[32,32]"]


def test_step_loss_is_the_weighted_sum_of_its_terms_flow_included():
  config = config_lib.load_config("ffp_demo", [*TINY, "model.flow_weight=2.0",
                                               "model.flow_iterations=5",
                                               "model.loss_weights=[1.0, 0.5, 0.05]"])
  frames = np.random.default_rng(0).integers(0, 256, (2, 5, 32, 32, 3), np.uint8)
  state = ffp.create_state(config, jax.random.key(0), {"frames": frames})
  before = jax.device_get(state.generator.params)
  new, m = jax.jit(ffp.train_step)(state, {"frames": frames})
  m = jax.device_get(m)
  want = m["intensity"] + 0.5 * m["gradient"] + 0.05 * m["adversarial"] + 2.0 * m["flow"]
  np.testing.assert_allclose(m["loss"], want, rtol=1e-6)
  assert m["flow"] > 0 and np.isfinite(m["d_loss"])
  after = jax.device_get(new.generator.params)
  changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, after)
  assert all(jax.tree_util.tree_leaves(changed))
  assert int(new.step) == 1 and int(new.generator.step) == 1 and int(new.discriminator.step) == 1


@pytest.mark.parametrize("override, message", [
    ("model.form=keras", "model.form"), ("model.flow_weight=-1", "model.flow_weight"),
    ("model.lr_boundaries=[500, 100]", "model.lr_boundaries"),
    ("model.loss_weights=[1, 1]", "model.loss_weights")])
def test_bad_model_options_name_the_key(override, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config("ffp_demo", [override])

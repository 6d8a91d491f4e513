"""End-to-end trainer tests on fake clips: sharded step on 1 and 8 devices, exact resume, NaN."""

import json
import re

import jax
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import methods
from jaxvad import sharding, train
from jaxvad.errors import ConfigError, DataError, TrainingError


def tiny_config(**train_overrides):
  raw = {
      "name": "tiny", "method": "convlstm_ae",
      "data": {"window": 4, "stride": 2, "grayscale": True},
      "model": {"features": [4, 8], "lstm_features": 8},
      "train": {"steps": 6, "batch_size": 8, "learning_rate": 1e-2, "checkpoint_every": 2,
                "log_every": 1, **train_overrides},
  }
  return config_lib.config_from_dict(raw)


def fake_clips(n=3, frames=20, size=16):
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (frames, size, size, 1), dtype=np.uint8) for _ in range(n)]


def params_of(state):
  return jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_trees_equal(a, b, **tol):
  check = np.testing.assert_allclose if tol else np.testing.assert_array_equal
  jax.tree.map(lambda x, y: check(x, y, **tol), a, b)


def test_eight_devices_are_available():
  assert jax.device_count() == 8, "conftest should force 8 CPU devices"


def test_batch_is_split_over_the_data_axis():
  mesh = sharding.make_mesh()
  batch = sharding.shard_batch({"frames": np.zeros((8, 4, 16, 16, 1), np.uint8)}, mesh)
  shards = batch["frames"].addressable_shards
  assert len(shards) == 8 and all(s.data.shape == (1, 4, 16, 16, 1) for s in shards)


def test_one_and_eight_devices_agree(tmp_path):
  """Data parallelism changes only the order of float sums, not the result."""
  cfg = tiny_config(steps=3)
  one = train.train(cfg, tmp_path / "one", clips=fake_clips(), progress=False,
                    devices=jax.devices()[:1])
  eight = train.train(cfg, tmp_path / "eight", clips=fake_clips(), progress=False)
  assert int(one.step) == int(eight.step) == 3
  assert_trees_equal(params_of(one), params_of(eight), rtol=2e-4, atol=1e-6)
  # The step actually learned something.
  log = [json.loads(line) for line in (tmp_path / "one" / train.LOG_FILE).read_text().splitlines()]
  assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
  cfg = tiny_config(steps=6, checkpoint_every=2)
  clips = fake_clips()
  straight = train.train(cfg, tmp_path / "straight", clips=clips, progress=False)

  def crash_at_step_5(step, metrics):
    if step == 5:
      raise KeyboardInterrupt  # what Ctrl-C or a SIGTERM handler raises mid-run

  with pytest.raises(KeyboardInterrupt):
    train.train(cfg, tmp_path / "resumed", clips=clips, progress=False, hooks=[crash_at_step_5])
  manager = train.checkpoint_manager(tmp_path / "resumed", keep=2)
  assert manager.latest_step() == 4  # step 5 never reached a checkpoint
  manager.close()
  resumed = train.train(cfg, tmp_path / "resumed", clips=clips, progress=False, resume=True)
  assert int(resumed.step) == 6
  assert_trees_equal(params_of(straight), params_of(resumed))
  assert_trees_equal(jax.device_get(straight.opt_state), jax.device_get(resumed.opt_state))


def test_existing_run_is_not_overwritten_and_config_changes_are_refused(tmp_path):
  cfg = tiny_config(steps=2)
  train.train(cfg, tmp_path / "run", clips=fake_clips(), progress=False)
  with pytest.raises(ConfigError, match="already holds checkpoints.*--resume"):
    train.train(cfg, tmp_path / "run", clips=fake_clips(), progress=False)
  changed = tiny_config(steps=4, learning_rate=0.5)
  with pytest.raises(ConfigError, match="train.learning_rate"):
    train.train(changed, tmp_path / "run", clips=fake_clips(), progress=False, resume=True)
  # More steps on the same config is what --resume is for.
  longer = train.train(tiny_config(steps=4), tmp_path / "run", clips=fake_clips(),
                       progress=False, resume=True)
  assert int(longer.step) == 4
  # Issue 14: fewer steps than the checkpoint holds used to "train" nothing and rewrite
  # config.json to the smaller number.
  saved = (tmp_path / "run" / train.CONFIG_FILE).read_bytes()
  with pytest.raises(ConfigError, match=r"train.steps = 2: its latest checkpoint is already at "
                                        r"step 4"):
    train.train(tiny_config(steps=2), tmp_path / "run", clips=fake_clips(), progress=False,
                resume=True)
  assert (tmp_path / "run" / train.CONFIG_FILE).read_bytes() == saved
  assert train.latest_step(tmp_path / "run") == 4
  # A corrupt config.json is one line naming it, for a resume and for loading the run.
  (tmp_path / "run" / train.CONFIG_FILE).write_text('{"name": "tiny", "method"')
  for load in (lambda: train.load_trained(tmp_path / "run"),
               lambda: train.train(tiny_config(steps=6), tmp_path / "run", clips=fake_clips(),
                                   progress=False, resume=True)):
    with pytest.raises(ConfigError, match=r"config.json \(the run's config.json\) is not valid "
                                          r"JSON .*corrupt"):
      load()


def test_load_trained_restores_the_last_checkpoint(tmp_path, monkeypatch):
  cfg = tiny_config(steps=2)
  state = train.train(cfg, tmp_path / "run", clips=fake_clips(), progress=False)
  monkeypatch.setattr(train, "frame_shape", lambda config: (16, 16, 1))
  loaded_cfg, loaded = train.load_trained(tmp_path / "run")
  assert loaded_cfg == cfg
  assert_trees_equal(params_of(state), params_of(loaded))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
  # Adam moves every parameter by ~lr per step: lr 1e30 overflows the activations at once.
  cfg = tiny_config(steps=6, learning_rate=1e30, checkpoint_every=1)
  with pytest.raises(TrainingError, match=r"non-finite training metrics at step (\d).*--resume") as e:
    train.train(cfg, tmp_path / "run", clips=fake_clips(), progress=False)
  bad_step = int(re.search(r"at step (\d+)", str(e.value)).group(1))
  manager = train.checkpoint_manager(tmp_path / "run", keep=2)
  assert manager.latest_step() == bad_step - 1  # the checkpoint just before is kept...
  like = methods.get("convlstm_ae").create_state(
      cfg, jax.random.PRNGKey(0), {"frames": np.zeros((1, 4, 16, 16, 1), np.uint8)})
  restored = train.restore_state(manager, like)
  manager.close()
  # ...and no checkpoint holding non-finite values was written.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params_of(restored)))


def test_anomalous_training_frames_are_dropped_and_said():
  """Issue 14: frames a train split labels anomalous were trained on as normal."""
  from jaxvad.data.clips import Clip
  frames = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
  labels = np.zeros(20, bool)
  labels[[2, 10, 11]] = True   # normal runs: [0, 2) too short, [3, 10), [12, 20)
  clips = [Clip("a", frames, labels, None, None, {"label_source": "a/labels.json"}),
           Clip("b", frames, None, None, None, {})]
  with pytest.warns(UserWarning, match=r"5 frames of 1 clip\(s\) dropped \(a \(a/labels.json"):
    kept, dropped = train.normal_training_frames(clips, window=4)
  assert [k[:, 0, 0, 0].tolist() for k in kept] == [list(range(3, 10)), list(range(12, 20)),
                                                    list(range(20))]
  assert dropped == {"a": {"label_source": "a/labels.json", "anomalous": [[2, 3], [10, 12]],
                           "dropped_short_runs": [[0, 2]]}}
  with pytest.raises(DataError, match="no normal run of at least data.window = 4"):
    train.normal_training_frames([Clip("c", frames[:5], np.arange(5) == 2, None, None, {})],
                                 window=4)


def test_batch_size_must_divide_over_devices(tmp_path):
  with pytest.raises(ConfigError, match="divisible by the number of devices"):
    train.train(tiny_config(batch_size=6), tmp_path / "run", clips=fake_clips(), progress=False)

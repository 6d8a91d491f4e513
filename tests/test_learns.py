"""Every shipped detector learns: on a tiny, easy scene its loss falls and an obvious anomaly
scores frame AUROC >= 0.9.

The scene (32x32 RGB, an "intervals" folder dataset written here): a gray background and a
bright block sliding back and forth with a period of 8 frames, the repetitive process. The
anomaly: the block in the wrong place (the upper band, at a random column), which neither a
reconstruction (it never saw the block there) nor a prediction (it cannot know where it lands)
can reproduce. An untrained model errs as much on normal frames as on these (the same pixels
differ from its output), so only a model that learned the process finds them (checked when
this test was written: after 1 step they score AUROC 0.14-0.63). Every detector trains from its
shipped CPU config at tiny width (150 steps; the predictive AE, whose frozen random encoder
leaves only the decoder to learn, 1000: at 500 it had not yet, AUROC 0.66), then is evaluated
the way `jaxvad eval` does (validation threshold, pooled frame AUROC).
"""

import json

import cv2
import jax
import numpy as np
import pytest

from jaxvad import config as config_lib
from jaxvad import methods, train
from jaxvad.data import datasets
from jaxvad.evaluation import evaluate

SIZE, PERIOD = 32, 8

# method -> (shipped config, overrides): tiny widths; steps enough to learn the scene.
DETECTORS = {
    "convlstm_ae": ("convlstm_ae_demo", ["model.features=[8,16]", "model.lstm_features=16",
                                         "data.window=4", "data.stride=1", "train.steps=150",
                                         "train.learning_rate=3e-3"]),
    "predictive_ae": ("predictive_ae_demo", ["model.width=0.125", "train.steps=1000",
                                             "train.batch_size=8", "score.smoothing=1"]),
    # Frame by frame, scored by 1 - p(normal): the classifier must have learned what normal
    # is (after 1 step: AUROC 0.16). Its GDE score finds this scene even untrained (AUROC 1.0
    # after 1 step: a random ResNet's features already place the block), so it cannot show
    # learning here.
    "cutpaste": ("cutpaste_demo", ["model.width=0.125", "model.head_layers=[32]",
                                   "model.embed_dim=32", "data.roi=[]", "train.steps=300",
                                   "train.batch_size=16", "model.object_box=frame",
                                   "model.score=softmax"]),
    "ffp": ("ffp_demo", ["model.width=0.125", "model.d_width=0.0625", "train.steps=150"]),
    # Both phases: the generator (its class maps from .npz files, the block's class 1) and the
    # Destroyer on 4 x 4 patches of 8 px.
    "f2lm": ("f2lm_demo", ["model.width=0.125", "model.d_width=0.0625", "model.patch_grid=4",
                           "model.label_source=npz", "model.label_dir={root}/classes",
                           "model.num_classes=2", "model.generator_steps=150",
                           "train.steps=200"]),
}


def test_every_shipped_detector_is_covered():
  shipped = {n for n in methods.names() if n != "tiny_test" and methods.get(n).is_detector}
  assert set(DETECTORS) == shipped


def _frame(t: int, rng, anomalous: bool) -> np.ndarray:
  frame = np.full((SIZE, SIZE, 3), 110, np.uint8)
  phase = t % PERIOD
  x = 4 + 3 * (phase if phase < PERIOD // 2 else PERIOD - phase)    # 4 .. 16 and back
  y = 16
  if anomalous:
    y, x = 2, int(rng.integers(0, SIZE - 8))
  frame[y:y + 8, x:x + 8] = (230, 200, 60)
  return frame


def _write_clip(folder, frames: int, anomalous=(), *, seed: int):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  offset = int(rng.integers(0, PERIOD))
  for t in range(frames):
    image = _frame(t + offset, rng, anomalous and anomalous[0] <= t < anomalous[1])
    assert cv2.imwrite(str(folder / f"{t:03d}.png"), image[..., ::-1])
  if folder.parent.name == "test":
    (folder / "labels.json").write_text(json.dumps({"anomalous_frames": [list(anomalous)]}))
  # Per-frame class maps (f2lm's label input): the block, by its colour, is class 1.
  images = np.stack([cv2.imread(str(folder / f"{t:03d}.png")) for t in range(frames)])
  classes = folder.parents[1] / "classes"
  classes.mkdir(exist_ok=True)
  np.savez_compressed(classes / f"{folder.name}.npz",
                      classes=(images[..., 2] > 200).astype(np.uint8))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
  root = tmp_path_factory.mktemp("easy")
  for i in range(3):
    _write_clip(root / "train" / f"n{i}", 40, seed=i)
  _write_clip(root / "val" / "v0", 24, seed=10)
  for i in range(3):
    _write_clip(root / "test" / f"a{i}", 32, (12 + i, 22 + i), seed=20 + i)
  return root


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_loss_falls_and_an_obvious_anomaly_is_found(name, scene, tmp_path):
  config_name, overrides = DETECTORS[name]
  config = config_lib.load_config(config_name, [
      "data.dataset=intervals", f"data.root={scene}", f"data.size=[{SIZE},{SIZE}]",
      "train.log_every=10", "train.checkpoint_every=1000",
      *[o.format(root=scene) for o in overrides]])
  losses = {}
  train.train(config, tmp_path / "run", progress=False,
              hooks=[lambda step, m: losses.__setitem__(step, float(jax.device_get(m["loss"])))])
  for phase, first, last in methods.get(name).phase_bounds(config):   # each phase learns
    curve = [losses[step] for step in range(first, last + 1)]
    assert np.mean(curve[-3:]) < 0.7 * np.mean(curve[:3]), (phase.name, curve)

  config, state = train.load_trained(tmp_path / "run")
  test = datasets.load_split(config.data, "test")
  val = datasets.load_split(config.data, "val")
  result = evaluate.evaluate_clips(config, state, test, val_clips=val)
  auroc = result["metrics"]["all"]["auroc"]
  assert auroc >= 0.9, f"{name}: frame AUROC {auroc:.3f}"

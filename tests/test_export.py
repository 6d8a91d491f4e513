"""`jaxvad.export` / `jaxvad.exported`: the serialized scorer and its loader.

The end-to-end check (every method: `jaxvad export`, loaded where flax and jaxvad cannot be
imported, equal to `jaxvad score`) is in tests/test_methods.py; here the contract's details.
"""

import json
import zipfile

import numpy as np
import pytest

import jaxvad
from jaxvad import export, exported
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate
from tests.test_cli import run_cli
from tests.test_live import _moving_frames
from tests.test_methods import tiny_state


@pytest.fixture(scope="module")
def ffp_scorer(tmp_path_factory):
  config, state, shape = tiny_state("ffp")
  path = tmp_path_factory.mktemp("export") / "scorer.bin"
  path.write_bytes(export.export_scorer(config, state, frame_shape=shape,
                                        platforms=("cpu", "cuda", "tpu"), batch_size=4))
  return config, state, shape, path


def test_one_file_for_several_platforms_with_any_batch(ffp_scorer):
  config, state, shape, path = ffp_scorer
  scorer = jaxvad.load_scorer(path)
  assert scorer._exported.platforms == ("cpu", "cuda", "tpu")
  meta = scorer.metadata
  assert meta["input"]["window"] == config.data.window and meta["input"]["last_only"]
  assert meta["input"]["frame_shape"] == list(shape) and meta["input"]["inputs"] == {}
  assert meta["score"]["name"] == "psnr" and meta["output"] == {"psnr": "float32 [b, 1]"}
  step = evaluate.Scorer(config, state).step
  frames = _moving_frames(shape, 12)
  for b in (1, 3, 8):   # the batch dimension is symbolic: one program for every batch
    windows = np.stack([frames[i:i + config.data.window] for i in range(b)])
    want = np.asarray(step(state, {"frames": windows})["psnr"])
    got = scorer.window_outputs(windows)["psnr"]
    assert got.shape == (b, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  raw = scorer(frames)
  want = evaluate.Scorer(config, state).score(frames)
  assert np.isnan(raw[:config.data.window - 1]).all()
  np.testing.assert_allclose(raw, want, rtol=1e-5, atol=1e-5)


def test_the_loader_names_what_is_wrong(ffp_scorer, tmp_path):
  config, state, shape, path = ffp_scorer
  scorer = exported.load_scorer(path)
  with pytest.raises(ValueError, match="uint8"):
    scorer(np.zeros((10, *shape), np.float32))
  with pytest.raises(ValueError, match="at least"):
    scorer(np.zeros((2, *shape), np.uint8))
  (tmp_path / "not.bin").write_bytes(b"hello")
  with pytest.raises(ValueError, match="not a zip"):
    exported.load_scorer(tmp_path / "not.bin")
  with zipfile.ZipFile(tmp_path / "future.bin", "w") as z:
    z.writestr("metadata.json", json.dumps({"format": "jaxvad-scorer", "version": 99}))
  with pytest.raises(ValueError, match="version 99"):
    exported.read_metadata(tmp_path / "future.bin")
  cuda_only = tmp_path / "cuda.bin"
  cuda_only.write_bytes(export.export_scorer(config, state, frame_shape=shape,
                                             platforms=("cuda",)))
  with pytest.raises(ValueError, match="exported for cuda, not cpu.*--platforms cpu"):
    exported.load_scorer(cuda_only)
  with pytest.raises(ConfigError, match="gpu"):
    export.export_scorer(config, state, frame_shape=shape, platforms=("gpu",))


def test_inputs_the_step_does_not_read_are_not_in_the_signature(tmp_path):
  config, state, shape = tiny_state("f2lm")   # reads its flow input
  (tmp_path / "f2lm.bin").write_bytes(export.export_scorer(config, state, frame_shape=shape))
  meta = exported.read_metadata(tmp_path / "f2lm.bin")
  assert set(meta["input"]["inputs"]) == {"flow"}
  assert meta["input"]["inputs"]["flow"]["shape"] == ["b", config.data.window, *shape[:2], 2]
  assert len(meta["output"]) == len(meta["score"]["terms"]) > 1
  config, state, shape = tiny_state("cutpaste")   # has a "box" input, scores without it
  (tmp_path / "cp.bin").write_bytes(export.export_scorer(config, state, frame_shape=shape))
  assert exported.read_metadata(tmp_path / "cp.bin")["input"]["inputs"] == {}


def test_cli_export_of_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
  code, _, err = run_cli(["export", "--workdir", tmp_path / "none", "--out", tmp_path / "s.bin"],
                         capsys)
  assert code == 2 and "not a training run folder" in err and "Traceback" not in err

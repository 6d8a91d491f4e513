"""Per-frame semantic class maps: the benchmark's rendered ones and per-clip .npz files."""

import re

import numpy as np
import pytest

from jaxvad.data import clips, semantic, synth
from jaxvad.errors import ConfigError, DataError

T = 3


def _clip(name="01", split="test", classes=None, **meta):
  frames = np.zeros((T, 8, 12, 3), np.uint8)
  return clips.Clip(name=name, frames=frames, labels=None, distractors=None, workspace_mask=None,
                    meta={"split": split, **meta}, classes=classes)


def _ids(shape=(T, 4, 6), dtype=np.int64):
  return (np.arange(np.prod(shape)) % 5).reshape(shape).astype(dtype)


def _maps(clip, directory, size=(8, 12), num_classes=5):
  return semantic.class_maps(clip, source="npz", directory=directory, size=size,
                             num_classes=num_classes)


def test_npz_maps_are_resized_nearest_at_pixel_centres(tmp_path):
  ids = _ids()
  np.savez_compressed(tmp_path / "01.npz", classes=ids)
  up = _maps(_clip(), tmp_path)
  assert up.dtype == np.uint8 and up.shape == (T, 8, 12)
  np.testing.assert_array_equal(up, ids.repeat(2, axis=1).repeat(2, axis=2))
  down = _maps(_clip(), tmp_path, size=(2, 3))
  np.testing.assert_array_equal(down, ids[:, 1::2, 1::2])
  np.testing.assert_array_equal(_maps(_clip(), tmp_path, size=(4, 6)), ids)


def test_npz_paths_use_split_folders_when_present(tmp_path):
  np.savez_compressed(tmp_path / "a__b.npz", classes=_ids())
  assert semantic.npz_path(_clip("a/b"), tmp_path) == tmp_path / "a__b.npz"
  assert _maps(_clip("a/b"), tmp_path).shape == (T, 8, 12)
  (tmp_path / "train").mkdir()     # Avenue: train and test clips are both named `01`
  np.savez_compressed(tmp_path / "train" / "01.npz", classes=_ids() % 2)
  np.savez_compressed(tmp_path / "01.npz", classes=_ids())
  assert _maps(_clip(split="train"), tmp_path).max() == 1
  assert _maps(_clip(split="val", val_from_train=True), tmp_path).max() == 1
  assert _maps(_clip(split="test"), tmp_path).max() == 4      # no test/ folder: flat


def test_rendered_maps(tmp_path):
  rendered = _ids((T, 8, 12), np.uint8) + 2
  clip = _clip(classes=rendered)
  out = semantic.class_maps(clip, source="rendered", size=(4, 6),
                            num_classes=semantic.RENDERED_NUM_CLASSES)
  np.testing.assert_array_equal(out, rendered[:, 1::2, 1::2])
  assert semantic.RENDERED_NUM_CLASSES == len(synth.SEMANTIC_CLASSES) == 7
  with pytest.raises(ConfigError, match=r"model.num_classes to at least 7"):
    semantic.class_maps(clip, source="rendered", size=(8, 12), num_classes=6)
  with pytest.raises(ConfigError, match=r"clip 01 has no rendered class maps.*label_source = "
                                        r"'npz'.*label_dir"):
    semantic.class_maps(_clip(), source="rendered", size=(8, 12), num_classes=7)
  with pytest.raises(ConfigError, match="unknown class map source 'sam'"):
    semantic.class_maps(clip, source="sam", size=(8, 12), num_classes=7)
  with pytest.raises(ConfigError, match=r"num_classes must be in \[1, 256\]"):
    semantic.class_maps(clip, source="rendered", size=(8, 12), num_classes=300)


def test_loaded_synthetic_clips_have_rendered_maps(tmp_path):
  spec = synth.SynthPreset(size=(48, 48), fps=5, train_clips=1, train_distractor_clips=1,
                           train_cycles=1, val_clips=0, val_distractor_clips=0, val_cycles=1,
                           test_clips=0, cycle_min=10, cycle_max=12)
  root = synth.write_benchmark(tmp_path, scene="pickplace", preset=spec, progress=False)
  clip, = clips.load_synthetic(root, "train")
  maps = semantic.class_maps(clip, source="rendered", size=(24, 24), num_classes=7)
  assert maps.shape == (len(clip.frames), 24, 24) and maps.dtype == np.uint8
  assert (maps == synth.SEMANTIC_CLASSES.index("arm")).any(axis=(1, 2)).all()


def _error(tmp_path, match, num_classes=5, **arrays):
  path = tmp_path / "01.npz"
  if arrays:
    np.savez(path, **arrays)
  with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match):
    _maps(_clip(), tmp_path, num_classes=num_classes)


def test_npz_errors_name_the_file_and_the_fix(tmp_path):
  with pytest.raises(DataError, match=r"model.label_dir is unset.*clip 01.*\.npz"):
    _maps(_clip(), None)
  _error(tmp_path, r"is missing; write one .npz per clip.*model.label_dir")
  (tmp_path / "01.npz").write_bytes(b"not a zip at all")
  _error(tmp_path, r"is not a readable .npz file.*np.savez_compressed")
  np.savez(tmp_path / "01.npz", classes=_ids())
  (tmp_path / "01.npz").write_bytes((tmp_path / "01.npz").read_bytes()[:100])
  _error(tmp_path, r"is not a readable .npz file")
  np.save(tmp_path / "01.npy", _ids())
  (tmp_path / "01.npy").rename(tmp_path / "01.npz")
  _error(tmp_path, r"is not a readable .npz file.*single .npy array")
  _error(tmp_path, r"has no 'classes' array \(it holds labels\)", labels=_ids())
  _error(tmp_path, r"'classes' is float32, not integer class ids.*argmax",
         classes=_ids().astype(np.float32))
  _error(tmp_path, r"'classes' has shape \[3, 24\], not \[T, H, W\]", classes=_ids((T, 24)))
  _error(tmp_path, r"'classes' holds 4 maps but clip 01 has 3 frames",
         classes=_ids((4, 4, 6)))
  _error(tmp_path, r"ids from 0 to 4 but model.num_classes = 4.*at least 5", num_classes=4,
         classes=_ids())
  _error(tmp_path, r"ids from -1 to 4", classes=_ids() - (_ids() == 0))

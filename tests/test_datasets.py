"""Loading from a config's `data` section: the benchmark cache, `data.val_from_train` and
`data.roi`."""

import dataclasses
import hashlib
import json
import pathlib
import random

import cv2
import numpy as np
import pytest

from jaxvad.config import DataConfig
from jaxvad.data import clips, datasets, synth
from jaxvad.errors import ConfigError, DataError
from tests.layouts import MVTEC_HW, MVTEC_TEST, MVTEC_TRAIN, mvtec_mask, write_mvtec

H, W = 24, 32
MICRO = dataclasses.replace(synth.PRESETS["tiny"], size=(32, 32), train_clips=1,
                            train_distractor_clips=0, train_cycles=1, val_clips=1,
                            val_distractor_clips=0, val_cycles=1, test_clips=2)


def _hashes(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def _write_event(folder: pathlib.Path, t: int, level: int, labels=None):
  """An event of `t` flat frames of grey `level` (+ frame index), as PNGs."""
  folder.mkdir(parents=True)
  for i in range(t):
    assert cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((H, W, 3), level + i, np.uint8))
  if labels is not None:
    (folder / "labels.json").write_text(json.dumps({"anomalous_frames": labels}))


@pytest.fixture
def factory(tmp_path):
  """An intervals dataset with 6 normal training events and no val split."""
  root = tmp_path / "factory"
  for i in range(6):
    _write_event(root / "train" / f"ev_{i:02d}", 3 + i, 20 * i)
  _write_event(root / "test" / "ev_t", 5, 200, labels=[[1, 3]])
  return root


def _cfg(root, **kw) -> DataConfig:
  cfg = DataConfig(**{"dataset": "intervals", "root": str(root), "size": (H, W),
                      "grayscale": False, **kw})
  cfg.validate()
  return cfg


# --------------------------------------------------------------------------- val_from_train


def test_val_from_train_names_are_seeded_and_deterministic():
  names = [f"v{i:02d}" for i in range(10)]
  cfg = _cfg("unused", val_from_train=2)
  chosen = datasets.val_from_train_names(cfg, names)
  assert len(chosen) == 2 and chosen == [n for n in names if n in chosen]   # in names' order
  assert datasets.val_from_train_names(cfg, names) == chosen
  shuffled = names[:]
  random.Random(0).shuffle(shuffled)
  assert set(datasets.val_from_train_names(cfg, shuffled)) == set(chosen)   # order-free
  others = {tuple(datasets.val_from_train_names(_cfg("unused", val_from_train=2, seed=s), names))
            for s in range(1, 6)}
  assert others - {tuple(chosen)}                                           # seeded
  assert len(datasets.val_from_train_names(_cfg("unused", val_from_train=0.25), names)) == 3
  assert len(datasets.val_from_train_names(_cfg("unused", val_from_train=0.01), names)) == 1
  assert datasets.val_from_train_names(_cfg("unused"), names) == []
  with pytest.raises(ConfigError, match=r"val_from_train = 10 would hold out 10 of the 10"):
    datasets.val_from_train_names(_cfg("unused", val_from_train=10), names)
  with pytest.raises(DataError, match="not unique"):
    datasets.val_from_train_names(cfg, ["a", "a", "b"])


def test_load_split_carves_val_from_the_training_videos(factory):
  cfg = _cfg(factory, val_from_train=2, seed=3)
  chosen = datasets.val_from_train_names(cfg)          # indexed from disk, nothing decoded
  assert len(chosen) == 2
  train = datasets.load_split(cfg, "train")
  val = datasets.load_split(cfg, "val")
  assert [c.name for c in val] == chosen
  assert sorted(c.name for c in train + val) == [f"ev_{i:02d}" for i in range(6)]
  for clip in val:
    i = int(clip.name[-2:])
    assert clip.frames.shape == (3 + i, H, W, 3) and clip.frames[0, 0, 0, 0] == 20 * i
    assert not clip.labels.any()
    assert clip.meta["split"] == "val" and clip.meta["val_from_train"] is True
  assert all(c.meta["split"] == "train" and "val_from_train" not in c.meta for c in train)
  test = datasets.load_split(cfg, "test")
  assert [c.name for c in test] == ["ev_t"] and test[0].labels.tolist() == [0, 1, 1, 0, 0]
  # "auto" finds the same layout and the same videos; a fraction picks round(f * 6).
  auto = dataclasses.replace(cfg, dataset="auto")
  assert [c.name for c in datasets.load_split(auto, "val")] == chosen
  assert len(datasets.load_split(dataclasses.replace(cfg, val_from_train=0.5), "val")) == 3
  # Off: the whole train split, and asking for val names the key.
  off = dataclasses.replace(cfg, val_from_train=0)
  assert len(datasets.load_split(off, "train")) == 6
  with pytest.raises(DataError, match=r"has no val split: set data.val_from_train"):
    datasets.load_split(off, "val")


def test_val_from_train_refused_where_a_val_split_exists(factory):
  _write_event(factory / "val" / "ev_v", 4, 90)
  cfg = _cfg(factory, val_from_train=1)
  with pytest.raises(ConfigError, match=r"has its own val split: set data.val_from_train = 0"):
    datasets.load_split(cfg, "train")
  assert [c.name for c in datasets.load_split(dataclasses.replace(cfg, val_from_train=0),
                                              "val")] == ["ev_v"]


@pytest.mark.parametrize("value, ok", [(0, True), (0.0, True), (1, True), (7, True),
                                       (0.2, True), (0.999, True), (-1, False), (1.0, False),
                                       (1.5, False), (-0.1, False)])
def test_val_from_train_is_validated(value, ok):
  cfg = DataConfig(dataset="frames", size=(H, W), val_from_train=value)
  if ok:
    cfg.validate()
  else:
    with pytest.raises(ConfigError, match=r"data.val_from_train = .* is invalid: expected 0 "
                                          r"\(off\), an integer N >= 1"):
      cfg.validate()
  with pytest.raises(ConfigError, match="val_from_train.*synthetic benchmark"):
    DataConfig(dataset="synth", val_from_train=2).validate()


def test_val_from_train_with_mvtec_images(tmp_path):
  root = write_mvtec(tmp_path / "bottle")
  cfg = DataConfig(dataset="mvtec", root=str(root), size=MVTEC_HW, grayscale=False,
                   val_from_train=1, seed=2)
  cfg.validate()
  assert datasets.has_val_split(root, "mvtec") is False
  chosen = datasets.val_from_train_names(cfg)
  val, train = datasets.load_split(cfg, "val"), datasets.load_split(cfg, "train")
  assert [c.name for c in val] == chosen and len(chosen) == 1
  assert sorted(c.name for c in val + train) == sorted(MVTEC_TRAIN)
  assert all(c.frames.shape == (1, *MVTEC_HW, 3) and not c.labels.any() for c in val + train)
  assert val[0].meta["split"] == "val" and val[0].meta["val_from_train"] is True
  test = datasets.load_split(dataclasses.replace(cfg, dataset="auto"), "test")
  assert [c.name for c in test] == list(MVTEC_TEST)
  with pytest.raises(DataError, match=r"the mvtec dataset at .* has no val split: set "
                                      r"data.val_from_train"):
    datasets.load_split(dataclasses.replace(cfg, val_from_train=0), "val")


# --------------------------------------------------------------------------- data.roi


def test_load_split_crops_to_roi_after_resizing(factory):
  full = datasets.load_split(_cfg(factory), "test")
  cfg = _cfg(factory, roi=(4, 2, 10, 8), size=(H // 2, W // 2))      # in pixels of 12x16
  assert datasets.frame_size(cfg) == (8, 10)
  (clip,) = datasets.load_split(cfg, "test")
  (half,) = datasets.load_split(_cfg(factory, size=(H // 2, W // 2)), "test")
  assert clip.frames.shape == (5, 8, 10, 3) and clip.frames.flags.c_contiguous
  assert np.array_equal(clip.frames, half.frames[:, 2:10, 4:14])
  assert np.array_equal(clip.labels, full[0].labels) and clip.meta["roi"] == [4, 2, 10, 8]
  train = datasets.load_split(_cfg(factory, roi=(0, 0, 5, 3), val_from_train=2), "val")
  assert [c.frames.shape[1:3] for c in train] == [(3, 5), (3, 5)]


def test_roi_crops_every_per_pixel_array_of_mvtec(tmp_path):
  root = write_mvtec(tmp_path / "bottle")
  cfg = DataConfig(dataset="mvtec", root=str(root), size=MVTEC_HW, roi=(2, 1, 9, 7))
  cfg.validate()
  for clip in datasets.load_split(cfg, "test"):
    assert clip.frames.shape == (1, 7, 9, 1) and clip.pixel_masks.shape == (1, 7, 9)
    assert np.array_equal(clip.pixel_masks[0], mvtec_mask(clip.name)[1:8, 2:11])


def test_roi_crops_the_synthetic_benchmark(tmp_path, monkeypatch):
  monkeypatch.setitem(synth.PRESETS, "micro", MICRO)
  cfg = DataConfig(scene="pickplace", preset="micro", root=str(tmp_path / "cache"))
  full = datasets.load_split(cfg, "test")
  roi = (3, 5, 20, 16)
  cropped = datasets.load_split(dataclasses.replace(cfg, roi=roi), "test")
  assert datasets.frame_size(dataclasses.replace(cfg, roi=roi)) == (16, 20)
  assert datasets.frame_size(cfg) == datasets.stored_size(cfg) == (32, 32)
  moving = [synth.SEMANTIC_CLASSES.index(n) for n in clips.MOVING_PART_CLASSES["pickplace"]]
  for f, c in zip(full, cropped):
    # Pickplace's approximate anomaly masks: the arm and block in anomalous frames only.
    assert np.array_equal(f.pixel_masks, np.isin(f.classes, moving) & f.labels[:, None, None])
    assert f.pixel_masks.any() and not f.pixel_masks[~f.labels].any()
    for key in ("frames", "workspace_mask", "classes", "pixel_masks"):
      assert np.array_equal(getattr(c, key), getattr(f, key)[:, 5:21, 3:23]), key
    assert np.array_equal(c.labels, f.labels) and np.array_equal(c.frame_types, f.frame_types)
  # Empty data.size: the roi is checked against the stored frames, before decoding.
  with pytest.raises(DataError, match=r"data.roi = \[20, 0, 16, 8\] does not fit inside the "
                                      r"32x32 \(WxH\) frames of .*their stored size\): choose "
                                      r"x \+ w <= 32"):
    datasets.load_split(dataclasses.replace(cfg, roi=(20, 0, 16, 8)), "test")
  with pytest.raises(DataError, match=r"does not fit inside the 32x32 \(WxH\) frames of clip"):
    clips.crop_clip(full[0], (0, 30, 4, 4))


def test_roi_outside_the_frames_of_a_public_dataset(factory):
  # validate() refuses it already; a config built without validation fails at load time.
  cfg = DataConfig(dataset="intervals", root=str(factory), size=(H, W), roi=(30, 0, 4, 4))
  with pytest.raises(ConfigError, match=r"data.roi = \(30, 0, 4, 4\) is invalid"):
    cfg.validate()
  with pytest.raises(DataError, match=rf"data.roi = \[30, 0, 4, 4\] does not fit inside the "
                                      rf"{W}x{H} \(WxH\) frames of .*factory \(data.size\)"):
    datasets.load_split(cfg, "test")


# --------------------------------------------------------------------------- benchmark cache


def test_ensure_benchmark_renders_a_stale_cache_again(tmp_path, monkeypatch):
  monkeypatch.setitem(synth.PRESETS, "micro", MICRO)
  cfg = DataConfig(scene="conveyor", preset="micro", root=str(tmp_path / "cache"))
  root = datasets.ensure_benchmark(cfg, progress=False)
  fresh = synth.write_benchmark(tmp_path / "fresh", scene="conveyor", preset="micro",
                                progress=False)
  assert _hashes(root) == _hashes(fresh)
  # A benchmark written by an older jaxvad (format 1, renderer 1): rendered again, with a warning.
  meta = json.loads((root / "benchmark.json").read_text())
  (root / "benchmark.json").write_text(json.dumps(
      {**meta, "format": "jaxvad-synth/1", "renderer_version": 1}))
  (root / "test" / "test_000" / "00000.png").write_bytes(b"old pixels")
  with pytest.raises(DataError, match="not a jaxvad-synth/2 benchmark file"):
    datasets.load_synthetic(root, "test")
  with pytest.warns(UserWarning, match=r"another jaxvad version \(jaxvad-synth/1, renderer 1"):
    assert datasets.ensure_benchmark(cfg, progress=False) == root
  assert _hashes(root) == _hashes(fresh)
  # Same format, older renderer: also rendered again.
  (root / "benchmark.json").write_text(json.dumps({**meta, "renderer_version": 1}))
  with pytest.warns(UserWarning, match="renderer 1"):
    datasets.ensure_benchmark(cfg, progress=False)
  assert _hashes(root) == _hashes(fresh)
  # A current benchmark with other settings is never overwritten.
  with pytest.raises(DataError, match="holds another benchmark"):
    datasets.ensure_benchmark(dataclasses.replace(cfg, seed=1), progress=False)

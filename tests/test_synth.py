"""The synthetic benchmark: determinism, ground truth, on-disk layout and the reader."""

import dataclasses
import hashlib
import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from jaxvad.data import datasets, synth
from jaxvad.errors import ConfigError, DataError

SIZE = (64, 64)
TINY_SIZE = (32, 32)   # the tiny preset is rendered at this size here (fast; same schedules)
RANGE = (20, 40)
# A benchmark smaller than `tiny`, for the tests that write several.
MICRO = dataclasses.replace(synth.PRESETS["tiny"], train_clips=2, train_distractor_clips=1,
                            train_cycles=2, val_clips=1, val_distractor_clips=0, val_cycles=1,
                            test_clips=2)


def _render(scene, **kw):
  kw = {"num_cycles": 2, "size": SIZE, "seed": 5, "cycle_range": RANGE, **kw}
  return synth.render_clip(scene, **kw)


def _hashes(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tiny preset of both scenes, written once: {scene: benchmark folder}."""
  out = tmp_path_factory.mktemp("synth")
  return {scene: synth.write_benchmark(out, scene=scene, preset="tiny", size=TINY_SIZE,
                                      progress=False)
          for scene in synth.SCENES}


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("scene", synth.SCENES)
def test_same_seed_gives_byte_identical_files(tiny, tmp_path, scene):
  again = synth.write_benchmark(tmp_path, scene=scene, preset="tiny", size=TINY_SIZE,
                                progress=False)
  first = _hashes(tiny[scene])
  assert len(first) > 100 and "benchmark.json" in first
  assert _hashes(again) == first


def test_different_seed_gives_different_frames():
  a = _render("pickplace", seed=1)
  b = _render("pickplace", seed=2)
  assert a.frames.shape != b.frames.shape or not np.array_equal(a.frames, b.frames)
  # The camera's static view depends on the background seed only.
  assert not np.array_equal(synth._static_background("pickplace", SIZE, 0),
                            synth._static_background("pickplace", SIZE, 1))
  c = _render("pickplace", seed=1, background_seed=3)
  assert np.array_equal(c.cycle_starts, a.cycle_starts) and not np.array_equal(c.frames, a.frames)


def test_clip_plans_differ_by_seed():
  plans = [synth._plan_benchmark("conveyor", synth.PRESETS["tiny"], seed) for seed in (0, 1)]
  assert [p.seed for p in plans[0]] != [p.seed for p in plans[1]]
  assert len({p.seed for p in plans[0]}) == len(plans[0])


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("scene, anomaly", [(s, a) for s in synth.SCENES
                                            for a in synth.ANOMALIES[s]])
@pytest.mark.parametrize("cycle", [0, 1])
def test_anomaly_labels_lie_in_the_abnormal_cycle(scene, anomaly, cycle):
  normal = _render(scene)
  clip = _render(scene, anomaly=anomaly, anomaly_cycle=cycle)
  assert not normal.anomaly.any() and normal.anomaly_type is None
  assert clip.anomaly_type == anomaly
  ends = list(clip.cycle_starts[1:]) + [len(clip.frames)]
  start, end = clip.cycle_starts[cycle], ends[cycle]
  labelled = np.flatnonzero(clip.anomaly)
  assert labelled.size and start <= labelled.min() and labelled.max() < end
  assert len(synth._intervals(clip.anomaly)) == 1
  if anomaly == "stall":
    assert 6 <= labelled.size <= 10
  else:
    # Same seed: the anomaly changes only the labelled frames, the rest is pixel-identical.
    changed = np.any(clip.frames != normal.frames, axis=(1, 2, 3))
    assert not (changed & ~clip.anomaly).any()
    np.testing.assert_array_equal(clip.workspace_mask[~clip.anomaly],
                                  normal.workspace_mask[~clip.anomaly])
    assert changed[clip.anomaly].mean() > 0.8
    if scene == "pickplace":   # lasts to the end of the cycle (what is left is cleared)
      assert clip.anomaly[end - 1]


def test_stall_freezes_the_machine():
  clip = _render("pickplace", anomaly="stall", anomaly_cycle=1, noise=False)
  idx = np.flatnonzero(clip.anomaly)
  frozen = clip.frames[idx[0] - 1:idx[-1] + 1]
  assert (frozen == frozen[0]).all()
  normal = _render("pickplace", noise=False)
  assert len(clip.frames) == len(normal.frames) + idx.size   # the stall lengthens its cycle


@pytest.mark.parametrize("scene", synth.SCENES)
def test_cycle_lengths_jitter_within_range(scene):
  clip = _render(scene, num_cycles=8)
  lengths = np.diff(list(clip.cycle_starts) + [len(clip.frames)])
  assert clip.cycle_starts[0] == 0 and clip.cycle_starts.dtype == np.int64
  assert RANGE[0] <= lengths.min() and lengths.max() <= RANGE[1]
  assert len(set(lengths.tolist())) > 2


@pytest.mark.parametrize("scene", synth.SCENES)
def test_distractor_flags_match_the_request(scene):
  for asked in [(), ("person",), ("lighting", "shake"), synth.DISTRACTORS]:
    clip = _render(scene, distractors=asked)
    assert clip.distractors.shape == (len(clip.frames), len(synth.DISTRACTORS))
    assert clip.distractors.any(axis=0).tolist() == [d in asked for d in synth.DISTRACTORS]
    assert not clip.anomaly.any()


@pytest.mark.parametrize("scene", synth.SCENES)
@pytest.mark.parametrize("distractor", ["person", "shadow"])
@pytest.mark.parametrize("abnormal", [False, True])
def test_person_and_shadow_stay_outside_the_workspace(scene, distractor, abnormal):
  # With an anomaly the schedule is the replayed, balanced one (an episode in every cycle).
  kw = {"num_cycles": 3, "anomaly": synth.ANOMALIES[scene][0] if abnormal else None,
        "anomaly_cycle": 1 if abnormal else None}
  plain = _render(scene, **kw)
  clip = _render(scene, distractors=(distractor,), **kw)
  np.testing.assert_array_equal(clip.anomaly, plain.anomaly)
  changed = np.any(clip.frames != plain.frames, axis=-1)
  assert changed.sum() > 50
  assert np.array_equal(clip.workspace_mask, plain.workspace_mask)
  assert (changed & clip.workspace_mask).sum() / changed.sum() < 0.1
  flag = clip.distractors[:, synth.DISTRACTORS.index(distractor)]
  shows = changed.any(axis=(1, 2))
  assert not shows[~flag].any()       # flagged wherever it shows
  assert shows[flag].all()            # and shows wherever it is flagged


@pytest.mark.parametrize("scene, anomaly", [("pickplace", None), ("pickplace", "dropped"),
                                            ("pickplace", "wrong_place"), ("conveyor", None),
                                            ("conveyor", "fallen")])
def test_workspace_mask_holds_the_moving_parts(scene, anomaly):
  clip = _render(scene, num_cycles=2, anomaly=anomaly, anomaly_cycle=1, noise=False)
  background = synth._static_background(scene, SIZE)
  moving = np.abs(clip.frames.astype(int) - background).max(axis=-1) > 8
  assert moving.sum() > 1000
  assert (moving & clip.workspace_mask).sum() / moving.sum() > 0.95
  assert clip.workspace_mask.mean() < 0.5     # a region of interest, not the frame


def test_shake_moves_the_mask_with_the_frame():
  plain = _render("pickplace")
  shaken = _render("pickplace", distractors=("shake",))
  flag = shaken.distractors[:, synth.DISTRACTORS.index("shake")]
  moved = np.any(shaken.workspace_mask != plain.workspace_mask, axis=(1, 2))
  assert flag.any() and not moved[~flag].any() and moved[flag].mean() > 0.5


# --------------------------------------------------------------------------- semantic classes


def _class(name):
  return synth.SEMANTIC_CLASSES.index(name)


@pytest.mark.parametrize("scene, anomaly", [("pickplace", "dropped"), ("conveyor", "fallen")])
def test_class_maps_label_what_is_drawn(scene, anomaly):
  clip = _render(scene, anomaly=anomaly, anomaly_cycle=1, noise=False)
  classes = clip.classes
  assert classes.dtype == np.uint8 and classes.shape == clip.frames.shape[:3]
  assert classes.max() < len(synth.SEMANTIC_CLASSES)
  static = synth._static_background(scene, SIZE)
  moving = np.abs(clip.frames.astype(int) - static).max(axis=-1) > 8
  parts = ("arm", "block") if scene == "pickplace" else ("belt", "box", "machine")
  part = np.isin(classes, [_class(p) for p in parts]).astype(np.uint8)
  rim = np.stack([cv2.dilate(p, np.ones((3, 3), np.uint8)) for p in part]).astype(bool)
  # What moves is a moving part or its anti-aliased rim, and every such part is drawn.
  assert moving.sum() > 1000 and (moving & ~rim).sum() < 1e-3 * moving.sum()
  movers = ("arm", "block") if scene == "pickplace" else ("box",)
  assert moving[np.isin(classes, [_class(p) for p in movers])].all()
  present = {name: (classes == _class(name)).any(axis=(1, 2)) for name in synth.SEMANTIC_CLASSES}
  assert present["background"].all() and present["machine"].all() and not present["person"].any()
  if scene == "pickplace":
    arm = classes == _class("arm")
    assert present["arm"].all() and (arm[1:] != arm[:-1]).any(axis=(1, 2)).mean() > 0.5
    assert present["block"].any() and not present["box"].any() and not present["belt"].any()
  else:
    assert present["belt"].all() and present["box"].any() and not present["arm"].any()


@pytest.mark.parametrize("scene", synth.SCENES)
@pytest.mark.parametrize("abnormal", [False, True])
def test_person_class_shows_exactly_when_flagged_above_the_horizon(scene, abnormal):
  kw = {"anomaly": synth.ANOMALIES[scene][0], "anomaly_cycle": 1} if abnormal else {}
  clip = _render(scene, num_cycles=3, distractors=("person", "lighting", "shadow"), **kw)
  person = clip.classes == _class("person")
  flag = clip.distractors[:, synth.DISTRACTORS.index("person")]
  assert flag.any() and not flag.all()
  np.testing.assert_array_equal(person.any(axis=(1, 2)), flag)
  horizon_rows = int(round(synth._scene(scene, synth._View(SIZE), 20).horizon * SIZE[0]))
  assert person[:, :horizon_rows].any() and not person[:, horizon_rows:].any()
  # Lighting and shadows do not change the classes; the person only changes its own pixels.
  plain = _render(scene, num_cycles=3, **kw)
  np.testing.assert_array_equal(clip.classes[~person], plain.classes[~person])


def test_shake_moves_the_class_maps_with_the_frame():
  plain = _render("conveyor")
  shaken = _render("conveyor", distractors=("shake",))
  flag = shaken.distractors[:, synth.DISTRACTORS.index("shake")]
  moved = np.any(shaken.classes != plain.classes, axis=(1, 2))
  assert flag.any() and not moved[~flag].any() and moved[flag].all()
  # Each shaken map is the plain one shifted by whole pixels, its border replicated.
  padded = np.pad(plain.classes, ((0, 0), (2, 2), (2, 2)), mode="edge")
  for t in np.flatnonzero(flag):
    shifts = [(dy, dx) for dy in range(5) for dx in range(5)
              if np.array_equal(padded[t, dy:dy + SIZE[0], dx:dx + SIZE[1]], shaken.classes[t])]
    assert shifts and (2, 2) not in shifts


def test_bad_arguments_raise_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="unknown scene 'lab'"):
    synth.render_clip("lab", num_cycles=1)
  with pytest.raises(ConfigError, match="unknown anomaly 'fallen'.*pickplace"):
    synth.render_clip("pickplace", num_cycles=1, anomaly="fallen")
  with pytest.raises(ConfigError, match="unknown distractor"):
    synth.render_clip("conveyor", num_cycles=1, distractors=("rain",))
  with pytest.raises(ConfigError, match="anomaly_cycle"):
    synth.render_clip("conveyor", num_cycles=2, anomaly="missing", anomaly_cycle=2)
  with pytest.raises(ConfigError, match="size"):
    synth.render_clip("conveyor", num_cycles=1, size=(8, 8))
  with pytest.raises(ConfigError, match="unknown synth preset 'huge'"):
    synth.write_benchmark(tmp_path, scene="conveyor", preset="huge")


# --------------------------------------------------------------------------- splits and layout


@pytest.mark.parametrize("scene", synth.SCENES)
def test_benchmark_layout_and_splits(tiny, scene):
  root = tiny[scene]
  meta = json.loads((root / "benchmark.json").read_text())
  assert meta["format"] == "jaxvad-synth/2" and meta["scene"] == scene
  assert meta["renderer_version"] == synth.RENDERER_VERSION == 3
  assert meta["semantic_classes"] == list(synth.SEMANTIC_CLASSES)
  assert meta["size"] == list(TINY_SIZE) and meta["fps"] == 5 and meta["preset"] == "tiny"
  assert meta["distractor_names"] == list(synth.DISTRACTORS)
  assert list(meta["distractor_rates"]) == list(synth.SPLITS)
  preset = synth.PRESETS["tiny"]
  by_split = {s: [c for c in meta["clips"] if c["split"] == s] for s in synth.SPLITS}
  assert [len(by_split[s]) for s in synth.SPLITS] == [4, 2, 32]
  assert [c["name"] for c in by_split["test"]] == [f"test_{i:03d}" for i in range(32)]
  assert sum(bool(c["distractors"]) for c in by_split["train"]) == preset.train_distractor_clips
  for c in by_split["train"] + by_split["val"]:
    assert c["anomaly_type"] is None and c["anomaly_intervals"] == []
  test = by_split["test"]
  types = [c["anomaly_type"] for c in test]
  assert {t: types.count(t) for t in types} == {t: 32 // len(synth.ANOMALIES[scene])
                                                for t in synth.ANOMALIES[scene]}
  for t in synth.ANOMALIES[scene]:   # half of each type with distractors
    of_type = [c for c in test if c["anomaly_type"] == t]
    assert sum(bool(c["distractors"]) for c in of_type) == len(of_type) // 2
  for c in test:
    assert len(c["cycle_starts"]) == 2 and len(c["anomaly_intervals"]) == 1
    assert (root / "test" / c["name"] / f"{c['num_frames'] - 1:05d}.png").is_file()
  assert {c["anomaly_intervals"][0][0] >= c["cycle_starts"][1] for c in test} == {True, False}
  assert not list(root.rglob(".*"))    # no temp leftovers


# --------------------------------------------------------------------------- test-set design


@pytest.mark.parametrize("preset, at_least", [("tiny", 32), ("medium", 48), ("small", 48)])
@pytest.mark.parametrize("scene", synth.SCENES)
def test_presets_have_enough_balanced_test_clips(preset, at_least, scene):
  spec = synth.PRESETS[preset]
  assert spec.test_clips >= at_least and spec.test_clips % 8 == 0
  test = [p for p in synth._plan_benchmark(scene, spec, 0) if p.split == "test"]
  assert len(test) == spec.test_clips
  combos = {}
  for t in synth.ANOMALIES[scene]:
    of_type = [p for p in test if p.anomaly == t]
    assert len(of_type) == spec.test_clips // len(synth.ANOMALIES[scene])
    for distracted in (False, True):
      group = [p for p in of_type if bool(p.distractors) == distracted]
      assert len(group) == len(of_type) // 2
      # Which cycle is abnormal: first in half of every (type, distractors) group.
      assert sum(p.anomaly_cycle == 0 for p in group) * 2 == len(group)
    combos[t] = [p.distractors for p in of_type if p.distractors]
  # Every anomaly type is seen with the same distractors.
  assert len({tuple(c) for c in combos.values()}) == 1


def _cycle_bounds(clip):
  starts = clip.meta["cycle_starts"]
  return list(zip(starts, starts[1:] + [len(clip.frames)]))


@pytest.mark.parametrize("scene", synth.SCENES)
def test_distractor_exposure_is_independent_of_the_anomaly(tiny, scene):
  clips = datasets.load_synthetic(tiny[scene], "test")
  counts = {d: np.zeros(4, int) for d in synth.DISTRACTORS}   # normal, in view, anomalous, in view
  for clip in clips:
    bounds = _cycle_bounds(clip)
    abnormal = [i for i, (a, b) in enumerate(bounds) if clip.labels[a:b].any()]
    assert len(bounds) == 2 and len(abnormal) == 1
    for k, d in enumerate(synth.DISTRACTORS):
      flag = clip.distractors[:, k]
      assert flag.any() == (d in clip.meta["distractors"])
      if not flag.any():
        continue
      # Same fraction of the normal and of the abnormal cycle (to a frame per episode edge).
      fractions = [flag[a:b].mean() for a, b in bounds]
      tolerance = sum(1.0 / (b - a) for a, b in bounds)
      assert abs(fractions[0] - fractions[1]) <= tolerance, (clip.name, d, fractions)
      # Same rate over anomalous and normal frames, to 0.03 or one anomalous frame.
      rate_a, rate_n = flag[clip.labels].mean(), flag[~clip.labels].mean()
      assert abs(rate_a - rate_n) <= max(0.03, 1.0 / clip.labels.sum()) + 1e-9, (clip.name, d)
      counts[d] += [(~clip.labels).sum(), (flag & ~clip.labels).sum(), clip.labels.sum(),
                    (flag & clip.labels).sum()]
    union = clip.distractors.any(axis=1)   # preferred balanced too, where the phases allow
    if union.any():
      assert abs(union[clip.labels].mean() - union[~clip.labels].mean()) <= max(
          0.03, 1.0 / clip.labels.sum()) + 1e-9, clip.name
  meta = json.loads((tiny[scene] / "benchmark.json").read_text())
  recorded = meta["distractor_rates"]["test"]
  for d, c in counts.items():
    assert recorded[d]["clips"] == sum(d in cl.meta["distractors"] for cl in clips)
    assert recorded[d]["normal"] == pytest.approx(c[1] / c[0], abs=1e-4)
    assert recorded[d]["anomalous"] == pytest.approx(c[3] / c[2], abs=1e-4)
    # Pooled over the clips showing it, and over all test clips.
    assert abs(recorded[d]["normal"] - recorded[d]["anomalous"]) <= 0.03, (d, recorded[d])
    pooled = recorded[d]["all_clips"]
    assert abs(pooled["normal"] - pooled["anomalous"]) <= 0.03, (d, pooled)
  assert recorded["any"]["clips"] == sum(bool(cl.meta["distractors"]) for cl in clips)
  for split in ("train", "val"):
    assert all(r["anomalous"] is None for r in meta["distractor_rates"][split].values())


def test_distractor_rates_are_printed(tmp_path, capsys):
  synth.write_benchmark(tmp_path, scene="conveyor", preset=MICRO, progress=True)
  out = capsys.readouterr().out
  assert "distractor in view in normal / anomalous test frames" in out
  assert all(f"  {d} " in out for d in synth.DISTRACTORS + ("any",))


@pytest.mark.parametrize("scene", synth.SCENES)
def test_per_frame_anomaly_types(tiny, scene):
  root = tiny[scene]
  meta = json.loads((root / "benchmark.json").read_text())
  types = meta["anomaly_types"]
  assert types == list(synth.ANOMALIES[scene])
  for entry in meta["clips"]:
    with np.load(root / entry["split"] / f"{entry['name']}.labels.npz") as npz:
      index, anomaly = npz["anomaly_type_index"], npz["anomaly"]
    assert index.dtype == np.int8 and index.shape == anomaly.shape
    np.testing.assert_array_equal(index >= 0, anomaly)
    want = -1 if entry["anomaly_type"] is None else types.index(entry["anomaly_type"])
    assert set(index[anomaly].tolist()) <= {want} and (index[~anomaly] == -1).all()
  for split in synth.SPLITS:
    for clip in datasets.load_synthetic(root, split):
      assert clip.frame_types.shape == clip.labels.shape
      np.testing.assert_array_equal(clip.frame_types != "", clip.labels)
      assert set(clip.frame_types[clip.labels].tolist()) <= {clip.meta["anomaly_type"]}


def test_clip_frame_types_default_to_unknown():
  clip = datasets.Clip(name="x", frames=np.zeros((2, 4, 4, 1), np.uint8), labels=None,
                       distractors=None, workspace_mask=None, meta={})
  assert clip.frame_types is None


def test_stale_benchmarks_are_not_reused(tmp_path):
  root = synth.write_benchmark(tmp_path, scene="conveyor", preset=MICRO, progress=False)
  path = root / "benchmark.json"
  current = path.read_text()
  assert synth.benchmark_is_complete(root) and synth.stale_benchmark(root) is None
  for old in ({"format": "jaxvad-synth/1", "renderer_version": 1}, {"renderer_version": 2}):
    path.write_text(json.dumps({**json.loads(current), **old}))
    assert not synth.benchmark_is_complete(root)
    assert not synth.benchmark_matches(root, scene="conveyor", preset=MICRO)
    assert (f"renderer {old['renderer_version']} (this jaxvad: jaxvad-synth/2, renderer 3)"
            in synth.stale_benchmark(root))
  path.write_text(json.dumps({**json.loads(current), "format": "jaxvad-synth/1"}))
  with pytest.raises(DataError, match="not a jaxvad-synth/2 benchmark file.*render it again"):
    datasets.load_synthetic(root, "test")


def test_person_is_the_most_common_distractor():
  plans = synth._plan_benchmark("pickplace", synth.PRESETS["paper"], 0)
  distracted = [p.distractors for p in plans if p.distractors]
  counts = {d: sum(d in ds for ds in distracted) for d in synth.DISTRACTORS}
  assert counts["person"] >= 0.7 * len(distracted)
  assert all(counts[d] > 0 for d in synth.DISTRACTORS)
  assert sum(1 for p in plans if p.split == "train" and p.distractors) == 26


def test_crash_leaves_no_complete_benchmark_and_rerun_starts_clean(tmp_path, monkeypatch):
  real, calls = synth.render_clip, []

  def crash_on_third(*args, **kw):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return real(*args, **kw)

  monkeypatch.setattr(synth, "render_clip", crash_on_third)
  with pytest.raises(KeyboardInterrupt):
    synth.write_benchmark(tmp_path, scene="conveyor", preset=MICRO, progress=False)
  root = tmp_path / "conveyor"
  assert not synth.benchmark_is_complete(root) and not (root / "benchmark.json").exists()
  (root / "train" / "train_999").mkdir()      # a stale clip from some other run
  monkeypatch.setattr(synth, "render_clip", real)
  synth.write_benchmark(tmp_path, scene="conveyor", preset=MICRO, progress=False)
  fresh = synth.write_benchmark(tmp_path / "fresh", scene="conveyor", preset=MICRO,
                                progress=False)
  assert synth.benchmark_is_complete(root)
  assert _hashes(root) == _hashes(fresh)
  assert synth.benchmark_matches(root, scene="conveyor", preset=MICRO)
  assert not synth.benchmark_matches(root, scene="conveyor", preset=MICRO, seed=1)


# --------------------------------------------------------------------------- reader


def test_reader_round_trip(tiny):
  root = tiny["pickplace"]
  clips = datasets.load_synthetic(root, "test")
  assert [c.name for c in clips] == [f"test_{i:03d}" for i in range(32)]
  plans = {p.name: p for p in synth._plan_benchmark("pickplace", synth.PRESETS["tiny"], 0)}
  for clip in clips[:4] + clips[-1:]:
    plan = plans[clip.name]
    want = synth.render_clip("pickplace", num_cycles=plan.num_cycles, anomaly=plan.anomaly,
                             anomaly_cycle=plan.anomaly_cycle, distractors=plan.distractors,
                             size=TINY_SIZE, fps=5, seed=plan.seed, background_seed=0,
                             cycle_range=RANGE)
    assert clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames, want.frames)   # PNG is lossless, RGB order kept
    np.testing.assert_array_equal(clip.labels, want.anomaly)
    np.testing.assert_array_equal(clip.distractors, want.distractors)
    np.testing.assert_array_equal(clip.workspace_mask, want.workspace_mask)
    assert clip.meta["cycle_starts"] == want.cycle_starts.tolist()
    assert clip.meta["anomaly_type"] == plan.anomaly
    np.testing.assert_array_equal(clip.frame_types, np.where(want.anomaly, plan.anomaly, ""))
    np.testing.assert_array_equal(clip.classes, want.classes)


def test_reader_resizes_masks_and_reads_gray(tiny):
  full = datasets.load_synthetic(tiny["conveyor"], "val")
  small = datasets.load_synthetic(tiny["conveyor"], "val", size=(32, 48), grayscale=True)
  assert len(small) == len(full) == 2
  for a, b in zip(full, small):
    assert b.frames.shape == (len(a.frames), 32, 48, 1)
    assert b.workspace_mask.shape == (len(a.frames), 32, 48)
    assert abs(b.workspace_mask.mean() - a.workspace_mask.mean()) < 0.03
    assert b.classes.shape == (len(a.frames), 32, 48) and b.classes.dtype == np.uint8
    np.testing.assert_array_equal(b.classes[:, :, ::3], a.classes[:, :, ::2])   # 32 -> 48 cols


def test_reader_errors(tiny, tmp_path):
  with pytest.raises(DataError, match=r"benchmark.json is missing.*jaxvad synth"):
    datasets.load_synthetic(tmp_path / "pickplace", "train")
  root = tmp_path / "copy" / "pickplace"
  shutil.copytree(tiny["pickplace"], root)
  with pytest.raises(DataError, match="unknown split 'dev'"):
    datasets.load_synthetic(root, "dev")

  labels = root / "train" / "train_000.labels.npz"
  good = labels.read_bytes()
  with np.load(labels) as npz:
    arrays = dict(npz)
  for bad, got in ((arrays["classes"][:, :, :-1], r"uint8 \[\d+, 32, 31\] with ids up to \d"),
                   (arrays["classes"] + 7, r"uint8 \[\d+, 32, 32\] with ids up to 1[0-3], not")):
    synth._write_npz(labels, {**arrays, "classes": bad})
    with pytest.raises(DataError, match=r"train_000.labels.npz: its classes are " + got):
      datasets.load_synthetic(root, "train")
  labels.write_bytes(good)

  labels = root / "val" / "val_000.labels.npz"
  labels.write_bytes(labels.read_bytes()[:200])
  with pytest.raises(DataError, match="val_000.labels.npz is corrupt or truncated"):
    datasets.load_synthetic(root, "val")

  frames = sorted((root / "train" / "train_001").iterdir())
  frames[-1].unlink()
  with pytest.raises(DataError, match="train_001.labels.npz does not match"):
    datasets.load_synthetic(root, "train")

  shutil.rmtree(root / "test" / "test_002")
  assert not synth.benchmark_is_complete(root)
  with pytest.raises(DataError, match="clip folder .*test_002 is missing"):
    datasets.load_synthetic(root, "test")

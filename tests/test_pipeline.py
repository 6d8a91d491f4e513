"""Grain pipeline: window indexing, per-epoch shuffling, process sharding, resume, eval tiling."""

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxvad.data import pipeline
from jaxvad.errors import ConfigError, DataError


def tagged_clips(lengths):
  """Clips whose frame t of clip c holds (c, t) in its pixels, so every window is identifiable."""
  clips = []
  for c, n in enumerate(lengths):
    clip = np.zeros((n, 2, 2, 1), np.uint8)
    clip[:, 0, 0, 0] = c
    clip[:, 0, 1, 0] = np.arange(n)
    clips.append(clip)
  return clips


def window_ids(frames):
  """`(clip, start)` of each window of a batch `[B, window, H, W, C]`."""
  return [(int(w[0, 0, 0, 0]), int(w[0, 0, 1, 0])) for w in frames]


def assert_batches_equal(a, b):
  assert a.keys() == b.keys() == {"frames"}
  np.testing.assert_array_equal(a["frames"], b["frames"])


# Window 3, stride 2: 4 + 1 + 5 + 0 + 2 = 12 windows (the 2-frame clip is too short).
LENGTHS = [9, 3, 11, 2, 6]
WINDOW, STRIDE = 3, 2
NUM_WINDOWS = 4 + 1 + 5 + 0 + 2


def make(**kw):
  args = dict(window=WINDOW, stride=STRIDE, global_batch_size=4, seed=0)
  args.update(kw)
  return pipeline.train_dataset(tagged_clips(LENGTHS), **args)


# --------------------------------------------------------------------------- indexing


@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=6),
       window=st.integers(1, 8), stride=st.integers(1, 5))
def test_window_index_matches_brute_force(lengths, window, stride):
  expected = [(c, s) for c, n in enumerate(lengths) for s in range(n)
              if s % stride == 0 and s + window <= n]
  if not expected:
    with pytest.raises(DataError, match="no training windows"):
      pipeline.window_index(lengths, window=window, stride=stride)
    return
  index = pipeline.window_index(lengths, window=window, stride=stride)
  assert index.dtype == np.int64 and index.shape == (len(expected), 2)
  assert [tuple(r) for r in index.tolist()] == expected
  for c, n in enumerate(lengths):
    np.testing.assert_array_equal(pipeline.window_starts(n, window=window, stride=stride),
                                  [s for cc, s in expected if cc == c])


def test_window_index_errors():
  with pytest.raises(DataError, match=r"data.window = 5 .* longest .* has 4 frames"):
    pipeline.window_index([3, 4], window=5, stride=1)
  with pytest.raises(ConfigError, match="data.stride"):
    pipeline.window_starts(10, window=2, stride=0)


def test_window_source_items_are_clip_slices():
  clips = [np.random.default_rng(c).integers(0, 256, (n, 3, 4, 2), dtype=np.uint8)
           for c, n in enumerate(LENGTHS)]
  source = pipeline.WindowSource(clips, window=WINDOW, stride=STRIDE)
  assert len(source) == NUM_WINDOWS and source.frame_shape == (3, 4, 2)
  for i, (c, s) in enumerate(source.index):
    np.testing.assert_array_equal(source[i]["frames"], clips[c][s:s + WINDOW])
  np.testing.assert_array_equal(source[-1]["frames"], source[len(source) - 1]["frames"])
  with pytest.raises(IndexError):
    source[len(source)]


def test_window_source_carries_per_frame_targets():
  clips = [np.zeros((n, 2, 2, 1), np.uint8) for n in LENGTHS]
  labels = [np.arange(n)[:, None] * [1.0, -1.0] + 100 * c for c, n in enumerate(LENGTHS)]
  source = pipeline.WindowSource(clips, window=WINDOW, stride=STRIDE, per_frame={"y": labels})
  for i, (c, s) in enumerate(source.index):
    np.testing.assert_array_equal(source[i]["y"], labels[c][s:s + WINDOW])
  with pytest.raises(DataError, match="per-frame target 'y'"):
    pipeline.WindowSource(clips, window=WINDOW, stride=STRIDE, per_frame={"y": labels[:-1]})
  with pytest.raises(DataError, match="per-frame target 'y'"):
    pipeline.WindowSource(clips, window=WINDOW, stride=STRIDE,
                          per_frame={"y": [l[1:] for l in labels]})


def test_window_source_checks_clips():
  good = np.zeros((5, 4, 4, 1), np.uint8)
  with pytest.raises(DataError, match=r"clip 1 has frames of shape \(4, 6, 1\)"):
    pipeline.WindowSource([good, np.zeros((5, 4, 6, 1), np.uint8)], window=2, stride=1)
  with pytest.raises(DataError, match="clip 0 must be a uint8"):
    pipeline.WindowSource([good.astype(np.float32)], window=2, stride=1)
  with pytest.raises(DataError, match="empty"):
    pipeline.WindowSource([], window=2, stride=1)


# --------------------------------------------------------------------------- train_dataset


def test_train_dataset_shapes():
  ds = make(global_batch_size=8, process_index=0, process_count=2)
  batch = ds[0]
  assert batch["frames"].shape == (4, WINDOW, 2, 2, 1) and batch["frames"].dtype == np.uint8
  assert len(ds) > 10**15  # infinite in practice
  assert ds[10**9]["frames"].shape == (4, WINDOW, 2, 2, 1)  # any step is reachable directly


def test_train_dataset_is_deterministic_and_seeded():
  a, b, c = make(seed=1), make(seed=1), make(seed=2)
  for k in range(6):
    assert_batches_equal(a[k], b[k])
  ids = lambda ds: [window_ids(ds[k]["frames"]) for k in range(6)]
  assert ids(a) != ids(c)


def test_epochs_cover_every_window_once_in_new_orders():
  ds = make(global_batch_size=4)  # 12 windows: 3 steps per epoch
  steps = NUM_WINDOWS // 4
  all_windows = sorted(map(tuple, pipeline.window_index(LENGTHS, window=WINDOW,
                                                        stride=STRIDE).tolist()))
  epochs = []
  for e in range(4):
    order = [w for k in range(e * steps, (e + 1) * steps) for w in window_ids(ds[k]["frames"])]
    assert sorted(order) == all_windows  # each window exactly once per epoch
    epochs.append(order)
  assert len({tuple(o) for o in epochs}) == 4  # reshuffled every epoch


def test_windows_hold_the_right_frames():
  ds = make()
  for k in range(5):
    for w in ds[k]["frames"]:
      c, s = int(w[0, 0, 0, 0]), int(w[0, 0, 1, 0])
      np.testing.assert_array_equal(w, tagged_clips(LENGTHS)[c][s:s + WINDOW])


def test_neighbouring_seeds_do_not_share_epochs():
  # Grain seeds epoch e with seed + e; our seed hashing must keep seed 1 epoch 0 away from
  # seed 0 epoch 1.
  steps = NUM_WINDOWS // 4
  seed0, seed1 = make(seed=0), make(seed=1)
  epoch1_of_seed0 = [window_ids(seed0[k]["frames"]) for k in range(steps, 2 * steps)]
  epoch0_of_seed1 = [window_ids(seed1[k]["frames"]) for k in range(steps)]
  assert epoch1_of_seed0 != epoch0_of_seed1


def test_no_shuffle_is_clip_order():
  ds = make(shuffle=False)
  index = [tuple(r) for r in pipeline.window_index(LENGTHS, window=WINDOW, stride=STRIDE).tolist()]
  stream = [w for k in range(6) for w in window_ids(ds[k]["frames"])]
  assert stream == index + index


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_shards_partition_the_global_batch(process_count):
  global_ds = make(global_batch_size=8, process_index=0, process_count=1)
  shards = [make(global_batch_size=8, process_index=p, process_count=process_count)
            for p in range(process_count)]
  for k in range(7):
    full = global_ds[k]["frames"]
    parts = [s[k]["frames"] for s in shards]
    assert all(len(p) == 8 // process_count for p in parts)
    b = 8 // process_count
    for p, part in enumerate(parts):  # process p holds the block [p * b, (p + 1) * b)
      np.testing.assert_array_equal(part, full[p * b:(p + 1) * b])
    ids = collections.Counter(w for part in parts for w in window_ids(part))
    assert ids == collections.Counter(window_ids(full))


def test_batch_size_must_divide_over_processes():
  with pytest.raises(ConfigError, match=r"train.batch_size = 6 .* processes \(4\)"):
    make(global_batch_size=6, process_index=0, process_count=4)
  with pytest.raises(ConfigError, match="process_index"):
    make(global_batch_size=8, process_index=2, process_count=2)


def test_slicing_and_prefetch_resume():
  ds = make()
  sliced = list(ds[5:8])
  assert len(sliced) == 3
  for got, k in zip(sliced, range(5, 8)):
    assert_batches_equal(got, ds[k])
  it = pipeline.prefetch(ds)
  for k in range(6):
    assert_batches_equal(next(it), ds[k])
  resumed = pipeline.prefetch(ds, start_step=13, num_threads=0)
  assert_batches_equal(next(resumed), ds[13])
  assert_batches_equal(next(resumed), ds[14])


# --------------------------------------------------------------------------- eval_windows


@settings(deadline=None)
@given(data=st.data())
def test_eval_windows_cover_each_frame_once(data):
  window = data.draw(st.integers(1, 16), label="window")
  num_frames = data.draw(st.integers(window, 120), label="num_frames")
  starts, owner = pipeline.eval_windows(num_frames, window=window)
  assert starts.dtype == owner.dtype == np.int64 and owner.shape == (num_frames, 2)
  assert (starts >= 0).all() and (starts + window <= num_frames).all()
  assert (np.diff(starts) > 0).all()
  assert ((owner[:, 1] >= 0) & (owner[:, 1] < window)).all()
  # Frame t is predicted by exactly the window/offset that owner names ...
  np.testing.assert_array_equal(starts[owner[:, 0]] + owner[:, 1], np.arange(num_frames))
  # ... every window is used, and no more than one extra window is spent.
  assert set(owner[:, 0].tolist()) == set(range(len(starts)))
  assert len(starts) == -(-num_frames // window)


def test_eval_windows_example_and_errors():
  starts, owner = pipeline.eval_windows(10, window=4)
  np.testing.assert_array_equal(starts, [0, 4, 6])
  np.testing.assert_array_equal(owner[7:], [[1, 3], [2, 2], [2, 3]])
  with pytest.raises(DataError, match="3 frames but windows are 4"):
    pipeline.eval_windows(3, window=4)

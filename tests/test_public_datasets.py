"""Public dataset layouts: tiny fixtures in each real layout, exact labels, every clear error."""

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest
import scipy.io

from jaxvad.data import clips as clips_lib
from jaxvad.data import datasets, public, synth, video
from jaxvad.errors import DataError
from tests.layouts import (MVTEC_HW, MVTEC_TEST, MVTEC_TRAIN, mvtec_image, mvtec_mask,
                           write_mvtec)

H, W = 24, 32


def gray_frames(t, offset=0):
  """RGB frames of one flat grey level each (10, 25, 40, ...): order survives lossy codecs."""
  levels = 10 + 15 * (np.arange(t) + offset)
  return np.broadcast_to(levels[:, None, None, None], (t, H, W, 3)).astype(np.uint8).copy()


def write_images(folder, t, ext, *, first=0, digits=3, offset=0):
  folder.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(gray_frames(t, offset)):
    assert cv2.imwrite(str(folder / f"{i + first:0{digits}d}{ext}"), frame)


def mask_stack(labels, value=1):
  """[T, H, W] masks with a square where a frame is anomalous."""
  masks = np.zeros((len(labels), H, W), np.uint8)
  for i, anomalous in enumerate(labels):
    if anomalous:
      masks[i, 4 + i:10 + i, 6:14] = value
  return masks


def write_mask_images(folder, labels, *, first=1):
  folder.mkdir(parents=True, exist_ok=True)
  for i, mask in enumerate(mask_stack(labels, 255)):
    assert cv2.imwrite(str(folder / f"{i + first:03d}.bmp"), mask)


def cell(arrays):
  """A MATLAB 1xN cell as scipy.io.savemat writes it: a 1-D object array."""
  out = np.empty(len(arrays), dtype=object)
  for i, a in enumerate(arrays):
    out[i] = a
  return out


def flags(t, anomalous):
  out = np.zeros(t, bool)
  out[list(anomalous)] = True
  return out


def frame_levels(frames):
  return np.round(frames.reshape(len(frames), -1).mean(1)).astype(int)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def ucsd(tmp_path):
  """UCSDped2-like: Train001, Test2 and Test10 (natural order) with _gt mask folders."""
  root = tmp_path / "UCSDped2"
  write_images(root / "Train" / "Train001", 6, ".tif", first=1)
  write_images(root / "Test" / "Test2", 5, ".tif", first=1)
  write_images(root / "Test" / "Test10", 7, ".tif", first=1, offset=5)
  write_mask_images(root / "Test" / "Test2_gt", flags(5, [1, 2]))
  write_mask_images(root / "Test" / "Test10_gt", flags(7, [6]))
  return root


@pytest.fixture
def ped2(tmp_path):
  """ano_pred/MNAD frames layout with ped2.mat in the real cell layout (2x1, 2xK, empty)."""
  root = tmp_path / "ped2"
  write_images(root / "training" / "frames" / "01", 4, ".jpg")
  for name, t in (("01", 8), ("02", 6), ("03", 5)):
    write_images(root / "testing" / "frames" / name, t, ".jpg")
  gt = cell([np.array([[3.0], [5.0]]),                  # 1-indexed inclusive [3, 5]
             np.array([[1.0, 6.0], [2.0, 6.0]]),        # [1, 2] and [6, 6]
             np.zeros((0, 0))])                          # no event
  scipy.io.savemat(root / "ped2.mat", {"gt": gt})
  return root


PED2_EXPECTED = {"01": flags(8, [2, 3, 4]), "02": flags(6, [0, 1, 5]), "03": flags(5, [])}


@pytest.fixture
def avenue(tmp_path):
  root = tmp_path / "avenue"
  video.write_video(root / "training_videos" / "01.avi", gray_frames(5), fps=25)
  expected = {"01": flags(6, [2, 3]), "02": flags(5, [0, 4])}
  for i, (name, labels) in enumerate(expected.items()):
    video.write_video(root / "testing_videos" / f"{name}.avi", gray_frames(len(labels)), fps=25)
    vol = np.empty((1, len(labels)), dtype=object)
    for j, mask in enumerate(mask_stack(labels)):
      vol[0, j] = mask.astype(np.float64)
    (root / "testing_label_mask").mkdir(exist_ok=True)
    scipy.io.savemat(root / "testing_label_mask" / f"{i + 1}_label.mat", {"volLabel": vol})
  return root, expected


@pytest.fixture
def shanghaitech(tmp_path):
  root = tmp_path / "shanghaitech"
  video.write_video(root / "training" / "videos" / "01_001.avi", gray_frames(4), fps=25)
  expected = {"01_0014": flags(6, [3, 4, 5]), "01_0015": flags(5, [])}
  for name, labels in expected.items():
    write_images(root / "testing" / "frames" / name, len(labels), ".jpg")
    (root / "testing" / "test_frame_mask").mkdir(parents=True, exist_ok=True)
    (root / "testing" / "test_pixel_mask").mkdir(parents=True, exist_ok=True)
    np.save(root / "testing" / "test_frame_mask" / f"{name}.npy", labels.astype(np.int64))
    np.save(root / "testing" / "test_pixel_mask" / f"{name}.npy", mask_stack(labels))
  return root, expected


@pytest.fixture
def events(tmp_path):
  """Paper 001 §3.2.1 style: one folder per event with labels.json."""
  root = tmp_path / "factory"
  video.write_video(root / "test" / "ev_a" / "clip.mp4", gray_frames(10), fps=5)
  (root / "test" / "ev_a" / "labels.json").write_text(
      json.dumps({"anomalous_frames": [[2, 4], [7, 10]]}))          # 0-indexed, end-exclusive
  write_images(root / "test" / "ev_b", 6, ".png")
  (root / "test" / "ev_b" / "labels.json").write_text(json.dumps(
      {"anomalous_frames": [[3, 5]], "one_indexed": True, "inclusive": True, "num_frames": 6}))
  write_images(root / "train" / "ev_c", 5, ".png")                 # normal, no JSON needed
  write_images(root / "val" / "ev_d", 4, ".png")
  (root / "val" / "ev_d" / "labels.json").write_text("[]")
  return root


EVENTS_EXPECTED = {"ev_a": flags(10, [2, 3, 7, 8, 9]), "ev_b": flags(6, [2, 3, 4])}


# --------------------------------------------------------------------------- intervals_to_labels


@pytest.mark.parametrize("one_indexed, inclusive, expected", [
    (True, True, [2, 3, 4]),      # the ano_pred .mat convention
    (False, False, [3, 4]),
    (False, True, [3, 4, 5]),
    (True, False, [2, 3]),
])
def test_intervals_to_labels_conventions(one_indexed, inclusive, expected):
  labels = public.intervals_to_labels([[3, 5]], 8, one_indexed=one_indexed, inclusive=inclusive)
  assert labels.dtype == bool and np.array_equal(labels, flags(8, expected))


def test_intervals_to_labels_edges():
  assert not public.intervals_to_labels([], 4).any()
  assert not public.intervals_to_labels(np.zeros((0, 2)), 4).any()
  assert np.array_equal(public.intervals_to_labels(np.array([[1.0, 8.0]]), 8, one_indexed=True,
                                                   inclusive=True), np.ones(8, bool))
  assert np.array_equal(public.intervals_to_labels([[0, 2], [1, 3]], 4), flags(4, [0, 1, 2]))
  assert not public.intervals_to_labels([[2, 2]], 4).any()  # empty half-open range


@pytest.mark.parametrize("intervals, kwargs, match", [
    ([[5, 3]], {}, r"range 0 \[5, 3\] of src has start > end"),
    ([[3, 9]], {}, r"outside the video's 8 frames \(numbered 0..7, 0-indexed, end exclusive\)"),
    ([[0, 2]], {"one_indexed": True, "inclusive": True}, r"numbered 1..8"),
    ([[8, 8]], {"one_indexed": True, "inclusive": True}, None),
    ([[7, 9]], {"one_indexed": True, "inclusive": True}, r"\[7, 9\] of src falls outside"),
    ([[1.5, 3]], {}, "non-integer frame number"),
    ([1, 2, 3], {}, r"pairs of integers, got shape \(3,\)"),
    ([[1, 2], [3]], {}, r"must be \[\[start, end\], ...\]"),
    ([[True, False]], {}, "of integers"),
])
def test_intervals_to_labels_errors(intervals, kwargs, match):
  if match is None:  # the last frame, 1-indexed: valid
    assert public.intervals_to_labels(intervals, 8, source="src", **kwargs)[-1]
    return
  with pytest.raises(DataError, match=match):
    public.intervals_to_labels(intervals, 8, source="src", **kwargs)


def test_intervals_to_labels_bad_num_frames():
  with pytest.raises(DataError, match="num_frames"):
    public.intervals_to_labels([], -1)


# --------------------------------------------------------------------------- UCSD


def test_ucsd_labels_from_masks_natural_order(ucsd):
  assert public.detect_layout(ucsd) == "ucsd"
  entries = public.index_dataset(ucsd)
  assert [e.name for e in entries] == ["Test2", "Test10"]
  assert np.array_equal(entries[0].labels, flags(5, [1, 2]))
  assert np.array_equal(entries[1].labels, flags(7, [6]))
  assert entries[0].num_frames == 5 and entries[0].label_source == ucsd / "Test" / "Test2_gt"
  clip = public.load_clip(entries[1], grayscale=True)
  assert clip.frames.shape == (7, H, W, 1)
  assert list(frame_levels(clip.frames)) == [10 + 15 * (i + 5) for i in range(7)]  # tif: exact
  assert np.array_equal(clip.labels, entries[1].labels) and clip.meta["layout"] == "ucsd"
  masks = public.load_pixel_masks(entries[0])
  assert masks.dtype == bool and masks.shape == (5, H, W)
  assert np.array_equal(masks, mask_stack(flags(5, [1, 2])) > 0)
  assert public.load_pixel_masks(entries[0], size=(12, 16)).shape == (5, 12, 16)


def test_pixel_masks_reach_the_clips(ucsd, shanghaitech):
  clips = public.load_dataset(ucsd, size=(H // 2, W // 2))
  for clip, labels in zip(clips, (flags(5, [1, 2]), flags(7, [6]))):
    assert clip.pixel_masks.shape == (len(labels), H // 2, W // 2)
    assert clip.pixel_masks.dtype == bool
    assert np.array_equal(clip.pixel_masks.any(axis=(1, 2)), labels)
    assert np.array_equal(clip.pixel_masks,
                          clips_lib.resize_nearest(mask_stack(labels) > 0, (H // 2, W // 2)))
  assert public.load_dataset(ucsd, split="train")[0].pixel_masks is None   # no masks there
  root, expected = shanghaitech
  for clip in public.load_dataset(root):
    assert np.array_equal(clip.pixel_masks, mask_stack(expected[clip.name]) > 0)


def test_ucsd_train_split_is_normal(ucsd):
  (entry,) = public.index_dataset(ucsd, split="train")
  assert entry.name == "Train001" and not entry.labels.any() and len(entry.labels) == 6
  assert entry.mask_source is None and public.load_pixel_masks(entry) is None
  clips = public.load_dataset(ucsd, split="train", size=(12, 16))
  assert clips[0].frames.shape == (6, 12, 16, 3)


def test_ucsd_m_file_labels_win_and_cover_videos_without_masks(ucsd):
  # Ped1-style: a video without _gt; UCSD's own .m ground truth, 1-indexed inclusive ranges.
  (ucsd / "Test" / "UCSDped2.m").write_text(
      "TestVideoFile = {};\n"
      "TestVideoFile{end+1}.gt_frame = [2:3];\n"
      "TestVideoFile{end+1}.gt_frame = [1:2, 7:7];\n")
  # Test2/Test10 sort differently by plain string order: the file's order is then flagged.
  with pytest.warns(UserWarning, match="natural order"):
    entries = public.index_dataset(ucsd)
  assert np.array_equal(entries[0].labels, flags(5, [1, 2]))
  assert np.array_equal(entries[1].labels, flags(7, [0, 1, 6]))
  assert entries[1].label_source == ucsd / "Test" / "UCSDped2.m"


def test_ucsd_video_without_any_label_source(ucsd):
  shutil.rmtree(ucsd / "Test" / "Test10_gt")
  with pytest.raises(DataError, match=r"no frame labels for 1 test video\(s\) of .*UCSDped2 "
                                      r"\(Test10\).*TestNNN_gt"):
    public.index_dataset(ucsd)
  entries = public.index_dataset(ucsd, require_labels=False)
  assert entries[1].labels is None and entries[0].labels is not None
  assert public.load_clip(entries[1]).labels is None


def test_ucsd_mask_count_mismatch(ucsd):
  (ucsd / "Test" / "Test10_gt" / "007.bmp").unlink()
  with pytest.raises(DataError, match=r"Test10_gt gives 6 mask images but .*Test10 has 7 frames"):
    public.index_dataset(ucsd)


# --------------------------------------------------------------------------- ano_pred / MNAD


def test_frames_layout_ped2_mat(ped2):
  assert public.detect_layout(ped2) == "frames"
  entries = public.index_dataset(ped2)
  assert [e.name for e in entries] == ["01", "02", "03"]
  for e in entries:
    assert np.array_equal(e.labels, PED2_EXPECTED[e.name]), e.name
    assert e.label_source == ped2 / "ped2.mat"
  clips = public.load_dataset(ped2)
  assert [len(c.frames) for c in clips] == [8, 6, 5]
  assert np.array_equal(clips[0].labels, PED2_EXPECTED["01"])
  assert all(abs(a - b) <= 2 for a, b in zip(frame_levels(clips[0].frames),
                                             10 + 15 * np.arange(8)))
  train = public.index_dataset(ped2, split="train")
  assert len(train) == 1 and not train[0].labels.any()


def test_frames_layout_mat_with_one_plain_matrix(tmp_path):
  root = tmp_path / "one"
  write_images(root / "testing" / "frames" / "01", 9, ".jpg")
  scipy.io.savemat(root / "one.mat", {"gt": np.array([[2.0, 8.0], [3.0, 9.0]])})
  (entry,) = public.index_dataset(root)
  assert np.array_equal(entry.labels, flags(9, [1, 2, 7, 8]))


@pytest.mark.parametrize("shape", ["1xN", "flat"])
def test_frames_layout_frame_labels_npy(ped2, shape):
  (ped2 / "ped2.mat").unlink()
  flat = np.concatenate([PED2_EXPECTED[n] for n in ("01", "02", "03")]).astype(np.float64)
  np.save(ped2 / "frame_labels_ped2.npy", flat[None] if shape == "1xN" else flat)
  entries = public.index_dataset(ped2)
  for e in entries:
    assert np.array_equal(e.labels, PED2_EXPECTED[e.name]), e.name
    assert e.label_source == ped2 / "frame_labels_ped2.npy"


def test_frame_labels_npy_total_mismatch(ped2):
  (ped2 / "ped2.mat").unlink()
  np.save(ped2 / "frame_labels_ped2.npy", np.zeros((1, 18)))
  with pytest.raises(DataError, match=r"frame_labels_ped2.npy gives 18 frame labels but the 3 "
                                      r"videos of .*frames have 19 frames in all \(01: 8, 02: 6"):
    public.index_dataset(ped2)


def test_frame_labels_npy_bad_values(ped2):
  (ped2 / "ped2.mat").unlink()
  np.save(ped2 / "frame_labels_ped2.npy", np.full(19, 2))
  with pytest.raises(DataError, match="must be 0/1"):
    public.index_dataset(ped2)


def test_label_files_of_two_kinds_must_agree(ped2):
  """Issue 14: ped2.mat and a disagreeing frame_labels_ped2.npy used to pick the .mat silently."""
  np.save(ped2 / "frame_labels_ped2.npy", np.zeros(19))
  with pytest.raises(DataError, match=r"ped2.mat and .*frame_labels_ped2.npy disagree on the "
                                      r"frame labels of video 01 \(3 frames differ, first at "
                                      r"frame 2.*labels_file="):
    public.index_dataset(ped2)
  entries = public.index_dataset(ped2, labels_file=ped2 / "frame_labels_ped2.npy")
  assert not any(e.labels.any() for e in entries)  # an explicit choice settles it
  # A second file that cannot even be split over the videos is reported, naming it.
  np.save(ped2 / "frame_labels_ped2.npy", np.zeros(7))
  with pytest.raises(DataError, match=r"frame_labels_ped2.npy does not fit: .*gives 7 frame"):
    public.index_dataset(ped2)
  # Files that agree: the .mat is used, the .npy recorded as agreeing (down to Clip.meta).
  agreeing = np.concatenate([PED2_EXPECTED[n] for n in ("01", "02", "03")]).astype(np.int64)
  np.save(ped2 / "frame_labels_ped2.npy", agreeing[None])
  entries = public.index_dataset(ped2)
  assert entries[0].label_source == ped2 / "ped2.mat"
  assert np.array_equal(entries[1].labels, PED2_EXPECTED["02"])
  clip = public.load_clip(entries[0])
  assert clip.meta["label_files_agreeing"] == [str(ped2 / "frame_labels_ped2.npy")]


def test_mat_named_like_the_dataset_wins_and_ambiguity_needs_labels_file(ped2):
  np.save(ped2 / "held_back.npy", np.zeros(19))  # not named frame_labels_*: used only if named
  scipy.io.savemat(ped2 / "other.mat", {"gt": cell([np.zeros((0, 0))] * 3)})
  # ped2.mat is named like the folder, so it still wins over other.mat ...
  assert np.array_equal(public.index_dataset(ped2)[0].labels, PED2_EXPECTED["01"])
  # ... but two unrelated candidates are an error naming both.
  (ped2 / "ped2.mat").rename(ped2 / "gt_a.mat")
  with pytest.raises(DataError, match=r"several label files .*gt_a.mat.*other.mat.*labels_file="):
    public.index_dataset(ped2)
  entries = public.index_dataset(ped2, labels_file=ped2 / "gt_a.mat")
  assert np.array_equal(entries[1].labels, PED2_EXPECTED["02"])
  entries = public.index_dataset(ped2, labels_file=ped2 / "held_back.npy")
  assert not any(e.labels.any() for e in entries)


def test_mat_video_count_mismatch(ped2):
  scipy.io.savemat(ped2 / "ped2.mat", {"gt": cell([np.array([[1.0], [2.0]])] * 2)})
  with pytest.raises(DataError, match=r"ped2.mat holds events for 2 videos but .*frames has 3"):
    public.index_dataset(ped2)


def test_mat_range_outside_video(ped2):
  scipy.io.savemat(ped2 / "ped2.mat", {"gt": cell([np.array([[3.0], [9.0]]), np.zeros((0, 0)),
                                                   np.zeros((0, 0))])})
  with pytest.raises(DataError, match=r"\[3, 9\] of .*ped2.mat \(video 01\) falls outside the "
                                      r"video's 8 frames \(numbered 1..8, 1-indexed, end incl"):
    public.index_dataset(ped2)


def test_mat_wrong_cell_shape_and_missing_gt(ped2):
  scipy.io.savemat(ped2 / "ped2.mat", {"gt": cell([np.ones((3, 1))] * 3)})
  with pytest.raises(DataError, match=r"cell 0 of .*ped2.mat has shape \(3, 1\); expected 2xK"):
    public.index_dataset(ped2)
  scipy.io.savemat(ped2 / "labels.mat", {"frames": np.ones(3)})
  with pytest.raises(DataError, match=r"labels.mat has no `gt` variable \(it holds frames\)"):
    public.index_dataset(ped2, labels_file=ped2 / "labels.mat")


@pytest.mark.parametrize("content", [b"", b"not a mat file at all " * 20])
def test_unreadable_mat(ped2, content):
  (ped2 / "ped2.mat").write_bytes(content)
  with pytest.raises(DataError, match=r"cannot read .*ped2.mat as a MATLAB .mat file"):
    public.index_dataset(ped2)


def test_missing_labels_file_argument(ped2):
  with pytest.raises(DataError, match=r"labels file .*nope.mat does not exist"):
    public.index_dataset(ped2, labels_file=ped2 / "nope.mat")


def test_frames_without_any_labels(ped2):
  (ped2 / "ped2.mat").unlink()
  with pytest.raises(DataError, match=r"no frame labels for 3 test video\(s\).*\(01, 02, 03\)"
                                      r".*frame_labels_\*.npy"):
    public.index_dataset(ped2)


# --------------------------------------------------------------------------- Avenue


def test_avenue_vollabel(avenue):
  root, expected = avenue
  assert public.detect_layout(root) == "avenue"
  entries = public.index_dataset(root)
  assert [e.name for e in entries] == ["01", "02"]
  for i, e in enumerate(entries):
    assert np.array_equal(e.labels, expected[e.name])
    assert e.mask_source == root / "testing_label_mask" / f"{i + 1}_label.mat"
    assert e.source.suffix == ".avi" and e.num_frames == len(expected[e.name])
  masks = public.load_pixel_masks(entries[0])
  assert np.array_equal(masks, mask_stack(expected["01"]) > 0)
  clip = public.load_clip(entries[1])
  assert clip.frames.shape == (5, H, W, 3) and np.array_equal(clip.labels, expected["02"])
  (train,) = public.index_dataset(root, split="train")
  assert train.name == "01" and not train.labels.any() and train.num_frames == 5


def test_avenue_mat_wins_and_ground_truth_demo_folder(avenue):
  root, expected = avenue
  (root / "testing_label_mask").rename(root / "gt_tmp")
  (root / "ground_truth_demo").mkdir()
  (root / "gt_tmp").rename(root / "ground_truth_demo" / "testing_label_mask")
  entries = public.index_dataset(root)
  assert np.array_equal(entries[0].labels, expected["01"])
  assert entries[0].mask_source.parent.parent.name == "ground_truth_demo"
  scipy.io.savemat(root / "avenue.mat",
                   {"gt": cell([np.array([[1.0], [1.0]]), np.array([[5.0], [5.0]])])})
  entries = public.index_dataset(root)
  assert np.array_equal(entries[0].labels, flags(6, [0]))
  assert np.array_equal(entries[1].labels, flags(5, [4]))
  assert entries[0].mask_source is not None  # pixel masks still found


def test_avenue_vollabel_count_mismatch(avenue):
  root, _ = avenue
  vol = np.empty((1, 4), dtype=object)
  for j in range(4):
    vol[0, j] = np.zeros((H, W))
  scipy.io.savemat(root / "testing_label_mask" / "2_label.mat", {"volLabel": vol})
  with pytest.raises(DataError, match=r"2_label.mat gives 4 volLabel masks but .*02.avi has 5 "
                                      r"frames"):
    public.index_dataset(root)


def test_avenue_missing_label_file_and_unreadable_mat(avenue):
  root, _ = avenue
  (root / "testing_label_mask" / "2_label.mat").unlink()
  with pytest.raises(DataError, match=r"no frame labels for 1 test video\(s\).*\(02\).*"
                                      r"testing_label_mask/<n>_label.mat"):
    public.index_dataset(root)
  (root / "testing_label_mask" / "2_label.mat").write_bytes(b"\x00garbage" * 30)
  with pytest.raises(DataError, match=r"cannot read .*2_label.mat as a MATLAB"):
    public.index_dataset(root)


# --------------------------------------------------------------------------- ShanghaiTech


def test_shanghaitech(shanghaitech):
  root, expected = shanghaitech
  assert public.detect_layout(root) == "shanghaitech"
  entries = public.index_dataset(root)
  assert [e.name for e in entries] == ["01_0014", "01_0015"]
  for e in entries:
    assert np.array_equal(e.labels, expected[e.name])
    assert e.label_source == root / "testing" / "test_frame_mask" / f"{e.name}.npy"
  masks = public.load_pixel_masks(entries[0], size=(H // 2, W // 2))
  assert masks.shape == (6, H // 2, W // 2) and masks[3].any() and not masks[0].any()
  assert np.array_equal(public.load_pixel_masks(entries[0]), mask_stack(expected["01_0014"]) > 0)
  (train,) = public.index_dataset(root, split="train")
  assert train.source.suffix == ".avi" and train.num_frames == 4 and not train.labels.any()
  clips = public.load_dataset(root, split="train", grayscale=True)
  assert clips[0].frames.shape == (4, H, W, 1)


def test_shanghaitech_label_count_mismatch(shanghaitech):
  root, _ = shanghaitech
  np.save(root / "testing" / "test_frame_mask" / "01_0015.npy", np.zeros(6))
  with pytest.raises(DataError, match=r"test_frame_mask/01_0015.npy gives 6 frame labels but "
                                      r".*frames/01_0015 has 5 frames"):
    public.index_dataset(root)


def test_shanghaitech_missing_frame_mask(shanghaitech):
  root, _ = shanghaitech
  (root / "testing" / "test_frame_mask" / "01_0014.npy").unlink()
  with pytest.raises(DataError, match=r"\(01_0014\).*test_frame_mask/<video>.npy"):
    public.index_dataset(root)


def test_load_clip_rechecks_frames_against_labels(shanghaitech):
  root, _ = shanghaitech
  entries = public.index_dataset(root)
  (root / "testing" / "frames" / "01_0014" / "005.jpg").unlink()  # changed after indexing
  with pytest.raises(DataError, match=r"01_0014.npy gives 6 frame labels but .*01_0014 has 5 "
                                      r"frames"):
    public.load_clip(entries[0])


# --------------------------------------------------------------------------- JSON intervals


def test_intervals_layout(events):
  assert public.detect_layout(events) == "intervals"
  entries = public.index_dataset(events)
  assert [e.name for e in entries] == ["ev_a", "ev_b"]
  assert entries[0].source.name == "clip.mp4" and entries[1].source.is_dir()
  for e in entries:
    assert np.array_equal(e.labels, EVENTS_EXPECTED[e.name]), e.name
  clips = public.load_dataset(events)
  assert [len(c.frames) for c in clips] == [10, 6]
  assert np.array_equal(clips[0].labels, EVENTS_EXPECTED["ev_a"])
  (train,) = public.index_dataset(events, split="train")
  assert not train.labels.any() and train.label_source is None
  (val,) = public.load_dataset(events, split="val")
  assert not val.labels.any() and len(val.frames) == 4


def test_load_clip_rebuilds_interval_labels_when_the_header_count_was_off(events):
  (entry, _) = public.index_dataset(events)
  stale = dataclasses.replace(entry, labels=entry.labels[:-1], num_frames=9)
  assert np.array_equal(public.load_clip(stale).labels, EVENTS_EXPECTED["ev_a"])


@pytest.mark.parametrize("content, match", [
    ({"anomalous_frames": [[1, 2]], "one_indexd": True}, "unknown key"),
    ({"notes": "forgot the ranges"}, 'lacks "anomalous_frames"'),
    ({"anomalous_frames": [[1, 2.5]]}, r"list of \[start, end\] integer pairs"),
    ({"anomalous_frames": [[4, 2]]}, r"\[4, 2\] of .*labels.json has start > end"),
    ({"anomalous_frames": [[0, 7]]}, "outside the video's 6 frames"),
    ({"anomalous_frames": [], "num_frames": 7}, r'says "num_frames": 7 but .* has 6 frames'),
    ({"anomalous_frames": [], "inclusive": "yes"}, '"inclusive" must be true or false'),
    ("not json {", "cannot read .*labels.json as JSON"),
    (5, "must hold"),
])
def test_labels_json_errors(events, content, match):
  text = content if isinstance(content, str) else json.dumps(content)
  (events / "test" / "ev_b" / "labels.json").write_text(text)
  with pytest.raises(DataError, match=match):
    public.index_dataset(events)


def test_intervals_missing_json_and_bad_event_folders(events):
  (events / "test" / "ev_b" / "labels.json").unlink()
  with pytest.raises(DataError, match=r"ev_b/labels.json is missing: every test event needs one"):
    public.index_dataset(events)
  assert public.index_dataset(events, require_labels=False)[1].labels is None
  video.write_video(events / "train" / "ev_c" / "extra.mp4", gray_frames(2), fps=5)
  with pytest.raises(DataError, match=r"ev_c holds extra.mp4 and frame images; keep one"):
    public.index_dataset(events, split="train")
  (events / "val" / "ev_empty").mkdir()
  with pytest.raises(DataError, match=r"ev_empty holds no video"):
    public.index_dataset(events, split="val")


# --------------------------------------------------------------------------- synthetic benchmark


MICRO = dataclasses.replace(synth.PRESETS["tiny"], size=(32, 32), train_clips=1,
                            train_distractor_clips=0, train_cycles=1, val_clips=1,
                            val_distractor_clips=0, val_cycles=1, test_clips=2)


def test_synth_layout(tmp_path):
  root = synth.write_benchmark(tmp_path, scene="conveyor", preset=MICRO, progress=False)
  assert public.detect_layout(root) == "synth"
  reference = datasets.load_synthetic(root, "test")
  entries = public.index_dataset(root)
  assert [e.name for e in entries] == [c.name for c in reference]
  box = synth.SEMANTIC_CLASSES.index("box")
  for e, c in zip(entries, reference):
    assert np.array_equal(e.labels, c.labels) and e.num_frames == len(c.frames)
    # Conveyor: the box's pixels in the anomalous frames, nothing in the normal ones.
    assert np.array_equal(c.pixel_masks, (c.classes == box) & c.labels[:, None, None])
    assert c.labels.any() and not c.pixel_masks[~c.labels].any()
    clip = public.load_clip(e)
    assert np.array_equal(clip.pixel_masks, c.pixel_masks)
    assert np.array_equal(clip.frame_types, c.frame_types)
    assert np.array_equal(clip.frames, c.frames) and np.array_equal(clip.labels, c.labels)
    assert np.array_equal(clip.distractors, c.distractors)
    assert np.array_equal(clip.workspace_mask, c.workspace_mask)
    assert np.array_equal(clip.classes, c.classes) and c.classes.shape == c.frames.shape[:3]
    assert clip.meta["name"] == c.meta["name"]
    assert public.load_pixel_masks(e) is None
    assert public.load_clip(e, size=(16, 24)).classes.shape == (len(c.frames), 16, 24)
  loaded = public.load_dataset(root, split="val", size=(16, 16))
  assert [c.frames.shape[1:] for c in loaded] == [(16, 16, 3)]
  assert [c.classes.shape[1:] for c in loaded] == [(16, 16)]
  assert [c.pixel_masks.shape[1:] for c in loaded] == [(16, 16)]
  assert not loaded[0].pixel_masks.any()   # val is normal
  with pytest.raises(DataError, match="labels_file= does not apply"):
    public.index_dataset(root, labels_file=root / "x.mat")


def test_synth_pixel_masks_mark_the_moving_parts():
  ids = {name: synth.SEMANTIC_CLASSES.index(name) for name in synth.SEMANTIC_CLASSES}
  classes = np.array([[[ids["arm"], ids["block"], ids["box"], ids["machine"]]]] * 3, np.uint8)
  labels = np.array([True, False, True])
  pick = clips_lib.synth_pixel_masks(classes, labels, "pickplace")
  assert pick.shape == (3, 1, 4) and pick.dtype == bool
  assert pick[0, 0].tolist() == [True, True, False, False] and not pick[1].any()
  assert clips_lib.synth_pixel_masks(classes, labels, "conveyor")[2, 0].tolist() == [
      False, False, True, False]
  assert set(clips_lib.MOVING_PART_CLASSES) == set(synth.SCENES)
  assert all(set(v) <= set(synth.SEMANTIC_CLASSES) for v in clips_lib.MOVING_PART_CLASSES.values())
  with pytest.raises(DataError, match="no moving parts known for synthetic scene 'kitchen'"):
    clips_lib.synth_pixel_masks(classes, labels, "kitchen")


# --------------------------------------------------------------------------- MVTec AD


@pytest.fixture
def mvtec(tmp_path):
  return write_mvtec(tmp_path / "bottle")


TEST_NAMES = ["crack/000", "crack/001", "good/000", "good/001", "scratch/000"]


def test_mvtec_layout(mvtec):
  assert public.detect_layout(mvtec) == "mvtec"
  train = public.index_dataset(mvtec, split="train")
  assert [e.name for e in train] == list(MVTEC_TRAIN)
  assert all(e.num_frames == 1 and not e.labels.any() and e.mask_source is None
             and e.source.suffix == ".png" and e.label_source is None for e in train)
  entries = public.index_dataset(mvtec)
  assert [e.name for e in entries] == TEST_NAMES
  for e in entries:
    defect, stem = e.name.split("/")
    assert e.labels.tolist() == [defect != "good"] and e.meta == {"defect": defect}
    assert e.label_source == mvtec / "test" / defect
    assert e.mask_source == (None if defect == "good"
                             else mvtec / "ground_truth" / defect / f"{stem}_mask.png")
  assert public.load_pixel_masks(entries[0]).shape == (1, *MVTEC_HW)
  assert public.load_pixel_masks(entries[2]) is None      # good: no mask file
  clips = public.load_dataset(mvtec)
  for clip in clips:
    level = MVTEC_TEST[clip.name][0]
    defect = clip.name.split("/")[0]
    assert clip.frames.shape == (1, *MVTEC_HW, 3) and clip.frames.dtype == np.uint8
    assert clip.frames[0, 0, 0].tolist() == [level + 10, level + 5, level]   # BGR -> RGB
    assert clip.labels.tolist() == [defect != "good"]
    assert clip.frame_types.tolist() == ["" if defect == "good" else defect]
    assert clip.pixel_masks.dtype == bool
    assert np.array_equal(clip.pixel_masks, mvtec_mask(clip.name)[None])
    assert clip.meta["defect"] == defect and clip.meta["layout"] == "mvtec"
  train_clips = public.load_dataset(mvtec, split="train")
  assert [c.frames[0, 0, 0, 2] for c in train_clips] == list(MVTEC_TRAIN.values())
  assert all(c.pixel_masks.shape == (1, *MVTEC_HW) and not c.pixel_masks.any()
             for c in train_clips)


def test_mvtec_resize_and_colour(mvtec, tmp_path):
  size = (6, 8)
  for clip in public.load_dataset(mvtec, size=size, grayscale=True):
    assert clip.frames.shape == (1, *size, 1)
    assert clip.pixel_masks.shape == (1, *size)
    assert np.array_equal(clip.pixel_masks[0], clips_lib.resize_nearest(
        mvtec_mask(clip.name)[None], size)[0])
    expected = cv2.cvtColor(mvtec_image(MVTEC_TEST[clip.name][0], gray=False),
                            cv2.COLOR_BGR2GRAY)[0, 0]
    assert clip.frames[0, 0, 0, 0] == expected
  # Gray images (MVTec's grid, screw, zipper): RGB unless asked for gray.
  gray = write_mvtec(tmp_path / "grid", gray=True)
  (clip, *_) = public.load_dataset(gray, grayscale=False)
  assert clip.frames.shape == (1, *MVTEC_HW, 3)
  assert clip.frames[0, 0, 0].tolist() == [MVTEC_TEST["crack/000"][0]] * 3
  (clip, *_) = public.load_dataset(gray, grayscale=True)
  assert clip.frames.shape == (1, *MVTEC_HW, 1)


def test_mvtec_detection(tmp_path, mvtec):
  train_only = tmp_path / "train_only"
  shutil.copytree(mvtec / "train", train_only / "train")
  assert public.detect_layout(train_only) == "mvtec"
  test_only = tmp_path / "test_only"
  shutil.copytree(mvtec / "test", test_only / "test")
  shutil.copytree(mvtec / "ground_truth", test_only / "ground_truth")
  assert public.detect_layout(test_only) == "mvtec"
  assert [e.name for e in public.index_dataset(test_only)] == TEST_NAMES
  with pytest.raises(DataError, match=r"its subfolders are datasets, pass one of them: "
                                      r".*bottle \(mvtec\)"):
    public.detect_layout(tmp_path)
  junk = tmp_path / "junk"
  (junk / "stuff").mkdir(parents=True)
  with pytest.raises(DataError, match=r"mvtec: train/good/ or test/ with ground_truth/"):
    public.detect_layout(junk)


def test_mvtec_errors(mvtec):
  with pytest.raises(DataError, match=r"has no val split \(only train and test\)"):
    public.index_dataset(mvtec, split="val")
  with pytest.raises(DataError, match=r"labels_file= does not apply to the mvtec layout"):
    public.index_dataset(mvtec, labels_file=mvtec / "x.mat")
  # A defect image without its mask (or its defect's whole folder): the expected path.
  mask = mvtec / "ground_truth" / "crack" / "001_mask.png"
  kept = mask.read_bytes()
  mask.unlink()
  with pytest.raises(DataError, match=r"ground_truth/crack/001_mask.png is missing: every MVTec "
                                      r"AD defect image needs its mask"):
    public.index_dataset(mvtec)
  mask.write_bytes(kept)
  shutil.rmtree(mvtec / "ground_truth" / "scratch")
  with pytest.raises(DataError, match=r"ground_truth/scratch/000_mask.png is missing"):
    public.index_dataset(mvtec)
  # An unreadable image is found when it is decoded, naming it.
  (mvtec / "train" / "good" / "001.png").write_bytes(b"not a png")
  (entry,) = [e for e in public.index_dataset(mvtec, split="train") if e.name == "good/001"]
  with pytest.raises(DataError, match=r"cannot decode .*train/good/001.png"):
    public.load_clip(entry)
  # An empty or missing train/good.
  for f in (mvtec / "train" / "good").iterdir():
    f.unlink()
  with pytest.raises(DataError, match=r"train/good holds no images"):
    public.index_dataset(mvtec, split="train")
  (mvtec / "train" / "good").rmdir()
  with pytest.raises(DataError, match=r"train/good is missing: an MVTec AD category keeps"):
    public.index_dataset(mvtec, split="train", layout="mvtec")


# --------------------------------------------------------------------------- layout errors


def test_detect_layout_errors(tmp_path, ucsd):
  with pytest.raises(DataError, match="does not exist"):
    public.detect_layout(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="is empty"):
    public.detect_layout(tmp_path / "empty")
  with pytest.raises(DataError, match="is empty"):
    public.load_dataset(tmp_path / "empty")
  junk = tmp_path / "junk"
  (junk / "stuff").mkdir(parents=True)
  (junk / "readme.txt").write_text("hi")
  with pytest.raises(DataError, match=r"no known dataset layout in .*junk: looked for synth: "
                                      r"benchmark.json; ucsd: Train/TrainNNN/"):
    public.detect_layout(junk)
  # The distribution's parent folder: point at the dataset inside it.
  with pytest.raises(DataError, match=r"its subfolders are datasets, pass one of them: "
                                      r".*UCSDped2 \(ucsd\)"):
    public.detect_layout(tmp_path)
  (ucsd / "training_videos").mkdir()
  with pytest.raises(DataError, match=r"matches several dataset layouts: ucsd \(.*\); avenue"):
    public.detect_layout(ucsd)
  assert public.index_dataset(ucsd, layout="ucsd")[0].name == "Test2"


def test_unknown_layout_and_split(ucsd, events):
  with pytest.raises(DataError, match=r"unknown dataset layout 'kitti': choose one of ucsd, "):
    public.index_dataset(ucsd, layout="kitti")
  with pytest.raises(DataError, match=r"has no val split \(only train and test\)"):
    public.index_dataset(ucsd, split="val")
  with pytest.raises(DataError, match="unknown split 'testing'"):
    public.index_dataset(events, split="testing")
  with pytest.raises(DataError, match=r"UCSDped2/testing_videos is missing: the avenue layout"):
    public.index_dataset(ucsd, layout="avenue")  # a wrong explicit layout


def test_empty_split_folder(tmp_path):
  root = tmp_path / "avenue"
  (root / "testing_videos").mkdir(parents=True)
  assert public.detect_layout(root) == "avenue"
  with pytest.raises(DataError, match=r"testing_videos holds no videos"):
    public.index_dataset(root)
  with pytest.raises(DataError, match=r"training_videos is missing"):
    public.index_dataset(root, split="train")

"""Video/frame-folder I/O: round trips, ordering, crops and resizes, and every bad-input error."""

import re
import warnings

import cv2
import numpy as np
import pytest

from jaxvad.data import video
from jaxvad.errors import DataError


def smooth_frames(t=6, h=32, w=48, c=3):
  """Frames lossy codecs keep well: gradients plus a moving bright square."""
  y, x = np.mgrid[0:h, 0:w]
  frames = np.zeros((t, h, w, c), np.uint8)
  for i in range(t):
    frames[i, ..., 0] = x * 255 // (w - 1)
    frames[i, ..., c - 1] = np.maximum(frames[i, ..., c - 1], y * 255 // (h - 1) // 2 + 20 * i)
    frames[i, 8:16, 4 + 4 * i:12 + 4 * i, :] = 230
  return frames


def leftovers(folder):
  """Hidden temp files/folders left next to the outputs."""
  return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", video.VIDEO_SUFFIXES)
def test_video_round_trip(tmp_path, suffix):
  frames = smooth_frames()
  path = tmp_path / "sub" / f"clip{suffix}"
  video.write_video(path, frames, fps=10)
  back = video.read_frames(path)
  assert back.shape == frames.shape and back.dtype == np.uint8
  assert np.abs(back.astype(int) - frames).mean() < 8  # mp4v/MJPG are lossy
  assert leftovers(path.parent) == []


def test_video_round_trip_gray(tmp_path):
  frames = smooth_frames(c=1)
  video.write_video(tmp_path / "g.avi", frames)
  back = video.read_frames(tmp_path / "g.avi", grayscale=True)
  assert back.shape == frames.shape
  assert np.abs(back.astype(int) - frames).mean() < 8
  rgb = video.read_frames(tmp_path / "g.avi")  # read as RGB: three near-equal channels
  assert rgb.shape == frames.shape[:3] + (3,)
  assert np.abs(rgb.astype(int) - rgb[..., :1]).max() <= 4  # chroma rounding of the codec


@pytest.mark.parametrize("c", [1, 3])
def test_frames_round_trip_png_exact(tmp_path, c):
  frames = np.random.default_rng(0).integers(0, 256, (5, 7, 9, c), dtype=np.uint8)
  video.write_frames(tmp_path / "f", frames)
  assert [p.name for p in video.list_frame_files(tmp_path / "f")][:2] == ["00000.png", "00001.png"]
  np.testing.assert_array_equal(video.read_frames(tmp_path / "f", grayscale=c == 1), frames)
  assert leftovers(tmp_path) == []


def test_write_frames_jpg_is_close(tmp_path):
  frames = smooth_frames(t=2)
  video.write_frames(tmp_path / "j", frames, ext=".jpg")
  assert np.abs(video.read_frames(tmp_path / "j").astype(int) - frames).mean() < 8


def test_write_frames_replaces_previous_output_only(tmp_path):
  frames = smooth_frames(t=4)
  video.write_frames(tmp_path / "f", frames)
  video.write_frames(tmp_path / "f", frames[:2])
  assert len(video.read_frames(tmp_path / "f")) == 2
  (tmp_path / "f" / "notes.txt").write_text("mine")
  with pytest.raises(DataError, match="holds other files"):
    video.write_frames(tmp_path / "f", frames)
  assert (tmp_path / "f" / "notes.txt").exists()
  assert leftovers(tmp_path) == []


def test_write_video_refuses_odd_sizes_and_leaves_nothing(tmp_path):
  with pytest.raises(DataError, match=r"odd\.mp4.*even"):
    video.write_video(tmp_path / "odd.mp4", smooth_frames(h=15, w=17))
  with pytest.raises(DataError, match=r"x\.webm"):
    video.write_video(tmp_path / "x.webm", smooth_frames())
  with pytest.raises(DataError, match="uint8"):
    video.write_video(tmp_path / "f.mp4", smooth_frames().astype(np.float32))
  assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- folders


def test_natural_sort(tmp_path):
  for value, name in enumerate(["frame1.png", "frame2.PNG", "frame10.png", "frame100.png"]):
    cv2.imwrite(str(tmp_path / name), np.full((4, 4), value, np.uint8))
  (tmp_path / "notes.txt").write_text("not a frame")
  (tmp_path / "._frame3.png").write_bytes(b"macOS resource fork")
  names = [p.name for p in video.list_frame_files(tmp_path)]
  assert names == ["frame1.png", "frame2.PNG", "frame10.png", "frame100.png"]
  frames = video.read_frames(tmp_path, grayscale=True)
  np.testing.assert_array_equal(frames[:, 0, 0, 0], [0, 1, 2, 3])


def test_grayscale_matches_opencv(tmp_path):
  frames = smooth_frames(t=2)
  video.write_frames(tmp_path / "f", frames)
  gray = video.read_frames(tmp_path / "f", grayscale=True)
  expected = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]
  np.testing.assert_array_equal(gray, expected)


def test_roi_then_size(tmp_path):
  frames = smooth_frames(t=2)
  video.write_frames(tmp_path / "f", frames)
  x, y, w, h = 4, 2, 40, 24
  crop = frames[:, y:y + h, x:x + w]
  small = video.read_frames(tmp_path / "f", roi=(x, y, w, h), size=(12, 20))
  np.testing.assert_array_equal(
      small, np.stack([cv2.resize(f, (20, 12), interpolation=cv2.INTER_AREA) for f in crop]))
  big = video.read_frames(tmp_path / "f", roi=(x, y, w, h), size=(48, 80))
  np.testing.assert_array_equal(
      big, np.stack([cv2.resize(f, (80, 48), interpolation=cv2.INTER_LINEAR) for f in crop]))
  gray = video.read_frames(tmp_path / "f", roi=(x, y, w, h), size=(12, 20), grayscale=True)
  assert gray.shape == (2, 12, 20, 1)


def test_16bit_tif_is_scaled_to_8bit(tmp_path):
  image = np.array([[0, 257, 32896], [65535, 514, 1000]], np.uint16)
  cv2.imwrite(str(tmp_path / "a.tif"), image)
  frames = video.read_frames(tmp_path, grayscale=True)
  np.testing.assert_array_equal(frames[0, ..., 0], [[0, 1, 128], [255, 2, 4]])


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path):
  with pytest.raises(DataError, match=r"nope\.mp4 does not exist"):
    video.read_frames(tmp_path / "nope.mp4")


def test_unknown_suffix_and_single_image(tmp_path):
  (tmp_path / "clip.txt").write_text("hi")
  with pytest.raises(DataError, match=r"clip\.txt.*unsupported"):
    video.read_frames(tmp_path / "clip.txt")
  cv2.imwrite(str(tmp_path / "one.png"), np.zeros((4, 4), np.uint8))
  with pytest.raises(DataError, match=r"one\.png is a single image"):
    video.read_frames(tmp_path / "one.png")


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_corrupt_and_empty_video(tmp_path, suffix):
  bad = tmp_path / f"x{suffix}"
  bad.write_bytes(np.random.default_rng(0).bytes(2000))
  with pytest.raises(DataError, match=re.escape(str(bad))):
    video.read_frames(bad)
  bad.write_bytes(b"")
  with pytest.raises(DataError, match=re.escape(str(bad))):
    video.read_frames(bad)


def test_truncated_mp4(tmp_path):
  path = tmp_path / "cut.mp4"
  video.write_video(path, smooth_frames(t=20))
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # mp4v puts its index (moov) at the end
  with pytest.raises(DataError, match=r"cannot open video .*cut\.mp4"):
    video.read_frames(path)


def test_truncated_avi_warns_or_raises(tmp_path):
  path = tmp_path / "cut.avi"
  video.write_video(path, smooth_frames(t=20))
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  # AVI has its header first: the first frames still decode, and the short count is flagged.
  with pytest.warns(UserWarning, match=r"cut\.avi.*20 frames.*truncated"):
    frames = video.read_frames(path)
  assert 0 < len(frames) < 20


def test_empty_and_missing_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.txt").write_text("no frames here")
  with pytest.raises(DataError, match=r"empty holds no frame files"):
    video.read_frames(tmp_path / "empty")
  with pytest.raises(DataError, match=r"gone does not exist"):
    video.list_frame_files(tmp_path / "gone")


def test_undecodable_frame_file(tmp_path):
  cv2.imwrite(str(tmp_path / "0.png"), np.zeros((4, 4, 3), np.uint8))
  (tmp_path / "1.png").write_bytes(b"not a png at all")
  with pytest.raises(DataError, match=r"cannot decode .*1\.png"):
    video.read_frames(tmp_path)


def test_mixed_frame_sizes(tmp_path):
  cv2.imwrite(str(tmp_path / "0.png"), np.zeros((4, 6, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "1.png"), np.zeros((4, 6, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "2.png"), np.zeros((5, 6, 3), np.uint8))
  with pytest.raises(DataError, match=r"2\.png is 5x6 \(HxW\) but .*0\.png is 4x6"):
    video.read_frames(tmp_path)


def test_roi_outside_frame(tmp_path):
  video.write_frames(tmp_path / "f", smooth_frames(t=1))  # 32x48 (HxW)
  with pytest.raises(DataError, match=r"roi .* does not fit inside the 48x32 .*f"):
    video.read_frames(tmp_path / "f", roi=(10, 0, 40, 10))
  with pytest.raises(DataError, match="roi"):
    video.read_frames(tmp_path / "f", roi=(-1, 0, 4, 4))


def test_labels():
  np.testing.assert_array_equal(video.check_labels([0, 1, 1], 3, source="a.mp4"),
                                [False, True, True])
  assert video.check_labels(np.array([True, False]), 2, source="a.mp4").dtype == bool
  with pytest.raises(DataError, match=r"labels have 120 entries but clip\.mp4 has 118 frames"):
    video.check_labels(np.zeros(120), 118, source="clip.mp4")
  with pytest.raises(DataError, match=r"clip\.mp4.*entry 1 is 2"):
    video.check_labels([0, 2, 1], 3, source="clip.mp4")
  with pytest.raises(DataError, match=r"clip\.mp4"):
    video.check_labels([0.0, np.nan], 2, source="clip.mp4")
  with pytest.raises(DataError, match=r"clip\.mp4"):
    video.check_labels(["a", "b"], 2, source="clip.mp4")
  with pytest.raises(DataError, match=r"clip\.mp4"):
    video.check_labels([[0, 1]], 2, source="clip.mp4")


def test_complete_video_does_not_warn(tmp_path):
  video.write_video(tmp_path / "ok.mp4", smooth_frames(t=3))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert len(video.read_frames(tmp_path / "ok.mp4")) == 3

"""Reading and writing videos and frame folders (OpenCV), plus per-frame label checks.

Every reader returns uint8 `[T, H, W, C]` in RGB (C=3) or gray (C=1) order; OpenCV's
BGR never leaves this module. Bad input raises `DataError` naming the file and the fix:
OpenCV itself is mostly silent (a corrupt video opens as 0 frames, `imread` returns None),
so every failure mode is checked here explicitly.

Codecs (checked on opencv-python-headless 5.0 with its bundled FFmpeg): `.mp4`/`.mov` are
written as MPEG-4 part 2 (`mp4v`), `.avi`/`.mkv` as Motion-JPEG (`MJPG`); both are lossy
(mean absolute error ~3 grey levels on smooth frames). H.264 (`avc1`) is not available in
the wheel's FFmpeg, so it is not used. Both codecs silently crop odd widths/heights to even
ones, so `write_video` refuses odd sizes; use `write_frames` (PNG, lossless) for exact copies.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator

import cv2
import numpy as np

from jaxvad.errors import DataError

__all__ = [
    "VIDEO_SUFFIXES", "FRAME_SUFFIXES", "FramePrep", "list_frame_files", "read_frames",
    "check_readable",
    "write_video", "write_frames", "check_labels",
]

# FFmpeg and OpenCV print their own lines for a bad file ("moov atom not found", "[ WARN:0]
# ... can't be used to capture by name") before the DataError below says the same in one
# line; keep them quiet unless the user asked for their logs.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
if "OPENCV_LOG_LEVEL" not in os.environ:
  cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# The codec each video suffix is written with; both ship with the headless wheel's FFmpeg.
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

PathLike = str | os.PathLike


def _natural_key(path: pathlib.Path):
  # re.split with a capture group alternates text/digits, so element types line up
  # position by position and the lists always compare; the name breaks ties (f01 vs f1).
  parts = re.split(r"(\d+)", path.name)
  return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], path.name


def list_frame_files(folder: PathLike) -> list[pathlib.Path]:
  """The frame images of a folder in natural order (`frame2` before `frame10`).

  Only files with a `FRAME_SUFFIXES` suffix (any case) count; hidden files (`.name`, e.g.
  macOS `._frame1.png` resource forks) are skipped. Subfolders are not searched.

  Args:
    folder: folder holding the frames.

  Returns:
    The frame files, sorted.

  Raises:
    DataError: the folder is missing, not a folder, or holds no frame files.
  """
  folder = pathlib.Path(folder)
  if not folder.exists():
    raise DataError(f"{folder} does not exist; pass a video file or a folder of frames")
  if not folder.is_dir():
    raise DataError(f"{folder} is not a folder of frames")
  files = [p for p in folder.iterdir()
           if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
  if not files:
    raise DataError(f"{folder} holds no frame files ({', '.join(FRAME_SUFFIXES)}); put the "
                    f"frames there or pass a video file instead")
  return sorted(files, key=_natural_key)


def _check_size(size) -> tuple[int, int] | None:
  if size is None:
    return None
  if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
    raise DataError(f"size must be (H, W) with two positive integers, got {size!r}")
  return int(size[0]), int(size[1])


def _check_roi(roi, height: int, width: int, source) -> tuple[int, int, int, int]:
  if len(roi) != 4 or not all(isinstance(v, (int, np.integer)) for v in roi):
    raise DataError(f"roi must be (x, y, w, h) with four integers, got {roi!r}")
  x, y, w, h = (int(v) for v in roi)
  if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
    raise DataError(f"roi (x={x}, y={y}, w={w}, h={h}) does not fit inside the {width}x{height} "
                    f"(WxH) frames of {source}; choose x + w <= {width} and y + h <= {height}")
  return x, y, w, h


def _to_uint8(image: np.ndarray, source) -> np.ndarray:
  if image.dtype == np.uint8:
    return image
  if image.dtype == np.uint16:
    # One fixed map for every frame (full 16-bit range -> 0..255, rounded): a per-frame
    # rescale would make brightness flicker, which reads as an anomaly.
    return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  raise DataError(f"{source} has {image.dtype} pixels; only 8- and 16-bit images are "
                  f"supported, convert it to 8-bit PNG")


class FramePrep:
  """Turns raw OpenCV frames (BGR/BGRA/gray, 8/16-bit) into uint8 RGB or gray, cropped and resized.

  Also checks that every frame of one source has the size of the first. `read_frames` reads
  with it; live scoring (`jaxvad.live`) prepares each camera frame with it, the same way.

  Args:
    size: `(H, W)` to resize to (INTER_AREA when shrinking, INTER_LINEAR otherwise), or None.
    roi: `(x, y, w, h)` crop of the stored frame, before resizing, or None.
    grayscale: one channel instead of RGB.
    source: the file, folder or stream the frames come from (for error messages).
  """

  def __init__(self, *, size, roi, grayscale: bool, source):
    self.size = _check_size(size)
    self.roi = roi
    self.grayscale = grayscale
    self.source = source
    self.first_shape = None  # (H, W) of the first frame
    self.first_name = None

  def __call__(self, image: np.ndarray, name) -> np.ndarray:
    h, w = image.shape[:2]
    if self.first_shape is None:
      self.first_shape, self.first_name = (h, w), name
      if self.roi is not None:
        self.roi = _check_roi(self.roi, h, w, self.source)
    elif (h, w) != self.first_shape:
      fh, fw = self.first_shape
      raise DataError(f"{name} is {h}x{w} (HxW) but {self.first_name} is {fh}x{fw}; all frames "
                      f"of {self.source} must have one size (resize or crop them first)")
    image = _to_uint8(image, name)
    if self.roi is not None:
      x, y, rw, rh = self.roi
      image = image[y:y + rh, x:x + rw]
    # Colour conversion before resizing: a gray resize touches a third of the pixels.
    if image.ndim == 2 or image.shape[2] == 1:
      image = image.reshape(image.shape[:2])
      if not self.grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 3:
      image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if self.grayscale else cv2.COLOR_BGR2RGB)
    elif image.shape[2] == 4:  # alpha is dropped
      image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if self.grayscale else cv2.COLOR_BGRA2RGB)
    else:
      raise DataError(f"{name} has {image.shape[2]} channels; expected gray, RGB or RGBA")
    if self.size is not None and self.size != image.shape[:2]:
      th, tw = self.size
      shrink = th <= image.shape[0] and tw <= image.shape[1]
      image = cv2.resize(image, (tw, th),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image.reshape(image.shape[:2] + (-1,))


def decode_image(path: pathlib.Path, *,
                 flags: int = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) -> np.ndarray:
  """One image file decoded by OpenCV with `flags`.

  Raises:
    DataError: the file cannot be read, or is empty or undecodable (message names it).
  """
  # imdecode of the raw bytes (not imread) so non-ASCII paths work everywhere and an
  # unreadable file is told apart from an undecodable one. ANYDEPTH keeps 16 bits for our
  # own scaling; without IMREAD_UNCHANGED, EXIF orientation is still applied.
  try:
    data = np.fromfile(path, dtype=np.uint8)
  except OSError as e:
    raise DataError(f"cannot read {path}: {e.strerror or e}") from None
  image = None
  if data.size:
    try:
      image = cv2.imdecode(data, flags)
    except cv2.error:
      image = None
  if image is None:
    raise DataError(f"cannot decode {path}: the image is empty, corrupt or not really a "
                    f"{path.suffix} file; re-export it or remove it from the folder")
  return image


def _read_folder(folder: pathlib.Path, prep: FramePrep) -> list[np.ndarray]:
  return [prep(decode_image(f), f) for f in list_frame_files(folder)]


VIDEO_HINT = ("the file is corrupt, truncated or uses a codec this OpenCV build cannot decode; "
              "re-encode it (e.g. `ffmpeg -i in.mov out.mp4`) or export it as a folder of frames")


@contextlib.contextmanager
def open_video(path: pathlib.Path) -> Iterator[cv2.VideoCapture]:
  """An opened `cv2.VideoCapture` of a video file, released on exit.

  Raises:
    DataError: OpenCV cannot open the file (message names it and the fix).
  """
  # CAP_FFMPEG explicitly: the default backend list also tries the image-sequence reader,
  # which treats `%` in a file name as a printf pattern.
  try:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
  except cv2.error:
    raise DataError(f"cannot open video {path}: {VIDEO_HINT}") from None
  try:
    if not cap.isOpened():
      raise DataError(f"cannot open video {path}: {VIDEO_HINT}")
    yield cap
  finally:
    cap.release()


def _read_video(path: pathlib.Path, prep: FramePrep) -> list[np.ndarray]:
  with open_video(path) as cap:
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # from the header; <= 0 if unknown
    frames = []
    while True:
      try:
        ok, frame = cap.read()
      except cv2.error:
        ok = False
      if not ok:  # end of stream and a decode error look the same
        break
      frames.append(prep(frame, f"frame {len(frames)} of {path}"))
  if not frames:
    raise DataError(f"video {path} decoded 0 frames: {VIDEO_HINT}")
  if len(frames) < expected:
    # Not an error: some containers estimate the count; a clip that is short of frames
    # is still usable, and check_labels catches it where labels exist.
    warnings.warn(f"{path}: its header announces {expected} frames but only {len(frames)} "
                  f"decoded; the file may be truncated", stacklevel=3)
  return frames


def read_frames(path: PathLike, *, size: tuple[int, int] | None = None,
                roi: tuple[int, int, int, int] | None = None,
                grayscale: bool = False) -> np.ndarray:
  """Reads a video file or a folder of frame images.

  Args:
    path: a video (`VIDEO_SUFFIXES`) or a folder of frames (`FRAME_SUFFIXES`, natural
      order). 16-bit images are mapped to 8 bits by one fixed scale (65535 -> 255).
    size: `(H, W)` to resize every frame to (INTER_AREA when shrinking, INTER_LINEAR
      otherwise); None keeps the stored (or cropped) size.
    roi: `(x, y, w, h)` crop in pixels of the stored frame, applied before resizing.
    grayscale: return gray frames (C=1) instead of RGB (C=3).

  Returns:
    uint8 `[T, H, W, C]`, RGB or gray.

  Raises:
    DataError: missing path, unknown suffix, a video that cannot be opened or decodes no
      frames, an undecodable frame file, frames of different sizes, or an roi outside
      the frame. Messages name the file.
  """
  path = pathlib.Path(path)
  prep = FramePrep(size=size, roi=roi, grayscale=grayscale, source=path)
  if _source_kind(path) == "folder":
    frames = _read_folder(path, prep)
  else:
    frames = _read_video(path, prep)
  return np.stack(frames)


def _source_kind(path: pathlib.Path) -> str:
  """"folder" or "video"; anything else (missing, a single image, a text file) is a DataError."""
  if not path.exists():
    raise DataError(f"{path} does not exist; pass a video file or a folder of frames")
  if path.is_dir():
    return "folder"
  if path.suffix.lower() in VIDEO_SUFFIXES:
    return "video"
  if path.suffix.lower() in FRAME_SUFFIXES:
    raise DataError(f"{path} is a single image; pass the folder that holds the frames")
  raise DataError(f"{path}: unsupported file type {path.suffix!r}; pass a video "
                  f"({', '.join(VIDEO_SUFFIXES)}) or a folder of frames "
                  f"({', '.join(FRAME_SUFFIXES)})")


def check_readable(path: PathLike) -> None:
  """Fails fast on an input `read_frames` would refuse, decoding only its first frame.

  For commands that check their inputs before seconds of set-up: a missing path, an unsupported
  file, an empty folder, or a video / first image that cannot be decoded. Later frames (a
  truncated tail, mixed sizes) are checked when `read_frames` reads them all.

  Raises:
    DataError: as `read_frames`, naming the file.
  """
  path = pathlib.Path(path)
  if _source_kind(path) == "folder":
    decode_image(list_frame_files(path)[0])
    return
  with open_video(path) as cap:
    try:
      ok, _ = cap.read()
    except cv2.error:
      ok = False
  if not ok:
    raise DataError(f"video {path} decoded 0 frames: {VIDEO_HINT}")


def _check_frames(frames, *, what: str) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise DataError(f"{what} needs uint8 frames [T, H, W, C] with C = 1 or 3, got "
                    f"{frames.dtype} {frames.shape}")
  if not frames.shape[0]:
    raise DataError(f"{what} needs at least one frame, got 0")
  return frames


def _temp_sibling(path: pathlib.Path, suffix: str = "") -> pathlib.Path:
  # Hidden, unique, same folder (so os.replace is an atomic rename); keeps the suffix
  # because FFmpeg picks the container from it.
  return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def write_video(path: PathLike, frames, *, fps: float = 5.0) -> None:
  """Writes frames as a video, atomically (a temp file in the same folder, then a rename).

  Args:
    path: `.mp4`/`.mov` (mp4v) or `.avi`/`.mkv` (MJPG). Parent folders are created.
    frames: uint8 `[T, H, W, C]`, RGB (C=3) or gray (C=1); H and W must be even.
    fps: frame rate stored in the file.

  Raises:
    DataError: bad frames, odd sizes, an unknown suffix, or OpenCV cannot write the file.
  """
  path = pathlib.Path(path)
  frames = _check_frames(frames, what=f"write_video({path})")
  suffix = path.suffix.lower()
  if suffix not in _FOURCC:
    raise DataError(f"cannot write {path}: the suffix must be one of {', '.join(_FOURCC)}")
  if not fps > 0:
    raise DataError(f"cannot write {path}: fps must be > 0, got {fps}")
  _, h, w, c = frames.shape
  if h % 2 or w % 2:
    raise DataError(f"cannot write {path}: frames are {h}x{w} (HxW), but mp4v/MJPG silently "
                    f"crop odd sizes; crop or resize to even sizes, or use write_frames")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temp_sibling(path, suffix)
  writer = cv2.VideoWriter()
  try:
    try:
      opened = writer.open(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*_FOURCC[suffix]),
                           float(fps), (w, h))
    except cv2.error:
      opened = False
    if not opened:
      raise DataError(f"cannot write {path}: OpenCV could not open a {_FOURCC[suffix]} writer "
                      f"for {w}x{h} frames; try another suffix or write_frames")
    for frame in frames:
      writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if c == 1 else cv2.COLOR_RGB2BGR))
    writer.release()
    if not tmp.exists() or not tmp.stat().st_size:
      raise DataError(f"cannot write {path}: OpenCV wrote nothing; check disk space")
    os.replace(tmp, path)
  finally:
    writer.release()
    tmp.unlink(missing_ok=True)


def _holds_only_frames(folder: pathlib.Path) -> bool:
  return all(p.is_file() and p.suffix.lower() in FRAME_SUFFIXES for p in folder.iterdir())


def write_frames(folder: PathLike, frames, *, ext: str = ".png") -> None:
  """Writes frames as numbered images `00000.png, 00001.png, ...`, atomically.

  The images go to a temp folder next to `folder`, which is then renamed. An existing
  `folder` is replaced only if it holds nothing but frame images (a previous output);
  anything else is refused rather than deleted.

  Args:
    folder: the output folder.
    frames: uint8 `[T, H, W, C]`, RGB (C=3) or gray (C=1).
    ext: one of `FRAME_SUFFIXES`; `.png` is lossless.

  Raises:
    DataError: bad frames or suffix, an encoding failure, or `folder` exists and holds
      other things.
  """
  folder = pathlib.Path(folder)
  frames = _check_frames(frames, what=f"write_frames({folder})")
  if ext.lower() not in FRAME_SUFFIXES:
    raise DataError(f"cannot write {folder}: ext must be one of {', '.join(FRAME_SUFFIXES)}, "
                    f"got {ext!r}")
  if folder.exists() and not (folder.is_dir() and _holds_only_frames(folder)):
    raise DataError(f"cannot write frames to {folder}: it exists and holds other files; "
                    f"remove it or choose another folder")
  folder.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temp_sibling(folder)
  tmp.mkdir()
  old = None
  try:
    digits = max(5, len(str(len(frames) - 1)))  # zero-padded so plain sorting works too
    for i, frame in enumerate(frames):
      image = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
      ok, data = cv2.imencode(ext, image)
      if not ok:
        raise DataError(f"cannot encode frame {i} as {ext} for {folder}")
      data.tofile(tmp / f"{i:0{digits}d}{ext}")
    if folder.exists():
      old = _temp_sibling(folder)
      folder.rename(old)
    tmp.rename(folder)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)


def check_labels(labels, num_frames: int, *, source) -> np.ndarray:
  """Checks per-frame labels (1 = anomalous) against a clip.

  Args:
    labels: a 1-D sequence of bools or 0/1 numbers, one per frame.
    num_frames: frames in the clip.
    source: the clip's file or name, for the message.

  Returns:
    bool `[num_frames]`.

  Raises:
    DataError: wrong length, not 1-D, or a value other than 0/1/True/False.
  """
  arr = np.asarray(labels)
  if arr.ndim != 1:
    raise DataError(f"labels for {source} must be a flat list with one 0/1 per frame, got "
                    f"shape {arr.shape}")
  if len(arr) != num_frames:
    raise DataError(f"labels have {len(arr)} entries but {source} has {num_frames} frames; "
                    f"give exactly one label per frame")
  if arr.dtype == bool:
    return arr.copy()
  if not (np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr)):
    raise DataError(f"labels for {source} must be 0/1 or true/false, got {arr.dtype} values")
  bad = np.flatnonzero((arr != 0) & (arr != 1))  # NaN is caught too: NaN != 0 and != 1
  if bad.size:
    raise DataError(f"labels for {source} must be 0/1 or true/false, but entry {bad[0]} is "
                    f"{arr[bad[0]].item()!r}")
  return arr == 1

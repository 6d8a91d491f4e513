"""Read-only loaders for the public VAD benchmarks' on-disk layouts (none can be downloaded here).

Layouts (`LAYOUTS`); `detect_layout` tells them apart by the folders listed here:

  ucsd          UCSD Ped1/Ped2 as distributed (`UCSD_Anomaly_Dataset.v1p2/UCSDped2` is the root):
                  Train/Train001/001.tif ...     Test/Test001/001.tif ...
                  Test/Test001_gt/001.bmp ...    pixel masks, one per frame (Ped1: only some videos)
                  Test/UCSDped2.m                `TestVideoFile{end+1}.gt_frame = [61:180];` lines
  avenue        CUHK Avenue as distributed:
                  training_videos/01.avi ...     testing_videos/01.avi ...
                  testing_label_mask/1_label.mat (or ground_truth_demo/testing_label_mask/): key
                  `volLabel`, a 1xT cell of HxW masks; a frame is anomalous if its mask is nonzero
  shanghaitech  ShanghaiTech Campus as distributed:
                  training/videos/01_001.avi ... (or training/frames/01_001/*.jpg)
                  testing/frames/01_0014/000.jpg ...
                  testing/test_frame_mask/01_0014.npy   0/1 per frame, named like the frames folder
                  testing/test_pixel_mask/01_0014.npy   [T, H, W] masks
  frames        the frame-folder re-packaging of ano_pred (Liu et al. 2018) and MNAD (Park et al.
                2020), e.g. `ped2/`, `avenue/`:
                  training/frames/01/000.jpg ...   testing/frames/01/000.jpg ...
                  ped2.mat and/or frame_labels_ped2.npy next to them (see "Label files")
  intervals     a folder of events with JSON intervals (paper 001 §3.2.1: one folder per event,
                with a .json file listing the anomalous frame ranges):
                  <split>/<event>/clip.mp4  (one video file)  or  <split>/<event>/*.png (frames)
                  <split>/<event>/labels.json
                with split `train`, `val` or `test`. labels.json (schema below) is required in
                `test`; in `train`/`val` it is optional and absent means all frames are normal.
  synth         jaxvad's own synthetic benchmark (`benchmark.json`; see `jaxvad.data.synth`).
  mvtec         one category of MVTec AD (Bergmann et al. 2019) as distributed, e.g. `bottle/`:
                  train/good/000.png ...                  normal training images
                  test/good/000.png ...                   normal test images
                  test/<defect>/000.png ...               anomalous test images (`crack`, ...)
                  ground_truth/<defect>/000_mask.png ...  their masks, nonzero = anomalous
                Each image is a clip of one frame named `<defect>/<stem>` (`good/<stem>` for
                normal ones), labelled anomalous unless its folder is `good`, with frame_types
                `[<defect>]` (`[""]` for good) and pixel masks (all False for good images). A
                defect image without its mask file is an error naming the expected path (the
                release has one for every defect image, so a missing one is a broken copy).
                Only train/good/ is read from train/. Gray images (grid, screw, zipper) become
                RGB unless grayscale=True, like any frame. MVTec AD has no validation split
                (`data.val_from_train` holds out training images).

Pixel masks. `load_clip` fills `Clip.pixel_masks` (bool [T, H, W], resized by nearest neighbour
to the frames' size) wherever a dataset has ground-truth anomaly masks: UCSD `TestNNN_gt/`,
Avenue `volLabel`, ShanghaiTech `test_pixel_mask/`, MVTec AD `ground_truth/`, and the synthetic
benchmark's approximation from its class maps (`clips.synth_pixel_masks`); else None.

Label files (public layouts). For the test split the labels come from the first of:
  1. `labels_file=` when given (a `.mat`, `.npy` or UCSD `.m` file, read as below);
  2. one dataset-level file in the root (or in `Test/` for UCSD, `testing/` otherwise):
     - a `.mat` file with a `gt` variable (ano_pred's `ped1.mat`, `ped2.mat`, `avenue.mat`): a
       1xN cell, one 2xK matrix per test video (row 0 starts, row 1 ends, 1-indexed,
       inclusive; a video with no event may hold an empty matrix); a file holding a plain 2xK
       matrix is one video;
     - `frame_labels_<ds>.npy` (MNAD): the 0/1 labels of all test videos concatenated, 1-D or
       1xN, split by the videos' frame counts;
     - UCSD only: `Test/UCSDped*.m` (`gt_frame = [a:b, c:d];` per video, 1-indexed, inclusive);
     these are the files published AUCs are computed against, so they win over per-video masks;
  3. per-video files: UCSD `TestNNN_gt/*.bmp` (any nonzero pixel = anomalous frame), Avenue
     `N_label.mat` `volLabel`, ShanghaiTech `test_frame_mask/<video>.npy`.
The dataset-level files list videos in sorted order, so cell/segment i goes to the i-th test
video in natural order (the same order as the reference code's lexicographic sort whenever names
are zero-padded, as in every official release; a warning says when the two orders differ).
Several candidate files of one kind are an error unless one is named like the dataset (the root
folder's name, `UCSDped2` -> `ped2`); pass `labels_file=` to choose. Files of different kinds
(say `ped2.mat` and `frame_labels_ped2.npy`) must agree frame for frame: the first in the order
above is used and the others are recorded as agreeing (`Clip.meta["label_files_agreeing"]`, and
so in metrics.json); if they disagree it is an error naming both files and the first differing
frame. A test video without any
label source is an error (`require_labels=False` gives `labels=None` instead). Training videos
are normal by each benchmark's protocol and get all-False labels. None of these sets has a
validation split.

labels.json schema (intervals layout), either a bare list of ranges or an object:

  {"anomalous_frames": [[start, end], ...],   required, may be empty
   "one_indexed": false,                      optional, default false (frame 0 is the first)
   "inclusive": false,                        optional, default false (end is one past the last)
   "num_frames": 120,                         optional, checked against the frames on disk
   "notes": "..."}                            optional, ignored

so the default is Python's 0-indexed, end-exclusive `range(start, end)`; MATLAB-style ranges set
`"one_indexed": true, "inclusive": true`. Any other key is an error, so a typo cannot silently
change the convention.

Conventions verified (with the code search tool, against the reference implementations):
ano_pred `Codes/evaluate.py` reads `scio.loadmat(mat, squeeze_me=True)['gt']`, takes cell i for
the i-th entry of `sorted(os.listdir(testing/frames))`, reshapes a 1-D cell to `(2, -1)`, sets
`gt[start - 1:end] = 1` per column (1-indexed, inclusive) over a video of `len(os.listdir(...))`
frames, and reads ShanghaiTech from `testing/test_frame_mask/*.npy` in sorted order. MNAD
`Evaluate.py` reads `np.load('frame_labels_<ds>.npy')` and slices `labels[0][...]` (so the file
is 1xN) video after video in `sorted(glob(testing/frames/*))` order. Avenue's `volLabel` is read
as `loadmat(...)['volLabel'][0][i]` (one mask per frame) from
`testing_label_mask/{int(stem)}_label.mat` (anomalib's Avenue loader and others). ShanghaiTech
pixel masks are `[T, H, W]` (anomalib takes frames along axis 0). UCSD `.m` ground truth lines
`TestVideoFile{end+1}.gt_frame = [5:90, 140:200];` appear in several independent parsers.
`scipy.io.savemat` of a 1-D object array of 2xK float arrays reads back as the (1, N) object
array that MATLAB's cell gives (checked locally with scipy 1.17).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import struct
import warnings
import zlib

import cv2
import numpy as np
import scipy.io

from jaxvad.data import clips, synth, video
from jaxvad.data.clips import Clip
from jaxvad.errors import DataError

__all__ = [
    "LAYOUTS", "VideoEntry", "detect_layout", "index_dataset", "load_clip", "load_dataset",
    "load_pixel_masks", "intervals_to_labels",
]

LAYOUTS = ("ucsd", "avenue", "shanghaitech", "frames", "intervals", "synth", "mvtec")
SPLITS = ("train", "val", "test")
JSON_LABELS = "labels.json"
_JSON_KEYS = ("anomalous_frames", "one_indexed", "inclusive", "num_frames", "notes")

# Per-layout folder of each split; a split missing here is one the layout does not have.
_SPLIT_DIRS = {
    "ucsd": {"train": "Train", "test": "Test"},
    "avenue": {"train": "training_videos", "test": "testing_videos"},
    "shanghaitech": {"train": "training", "test": "testing"},
    "frames": {"train": "training/frames", "test": "testing/frames"},
    "mvtec": {"train": "train", "test": "test"},
}
MVTEC_NORMAL = "good"   # MVTec AD's folder of normal images (train/good/, test/good/)


@dataclasses.dataclass
class VideoEntry:
  """One video of a dataset, indexed but not decoded.

  Attributes:
    name: the video's name (`Test001`, `01`, `01_0014`, the event folder's name; MVTec AD:
      `<defect>/<stem>`).
    source: the video file or frame folder, as `video.read_frames` takes it (MVTec AD: the
      image file).
    labels: bool [T], True = anomalous; None when unknown (only with `require_labels=False`).
    mask_source: where its pixel masks are (a `_gt` folder, an Avenue `N_label.mat`, a
      ShanghaiTech `test_pixel_mask/<name>.npy`, an MVTec AD `<stem>_mask.png`), or None.
    num_frames: frame count from listing the folder or the video header (exact for folders);
      None if not counted.
    label_source: the file the labels came from, for messages; None for normal-by-protocol
      training videos.
    intervals: int [K, 2] 0-indexed end-exclusive anomalous ranges when the labels were built
      from ranges; `load_clip` rebuilds the labels from them if a video decodes to another count
      than its header announced.
    layout: one of `LAYOUTS`.
    split: `train`, `val` or `test`.
    meta: extra facts (the synthetic benchmark's benchmark.json entry; MVTec AD: `defect`).
  """
  name: str
  source: pathlib.Path
  labels: np.ndarray | None
  mask_source: pathlib.Path | None = None
  num_frames: int | None = None
  label_source: pathlib.Path | None = None
  intervals: np.ndarray | None = None
  layout: str = ""
  split: str = ""
  meta: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- intervals


_MAX_FRAME = 2**53  # frame numbers above this are no frame numbers (and lose float precision)


def _convention(one_indexed: bool, inclusive: bool) -> str:
  return (f"{'1' if one_indexed else '0'}-indexed, end "
          f"{'inclusive' if inclusive else 'exclusive'}")


def intervals_to_labels(intervals, num_frames: int, *, one_indexed: bool = False,
                        inclusive: bool = False, source=None) -> np.ndarray:
  """Per-frame labels from anomalous frame ranges.

  Args:
    intervals: `[[start, end], ...]` (int or integral float, e.g. from a .mat file); empty
      for a normal video.
    num_frames: frames in the video.
    one_indexed: frame numbers start at 1 (MATLAB, the ano_pred .mat files) instead of 0.
    inclusive: `end` is the last anomalous frame instead of one past it. `[3, 5]` with
      `one_indexed=True, inclusive=True` marks 0-based frames 2, 3 and 4.
    source: the file or video the ranges came from, for messages.

  Returns:
    bool [num_frames].

  Raises:
    DataError: not a list of pairs, a non-integer frame number, a range with start > end, or
      a range outside the video. Messages name the source and the convention.
  """
  where = f" of {source}" if source is not None else ""
  conv = _convention(one_indexed, inclusive)
  if (isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer))
      or num_frames < 0):
    raise DataError(f"num_frames must be a non-negative integer, got {num_frames!r}")
  try:
    arr = np.asarray(intervals)
  except ValueError:  # ragged nested lists
    arr = None
  if arr is None or arr.dtype == object or arr.dtype == bool:
    raise DataError(f"anomalous ranges{where} must be [[start, end], ...] of integers, got "
                    f"{intervals!r}")
  if arr.size == 0:
    return np.zeros(num_frames, bool)
  if (arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.number)
      or np.iscomplexobj(arr)):
    raise DataError(f"anomalous ranges{where} must be [[start, end], ...] pairs of integers, "
                    f"got shape {arr.shape} ({arr.dtype})")
  # Before any cast: a huge number (1e300, 2**63) would wrap to a negative int64 and be
  # reported as the wrong frame.
  huge = np.abs(arr.astype(np.float64)) > _MAX_FRAME
  if huge.any():
    bad = np.argwhere(huge)[0]
    raise DataError(f"range {bad[0]}{where} holds frame number {arr[tuple(bad)].item()!r}, "
                    f"beyond any video; check that the file holds frame ranges ({conv})")
  if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
    bad = np.argwhere(~np.isfinite(arr) | (arr != np.round(arr)))[0]
    raise DataError(f"range {bad[0]} {arr[bad[0]].tolist()}{where} holds a non-integer frame "
                    f"number; frame numbers are whole numbers ({conv})")
  arr = arr.astype(np.int64)
  labels = np.zeros(num_frames, bool)
  first = 1 if one_indexed else 0
  for i, (s, e) in enumerate(arr.tolist()):
    if s > e:
      raise DataError(f"range {i} [{s}, {e}]{where} has start > end ({conv})")
    lo, hi = s - first, e - first + (1 if inclusive else 0)
    if lo < 0 or hi > num_frames:
      last = num_frames - 1 + first
      raise DataError(f"range {i} [{s}, {e}]{where} falls outside the video's {num_frames} "
                      f"frames (numbered {first}..{last}, {conv}); fix the range or check "
                      f"that the labels belong to this video")
    labels[lo:hi] = True
  return labels


def _normalize_intervals(intervals, num_frames, *, one_indexed, inclusive, source) -> np.ndarray:
  """Validated int [K, 2] 0-indexed end-exclusive ranges (what `VideoEntry.intervals` holds)."""
  intervals_to_labels(intervals, num_frames, one_indexed=one_indexed, inclusive=inclusive,
                      source=source)
  arr = np.asarray(intervals, dtype=np.float64).reshape(-1, 2).astype(np.int64)
  first = 1 if one_indexed else 0
  return np.stack([arr[:, 0] - first, arr[:, 1] - first + (1 if inclusive else 0)], axis=1)


# --------------------------------------------------------------------------- file helpers


def _is_hidden(path: pathlib.Path) -> bool:
  return path.name.startswith(".")


def _subdirs(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted((p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p)),
                key=video._natural_key)


def _child(folder: pathlib.Path, relative: str) -> pathlib.Path | None:
  """`folder/relative` matched case-insensitively part by part (UCSD has `Test`, copies `test`)."""
  here = folder
  for part in relative.split("/"):
    exact = here / part
    if exact.is_dir():
      here = exact
      continue
    if not here.is_dir():
      return None
    matches = [p for p in here.iterdir() if p.is_dir() and p.name.lower() == part.lower()]
    if len(matches) != 1:
      return None
    here = matches[0]
  return here


def _video_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted((p for p in folder.iterdir() if p.is_file() and not _is_hidden(p)
                 and p.suffix.lower() in video.VIDEO_SUFFIXES), key=video._natural_key)


def _count_frames(source: pathlib.Path) -> int:
  """Frames in a folder (by listing) or a video (header count; grabbing frames if it has none)."""
  if source.is_dir():
    return len(video.list_frame_files(source))
  with video.open_video(source) as cap:
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if count <= 0:  # no count in the header: grab (no colour conversion) to the end
      count = 0
      while cap.grab():
        count += 1
  if count <= 0:
    raise DataError(f"video {source} holds no frames: {video.VIDEO_HINT}")
  return count


# MATLAB v5 data element types (miINT8 ... miUTF32) -> bytes per value; 14 = miMATRIX and
# 15 = miCOMPRESSED hold elements.
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function",
             17: "opaque"}
_MAT_MAX_BYTES = 2**30   # a label file that decompresses to more is not a label file


class _MatStructure:
  """Walks every element of a MATLAB v5 file and checks tags, types, sizes and counts.

  scipy's compiled reader trusts these: a flipped type byte (miDOUBLE -> 44) in a cell makes
  `loadmat` segfault (found by tests/test_bad_inputs.py's fuzzing). A file that passes is
  structurally sound, so scipy reads it or raises; label files hold numeric, logical, char,
  cell and struct arrays only, so sparse matrices and objects are refused here too.
  """

  def __init__(self, order: str):
    self.order = order

  def fail(self, why: str):
    raise ValueError(why)

  def tag(self, buf, pos: int, end: int) -> tuple[int, int, int, int]:
    """(type, nbytes, data start, next element) of the element at `pos`."""
    if end - pos < 8:
      self.fail(f"an element tag is cut off at byte {pos}")
    first, second = struct.unpack_from(self.order + "II", buf, pos)
    if first >> 16:  # small data element: type and size share the first word, data the second
      mtype, nbytes = first & 0xFFFF, first >> 16
      if nbytes > 4 or mtype not in _MI_SIZES:
        self.fail(f"bad small element (type {mtype}, {nbytes} bytes) at byte {pos}")
      return mtype, nbytes, pos + 4, pos + 8
    if second > end - pos - 8:
      self.fail(f"element at byte {pos} claims {second} bytes, beyond its container")
    return first, second, pos + 8, min(end, pos + 8 + (second + 7) // 8 * 8)

  def data(self, buf, pos: int, end: int, count: int | None, what: str) -> int:
    mtype, nbytes, _, nxt = self.tag(buf, pos, end)
    size = _MI_SIZES.get(mtype)
    if size is None or nbytes % size:
      self.fail(f"{what} has data type {mtype} with {nbytes} bytes")
    if count is not None and mtype != 16 and nbytes // size != count:
      self.fail(f"{what} holds {nbytes // size} values but its dimensions say {count}")
    return nxt

  def matrix(self, buf, start: int, end: int, depth: int = 0) -> None:
    if start == end:
      return  # an empty matrix (e.g. an empty cell)
    if depth > 32:
      self.fail("arrays nested more than 32 deep")
    mtype, nbytes, data, pos = self.tag(buf, start, end)
    if mtype != 6 or nbytes != 8:
      self.fail("an array without its array-flags element")
    flags = struct.unpack_from(self.order + "I", buf, data)[0]
    mclass = flags & 0xFF
    mtype, nbytes, data, pos = self.tag(buf, pos, end)
    if mtype != 5 or nbytes < 8 or nbytes % 4:
      self.fail("an array without its dimensions element")
    dims = struct.unpack_from(f"{self.order}{nbytes // 4}i", buf, data)
    if min(dims) < 0:
      self.fail(f"negative dimensions {dims}")
    count = int(np.prod(dims, dtype=object))
    if count > _MAT_MAX_BYTES:
      self.fail(f"dimensions {dims} are too large")
    mtype, _, _, pos = self.tag(buf, pos, end)
    if mtype != 1:
      self.fail("an array without its name element")
    if mclass in _MX_NAMES and mclass not in (1, 2, 4):
      self.fail(f"a {_MX_NAMES[mclass]} array, which no label file holds")
    if mclass == 1:
      for _ in range(count):
        pos = self.child(buf, pos, end, depth)
    elif mclass == 2:
      mtype, nbytes, data, pos = self.tag(buf, pos, end)
      length = struct.unpack_from(self.order + "i", buf, data)[0] if nbytes == 4 else 0
      mtype2, names, _, pos = self.tag(buf, pos, end)
      if mtype != 5 or length <= 0 or mtype2 != 1 or names % length:
        self.fail("a struct without valid field names")
      for _ in range(count * (names // length)):
        pos = self.child(buf, pos, end, depth)
    elif 4 <= mclass <= 15:
      pos = self.data(buf, pos, end, count, "an array's real part")
      if flags & 0x800:  # complex
        self.data(buf, pos, end, count, "an array's imaginary part")
    else:
      self.fail(f"unknown array class {mclass}")

  def child(self, buf, pos: int, end: int, depth: int) -> int:
    mtype, nbytes, data, nxt = self.tag(buf, pos, end)
    if mtype != 14:
      self.fail(f"a cell or struct member of element type {mtype}")
    self.matrix(buf, data, data + nbytes, depth + 1)
    return nxt

  def file(self, buf) -> None:
    pos = 128
    while pos < len(buf):
      mtype, nbytes, data, _ = self.tag(buf, pos, len(buf))
      if mtype == 15:
        inflate = zlib.decompressobj()
        try:
          inner = inflate.decompress(buf[data:data + nbytes], _MAT_MAX_BYTES)
        except zlib.error as e:
          self.fail(f"a compressed element does not decompress ({e})")
        if inflate.unconsumed_tail:
          self.fail("a compressed element is too large")
        self.top(inner, 0, len(inner))
      elif mtype == 14:
        self.top(buf, pos, pos + 8 + nbytes)
      else:
        self.fail(f"a top-level element of type {mtype}")
      pos = data + nbytes

  def top(self, buf, pos: int, end: int) -> None:
    mtype, nbytes, data, _ = self.tag(buf, pos, end)
    if mtype != 14:
      self.fail(f"a variable of element type {mtype}")
    self.matrix(buf, data, data + nbytes)


def _check_mat_file(path: pathlib.Path) -> None:
  """Refuses a v5/v7 .mat file whose structure is damaged before scipy's reader sees it."""
  try:
    head = path.open("rb").read(128)
  except OSError as e:
    raise DataError(f"cannot read {path}: {e.strerror or e}") from None
  if len(head) < 128 or head[124:126] not in (b"\x00\x01", b"\x01\x00"):
    return  # not v5 (v4, HDF5 v7.3, or no .mat): scipy's own checks say which
  order = {b"IM": "<", b"MI": ">"}.get(head[126:128])
  try:
    if order is None:
      raise ValueError("its byte-order mark is neither IM nor MI")
    _MatStructure(order).file(path.read_bytes())
  except (ValueError, struct.error, OSError) as e:
    raise DataError(f"cannot read {path} as a MATLAB .mat file: it is damaged ({e}); re-save "
                    f"it in MATLAB with save(name, '-v7') or replace it with an intact copy") \
        from None


def _load_mat(path: pathlib.Path) -> dict:
  _check_mat_file(path)
  try:
    return scipy.io.loadmat(str(path))
  # scipy's MATLAB parser raises anything from IndexError (garbage) to NotImplementedError
  # (v7.3/HDF5) and its own MatReadError, so every failure is turned into one clear message.
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot read {path} as a MATLAB .mat file ({type(e).__name__}: {e}); it "
                    f"may be truncated, not a .mat file, or a v7.3 (HDF5) file: re-save it in "
                    f"MATLAB with save(name, '-v7')") from None


def _mat_variables(path: pathlib.Path) -> list[str]:
  _check_mat_file(path)
  try:
    return [name for name, _, _ in scipy.io.whosmat(str(path))]
  except Exception as e:  # pylint: disable=broad-except  (see _load_mat)
    raise DataError(f"cannot read {path} as a MATLAB .mat file ({type(e).__name__}: {e}); "
                    f"re-save it in MATLAB with save(name, '-v7') or move it out of the "
                    f"dataset folder") from None


def _load_npy(path: pathlib.Path) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  # A damaged header reaches numpy's literal parser, which raises SyntaxError or TokenError
  # besides the OSError / ValueError / EOFError of a short file: every failure is one message.
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot read {path} as a .npy array ({type(e).__name__}: {e}); it may be "
                    f"truncated or pickled: re-save it with numpy.save") from None


def _read_gt_mat(path: pathlib.Path) -> list[np.ndarray]:
  """The `gt` variable of an ano_pred-style .mat: per video, raw [K, 2] (1-indexed, inclusive)."""
  mat = _load_mat(path)
  if "gt" not in mat:
    keys = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(f"{path} has no `gt` variable (it holds {', '.join(keys) or 'nothing'}); "
                    f"expected ano_pred's layout: gt = 1xN cell of 2xK [start; end] matrices")
  gt = mat["gt"]
  if gt.dtype == object:
    if gt.ndim > 2 or (gt.ndim == 2 and min(gt.shape) > 1):
      raise DataError(f"`gt` in {path} is a {gt.shape} cell; expected a 1xN cell, one 2xK "
                      f"[start; end] matrix per test video")
    cells = list(gt.ravel())
  else:
    cells = [gt]  # one video: a plain 2xK matrix
  out = []
  for i, cell in enumerate(cells):
    arr = np.asarray(cell)
    if arr.size == 0:
      out.append(np.zeros((0, 2)))
      continue
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
      raise DataError(f"`gt` cell {i} of {path} holds {arr.dtype} values; expected a 2xK "
                      f"numeric [start; end] matrix")
    if arr.shape in ((2,), (1, 2)):  # ano_pred's squeeze_me reading accepts a bare [start end]
      arr = arr.reshape(2, 1)
    if arr.ndim != 2 or arr.shape[0] != 2:
      raise DataError(f"`gt` cell {i} of {path} has shape {arr.shape}; expected 2xK (row 0 the "
                      f"starts, row 1 the ends, one column per event)")
    out.append(arr.T)
  return out


_GT_FRAME = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_M_RANGE = re.compile(r"^(\d+)\s*:\s*(\d+)$")


def _read_gt_m(path: pathlib.Path) -> list[np.ndarray]:
  """UCSD's `UCSDped*.m` ground truth: per video, raw [K, 2] (1-indexed, inclusive)."""
  try:
    text = path.read_text(encoding="utf-8", errors="replace")
  except OSError as e:
    raise DataError(f"cannot read {path}: {e.strerror or e}") from None
  out = []
  for i, body in enumerate(_GT_FRAME.findall(text)):
    pairs = []
    for token in (t.strip() for t in body.split(",")):
      if not token:
        continue
      m = _M_RANGE.match(token)
      if m:
        pair = (int(m.group(1)), int(m.group(2)))
      elif token.isdigit():
        pair = (int(token), int(token))
      else:
        raise DataError(f"gt_frame entry {i} of {path} holds {token!r}; expected ranges like "
                        f"[61:180] or [5:90, 140:200]")
      if max(pair) > _MAX_FRAME:
        raise DataError(f"gt_frame entry {i} of {path} holds {token!r}, beyond any video; "
                        f"expected frame ranges like [61:180]")
      pairs.append(pair)
    out.append(np.asarray(pairs, np.int64).reshape(-1, 2))
  if not out:
    raise DataError(f"{path} holds no `gt_frame = [...]` lines; expected UCSD's ground truth "
                    f"file (TestVideoFile{{end+1}}.gt_frame = [61:180];)")
  return out


def _read_image_mask(path: pathlib.Path) -> np.ndarray:
  """One mask image as bool [H, W]: any nonzero channel counts (1-bit, 0/1 or 0/255 files)."""
  image = video.decode_image(path, flags=cv2.IMREAD_UNCHANGED)
  return image.reshape(image.shape[:2] + (-1,)).any(axis=-1)


def _read_mask_folder(folder: pathlib.Path) -> list[np.ndarray]:
  masks = [_read_image_mask(f) for f in video.list_frame_files(folder)]
  shapes = {m.shape for m in masks}
  if len(shapes) > 1:
    raise DataError(f"the masks in {folder} have different sizes {sorted(shapes)}")
  return masks


def _read_vol_label(path: pathlib.Path) -> list[np.ndarray]:
  mat = _load_mat(path)
  if "volLabel" not in mat:
    keys = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(f"{path} has no `volLabel` variable (it holds {', '.join(keys) or 'nothing'})"
                    f"; expected Avenue's 1xT cell of per-frame masks")
  vol = mat["volLabel"]
  if vol.dtype != object or (vol.ndim == 2 and min(vol.shape) > 1) or vol.ndim > 2:
    raise DataError(f"`volLabel` in {path} is a {vol.dtype} {vol.shape} array; expected a 1xT "
                    f"cell with one HxW mask per frame")
  masks = [np.asarray(m) for m in vol.ravel()]
  if any(m.ndim != 2 for m in masks) or len({m.shape for m in masks}) > 1:
    raise DataError(f"`volLabel` in {path} must hold HxW masks of one size, got shapes "
                    f"{sorted({m.shape for m in masks})}")
  return [m != 0 for m in masks]


def _pixel_mask_array(path: pathlib.Path) -> np.ndarray:
  if path.is_dir():
    return np.stack(_read_mask_folder(path))
  if path.suffix.lower() in video.FRAME_SUFFIXES:  # one image's mask (MVTec AD)
    return _read_image_mask(path)[None]
  if path.suffix.lower() == ".mat":
    return np.stack(_read_vol_label(path))
  arr = _load_npy(path)
  if arr.ndim != 3:
    raise DataError(f"{path} holds a {arr.shape} array; expected [T, H, W] pixel masks")
  return arr != 0


def _flat_labels(arr: np.ndarray, path: pathlib.Path) -> np.ndarray:
  """A 0/1 label vector stored 1-D, 1xN or Nx1 (MNAD saves 1xN) as a flat array."""
  if arr.ndim == 2 and 1 in arr.shape:
    arr = arr.reshape(-1)
  if arr.ndim != 1:
    raise DataError(f"{path} holds a {arr.shape} array; expected one 0/1 label per frame "
                    f"(1-D or 1xN)")
  return video.check_labels(arr, len(arr), source=path)


def _mismatch(label_path, n_labels, source, n_frames, what="frame labels") -> DataError:
  return DataError(f"{label_path} gives {n_labels} {what} but {source} has {n_frames} frames; "
                   f"the labels must belong to this video (same frames, same order)")


# --------------------------------------------------------------------------- layout detection


def _markers(root: pathlib.Path) -> dict[str, list[str]]:
  """What each layout's tell-tale folders/files found under root (empty list = not found)."""
  found = {name: [] for name in LAYOUTS}
  if (root / "benchmark.json").is_file():
    found["synth"].append("benchmark.json")
  for split in SPLITS:
    d = root / split
    if d.is_dir() and next(d.glob("*.labels.npz"), None) is not None:
      found["synth"].append(f"{split}/*.labels.npz")
  for name in ("Train", "Test"):
    d = _child(root, name)
    if d is not None and any(re.fullmatch(rf"{name}\d+", p.name, re.I) for p in _subdirs(d)):
      found["ucsd"].append(f"{d.name}/{name}NNN/")
  for name in ("training_videos", "testing_videos"):
    if _child(root, name) is not None:
      found["avenue"].append(f"{name}/")
  for rel in ("testing/test_frame_mask", "training/videos"):
    if _child(root, rel) is not None:
      found["shanghaitech"].append(f"{rel}/")
  if not found["shanghaitech"]:  # ShanghaiTech also has testing/frames: it takes precedence
    for rel in ("training/frames", "testing/frames"):
      if _child(root, rel) is not None:
        found["frames"].append(f"{rel}/")
  if not found["synth"]:
    for split in SPLITS:
      d = root / split
      if d.is_dir() and next(d.glob(f"*/{JSON_LABELS}"), None) is not None:
        found["intervals"].append(f"{split}/<event>/{JSON_LABELS}")
  if _child(root, f"train/{MVTEC_NORMAL}") is not None:
    found["mvtec"].append(f"train/{MVTEC_NORMAL}/")
  if _child(root, "test") is not None and _child(root, "ground_truth") is not None:
    found["mvtec"].append("test/ with ground_truth/")
  return found


_LOOKED_FOR = ("synth: benchmark.json; ucsd: Train/TrainNNN/ or Test/TestNNN/; avenue: "
               "training_videos/ or testing_videos/; shanghaitech: testing/test_frame_mask/ or "
               "training/videos/; frames: training/frames/ or testing/frames/; intervals: "
               f"<train|val|test>/<event>/{JSON_LABELS}; mvtec: train/{MVTEC_NORMAL}/ or test/ "
               f"with ground_truth/")


def _plain_split_folders(root: pathlib.Path) -> bool:
  """Bare `<split>/<event>/` folders (an intervals dataset whose train/val need no JSON)."""
  for split in SPLITS:
    d = root / split
    if d.is_dir():
      for event in _subdirs(d)[:1]:
        if _video_files(event) or any(p.suffix.lower() in video.FRAME_SUFFIXES
                                      for p in event.iterdir()):
          return True
  return False


def detect_layout(root) -> str:
  """Which of `LAYOUTS` a dataset folder is in, from its folder structure alone.

  Args:
    root: the dataset folder (e.g. `UCSDped2/`, `avenue/`, `shanghaitech/`).

  Returns:
    One of `LAYOUTS`.

  Raises:
    DataError: root is missing or empty, nothing is recognised (the message lists what was
      looked for, and subfolders that are datasets), or several layouts match.
  """
  root = pathlib.Path(root)
  if not root.exists():
    raise DataError(f"dataset folder {root} does not exist")
  if not root.is_dir():
    raise DataError(f"{root} is not a folder; pass the dataset's root folder")
  if not any(not _is_hidden(p) for p in root.iterdir()):
    raise DataError(f"dataset folder {root} is empty; copy or extract the dataset into it")
  found = {k: v for k, v in _markers(root).items() if v}
  if not found and _plain_split_folders(root):
    found = {"intervals": ["<split>/<event>/ folders"]}
  if len(found) == 1:
    return next(iter(found))
  if found:
    listing = "; ".join(f"{k} ({', '.join(v)})" for k, v in found.items())
    raise DataError(f"{root} matches several dataset layouts: {listing}; pass layout= "
                    f"(one of {', '.join(LAYOUTS)}) or split it into separate folders")
  nested = []
  for sub in _subdirs(root):
    sub_found = [k for k, v in _markers(sub).items() if v]
    if len(sub_found) == 1:
      nested.append(f"{sub} ({sub_found[0]})")
  hint = f"; its subfolders are datasets, pass one of them: {', '.join(nested)}" if nested else ""
  raise DataError(f"no known dataset layout in {root}: looked for {_LOOKED_FOR}{hint}")


# --------------------------------------------------------------------------- indexing


def _dataset_hint(root: pathlib.Path) -> str:
  name = root.name.lower()
  return name[4:] if name.startswith("ucsd") else name


def _dataset_label_files(root: pathlib.Path, search: list[pathlib.Path],
                         layout: str) -> list[pathlib.Path]:
  """The dataset-level label files (.mat with gt, frame_labels_*.npy, UCSD .m): at most one of
  each kind, in order of precedence (.mat, .npy, .m); empty if there is none."""
  hint = _dataset_hint(root)
  kinds = {"mat": [], "npy": [], "m": []}
  for folder in dict.fromkeys(search):  # de-duplicated, in order
    if folder is None or not folder.is_dir():
      continue
    for p in sorted(folder.iterdir(), key=video._natural_key):
      if not p.is_file() or _is_hidden(p):
        continue
      suffix = p.suffix.lower()
      if suffix == ".mat" and "gt" in _mat_variables(p):
        kinds["mat"].append(p)
      elif suffix == ".npy" and p.name.lower().startswith("frame_labels"):
        kinds["npy"].append(p)
      elif suffix == ".m" and layout == "ucsd" and "gt_frame" in _read_text(p):
        kinds["m"].append(p)
  chosen = []
  for files in kinds.values():  # .mat, then .npy, then .m
    named = [p for p in files if p.stem.lower() == hint or p.stem.lower().endswith("_" + hint)
             or p.stem.lower() == f"ucsd{hint}"]
    files = named or files
    if len(files) > 1:
      raise DataError(f"several label files could hold the frame labels of {root}: "
                      f"{', '.join(map(str, files))}; pass labels_file= to choose one")
    chosen += files
  return chosen


def _read_text(path: pathlib.Path) -> str:
  try:
    return path.read_text(encoding="utf-8", errors="replace")
  except OSError as e:
    raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _labels_from_file(entries: list[VideoEntry], path: pathlib.Path, split_dir) -> list:
  """`_apply_dataset_labels` on copies: the labels `path` gives each entry, entries untouched."""
  copies = [dataclasses.replace(e) for e in entries]
  _apply_dataset_labels(copies, path, split_dir)
  return copies


def _apply_agreeing_label_files(entries, files: list[pathlib.Path], split_dir) -> None:
  """Labels from the first of several dataset-level files, if every other one agrees.

  Two files that could each be the ground truth (ano_pred's `ped2.mat` and MNAD's
  `frame_labels_ped2.npy`) must give the same labels: if they differ, which one published
  numbers used is unknowable here, so it is an error naming both and the first difference.
  """
  first, others = files[0], files[1:]
  _apply_dataset_labels(entries, first, split_dir)
  for other in others:
    try:
      theirs = _labels_from_file(entries, other, split_dir)
    except DataError as e:
      raise DataError(f"{first} and {other} could both hold the frame labels of {split_dir}, "
                      f"and {other} does not fit: {e}; remove the wrong file from the dataset "
                      f"folder, or pass labels_file= to choose one") from None
    for mine, their in zip(entries, theirs):
      if not np.array_equal(mine.labels, their.labels):
        differ = np.flatnonzero(mine.labels != their.labels)
        raise DataError(
            f"{first} and {other} disagree on the frame labels of video {mine.name} "
            f"({differ.size} frames differ, first at frame {differ[0]}: "
            f"{first.name} says {'anomalous' if mine.labels[differ[0]] else 'normal'}, "
            f"{other.name} says {'anomalous' if their.labels[differ[0]] else 'normal'}); "
            f"remove the wrong file from the dataset folder, or pass labels_file= to choose one")
  for e in entries:
    e.meta = {**e.meta, "label_files_agreeing": [str(p) for p in others]} if others else e.meta


def _apply_dataset_labels(entries: list[VideoEntry], path: pathlib.Path, split_dir) -> None:
  """Fills every entry's labels from one dataset-level file (videos in natural order)."""
  names = [e.name for e in entries]
  if sorted(names) != names:
    warnings.warn(f"{path} lists videos in sorted order; the videos of {split_dir} are assigned "
                  f"in natural order ({', '.join(names[:4])}, ...), which differs from a plain "
                  f"sort here: check that the labels line up", stacklevel=5)
  suffix = path.suffix.lower()
  if suffix == ".npy":
    flat = _flat_labels(_load_npy(path), path)
    total = sum(e.num_frames for e in entries)
    if len(flat) != total:
      counts = ", ".join(f"{e.name}: {e.num_frames}" for e in entries[:6])
      more = ", ..." if len(entries) > 6 else ""
      raise DataError(f"{path} gives {len(flat)} frame labels but the {len(entries)} videos of "
                      f"{split_dir} have {total} frames in all ({counts}{more}); the file must "
                      f"concatenate exactly these videos' labels in sorted order")
    start = 0
    for e in entries:
      e.labels, e.label_source = flat[start:start + e.num_frames].copy(), path
      start += e.num_frames
    return
  if suffix == ".mat":
    per_video = _read_gt_mat(path)
  elif suffix == ".m":
    per_video = _read_gt_m(path)
  else:
    raise DataError(f"labels file {path}: unsupported type {path.suffix!r}; use a .mat (gt), "
                    f".npy (frame_labels) or UCSD .m file")
  if len(per_video) != len(entries):
    raise DataError(f"{path} holds events for {len(per_video)} videos but {split_dir} has "
                    f"{len(entries)} videos; the file must list exactly these videos in sorted "
                    f"order")
  for e, events in zip(entries, per_video):
    source = f"{path} (video {e.name})"
    e.intervals = _normalize_intervals(events, e.num_frames, one_indexed=True, inclusive=True,
                                       source=source)
    e.labels = intervals_to_labels(e.intervals, e.num_frames)
    e.label_source = path


def _normal_labels(entries: list[VideoEntry]) -> None:
  for e in entries:
    e.labels = np.zeros(e.num_frames, bool)
    e.intervals = np.zeros((0, 2), np.int64)


def _finish_test_labels(entries, root, split_dir, *, labels_file, search, layout,
                        per_video, require_labels) -> None:
  """Labels for test entries: labels_file, else a dataset-level file, else `per_video(entry)`."""
  path = pathlib.Path(labels_file) if labels_file is not None else None
  if path is not None and not path.is_file():
    raise DataError(f"labels file {path} does not exist")
  if path is not None:
    _apply_dataset_labels(entries, path, split_dir)
    return
  files = _dataset_label_files(root, search, layout)
  if files:
    _apply_agreeing_label_files(entries, files, split_dir)
    return
  missing = []
  for e in entries:
    per_video(e)
    if e.labels is None:
      missing.append(e.name)
  if missing and require_labels:
    raise DataError(f"no frame labels for {len(missing)} test video(s) of {root} "
                    f"({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}): looked "
                    f"for labels_file=, a .mat with `gt` or frame_labels_*.npy in "
                    f"{', '.join(str(s) for s in dict.fromkeys(search) if s is not None)}, and "
                    f"{_PER_VIDEO_HINT[layout]}; add one, or pass require_labels=False")


_PER_VIDEO_HINT = {
    "ucsd": "a TestNNN_gt/ mask folder or a Test/UCSDped*.m file",
    "avenue": "testing_label_mask/<n>_label.mat",
    "shanghaitech": "testing/test_frame_mask/<video>.npy",
    "frames": "testing/test_frame_mask/<video>.npy",
}


def _require_dir(root: pathlib.Path, rel: str, layout: str, split: str) -> pathlib.Path:
  d = _child(root, rel)
  if d is None:
    raise DataError(f"{root}/{rel} is missing: the {layout} layout keeps its {split} videos "
                    f"there")
  return d


def _check_split(layout: str, split: str, root: pathlib.Path) -> None:
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
  if layout in _SPLIT_DIRS and split not in _SPLIT_DIRS[layout]:
    raise DataError(f"the {layout} dataset at {root} has no {split} split (only "
                    f"{' and '.join(_SPLIT_DIRS[layout])}); hold out some train videos instead")


def _entries_from_folders(folders, layout, split) -> list[VideoEntry]:
  return [VideoEntry(name=f.name, source=f, labels=None, num_frames=_count_frames(f),
                     layout=layout, split=split) for f in folders]


def _nonempty(items, where: pathlib.Path, what: str):
  if not items:
    raise DataError(f"{where} holds no {what}; copy the dataset's videos there")
  return items


def _index_ucsd(root, split, labels_file, require_labels):
  split_dir = _require_dir(root, _SPLIT_DIRS["ucsd"][split], "ucsd", split)
  folders = [d for d in _subdirs(split_dir) if not d.name.lower().endswith("_gt")]
  entries = _entries_from_folders(_nonempty(folders, split_dir, "video folders"), "ucsd", split)
  for e in entries:
    gt = split_dir / f"{e.name}_gt"
    e.mask_source = gt if gt.is_dir() else None
  if split == "train":
    _normal_labels(entries)
    return entries

  def per_video(e):
    if e.mask_source is not None:
      masks = _read_mask_folder(e.mask_source)
      if len(masks) != e.num_frames:
        raise _mismatch(e.mask_source, len(masks), e.source, e.num_frames, "mask images")
      e.labels = np.array([m.any() for m in masks])
      e.label_source = e.mask_source

  _finish_test_labels(entries, root, split_dir, labels_file=labels_file,
                      search=[root, split_dir], layout="ucsd", per_video=per_video,
                      require_labels=require_labels)
  return entries


def _avenue_mask_file(root: pathlib.Path, name: str) -> pathlib.Path | None:
  stems = [f"{int(name)}_label", f"{name}_label"] if name.isdigit() else [f"{name}_label"]
  for rel in ("testing_label_mask", "ground_truth_demo/testing_label_mask"):
    d = _child(root, rel)
    for stem in stems:
      if d is not None and (d / f"{stem}.mat").is_file():
        return d / f"{stem}.mat"
  return None


def _index_avenue(root, split, labels_file, require_labels):
  split_dir = _require_dir(root, _SPLIT_DIRS["avenue"][split], "avenue", split)
  files = _nonempty(_video_files(split_dir), split_dir,
                    f"videos ({', '.join(video.VIDEO_SUFFIXES)})")
  entries = [VideoEntry(name=f.stem, source=f, labels=None, num_frames=_count_frames(f),
                        layout="avenue", split=split) for f in files]
  if split == "train":
    _normal_labels(entries)
    return entries
  for e in entries:
    e.mask_source = _avenue_mask_file(root, e.name)

  def per_video(e):
    if e.mask_source is not None:
      masks = _read_vol_label(e.mask_source)
      if len(masks) != e.num_frames:
        raise _mismatch(e.mask_source, len(masks), e.source, e.num_frames, "volLabel masks")
      e.labels = np.array([m.any() for m in masks])
      e.label_source = e.mask_source

  _finish_test_labels(entries, root, split_dir, labels_file=labels_file, search=[root],
                      layout="avenue", per_video=per_video, require_labels=require_labels)
  return entries


def _per_video_npy(folder: pathlib.Path | None):
  def per_video(e):
    path = folder / f"{e.name}.npy" if folder is not None else None
    if path is not None and path.is_file():
      labels = _flat_labels(_load_npy(path), path)
      if len(labels) != e.num_frames:
        raise _mismatch(path, len(labels), e.source, e.num_frames)
      e.labels, e.label_source = labels, path
  return per_video


def _index_shanghaitech(root, split, labels_file, require_labels):
  if split == "train":
    frames_dir = _child(root, "training/frames")
    if frames_dir is not None and _subdirs(frames_dir):  # decoded frames: exact, preferred
      entries = _entries_from_folders(_subdirs(frames_dir), "shanghaitech", split)
    else:
      videos_dir = _require_dir(root, "training/videos", "shanghaitech", split)
      files = _nonempty(_video_files(videos_dir), videos_dir, "videos")
      entries = [VideoEntry(name=f.stem, source=f, labels=None, num_frames=_count_frames(f),
                            layout="shanghaitech", split=split) for f in files]
    _normal_labels(entries)
    return entries
  split_dir = _require_dir(root, "testing/frames", "shanghaitech", split)
  entries = _entries_from_folders(_nonempty(_subdirs(split_dir), split_dir, "video folders"),
                                  "shanghaitech", split)
  pixel_dir = _child(root, "testing/test_pixel_mask")
  for e in entries:
    mask = pixel_dir / f"{e.name}.npy" if pixel_dir is not None else None
    e.mask_source = mask if mask is not None and mask.is_file() else None
  _finish_test_labels(entries, root, split_dir, labels_file=labels_file,
                      search=[root, _child(root, "testing")], layout="shanghaitech",
                      per_video=_per_video_npy(_child(root, "testing/test_frame_mask")),
                      require_labels=require_labels)
  return entries


def _index_frames(root, split, labels_file, require_labels):
  split_dir = _require_dir(root, _SPLIT_DIRS["frames"][split], "frames", split)
  entries = _entries_from_folders(_nonempty(_subdirs(split_dir), split_dir, "video folders"),
                                  "frames", split)
  if split == "train":
    _normal_labels(entries)
    return entries
  _finish_test_labels(entries, root, split_dir, labels_file=labels_file,
                      search=[root, _child(root, "testing")], layout="frames",
                      per_video=_per_video_npy(_child(root, "testing/test_frame_mask")),
                      require_labels=require_labels)
  return entries


def _read_labels_json(path: pathlib.Path, num_frames: int) -> np.ndarray:
  """labels.json -> validated 0-indexed end-exclusive [K, 2] ranges (schema in the module doc)."""
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DataError(f"cannot read {path} as JSON ({type(e).__name__}: {e}); expected "
                    f'{{"anomalous_frames": [[start, end], ...]}}') from None
  one_indexed = inclusive = False
  if isinstance(data, dict):
    unknown = sorted(set(data) - set(_JSON_KEYS))
    if unknown:
      raise DataError(f"{path} has unknown key(s) {', '.join(unknown)}; allowed: "
                      f"{', '.join(_JSON_KEYS)}")
    if "anomalous_frames" not in data:
      raise DataError(f'{path} lacks "anomalous_frames": list the anomalous ranges as '
                      f'[[start, end], ...] (an empty list for a normal event)')
    for key in ("one_indexed", "inclusive"):
      if not isinstance(data.get(key, False), bool):
        raise DataError(f'{path}: "{key}" must be true or false, got {data[key]!r}')
    one_indexed, inclusive = data.get("one_indexed", False), data.get("inclusive", False)
    declared = data.get("num_frames")
    if declared is not None and (isinstance(declared, bool) or declared != num_frames):
      raise DataError(f'{path} says "num_frames": {declared!r} but its event folder has '
                      f"{num_frames} frames; the labels were written for other footage")
    intervals = data["anomalous_frames"]
  elif isinstance(data, list):
    intervals = data
  else:
    raise DataError(f'{path} must hold {{"anomalous_frames": [[start, end], ...]}} or a bare '
                    f"list of ranges, got a {type(data).__name__}")
  if not isinstance(intervals, list) or not all(
      isinstance(r, list) and len(r) == 2
      and all(isinstance(v, int) and not isinstance(v, bool) for v in r) for r in intervals):
    raise DataError(f"{path}: anomalous_frames must be a list of [start, end] integer pairs, "
                    f"got {intervals!r}")
  return _normalize_intervals(intervals, num_frames, one_indexed=one_indexed,
                              inclusive=inclusive, source=path)


def _event_source(folder: pathlib.Path) -> pathlib.Path:
  videos = _video_files(folder)
  has_frames = any(p.is_file() and p.suffix.lower() in video.FRAME_SUFFIXES
                   and not _is_hidden(p) for p in folder.iterdir())
  if len(videos) > 1 or (videos and has_frames):
    what = ", ".join(p.name for p in videos) + (" and frame images" if has_frames else "")
    raise DataError(f"event folder {folder} holds {what}; keep one video file or one set of "
                    f"frames per event")
  if videos:
    return videos[0]
  if not has_frames:
    raise DataError(f"event folder {folder} holds no video ({', '.join(video.VIDEO_SUFFIXES)}) "
                    f"or frame images ({', '.join(video.FRAME_SUFFIXES)})")
  return folder


def _index_intervals(root, split, labels_file, require_labels):
  if labels_file is not None:
    raise DataError(f"labels_file= does not apply to the intervals layout: each event of "
                    f"{root} has its own {JSON_LABELS}")
  split_dir = root / split
  if not split_dir.is_dir():
    raise DataError(f"{split_dir} is missing: an intervals dataset keeps its {split} events in "
                    f"<root>/{split}/<event>/")
  entries = []
  for folder in _nonempty(_subdirs(split_dir), split_dir, "event folders"):
    source = _event_source(folder)
    e = VideoEntry(name=folder.name, source=source, labels=None,
                   num_frames=_count_frames(source), layout="intervals", split=split)
    path = folder / JSON_LABELS
    if path.is_file():
      e.intervals = _read_labels_json(path, e.num_frames)
      e.labels = intervals_to_labels(e.intervals, e.num_frames)
      e.label_source = path
    elif split != "test":
      _normal_labels([e])  # train/val events are normal footage by definition
    elif require_labels:
      raise DataError(f"{path} is missing: every test event needs one, e.g. "
                      f'{{"anomalous_frames": [[start, end]]}} (0-indexed, end-exclusive) or '
                      f'{{"anomalous_frames": []}} for a normal event')
    entries.append(e)
  return entries


def _index_synth(root, split, labels_file, require_labels):
  del require_labels  # the benchmark always has labels
  if labels_file is not None:
    raise DataError(f"labels_file= does not apply to the synthetic benchmark {root}: its labels "
                    f"are in <split>/<clip>.labels.npz")
  meta = clips.read_meta(root)
  if split not in synth.SPLITS:
    raise DataError(f"unknown split {split!r} for {root}: choose one of {', '.join(synth.SPLITS)}")
  entries = []
  for clip in meta["clips"]:
    if clip.get("split") != split:
      continue
    folder = root / split / clip["name"]
    if not folder.is_dir():
      raise DataError(f"clip folder {folder} is missing: delete {root} and render it again")
    labels_path = root / split / f"{clip['name']}.labels.npz"
    arrays = clips.read_labels(labels_path, root)
    e = VideoEntry(name=clip["name"], source=folder, labels=arrays["anomaly"].astype(bool),
                   num_frames=_count_frames(folder), label_source=labels_path, layout="synth",
                   split=split, meta=dict(clip))
    if len(e.labels) != e.num_frames:
      raise _mismatch(labels_path, len(e.labels), folder, e.num_frames)
    entries.append(e)
  return entries


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted((p for p in folder.iterdir() if p.is_file() and not _is_hidden(p)
                 and p.suffix.lower() in video.FRAME_SUFFIXES), key=video._natural_key)


def _mvtec_mask(root: pathlib.Path, defect: str, image: pathlib.Path) -> pathlib.Path:
  """`ground_truth/<defect>/<stem>_mask.png` (any `FRAME_SUFFIXES` suffix) of a defect image."""
  folder = _child(root, f"ground_truth/{defect}")
  if folder is not None:
    for suffix in dict.fromkeys((".png", image.suffix.lower(), *video.FRAME_SUFFIXES)):
      for candidate in (folder / f"{image.stem}_mask{suffix}",
                        folder / f"{image.stem}_mask{suffix.upper()}"):
        if candidate.is_file():
          return candidate
  expected = (folder or root / "ground_truth" / defect) / f"{image.stem}_mask.png"
  raise DataError(f"{expected} is missing: every MVTec AD defect image needs its mask (for "
                  f"{image}); restore it from the dataset archive or move the image out of "
                  f"test/{defect}/")


def _index_mvtec(root, split, labels_file, require_labels):
  del require_labels  # the folder names are the labels: every image has one
  if labels_file is not None:
    raise DataError(f"labels_file= does not apply to the mvtec layout {root}: an image's label "
                    f"is its folder (test/{MVTEC_NORMAL}/ normal, test/<defect>/ anomalous)")
  split_dir = _require_dir(root, _SPLIT_DIRS["mvtec"][split], "mvtec", split)
  if split == "train":
    good = _child(split_dir, MVTEC_NORMAL)
    if good is None:
      raise DataError(f"{split_dir / MVTEC_NORMAL} is missing: an MVTec AD category keeps its "
                      f"normal training images in train/{MVTEC_NORMAL}/")
    folders = [good]
  else:
    folders = _nonempty(_subdirs(split_dir), split_dir,
                        f"defect folders ({MVTEC_NORMAL}/, <defect>/)")
  entries = []
  for folder in folders:
    defect = folder.name
    normal = defect.lower() == MVTEC_NORMAL
    images = _image_files(folder)
    if not images:
      raise DataError(f"{folder} holds no images ({', '.join(video.FRAME_SUFFIXES)}); copy the "
                      f"category's images there or remove the empty folder")
    for image in images:
      entries.append(VideoEntry(
          name=f"{defect}/{image.stem}", source=image, labels=np.array([not normal]),
          mask_source=None if normal else _mvtec_mask(root, defect, image), num_frames=1,
          label_source=folder if split == "test" else None, intervals=None, layout="mvtec",
          split=split, meta={"defect": defect}))
  return entries


_INDEXERS = {
    "ucsd": _index_ucsd, "avenue": _index_avenue, "shanghaitech": _index_shanghaitech,
    "frames": _index_frames, "intervals": _index_intervals, "synth": _index_synth,
    "mvtec": _index_mvtec,
}


def _resolve(root, layout) -> tuple[pathlib.Path, str]:
  root = pathlib.Path(root)
  if layout is None:
    return root, detect_layout(root)
  if layout not in LAYOUTS:
    raise DataError(f"unknown dataset layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
  if not root.is_dir():
    raise DataError(f"dataset folder {root} does not exist or is not a folder")
  return root, layout


def index_dataset(root, *, layout: str | None = None, split: str = "test",
                  labels_file=None, require_labels: bool = True) -> list[VideoEntry]:
  """Lists a split's videos with their frame labels, without decoding the videos.

  Frames are counted by listing frame folders or from a video's header (decoded only where the
  header has no count); label files are read and checked against those counts. `load_clip`
  checks again against the decoded frames.

  Args:
    root: the dataset folder.
    layout: one of `LAYOUTS`; None detects it (`detect_layout`).
    split: `train`, `val` or `test` (mapped to `Train`/`Test`, `training_videos`/...,
      `training`/`testing`, `train`/`test`); only `intervals` and `synth` have `val`.
    labels_file: a dataset-level label file to use instead of searching the root (module
      docstring, "Label files"); public layouts only.
    require_labels: with False, a test video without any label source gets `labels=None`
      instead of an error.

  Returns:
    The videos in natural order (`Test2` before `Test10`).

  Raises:
    DataError: unknown layout or split, missing folders or label files, unreadable label
      files, label counts that differ from frame counts, or ranges outside a video. Messages
      name the files and both counts.
  """
  root, layout = _resolve(root, layout)
  _check_split(layout, split, root)
  return _INDEXERS[layout](root, split, labels_file, require_labels)


# --------------------------------------------------------------------------- loading


def load_clip(entry: VideoEntry, *, size: tuple[int, int] | None = None,
              grayscale: bool = False) -> Clip:
  """Decodes one indexed video into a `Clip` and checks its labels against the real frames.

  Args:
    entry: from `index_dataset`.
    size: (H, W) to resize frames to; None keeps the stored size.
    grayscale: 1-channel frames instead of RGB.

  Returns:
    A `Clip` with `labels` (None only if the entry has none), `pixel_masks` where the dataset
    has them (module docstring, "Pixel masks"; resized to the frames' size) and `meta` =
    {layout, split, source, label_source, mask_source} (plus the benchmark.json entry for synth
    clips, whose distractor flags, workspace masks, class maps and frame types are filled in
    too; MVTec AD clips add `defect` and their frame type).

  Raises:
    DataError: the video cannot be decoded, or its frame count differs from the labels' or
      the pixel masks' (naming both files and both counts).
  """
  if entry.layout == "mvtec":
    frames = _read_image(entry.source, size=size, grayscale=grayscale)
  else:
    frames = video.read_frames(entry.source, size=size, grayscale=grayscale)
  t = len(frames)
  labels = entry.labels
  if labels is not None and len(labels) != t:
    if entry.intervals is not None:
      # Ranges define the labels; only the header's count was off. Out-of-range still fails.
      labels = intervals_to_labels(entry.intervals, t,
                                   source=entry.label_source or entry.source)
    else:
      raise _mismatch(entry.label_source, len(labels), entry.source, t)
  meta = {"layout": entry.layout, "split": entry.split, "source": str(entry.source),
          "label_source": str(entry.label_source) if entry.label_source else None,
          "mask_source": str(entry.mask_source) if entry.mask_source else None}
  if entry.meta.get("label_files_agreeing"):
    meta["label_files_agreeing"] = entry.meta["label_files_agreeing"]
  labels = None if labels is None else np.asarray(labels, bool).copy()
  distractors = workspace = classes = frame_types = None
  pixel_masks = _clip_pixel_masks(entry, t, frames.shape[1:3])
  if entry.layout == "synth":
    meta = {**entry.meta, **meta}
    root = entry.source.parent.parent
    arrays = clips.read_labels(entry.label_source, root)
    distractors, workspace = arrays["distractors"].astype(bool), arrays["workspace_mask"]
    classes = clips.read_classes(arrays, t, entry.label_source, root, size)
    if size is not None and tuple(size) != workspace.shape[1:]:
      workspace = clips.resize_nearest(workspace, tuple(size))
    bench = clips.read_meta(root)
    frame_types = clips._frame_types(  # pylint: disable=protected-access
        arrays["anomaly_type_index"], labels, bench, entry.label_source, root)
    pixel_masks = clips.synth_pixel_masks(classes, labels, clips.synth_scene(bench, root))
  elif entry.layout == "mvtec":
    defect = entry.meta["defect"]
    meta["defect"] = defect
    frame_types = np.array([defect if labels[0] else ""])
    if pixel_masks is None:  # a good image: known to be normal everywhere
      pixel_masks = np.zeros((t, *frames.shape[1:3]), bool)
  return Clip(name=entry.name, frames=frames, labels=labels, distractors=distractors,
              workspace_mask=workspace, meta=meta, frame_types=frame_types, classes=classes,
              pixel_masks=pixel_masks)


def _read_image(path: pathlib.Path, *, size, grayscale: bool) -> np.ndarray:
  """One image file as a one-frame clip, uint8 [1, H, W, C], converted like any frame."""
  # pylint: disable-next=protected-access
  prep = video.FramePrep(size=size, roi=None, grayscale=grayscale, source=path)
  return prep(video.decode_image(path), path)[None]


def _clip_pixel_masks(entry: VideoEntry, num_frames: int | None,
                      size: tuple[int, int] | None) -> np.ndarray | None:
  """The entry's mask files as bool [T, H, W] at `size` (None: stored), checked against
  `num_frames` (None: not checked); None when it has none."""
  if entry.mask_source is None:
    return None
  masks = _pixel_mask_array(entry.mask_source)
  if num_frames is not None and len(masks) != num_frames:
    raise _mismatch(entry.mask_source, len(masks), entry.source, num_frames, "pixel masks")
  if size is not None and tuple(size) != masks.shape[1:]:
    masks = clips.resize_nearest(masks, tuple(size))
  return masks


def load_pixel_masks(entry: VideoEntry, *, size: tuple[int, int] | None = None
                     ) -> np.ndarray | None:
  """The ground-truth anomaly masks of a test video, where the dataset has them.

  Sources: UCSD `TestNNN_gt/*.bmp`, Avenue `N_label.mat` (`volLabel`), ShanghaiTech
  `test_pixel_mask/<video>.npy` (`[T, H, W]`), MVTec AD `ground_truth/<defect>/<stem>_mask.png`
  (`[1, H, W]`). Any nonzero value is anomalous. `load_clip` puts them in `Clip.pixel_masks`
  (and gives MVTec AD's good images, which have no mask file, all-False masks).

  Args:
    entry: from `index_dataset`.
    size: (H, W) to resize to (nearest neighbour, matching `load_clip(size=...)`); None keeps
      the stored size.

  Returns:
    bool [T, H, W], or None when the video has no pixel masks.

  Raises:
    DataError: unreadable mask files, or a mask count that differs from the frame count.
  """
  size = video._check_size(size)  # pylint: disable=protected-access
  return _clip_pixel_masks(entry, entry.num_frames, size)


def load_dataset(root, *, layout: str | None = None, split: str = "test",
                 size: tuple[int, int] | None = None, grayscale: bool = False,
                 labels_file=None, require_labels: bool = True) -> list[Clip]:
  """Loads a split of any supported dataset into memory.

  Args:
    root: the dataset folder.
    layout: one of `LAYOUTS`; None detects it.
    split: `train`, `val` or `test`.
    size: (H, W) to resize frames to; None keeps the stored size.
    grayscale: 1-channel frames instead of RGB.
    labels_file: see `index_dataset`.
    require_labels: see `index_dataset`.

  Returns:
    The split's clips in natural order (synth: benchmark.json order, via
    `clips.load_synthetic`), with `pixel_masks` where the dataset has them (`load_clip`).

  Raises:
    DataError: as `index_dataset` and `load_clip`.
  """
  root, layout = _resolve(root, layout)
  if layout == "synth":
    if labels_file is not None:
      raise DataError(f"labels_file= does not apply to the synthetic benchmark {root}")
    return clips.load_synthetic(root, split, size=size, grayscale=grayscale)
  entries = index_dataset(root, layout=layout, split=split, labels_file=labels_file,
                          require_labels=require_labels)
  return [load_clip(e, size=size, grayscale=grayscale) for e in entries]

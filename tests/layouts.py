"""Small helpers shared by tests: PyTorch parity (no torch import: duck-typed tensors) and tiny
public-dataset layouts written into a test's tmp_path."""

import pathlib

import cv2
import numpy as np


def channels_last(t) -> np.ndarray:
  """A torch tensor with channels second (NCHW, NCDHW) -> numpy, channels last (NHWC, NDHWC)."""
  a = t.detach().numpy()
  return a.transpose(0, *range(2, a.ndim), 1)


def leaf(tree, path) -> np.ndarray:
  """The array at `path` (a sequence of keys) of a nested dict."""
  for name in path:
    tree = tree[name]
  return np.asarray(tree)


# --------------------------------------------------------------------------- MVTec AD

MVTEC_HW = (12, 16)   # (H, W) of the fixture's images: not square, so H/W swaps show
# The fixture's test images: name -> (grey level, mask box (row0, row1, col0, col1) or None).
MVTEC_TEST = {
    "crack/000": (110, (2, 6, 3, 9)),
    "crack/001": (130, (6, 10, 8, 14)),
    "good/000": (150, None),
    "good/001": (170, None),
    "scratch/000": (190, (0, 3, 0, 16)),
}
MVTEC_TRAIN = {"good/000": 20, "good/001": 40, "good/002": 60}


def mvtec_mask(name: str) -> np.ndarray:
  """The expected bool [H, W] mask of a fixture test image (all False for good ones)."""
  mask = np.zeros(MVTEC_HW, bool)
  box = MVTEC_TEST[name][1]
  if box is not None:
    mask[box[0]:box[1], box[2]:box[3]] = True
  return mask


def mvtec_image(level: int, *, gray: bool) -> np.ndarray:
  """A flat image of one grey level, with a colour cast unless `gray` (cv2's BGR order)."""
  if gray:
    return np.full(MVTEC_HW, level, np.uint8)
  return np.stack([np.full(MVTEC_HW, level + d, np.uint8) for d in (0, 5, 10)], axis=-1)


def write_mvtec(root: pathlib.Path, *, gray: bool = False) -> pathlib.Path:
  """One MVTec AD category as distributed: train/good (3), test/good (2), test/crack (2) and
  test/scratch (1) with their ground_truth/<defect>/<stem>_mask.png (0/255)."""
  images = {f"train/{k}": v for k, v in MVTEC_TRAIN.items()}
  images.update({f"test/{k}": v[0] for k, v in MVTEC_TEST.items()})
  for rel, level in images.items():
    path = root / f"{rel}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mvtec_image(level, gray=gray))
  for name, (_, box) in MVTEC_TEST.items():
    if box is not None:
      defect, stem = name.split("/")
      path = root / "ground_truth" / defect / f"{stem}_mask.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      assert cv2.imwrite(str(path), mvtec_mask(name).astype(np.uint8) * 255)
  return root

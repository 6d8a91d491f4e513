"""Self-made defects for self-supervised inspection: CutPaste, CutPaste-scar and CropLiq.

Host-side (NumPy + OpenCV) transforms of one uint8 image `[H, W, C]` (C = 1 or 3, RGB), for
training a normal-vs-defect classifier on defect-free images only (CutPaste, Li et al.,
CVPR 2021; CropLiq, paper 002). Each returns a new image and a bool `[H, W]` mask of the
defect, and is deterministic given its random generator or integer seed; e.g. in a grain
pipeline `ds.random_map(lambda x, rng: apply(rng.choice(KINDS), x, rng), seed=seed)`.

Kinds (`KINDS`):

- "cutpaste" (`cutpaste`): a rectangle of area U[0.02, 0.15] of the image with a log-uniform
  aspect ratio (width / height) in [0.3, 1 / 0.3] is cut from a random place, colour-jittered
  and pasted at another random place. The reference code (Runinho/pytorch-cutpaste) draws the
  aspect ratio uniformly in [0.3, 3.3], which makes over three quarters of the patches wide;
  the log-uniform draw makes tall and wide equally likely, as the paper's (0.3, 1) ∪ (1, 3.3)
  intends.
- "scar" (`scar`): a thin patch of width U[2, 16] and height U[10, 25] px, colour-jittered,
  rotated by U[-45°, 45°] and pasted at a random place (the reference `CutPasteScar`).
- "cropliq" (`cropliq`, paper 002): a random rectangle inside the object's box (side
  fractions U[0.1, 0.5] of the box's sides, drawn independently) is "liquified" (`liquify`):
  warped by a smooth random displacement field that is zero on the rectangle's border, so
  the defect has no seam (a dent, bulge or twist of the object itself). The paper gives no
  numbers for the distortion; see `liquify` for the field and `STRENGTH` for the default.

Colour jitter (cutpaste and scar) follows torchvision's `ColorJitter(j, j, j, j)` with the
default j = 0.1: brightness, contrast and saturation factors U[1 - j, 1 + j] and a hue shift
U[-j, j] of a full turn, applied in a random order, each clipped to [0, 1]: brightness
`x * b`; contrast `x * c + mean(gray) * (1 - c)` (mean over the patch); saturation
`x * s + gray * (1 - s)`, gray = ITU-R 601 luma `0.299 R + 0.587 G + 0.114 B`; hue by OpenCV's
float HSV. Saturation and hue are no-ops on 1-channel images. Unlike torchvision, which rounds
to uint8 after every stage, the stages run in float32 and round once at the end.

`box` (x0, y0, x1, y1), in pixels, half-open (columns x0 <= x < x1, rows y0 <= y < y1),
limits every kind to the object's area (paper 002 finds it with YOLO-OBB: a defect cut from or
pasted onto the background is not a defect of the product, yet would be labelled one). For
cutpaste and scar, the patch is then cut from and pasted into the box, and cutpaste's area
fractions are of the box. None = the whole image.

The patch sizes are rounded to whole pixels and clipped to the box, so for boxes smaller than
a scar, or extreme area and aspect ranges, a patch can be smaller than drawn.

Masks: cutpaste marks the pasted rectangle, scar its pasted rotated shape (rotated alpha
>= 0.5); outside the mask both leave the image untouched. cropliq changes only the inside of
its rectangle (border excluded) and marks the pixels that moved by more than 0.5 px; pixels
that moved less change slightly but are not marked.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np

__all__ = ["KINDS", "STRENGTH", "cutpaste", "scar", "liquify", "cropliq", "apply"]

KINDS = ("cutpaste", "scar", "cropliq")

# Default largest displacement of `liquify`, as a fraction of the rectangle's shorter side
# (drawn uniformly). Paper 002 gives no number ("depending on the degree of distortion"): 5-15 %
# is 1-10 px on the 13-64 px rectangles of a 128 px box, a visible dent or bulge, and the
# field's slope (about 6x the fraction) then mostly stays under the one-to-one cap, so the cap
# seldom overrides the draw.
STRENGTH = (0.05, 0.15)

_MIN_SIDE = 8        # the smallest image or box side accepted (px)
_MIN_RECT = 4        # the smallest liquified rectangle side: >= 2 pixels inside the border
_MAX_SLOPE = 0.9     # Jacobian norm cap of the displacement: < 1 keeps the warp one-to-one
# px: the drawn largest displacement is at least this, so cropliq's mask is not empty (after
# the slope cap, >= 0.8 px in 20 000 draws on 8-12 px rectangles).
_MIN_SHIFT = 1.0
_MOVED = 0.5         # px: a pixel displaced by more than this is in cropliq's mask
_FIELD_GRID = 3      # control points per axis of liquify's random field
_LUMA = np.asarray((0.299, 0.587, 0.114), np.float32)


# ---------------------------------------------------------------------------------------------
# Checks.


def _check_image(image):
  if not isinstance(image, np.ndarray):
    raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
  if image.dtype != np.uint8:
    raise ValueError(f"image must be uint8, got dtype {image.dtype}")
  if image.ndim != 3 or image.shape[2] not in (1, 3):
    raise ValueError(f"image must be [H, W, C] with C = 1 or 3, got shape {image.shape}")
  if min(image.shape[:2]) < _MIN_SIDE:
    raise ValueError(f"image must be at least {_MIN_SIDE} x {_MIN_SIDE} pixels, got shape "
                     f"{image.shape}")
  return image


def _check_rng(rng):
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
    return np.random.default_rng(int(rng))
  raise ValueError(f"rng must be a np.random.Generator or an integer seed >= 0, got {rng!r}")


def _is_real(x):
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_range(value, name, *, low, high, positive=False):
  """(lo, hi) floats with low <= lo <= hi <= high (and lo > 0 when `positive`)."""
  try:
    lo, hi = value
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
  if not (_is_real(lo) and _is_real(hi)):
    raise ValueError(f"{name} must be a pair of finite numbers, got {value!r}")
  if lo > hi:
    raise ValueError(f"{name} must be ordered (low <= high), got {value!r}")
  if lo < low or hi > high or (positive and lo <= 0):
    bound = f"({low}, {high}]" if positive else f"[{low}, {high}]"
    raise ValueError(f"{name} must lie in {bound}, got {value!r}")
  return float(lo), float(hi)


def _check_jitter(jitter):
  if not _is_real(jitter) or not 0 <= jitter <= 0.5:
    raise ValueError(f"jitter must be a number in [0, 0.5], got {jitter!r}")
  return float(jitter)


def _check_rect(rect, name, shape, min_side):
  """(x0, y0, x1, y1) ints inside an image of `shape`, sides >= min_side."""
  h, w = shape[:2]
  try:
    coords = tuple(rect)
  except TypeError:
    raise ValueError(f"{name} must be (x0, y0, x1, y1) in pixels, got {rect!r}") from None
  if len(coords) != 4 or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool)
                                 for c in coords):
    raise ValueError(f"{name} must be four integers (x0, y0, x1, y1) in pixels, got {rect!r}")
  x0, y0, x1, y1 = (int(c) for c in coords)
  if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
    raise ValueError(f"{name} {rect!r} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= "
                     f"{h} (the image is {h} x {w})")
  if min(x1 - x0, y1 - y0) < min_side:
    raise ValueError(f"{name} {rect!r} must be at least {min_side} x {min_side} pixels")
  return x0, y0, x1, y1


def _check_box(box, shape):
  """The object's box as (x0, y0, x1, y1) ints; None = the whole image."""
  if box is None:
    return 0, 0, shape[1], shape[0]
  return _check_rect(box, "box", shape, _MIN_SIDE)


# ---------------------------------------------------------------------------------------------
# Shared pieces.


def _color_jitter(patch, rng, jitter):
  """uint8 [h, w, C] -> uint8 [h, w, C], torchvision ColorJitter(j, j, j, j) (module doc)."""
  factors = rng.uniform(1 - jitter, 1 + jitter, size=3)  # brightness, contrast, saturation
  hue = rng.uniform(-jitter, jitter)
  order = rng.permutation(4)
  x = patch.astype(np.float32) / 255
  color = x.shape[2] == 3
  for stage in order:
    if stage == 0:
      x = x * np.float32(factors[0])
    elif stage == 1:
      mean = (x @ _LUMA).mean() if color else x.mean()
      c = np.float32(factors[1])
      x = x * c + np.float32(mean) * (1 - c)
    elif stage == 2 and color:
      s = np.float32(factors[2])
      x = x * s + (x @ _LUMA)[..., None] * (1 - s)
    elif stage == 3 and color:
      hsv = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2HSV)  # H in degrees
      hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue * 360), 360)
      x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    x = np.clip(x, 0, 1)
  return np.rint(x * 255).astype(np.uint8)


def _corner(rng, size, extent):
  """A uniform integer offset placing `size` px inside `extent` px (0 if it does not fit)."""
  return int(rng.integers(0, max(extent - size, 0) + 1))


def _in_box(fn, image, box, *args):
  """Runs `fn(crop, *args) -> (crop, mask)` on the box and writes it into a copy of the image."""
  x0, y0, x1, y1 = box
  out = image.copy()
  mask = np.zeros(image.shape[:2], bool)
  out[y0:y1, x0:x1], mask[y0:y1, x0:x1] = fn(image[y0:y1, x0:x1], *args)
  return out, mask


# ---------------------------------------------------------------------------------------------
# CutPaste.


def _cutpaste(image, rng, area, aspect, jitter):
  h, w, _ = image.shape
  size = rng.uniform(*area) * h * w
  ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
  cut_w = min(max(round(math.sqrt(size * ratio)), 1), w)
  cut_h = min(max(round(math.sqrt(size / ratio)), 1), h)
  fx, fy = _corner(rng, cut_w, w), _corner(rng, cut_h, h)
  patch = _color_jitter(image[fy:fy + cut_h, fx:fx + cut_w], rng, jitter)
  tx, ty = _corner(rng, cut_w, w), _corner(rng, cut_h, h)
  out = image.copy()
  out[ty:ty + cut_h, tx:tx + cut_w] = patch
  mask = np.zeros((h, w), bool)
  mask[ty:ty + cut_h, tx:tx + cut_w] = True
  return out, mask


def cutpaste(image, rng, *, area=(0.02, 0.15), aspect=(0.3, 1 / 0.3), jitter=0.1, box=None):
  """CutPaste: a colour-jittered rectangle of the image pasted elsewhere in it.

  Args:
    image: uint8 `[H, W, C]`, C = 1 or 3 (RGB), at least 8 x 8 pixels.
    rng: a `np.random.Generator` (advanced) or an integer seed >= 0.
    area: (low, high) patch area as a fraction of the box's, drawn uniformly; in (0, 1].
    aspect: (low, high) patch width / height, drawn log-uniformly; positive.
    jitter: colour jitter strength j in [0, 0.5] (module doc); 0 pastes an exact copy.
    box: (x0, y0, x1, y1) in pixels, half-open, at least 8 x 8: the patch is cut from and
      pasted inside it. None = the whole image.

  Returns:
    (image, mask): a new uint8 `[H, W, C]` image and the bool `[H, W]` mask of the pasted
    rectangle. The input is not modified.

  Raises:
    ValueError: a bad image, rng, range, jitter or box (the message names the argument).
  """
  image = _check_image(image)
  area = _check_range(area, "area", low=0, high=1, positive=True)
  aspect = _check_range(aspect, "aspect", low=0, high=math.inf, positive=True)
  jitter = _check_jitter(jitter)
  box = _check_box(box, image.shape)
  rng = _check_rng(rng)
  return _in_box(_cutpaste, image, box, rng, area, aspect, jitter)


# ---------------------------------------------------------------------------------------------
# CutPaste-scar.


def _scar(image, rng, width, height, rotation, jitter):
  h, w, c = image.shape
  cut_w = min(max(round(rng.uniform(*width)), 1), w)
  cut_h = min(max(round(rng.uniform(*height)), 1), h)
  fx, fy = _corner(rng, cut_w, w), _corner(rng, cut_h, h)
  patch = _color_jitter(image[fy:fy + cut_h, fx:fx + cut_w], rng, jitter)
  angle = rng.uniform(*rotation)
  # Rotate about the patch centre into a canvas that holds the whole rotated patch (PIL's
  # rotate(expand=True)); positive angles turn counter-clockwise as displayed.
  rad = math.radians(angle)
  cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
  canvas_w = math.ceil(cut_w * cos + cut_h * sin - 1e-9)
  canvas_h = math.ceil(cut_w * sin + cut_h * cos - 1e-9)
  matrix = cv2.getRotationMatrix2D(((cut_w - 1) / 2, (cut_h - 1) / 2), angle, 1.0)
  matrix[:, 2] += ((canvas_w - cut_w) / 2, (canvas_h - cut_h) / 2)
  # Colours replicate the patch's edge so the pixels kept by the mask are never darkened by a
  # zero border; the alpha of a ones image with a zero border is 0.5 on the rotated outline.
  rotated = cv2.warpAffine(patch, matrix, (canvas_w, canvas_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).reshape(canvas_h, canvas_w, c)
  alpha = cv2.warpAffine(np.ones((cut_h, cut_w), np.float32), matrix, (canvas_w, canvas_h),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  tx, ty = _corner(rng, canvas_w, w), _corner(rng, canvas_h, h)
  # A canvas larger than the image (a scar in a small box) is cut at its right / bottom edge.
  keep = alpha[:h - ty, :w - tx] >= 0.5
  ph, pw = keep.shape
  out = image.copy()
  out[ty:ty + ph, tx:tx + pw][keep] = rotated[:ph, :pw][keep]
  mask = np.zeros((h, w), bool)
  mask[ty:ty + ph, tx:tx + pw] = keep
  return out, mask


def scar(image, rng, *, width=(2, 16), height=(10, 25), rotation=(-45, 45), jitter=0.1,
         box=None):
  """CutPaste-scar: a thin colour-jittered patch of the image, rotated and pasted elsewhere.

  Args:
    image: uint8 `[H, W, C]`, C = 1 or 3 (RGB), at least 8 x 8 pixels.
    rng: a `np.random.Generator` (advanced) or an integer seed >= 0.
    width: (low, high) patch width in px before rotation, drawn uniformly and rounded; >= 1.
    height: (low, high) patch height in px before rotation, drawn uniformly and rounded; >= 1.
    rotation: (low, high) rotation in degrees, drawn uniformly, counter-clockwise as
      displayed; within [-180, 180].
    jitter: colour jitter strength j in [0, 0.5] (module doc); 0 pastes exact colours.
    box: (x0, y0, x1, y1) in pixels, half-open, at least 8 x 8: the patch is cut from and
      pasted inside it (and clipped to it). None = the whole image.

  Returns:
    (image, mask): a new uint8 `[H, W, C]` image and the bool `[H, W]` mask of the pasted
    pixels (where the rotated patch's bilinear alpha is >= 0.5, about width x height of
    them). The input is not modified.

  Raises:
    ValueError: a bad image, rng, range, jitter or box (the message names the argument).
  """
  image = _check_image(image)
  width = _check_range(width, "width", low=1, high=math.inf)
  height = _check_range(height, "height", low=1, high=math.inf)
  rotation = _check_range(rotation, "rotation", low=-180, high=180)
  jitter = _check_jitter(jitter)
  box = _check_box(box, image.shape)
  rng = _check_rng(rng)
  return _in_box(_scar, image, box, rng, width, height, rotation, jitter)


# ---------------------------------------------------------------------------------------------
# CropLiq.


def _displacement(rng, h, w, strength):
  """float32 [h, w, 2] (dx, dy) field: smooth, zero on the border, one-to-one (see liquify)."""
  grid = rng.standard_normal((_FIELD_GRID, _FIELD_GRID, 2)).astype(np.float32)
  field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
  wy = np.sin(np.pi * np.arange(h) / (h - 1))
  wx = np.sin(np.pi * np.arange(w) / (w - 1))
  wy[[0, -1]] = wx[[0, -1]] = 0  # sin(pi) is 1e-16, not 0: the border must not move at all
  field *= (wy[:, None] * wx[None, :]).astype(np.float32)[..., None]
  peak = float(np.hypot(field[..., 0], field[..., 1]).max())
  target = max(rng.uniform(*strength) * min(h, w), _MIN_SHIFT)
  if peak == 0:
    return field
  field *= np.float32(target / peak)
  # Frobenius norm of the Jacobian (>= its spectral norm): below 1, x -> x + d(x) is one-to-one
  # and maps the rectangle into itself, so the warp neither folds nor tears.
  grads = [g for k in range(2) for g in np.gradient(field[..., k])]
  slope = float(np.sqrt(sum(g * g for g in grads)).max())
  if slope > _MAX_SLOPE:
    field *= np.float32(_MAX_SLOPE / slope)
  return field


def _liquify(image, rng, rect, strength):
  x0, y0, x1, y1 = rect
  h, w, c = y1 - y0, x1 - x0, image.shape[2]
  field = _displacement(rng, h, w, strength)
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  # Clipping only guards rounding: with the slope < 1 every sample already lies inside.
  map_x = np.clip(xs + field[..., 0], 0, w - 1)
  map_y = np.clip(ys + field[..., 1], 0, h - 1)
  warped = cv2.remap(image[y0:y1, x0:x1], map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT).reshape(h, w, c)
  out = image.copy()
  mask = np.zeros(image.shape[:2], bool)
  # Border pixels are written back unchanged (their maps are exactly the identity).
  out[y0:y1, x0:x1] = warped
  mask[y0:y1, x0:x1] = np.hypot(map_x - xs, map_y - ys) > _MOVED
  return out, mask


def liquify(image, rng, rect, *, strength=STRENGTH):
  """A smooth random warp of one rectangle of the image whose border stays put.

  The displacement field (dx, dy) is a 3 x 3 grid of standard normal 2-vectors, upsampled
  bicubically to the rectangle and multiplied by the window `sin(pi u) sin(pi v)` (u, v in
  [0, 1] across the rectangle, so it is exactly 0 on its border pixels): one or two smooth
  lobes, a push, bulge or twist like a liquify brush stroke. It is scaled so that its largest
  displacement is U[strength] times the rectangle's shorter side (at least 1 px), then scaled
  down if needed so that the norm of its Jacobian stays below 0.9: the warp stays one-to-one
  and samples only the rectangle, so it never folds, tears or leaves a seam. Output pixel p is
  the rectangle sampled at p + d(p) with `cv2.remap` (bilinear).

  Args:
    image: uint8 `[H, W, C]`, C = 1 or 3, at least 8 x 8 pixels.
    rng: a `np.random.Generator` (advanced) or an integer seed >= 0.
    rect: (x0, y0, x1, y1) in pixels, half-open, inside the image, at least 4 x 4.
    strength: (low, high) largest displacement as a fraction of the rectangle's shorter side,
      drawn uniformly; in [0, 1]. Default `STRENGTH` = (0.05, 0.15).

  Returns:
    (image, mask): a new uint8 `[H, W, C]` image, equal to the input outside the rectangle
    and on its border, and the bool `[H, W]` mask of the pixels displaced by more than
    0.5 px. The input is not modified.

  Raises:
    ValueError: a bad image, rng, rect or strength (the message names the argument).
  """
  image = _check_image(image)
  rect = _check_rect(rect, "rect", image.shape, _MIN_RECT)
  strength = _check_range(strength, "strength", low=0, high=1)
  rng = _check_rng(rng)
  return _liquify(image, rng, rect, strength)


def cropliq(image, rng, *, box=None, region=(0.1, 0.5), strength=STRENGTH):
  """CropLiq (paper 002): a random rectangle inside the object's box, liquified.

  The rectangle's width and height are U[region] times the box's (independently; rounded, at
  least 8 px), at a uniform random place inside the box; it is then warped by `liquify`.

  Args:
    image: uint8 `[H, W, C]`, C = 1 or 3, at least 8 x 8 pixels.
    rng: a `np.random.Generator` (advanced) or an integer seed >= 0.
    box: the object's (x0, y0, x1, y1) in pixels, half-open, at least 8 x 8. None = the whole
      image.
    region: (low, high) rectangle side as a fraction of the box's side, drawn uniformly per
      side; in (0, 1].
    strength: (low, high) largest displacement as a fraction of the rectangle's shorter side
      (see `liquify`); in [0, 1].

  Returns:
    (image, mask): a new uint8 `[H, W, C]` image, changed only strictly inside the rectangle,
    and the bool `[H, W]` mask of the pixels displaced by more than 0.5 px (not empty: the
    largest displacement is about 1 px or more). The input is not modified.

  Raises:
    ValueError: a bad image, rng, box, region or strength (the message names the argument).
  """
  image = _check_image(image)
  x0, y0, x1, y1 = _check_box(box, image.shape)
  region = _check_range(region, "region", low=0, high=1, positive=True)
  strength = _check_range(strength, "strength", low=0, high=1)
  rng = _check_rng(rng)
  bw, bh = x1 - x0, y1 - y0
  rw = min(max(round(rng.uniform(*region) * bw), _MIN_SIDE), bw)
  rh = min(max(round(rng.uniform(*region) * bh), _MIN_SIDE), bh)
  rx = x0 + _corner(rng, rw, bw)
  ry = y0 + _corner(rng, rh, bh)
  return _liquify(image, rng, (rx, ry, rx + rw, ry + rh), strength)


# ---------------------------------------------------------------------------------------------
# Dispatch.

_FUNCTIONS = {"cutpaste": cutpaste, "scar": scar, "cropliq": cropliq}


def apply(kind, image, rng, *, box=None):
  """One pseudo-anomaly of the given kind, with its default parameters.

  Args:
    kind: one of `KINDS`.
    image: uint8 `[H, W, C]`, C = 1 or 3, at least 8 x 8 pixels.
    rng: a `np.random.Generator` (advanced) or an integer seed >= 0.
    box: the object's (x0, y0, x1, y1) in pixels, half-open; every kind stays inside it.
      None = the whole image.

  Returns:
    (image, mask): `cutpaste`, `scar` or `cropliq` of the image, a new uint8 `[H, W, C]`
    image and the bool `[H, W]` mask of the defect.

  Raises:
    ValueError: an unknown kind, or a bad image, rng or box.
  """
  if not isinstance(kind, str) or kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  return _FUNCTIONS[kind](image, rng, box=box)

"""jaxvad.pseudo_anomalies: CutPaste, CutPaste-scar and CropLiq (paper 002) on the host."""

import math

import numpy as np
import pytest

from jaxvad import pseudo_anomalies as pa

FUNCTIONS = {"cutpaste": pa.cutpaste, "scar": pa.scar, "cropliq": pa.cropliq}


def textured(h=48, w=64, c=3):
  """uint8 [H, W, C]: smooth sinusoids, every channel different, no two nearby pixels equal."""
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  planes = [127.5 + 100 * np.sin(x / 5 + y / 7), 127.5 + 100 * np.cos(x / 6 - y / 4),
            127.5 + 120 * np.sin((x + y) / 9)]
  return np.clip(np.rint(np.stack(planes[:c], -1)), 0, 255).astype(np.uint8)


def coordinates(h=64, w=64):
  """uint8 [H, W, 3] with R = 4x, G = 4y: a bilinear sample's value gives where it was taken."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([4 * x, 4 * y, np.full_like(x, 128)], -1).astype(np.uint8)


def displacement(before, after):
  """float [H, W, 2] (dx, dy) at which each pixel of `after` sampled the coordinate image."""
  return (after[..., :2].astype(np.float64) - before[..., :2]) / 4


def bounding_box(mask):
  ys, xs = np.nonzero(mask)
  return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# --------------------------------------------------------------------------- common contract


@pytest.mark.parametrize("kind", pa.KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_input_untouched(kind, channels):
  image = textured(40, 56, channels)
  before = image.copy()
  out, mask = pa.apply(kind, image, 3)
  np.testing.assert_array_equal(image, before)
  assert out.shape == image.shape and out.dtype == np.uint8
  assert mask.shape == image.shape[:2] and mask.dtype == bool
  assert out is not image and not np.shares_memory(out, image)
  assert mask.any() and (out != image).any()


@pytest.mark.parametrize("kind", pa.KINDS)
def test_deterministic_given_the_seed(kind):
  image = textured()
  out, mask = FUNCTIONS[kind](image, 7)
  again, again_mask = FUNCTIONS[kind](image, np.random.default_rng(7))
  np.testing.assert_array_equal(out, again)
  np.testing.assert_array_equal(mask, again_mask)
  other, other_mask = FUNCTIONS[kind](image, 8)
  assert (other != out).any() or (other_mask != mask).any()


def test_a_generator_is_advanced():
  image = textured()
  rng = np.random.default_rng(0)
  first, _ = pa.cutpaste(image, rng)
  second, _ = pa.cutpaste(image, rng)
  assert (first != second).any()


@pytest.mark.parametrize("kind", pa.KINDS)
def test_apply_is_the_function_with_defaults(kind):
  image = textured()
  box = (10, 5, 50, 40)
  out, mask = pa.apply(kind, image, 4, box=box)
  expected, expected_mask = FUNCTIONS[kind](image, 4, box=box)
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(mask, expected_mask)


@pytest.mark.parametrize("kind", ["cutpaste", "scar"])
@pytest.mark.parametrize("channels", [1, 3])
def test_paste_changes_nothing_outside_its_mask(kind, channels):
  image = textured(48, 64, channels)
  for seed in range(40):
    out, mask = FUNCTIONS[kind](image, seed)
    assert mask.any()
    np.testing.assert_array_equal(out[~mask], image[~mask])


@pytest.mark.parametrize("kind", pa.KINDS)
def test_every_kind_stays_inside_the_box(kind):
  image = textured(48, 64)
  x0, y0, x1, y1 = box = (20, 10, 44, 34)
  outside = np.ones(image.shape[:2], bool)
  outside[y0:y1, x0:x1] = False
  for seed in range(30):
    out, mask = FUNCTIONS[kind](image, seed, box=box)
    assert mask.any() and not mask[outside].any()
    np.testing.assert_array_equal(out[outside], image[outside])


# --------------------------------------------------------------------------- cutpaste


def test_cutpaste_without_jitter_pastes_a_piece_of_the_image():
  image = textured(32, 32)
  for seed in range(10):
    out, mask = pa.cutpaste(image, seed, jitter=0)
    x0, y0, x1, y1 = bounding_box(mask)
    patch = out[y0:y1, x0:x1]
    ph, pw = patch.shape[:2]
    sources = [(y, x) for y in range(32 - ph + 1) for x in range(32 - pw + 1)
               if np.array_equal(image[y:y + ph, x:x + pw], patch)]
    assert sources, f"seed {seed}: the pasted patch is not a piece of the image"


def test_cutpaste_jitter_changes_colours_moderately():
  image = textured(32, 32)
  plain, _ = pa.cutpaste(image, 5, jitter=0)
  jittered, mask = pa.cutpaste(image, 5)
  diff = np.abs(plain.astype(int) - jittered)[mask]
  assert diff.max() > 0
  assert np.median(diff) < 40


def test_cutpaste_area_and_aspect_within_their_ranges():
  h = w = 64
  image = textured(h, w)
  fractions, ratios = [], []
  for seed in range(300):
    _, mask = pa.cutpaste(image, seed)
    x0, y0, x1, y1 = bounding_box(mask)
    pw, ph = x1 - x0, y1 - y0
    assert mask.sum() == pw * ph  # one rectangle
    # Sides are rounded: the drawn (real) sides lie within half a pixel of them.
    assert (pw - 0.5) * (ph - 0.5) <= 0.15 * h * w + 1e-9
    assert (pw + 0.5) * (ph + 0.5) >= 0.02 * h * w - 1e-9
    assert (pw + 0.5) / (ph - 0.5) >= 0.3 - 1e-9
    assert (pw - 0.5) / (ph + 0.5) <= 1 / 0.3 + 1e-9
    fractions.append(mask.sum() / (h * w))
    ratios.append(pw / ph)
  assert min(fractions) < 0.03 and max(fractions) > 0.13  # the range is covered
  # Log-uniform aspect: about as many tall patches as wide ones.
  assert 0.35 < np.mean(np.asarray(ratios) > 1) < 0.65
  assert min(ratios) < 0.45 and max(ratios) > 1 / 0.45


# --------------------------------------------------------------------------- scar


def test_scar_unrotated_is_a_width_by_height_rectangle():
  image = textured(48, 64)
  out, mask = pa.scar(image, 1, width=(6, 6), height=(20, 20), rotation=(0, 0), jitter=0)
  x0, y0, x1, y1 = bounding_box(mask)
  assert (x1 - x0, y1 - y0) == (6, 20) and mask.sum() == 120


@pytest.mark.parametrize("angle", [-45, -20, 30, 45, 90])
def test_scar_rotated_area_is_width_times_height(angle):
  image = textured(64, 64)
  for seed, (w, h) in enumerate([(2, 10), (5, 17), (16, 25)]):
    _, mask = pa.scar(image, seed, width=(w, w), height=(h, h), rotation=(angle, angle))
    assert 0.8 * w * h <= mask.sum() <= 1.2 * w * h
    # The mask's bounding box is the rotated rectangle's (up to a pixel of rounding).
    x0, y0, x1, y1 = bounding_box(mask)
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    assert abs((x1 - x0) - (w * c + h * s)) <= 2
    assert abs((y1 - y0) - (w * s + h * c)) <= 2


def test_scar_default_sizes():
  image = textured(64, 64)
  areas = [pa.scar(image, seed)[1].sum() for seed in range(100)]
  assert 0.8 * 2 * 10 <= min(areas) and max(areas) <= 1.2 * 16 * 25


def test_scar_larger_than_the_box_is_clipped():
  image = textured(48, 64)
  box = (10, 10, 20, 20)
  for seed in range(10):
    out, mask = pa.scar(image, seed, width=(30, 30), height=(30, 30), box=box)
    inside = mask[10:20, 10:20].sum()
    assert inside == mask.sum() and inside >= 50  # a 10 x 10 patch, rotated, cut at the box
    np.testing.assert_array_equal(out[~mask], image[~mask])


# --------------------------------------------------------------------------- liquify / cropliq


@pytest.mark.parametrize("rect", [(8, 12, 40, 30), (0, 0, 64, 64), (50, 50, 54, 54)])
def test_liquify_moves_only_the_inside_of_its_rectangle(rect):
  image = coordinates()
  x0, y0, x1, y1 = rect
  inside = np.zeros(image.shape[:2], bool)
  inside[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = True
  for seed in range(10):
    out, mask = pa.liquify(image, seed, rect)
    np.testing.assert_array_equal(out[~inside], image[~inside])  # outside and border
    d = displacement(image, out)
    assert np.abs(d[~inside]).max() == 0
    assert np.abs(d[inside]).max() >= 0.75  # at least 1 px, up to rounding
    assert not mask[~inside].any() and mask.any()
    # The mask marks the pixels displaced by more than 0.5 px (recovered to ~0.15 px).
    moved = np.hypot(d[..., 0], d[..., 1])
    assert mask[moved > 0.7].all() and not mask[moved < 0.3].any()


def test_liquify_strength_is_the_largest_displacement():
  image = coordinates()
  rect = (4, 8, 60, 48)  # shorter side 40
  for strength in [(0.05, 0.05), (0.1, 0.1), (0.15, 0.15)]:
    peaks = []
    for seed in range(10):
      out, _ = pa.liquify(image, seed, rect, strength=strength)
      d = displacement(image, out)
      peaks.append(np.hypot(d[..., 0], d[..., 1]).max())
    # The slope cap may lower a draw, rounding blurs it by ~0.15 px.
    assert max(peaks) <= strength[0] * 40 + 0.3
    assert np.median(peaks) >= strength[0] * 40 * 0.8


def test_liquify_samples_stay_in_the_rectangle_and_do_not_fold():
  image = coordinates()
  x0, y0, x1, y1 = rect = (10, 10, 40, 30)
  for seed in range(20):
    # At the largest strength the slope cap always binds: this checks the cap.
    out, _ = pa.liquify(image, seed, rect, strength=(1, 1))
    src = out[y0:y1, x0:x1, :2].astype(np.float64) / 4
    assert src[..., 0].min() >= x0 and src[..., 0].max() <= x1 - 1
    assert src[..., 1].min() >= y0 and src[..., 1].max() <= y1 - 1
    # One-to-one: source coordinates keep increasing along rows and columns (up to rounding).
    assert np.diff(src[..., 0], axis=1).min() > -0.3
    assert np.diff(src[..., 1], axis=0).min() > -0.3


def test_cropliq_changes_only_strictly_inside_the_box():
  image = coordinates()
  x0, y0, x1, y1 = box = (12, 20, 52, 60)
  inner = np.zeros(image.shape[:2], bool)
  inner[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = True
  for seed in range(50):
    out, mask = pa.cropliq(image, seed, box=box)
    changed = (out != image).any(-1)
    assert mask.any() and changed.any()
    assert not changed[~inner].any() and not mask[~inner].any()
    assert not (mask & ~changed).any()


def test_cropliq_rectangle_follows_region():
  image = coordinates(64, 64)
  for seed in range(30):
    out, _ = pa.cropliq(image, seed, region=(0.5, 0.5))
    x0, y0, x1, y1 = bounding_box((out != image).any(-1))
    # Changes lie inside the 32 x 32 rectangle minus its border.
    assert x1 - x0 <= 30 and y1 - y0 <= 30


def test_cropliq_whole_image_one_channel():
  image = textured(32, 32, 1)
  out, mask = pa.cropliq(image, 0)
  assert out.shape == (32, 32, 1) and mask.any()
  np.testing.assert_array_equal(out[[0, -1]], image[[0, -1]])
  np.testing.assert_array_equal(out[:, [0, -1]], image[:, [0, -1]])


# --------------------------------------------------------------------------- bad inputs

IMAGE = textured(32, 32)

BAD = [
    (pa.cutpaste, (IMAGE.astype(np.float32), 0), {}, "image"),
    (pa.cutpaste, (IMAGE[..., 0], 0), {}, "image"),
    (pa.cutpaste, (np.zeros((32, 32, 4), np.uint8), 0), {}, "image"),
    (pa.cutpaste, (np.zeros((6, 32, 3), np.uint8), 0), {}, "image"),
    (pa.cutpaste, (IMAGE.tolist(), 0), {}, "image"),
    (pa.cutpaste, (IMAGE, True), {}, "rng"),
    (pa.cutpaste, (IMAGE, -1), {}, "rng"),
    (pa.cutpaste, (IMAGE, "seed"), {}, "rng"),
    (pa.cutpaste, (IMAGE, 0), {"area": (0.2, 0.1)}, "area"),
    (pa.cutpaste, (IMAGE, 0), {"area": (0, 0.1)}, "area"),
    (pa.cutpaste, (IMAGE, 0), {"area": (0.1, 1.5)}, "area"),
    (pa.cutpaste, (IMAGE, 0), {"area": 0.1}, "area"),
    (pa.cutpaste, (IMAGE, 0), {"area": (0.1, float("nan"))}, "area"),
    (pa.cutpaste, (IMAGE, 0), {"aspect": (0, 1)}, "aspect"),
    (pa.cutpaste, (IMAGE, 0), {"aspect": (3, 1)}, "aspect"),
    (pa.cutpaste, (IMAGE, 0), {"jitter": -0.1}, "jitter"),
    (pa.cutpaste, (IMAGE, 0), {"jitter": 0.6}, "jitter"),
    (pa.cutpaste, (IMAGE, 0), {"box": (0, 0, 40, 20)}, "box"),
    (pa.scar, (IMAGE, 0), {"width": (16, 2)}, "width"),
    (pa.scar, (IMAGE, 0), {"width": (0, 2)}, "width"),
    (pa.scar, (IMAGE, 0), {"height": ("a", 2)}, "height"),
    (pa.scar, (IMAGE, 0), {"rotation": (-200, 0)}, "rotation"),
    (pa.scar, (IMAGE, 0), {"rotation": (45, -45)}, "rotation"),
    (pa.scar, (IMAGE, 0), {"jitter": True}, "jitter"),
    (pa.scar, (IMAGE, 0), {"box": (0, 0, 4, 20)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": (-1, 0, 20, 20)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": (20, 0, 10, 20)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": (0, 0, 20)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": (0.0, 0, 20, 20)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": (0, 0, 20, 5)}, "box"),
    (pa.cropliq, (IMAGE, 0), {"box": 5}, "box"),
    (pa.cropliq, (IMAGE, 0), {"region": (0.5, 0.1)}, "region"),
    (pa.cropliq, (IMAGE, 0), {"region": (0, 0.1)}, "region"),
    (pa.cropliq, (IMAGE, 0), {"strength": (0.2, 0.1)}, "strength"),
    (pa.cropliq, (IMAGE, 0), {"strength": (0.1, 1.5)}, "strength"),
    (pa.cropliq, (IMAGE[..., :2], 0), {}, "image"),
    (pa.liquify, (IMAGE, 0, (0, 0, 3, 10)), {}, "rect"),
    (pa.liquify, (IMAGE, 0, None), {}, "rect"),
    (pa.liquify, (IMAGE, 0, (0, 0, 10, 40)), {}, "rect"),
    (pa.liquify, (IMAGE, 0, (0, 0, 10, 10)), {"strength": (-0.1, 0.1)}, "strength"),
    (pa.apply, ("cutout", IMAGE, 0), {}, "kind"),
    (pa.apply, ("scar", IMAGE, 0), {"box": (0, 0, 33, 20)}, "box"),
]


@pytest.mark.parametrize(
    "fn,args,kwargs,name", BAD,
    ids=[f"{fn.__name__}-{name}-{i}" for i, (fn, _, _, name) in enumerate(BAD)])
def test_bad_inputs_raise_naming_the_argument(fn, args, kwargs, name):
  with pytest.raises(ValueError, match=rf"\b{name}\b"):
    fn(*args, **kwargs)


def test_a_bad_input_draws_nothing():
  rng = np.random.default_rng(0)
  state = rng.bit_generator.state
  with pytest.raises(ValueError):
    pa.cropliq(IMAGE, rng, region=(0.5, 0.1))
  assert rng.bit_generator.state == state

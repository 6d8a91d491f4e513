"""Patch-level scores (paper 004, issue 15): JAX `scoring.patch_scores` / `reduce_patches` vs the
Numba `jaxvad_kernels.patch_scores` vs a slow reference; the `score.reduce` setting through the
ScoreSpec, the Scorer's jitted window step and `jaxvad eval`."""

import dataclasses
import json
import math
import pathlib

import jax
import numpy as np
import pytest

import jaxvad_kernels as kernels
from jaxvad import config as config_lib
from jaxvad import inference, masking, methods, scoring, train
from jaxvad.errors import ConfigError
from jaxvad.evaluation import evaluate
from jaxvad.methods.base import PatchReduction, ScoreSpec, ScoreTerm
from tests.naive import image as naive_im
from tests.test_cli import demo_run  # noqa: F401  (the tiny demo run fixture: 16x16 frames)
from tests.test_cli import run_cli

HERE = pathlib.Path(__file__).parent


def naive_patches(a, b, *, patch, stride, max_val, mask=None, win_size=11, sigma=1.5):
  """{"ssim", "mse", "psnr"}: `[N, gh, gw]`, patch (p, q) at rows p * stride + [0, patch) and
  columns q * stride + [0, patch), one window / pixel at a time (`tests.naive.image`)."""
  a, b = naive_im._frames(a), naive_im._frames(b)
  masks = naive_im._masks(mask, a.shape)
  n_frames, h, w = a.shape[:3]
  gh, gw = (h - patch) // stride + 1, (w - patch) // stride + 1
  maps = naive_im.ssim_map(a, b, max_val=max_val, mask=mask, win_size=win_size, sigma=sigma)
  inside = naive_im._interior((h, w), win_size)
  out = {key: np.empty((n_frames, gh, gw)) for key in ("ssim", "mse", "psnr")}
  for n in range(n_frames):
    for p in range(gh):
      for q in range(gw):
        rows = slice(p * stride, p * stride + patch)
        cols = slice(q * stride, q * stride + patch)
        keep = inside[rows, cols] & (masks[n][rows, cols] != 0)
        out["ssim"][n, p, q] = maps[n][rows, cols][keep].mean() if keep.any() else math.nan
        x, y = naive_im._masked_pixels(a, b, masks, n, rows, cols)
        out["mse"][n, p, q] = naive_im._mse_of(x, y)
        out["psnr"][n, p, q] = naive_im._psnr_of(x, y, max_val)
  return out


def naive_reduce(values, *, metric, k):
  """Mean of the k worst finite patches per frame (worst = lowest PSNR/SSIM, highest MSE)."""
  flat = values.reshape(len(values), -1)
  out = []
  for row in flat:
    finite = row[np.isfinite(row)]
    worst = np.sort(finite)[::-1] if metric == "mse" else np.sort(finite)
    chosen = worst[:k] if len(finite) else []
    # Only finite patches among the k worst overall count (NaN patches are never worst).
    out.append(np.mean(chosen) if len(chosen) else math.nan)
  return np.array(out)


def _pair(shape, seed):
  rng = np.random.default_rng(seed)
  a = rng.random(shape)
  b = np.clip(a + 0.1 * rng.standard_normal(shape), 0, 1)
  b[0, 2:7, 3:9] = 1.0 - a[0, 2:7, 3:9]   # one badly reconstructed block
  return a.astype(np.float32), b.astype(np.float32)


def _mask(shape, seed):
  """Soft per-frame masks with zeros; the second frame's is empty (NaN patches)."""
  rng = np.random.default_rng(seed)
  m = np.where(rng.random(shape[:3]) < 0.3, 0.0, rng.uniform(0.5, 1.0, shape[:3]))
  m[1] = 0.0
  return m.astype(np.float32)


_jit_patch_scores = jax.jit(scoring.patch_scores,
                            static_argnames=("metric", "patch_size", "stride"))

# (frame shape, patch, stride): tiles, half-overlapping, and a stride leaving a ragged edge.
GRIDS = [((2, 16, 20, 3), 8, 8), ((2, 17, 14), 6, 3), ((3, 16, 16, 1), 7, 4)]


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("shape, patch, stride", GRIDS)
def test_jax_numba_and_reference_agree(shape, patch, stride, masked, use_jit):
  a, b = _pair(shape, seed=shape[1])
  mask = _mask(shape, seed=1) if masked else None
  a4, b4 = (x if x.ndim == 4 else x[..., None] for x in (a, b))
  want = naive_patches(a, b, patch=patch, stride=stride, max_val=1.0, mask=mask)
  numba = kernels.patch_scores(a, b, patch=patch, stride=stride, mask=mask)
  fn = _jit_patch_scores if use_jit else scoring.patch_scores
  for metric in scoring.PATCH_METRICS:
    got = np.asarray(fn(a4, b4, metric=metric, patch_size=patch, stride=stride, mask=mask))
    assert got.shape == want[metric].shape == numba[metric].shape
    np.testing.assert_allclose(numba[metric], want[metric], rtol=1e-10, atol=1e-12,
                               err_msg=f"numba {metric}")
    atol = 2e-4 if metric == "psnr" else 2e-6   # float32 vs float64
    np.testing.assert_allclose(got, want[metric], rtol=1e-5, atol=atol, err_msg=f"jax {metric}")
    np.testing.assert_allclose(got, numba[metric], rtol=1e-5, atol=atol, err_msg=metric)
    if masked:
      assert np.isnan(got[1]).all() and np.isfinite(got[0]).mean() > 0.8


def test_stride_equal_to_patch_is_the_tiling():
  a, b = _pair((2, 16, 20, 3), seed=3)
  tiles = naive_im.patch_scores(a, b, patch=6, max_val=1.0)
  strided = naive_patches(a, b, patch=6, stride=6, max_val=1.0)
  for key in tiles:
    np.testing.assert_array_equal(tiles[key], strided[key])
  for key, value in kernels.patch_scores(a, b, patch=6).items():
    np.testing.assert_array_equal(value, kernels.patch_scores(a, b, patch=6, stride=6)[key])


def test_jax_leading_axes_and_shared_mask():
  a, b = _pair((4, 16, 16, 1), seed=4)
  mask = _mask(a.shape, seed=2)[0]
  flat = scoring.patch_scores(a, b, metric="psnr", patch_size=8, stride=4, mask=mask)
  batched = scoring.patch_scores(a.reshape(2, 2, 16, 16, 1), b.reshape(2, 2, 16, 16, 1),
                                 metric="psnr", patch_size=8, stride=4, mask=mask)
  np.testing.assert_allclose(np.asarray(batched).reshape(flat.shape), flat, rtol=1e-6)


@pytest.mark.parametrize("metric", scoring.PATCH_METRICS)
@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
def test_reduce_patches(metric, use_jit):
  rng = np.random.default_rng(5)
  values = rng.random((3, 4, 5)).astype(np.float32)
  values[1, 0, :3] = np.nan            # NaN patches are never the worst
  values[2] = np.nan                   # a frame with nothing left scores NaN
  fn = jax.jit(scoring.reduce_patches, static_argnames=("metric", "reduce", "top_k")) \
      if use_jit else scoring.reduce_patches
  worst = np.asarray(fn(values, metric=metric, reduce="max_patch"))
  np.testing.assert_array_equal(worst, naive_reduce(values, metric=metric, k=1))
  for k in (1, 3, 20):
    got = np.asarray(fn(values, metric=metric, reduce="top_k_patches", top_k=k))
    np.testing.assert_allclose(got, naive_reduce(values, metric=metric, k=k), rtol=1e-6)
  assert np.isnan(worst[2])


def test_reduce_patches_checks_first():
  values = np.zeros((2, 3, 3), np.float32)
  with pytest.raises(ValueError, match="top_k must be an integer in \\[1, 9\\]"):
    scoring.reduce_patches(values, metric="psnr", reduce="top_k_patches", top_k=10)
  with pytest.raises(ValueError, match="reduce must be one of"):
    scoring.reduce_patches(values, metric="psnr", reduce="frame")
  with pytest.raises(ValueError, match="metric must be one of"):
    scoring.reduce_patches(values, metric="psnr2")


def test_patch_geometry_scales_paper_004s_32_px_at_256():
  assert scoring.patch_geometry(256, 256) == (32, 16)
  assert scoring.patch_geometry(64, 64) == (8, 4)
  assert scoring.patch_geometry(240, 360) == (30, 15)
  assert scoring.patch_geometry(16, 16) == (4, 2)          # at least 4 px
  assert scoring.patch_geometry(16, 16, metric="ssim") == (6, 3)   # wider than SSIM's crop
  assert scoring.patch_geometry(3, 3) == (3, 1)            # at most the frame
  assert scoring.patch_geometry(64, 64, patch_size=10) == (10, 5)
  assert scoring.patch_geometry(64, 64, patch_size=10, stride=3) == (10, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": 17}, "patch_size must be in \\[1, 16\\]"),
    ({"patch_size": 4, "stride": 5}, "stride must be in \\[1, patch_size = 4\\]"),
    ({"patch_size": 5, "metric": "ssim"}, "patch_size must be in \\[6, 16\\].*SSIM"),
    ({"patch_size": 2.5}, "patch_size must be an integer"),
    ({"patch_size": 4, "metric": "l1"}, "metric must be one of"),
])
def test_patch_scores_check_first(kwargs, match):
  a, b = _pair((1, 16, 16, 1), seed=0)
  with pytest.raises(ValueError, match=match):
    scoring.patch_scores(a, b, **{"patch_size": 4, **kwargs})


def test_kernel_checks_stride():
  a, b = _pair((1, 16, 16, 1), seed=0)
  with pytest.raises(ValueError, match="stride must be an integer in \\[1, patch = 8\\]"):
    kernels.patch_scores(a, b, patch=8, stride=9)


# --------------------------------------------------------------------------- the score setting


def test_score_spec_patch_reduced_says_what_it_is():
  spec = methods.get("convlstm_ae").score(None)
  assert spec.image_metric == "psnr" and spec.to_dict()["reduction"] == {"reduce": "frame"}
  reduced = spec.patch_reduced(PatchReduction("mse", "top_k_patches", 8, 4, top_k=3))
  assert reduced.name == "mse_top_k_patches" and reduced.higher_is_anomalous
  assert "MSE" in reduced.description and "8x8-px" in reduced.description
  assert "3 worst" in reduced.description and "every 4 px" in reduced.description
  record = reduced.to_dict()
  assert record["reduction"] == {"metric": "mse", "reduce": "top_k_patches", "patch_size": 8,
                                 "stride": 4, "top_k": 3}
  psnr = spec.patch_reduced(PatchReduction("psnr", "max_patch"))
  assert not psnr.higher_is_anomalous and "lowest PSNR" in psnr.description
  with pytest.raises(ValueError, match="higher_is_anomalous"):
    ScoreSpec(terms=(ScoreTerm("psnr", "x", higher_is_anomalous=True),), image="recon",
              image_metric="psnr")
  with pytest.raises(ValueError, match="no image_metric"):
    ScoreSpec(terms=(ScoreTerm("e", "x", True),)).patch_reduced(PatchReduction("psnr",
                                                                                "max_patch"))


@pytest.mark.parametrize("override, key", [
    ("score.reduce=worst", "score.reduce"), ("score.patch_metric=l1", "score.patch_metric"),
    ("score.patch_size=-1", "score.patch_size"), ("score.top_k=0", "score.top_k"),
])
def test_config_names_the_bad_key(override, key):
  with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
    config_lib.load_config("convlstm_ae_demo", [override])


def test_a_method_without_image_metric_cannot_reduce_patches():
  config = config_lib.load_config(HERE / "configs" / "tiny_test.toml", ["score.reduce=max_patch"])
  with pytest.raises(ConfigError, match="score.reduce = 'max_patch'.*no image_metric"):
    evaluate.detector_spec(config)


def _fake_step(state, batch):
  """A frame predictor's score_step: 'predicts' the last frame as the mean of the window."""
  frames = batch["frames"].astype(np.float32) / 255.0
  pred = frames.mean(axis=1)
  return {"psnr": scoring.psnr(pred, frames[:, -1])[:, None], "recon": pred[:, None]}


def test_patch_score_step_scores_the_last_frame_of_a_frame_predictor():
  spec = ScoreSpec(terms=(ScoreTerm("psnr", "PSNR", False),), last_only=True, image="recon",
                   image_metric="psnr")
  reduced = spec.patch_reduced(PatchReduction("ssim", "top_k_patches", 0, 0, top_k=2))
  frames = np.random.default_rng(0).integers(0, 256, (3, 4, 16, 16, 1), dtype=np.uint8)
  out = jax.jit(evaluate.patch_score_step(_fake_step, reduced))(None, {"frames": frames})
  pred = frames.astype(np.float32).mean(axis=1) / 255.0
  want = naive_reduce(naive_patches(pred, frames[:, -1] / 255.0, patch=6, stride=3,
                                    max_val=1.0)["ssim"], metric="ssim", k=2)
  assert out["ssim_top_k_patches"].shape == (3, 1)   # [B, 1]: the window's last frame
  np.testing.assert_allclose(np.asarray(out["ssim_top_k_patches"])[:, 0], want, rtol=1e-5)
  np.testing.assert_allclose(out["psnr"], _fake_step(None, {"frames": frames})["psnr"], rtol=1e-6)


# --------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def run(demo_run):  # noqa: F811
  config, state = train.load_trained(demo_run["workdir"])
  from jaxvad.data import datasets
  clip = datasets.load_split(config.data, "test")[0]
  return config, state, clip


def _with(config, **score):
  return dataclasses.replace(config, score=dataclasses.replace(config.score, **score))


def test_reduce_frame_is_bit_identical_to_the_methods_own_score(run):
  config, state, clip = run
  runner = inference.WindowRunner(methods.get(config.method).score_step,
                                  window=config.data.window,
                                  batch_size=config.score.batch_size)
  want = runner.clip_outputs(state, clip.frames, ["psnr"])["psnr"].astype(np.float64)
  scorer = evaluate.Scorer(config, state)
  np.testing.assert_array_equal(scorer.score(clip.frames), want)
  assert scorer.spec.reduction is None and scorer.spec.name == "psnr"
  # The whole-frame masked score is paper 000's masked PSNR (masking.masked_scores); jitted in
  # chunks here, eager there: equal to float32 rounding.
  image = runner.clip_outputs(state, clip.frames, ["recon"])["recon"]
  mask = np.random.default_rng(0).random(clip.frames.shape[:3]) > 0.4
  old = masking.masked_scores(np.clip(image, 0, 1), clip.frames.astype(np.float32) / 255.0,
                              mask.astype(np.float32))["psnr"]
  np.testing.assert_allclose(scorer.masked(image, clip.frames, mask), np.asarray(old), rtol=1e-6)
  # Eager on the host vs jitted in the step: the same to float32 rounding.
  np.testing.assert_allclose(scorer.masked(image, clip.frames, None), want, rtol=1e-6)


@pytest.mark.parametrize("reduce, metric", [("max_patch", "psnr"), ("top_k_patches", "ssim"),
                                            ("top_k_patches", "mse")])
def test_scorer_reduces_patches_on_the_device(run, reduce, metric):
  config, state, clip = run
  scorer = evaluate.Scorer(_with(config, reduce=reduce, patch_metric=metric, top_k=3), state)
  got = scorer.score(clip.frames)
  size, stride = scoring.patch_geometry(16, 16, metric=metric)
  assert scorer.spec.name == f"{metric}_{reduce}"
  assert scorer.spec.reduction == PatchReduction(metric, reduce, size, stride,
                                                 3 if reduce == "top_k_patches" else 1)
  # The same numbers from the images on the host, with the Numba kernel.
  image = np.clip(scorer.runner.clip_outputs(state, clip.frames, ["recon"])["recon"], 0, 1)
  values = kernels.patch_scores(image.astype(np.float64), clip.frames / 255.0, patch=size,
                                stride=stride, max_val=1.0)[metric]
  want = naive_reduce(values, metric=metric, k=scorer.spec.reduction.top_k)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  # Masked patch scores: an all-ones mask changes nothing.
  ones = np.ones(clip.frames.shape[:3], np.float32)
  np.testing.assert_allclose(scorer.masked(image, clip.frames, ones), got, rtol=1e-6)
  fired = scorer.fired_patches(clip.frames, 3, image[3])
  assert fired["grid"] == [(16 - size) // stride + 1] * 2
  assert len(fired["corners"]) == scorer.spec.reduction.top_k
  np.testing.assert_allclose(np.mean(fired["values"]), got[3], rtol=1e-5)


def test_scorer_refuses_patches_that_do_not_fit(run):
  config, state, clip = run
  with pytest.raises(ConfigError, match="score.patch_size = 20"):
    evaluate.Scorer(_with(config, reduce="max_patch", patch_size=20), state).score(clip.frames)
  with pytest.raises(ConfigError, match="score.top_k = 50 exceeds the 49 patches"):
    evaluate.Scorer(_with(config, reduce="top_k_patches", top_k=50), state).score(clip.frames)


def test_eval_with_max_patch_through_the_cli(demo_run, tmp_path, capsys):  # noqa: F811
  code, out, err = run_cli(["eval", "--workdir", demo_run["workdir"], "--report", tmp_path,
                            "score.reduce=max_patch", "score.worst_frames=2"], capsys)
  assert code == 0, err
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["score"]["name"] == "psnr_max_patch"
  assert metrics["score"]["reduction"] == {"metric": "psnr", "reduce": "max_patch",
                                           "patch_size": 4, "stride": 2, "top_k": 1}
  assert "4x4-px" in metrics["protocol"]["score"]
  assert metrics["config"]["score"]["reduce"] == "max_patch"
  assert (tmp_path / "worst_frames.png").stat().st_size > 0
  assert "psnr_max_patch" in (tmp_path / "scores.csv").read_text().splitlines()[0]
  code, _, err = run_cli(["eval", "--workdir", demo_run["workdir"], "--report", tmp_path / "x",
                          "score.reduce=max_patch", "score.patch_size=40"], capsys)
  assert code == 2 and "score.patch_size = 40" in err

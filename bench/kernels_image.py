"""SSIM, PSNR and patch-score timings: jaxvad_kernels (Numba) vs scikit-image, pytorch-msssim,
dm-pix and jaxvad.scoring (JAX), on the CPU.

    python bench/kernels.py --only image [--quick] [--repeats 5]

Input: 64 grayscale float32 frames 256 x 256 in [0, 1] (uniform noise, seed 0) against a noisy
copy (+ N(0, 0.1), clipped), the same arrays for every implementation; `--quick` uses 8 x 64 x
64. Every SSIM is the Gaussian one (11 taps, sigma 1.5, K = 0.01, 0.03, data range 1) averaged
over the frame's interior, and the implementations are checked to agree before they are timed.
JAX inputs are already on the device and each call waits for its result (`block_until_ready`);
the first call of each implementation (compilation) is not timed. Peers that are not installed
are skipped. `run()` returns rows for bench/kernels.py's table.
"""

from __future__ import annotations

import numpy as np

from jaxvad_kernels import image_scores
from timing import median_ms

NUMBA = "jaxvad_kernels (Numba)"
SKIMAGE = "scikit-image (per-frame loop)"
NUMPY = "NumPy"
DMPIX = "dm-pix (jax.jit)"
JAX_SSIM = "jaxvad.scoring.ssim (jax.jit)"


def _frames(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  a = rng.random((n, size, size), dtype=np.float32)
  noisy = a + 0.1 * rng.standard_normal(a.shape, dtype=np.float32)
  return a, np.clip(noisy, 0.0, 1.0)


def _jax():
  """(jax, jaxvad.scoring), or Nones when JAX is unavailable."""
  try:
    import jax

    from jaxvad import scoring
  except ImportError:
    return None, None
  return jax, scoring


def _ssim_impls(a, b) -> dict:
  """name -> fn() giving the per-frame SSIM of the batch a, b: every installed SSIM."""
  impls = {NUMBA: lambda: image_scores.ssim(a, b, max_val=1.0)}
  try:
    from skimage.metrics import structural_similarity

    def skimage_ssim():
      return [structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0)
              for x, y in zip(a, b)]
    impls[SKIMAGE] = skimage_ssim
  except ImportError:
    pass
  try:
    import pytorch_msssim
    import torch
    ta, tb = torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None])  # [N, 1, H, W]

    def torch_ssim():
      with torch.inference_mode():
        return pytorch_msssim.ssim(ta, tb, data_range=1.0, size_average=False, win_size=11,
                                   win_sigma=1.5)
    impls["pytorch-msssim (CPU)"] = torch_ssim
  except ImportError:
    pass
  jax, scoring = _jax()
  if jax is not None:
    ja, jb = jax.device_put(a[..., None]), jax.device_put(b[..., None])  # [N, H, W, 1]
    try:
      import dm_pix
      pix = jax.jit(lambda x, y: dm_pix.ssim(x, y, max_val=1.0, filter_size=11,
                                             filter_sigma=1.5))
      impls[DMPIX] = lambda: pix(ja, jb)
    except ImportError:
      pass
    # jaxvad.scoring.ssim may be missing from an older checkout: skip its row then.
    if getattr(scoring, "ssim", None) is not None:
      ours = jax.jit(lambda x, y: scoring.ssim(x, y, max_val=1.0))
      impls[JAX_SSIM] = lambda: ours(ja, jb)
  return impls


def _psnr_impls(a, b) -> dict:
  impls = {NUMBA: lambda: image_scores.psnr(a, b, max_val=1.0),
           NUMPY: lambda: 10 * np.log10(1.0 / np.maximum(np.mean((a - b) ** 2, axis=(1, 2)),
                                                         1e-10))}
  jax, scoring = _jax()
  if jax is not None:
    ja, jb = jax.device_put(a[..., None]), jax.device_put(b[..., None])
    ours = jax.jit(lambda x, y: scoring.psnr(x, y, max_val=1.0))
    impls["jaxvad.scoring.psnr (jax.jit)"] = lambda: ours(ja, jb)
  return impls


def _check_agree(task: str, impls: dict, ref: np.ndarray, atol: float) -> None:
  """Raises when an implementation's answer is off: a timing of a wrong result is worthless."""
  for name, fn in impls.items():
    got = np.asarray(fn(), dtype=np.float64).reshape(-1)
    if not np.allclose(got, ref, rtol=0, atol=atol):
      raise AssertionError(f"{task}: {name} is off by {np.max(np.abs(got - ref)):.2e}")


def run(*, quick: bool = False, repeats: int = 5) -> list[dict]:
  """SSIM, PSNR and patch-score rows: {"task", "impl", "median_ms", "baseline"}."""
  n, size = (8, 64) if quick else (64, 256)
  a, b = _frames(n, size)
  shape = f"{n}×{size}×{size}"
  rows = []

  task = f"SSIM {shape} gray"
  impls = _ssim_impls(a, b)
  # float32 peers accumulate in float32: agreement to 1e-4 of an SSIM in [-1, 1].
  _check_agree(task, impls, image_scores.ssim(a, b), atol=1e-4)
  baseline = SKIMAGE if SKIMAGE in impls else NUMBA
  for name, fn in impls.items():
    # The JAX scorer's goal is against the other jitted JAX SSIM, dm-pix.
    row_baseline = DMPIX if name == JAX_SSIM and DMPIX in impls else baseline
    rows.append({"task": task, "impl": name, "median_ms": median_ms(fn, repeats=repeats),
                 "baseline": row_baseline})

  task = f"PSNR {shape} gray"
  impls = _psnr_impls(a, b)
  _check_agree(task, impls, image_scores.psnr(a, b), atol=1e-3)  # dB
  for name, fn in impls.items():
    rows.append({"task": task, "impl": name, "median_ms": median_ms(fn, repeats=repeats),
                 "baseline": NUMPY})

  patch = 32
  task = f"patch scores {shape} P={patch}"
  rows.append({"task": task, "impl": NUMBA,
               "median_ms": median_ms(lambda: image_scores.patch_scores(a, b, patch=patch),
                                      repeats=repeats),
               "baseline": NUMBA})
  return rows


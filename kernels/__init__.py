"""jaxvad_kernels: Numba kernels for the CPU-side work (DTW, cycle partition labels, SSIM/PSNR patch scoring).

Installed under the import name ``jaxvad_kernels`` (``kernels`` belongs to another PyPI package).
Each kernel is a private ``@njit`` core behind a public wrapper that validates its input.
"""

__all__: list[str] = []

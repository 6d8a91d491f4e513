"""Numba compilation options, decided once for every kernel.

`cache=True` keeps compiled kernels on disk between processes (numba falls back to a user cache
directory when the package folder is read-only). `fastmath` stays off: the kernels are tested
against NumPy references to tight tolerances, and reassociated sums would loosen them.
`error_model="numpy"` lets divisions follow NumPy (inf/nan) instead of raising, without the
per-division zero check.
"""

import functools

import numba

njit = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")
parallel_njit = functools.partial(njit, parallel=True)
prange = numba.prange

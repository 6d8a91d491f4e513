"""Test set-up: 8 forced CPU devices, so the sharded paths run as they would on 8 GPUs.

XLA reads the flag when jax initialises its backends, so it is set before any test imports jax.
Tests that need one device pass `devices=jax.devices()[:1]`.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's persistent compilation cache, fresh per test session: the same steps are compiled again
# by many tests (a flax TrainState holds new closures on every create, so jit retraces), and
# the cache turns those recompilations into look-ups by HLO. Tests still compile everything
# once, in this session.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="jaxvad-test-xla-")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# The contract's test method, registered like a user's own (tests/tiny_method.py).
from jaxvad import methods  # noqa: E402

methods.register("tiny_test", "tests.tiny_method")

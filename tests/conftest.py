"""Test set-up: 8 forced CPU devices, so the sharded paths run as they would on 8 GPUs.

XLA reads the flag when jax initialises its backends, so it is set before any test imports jax.
Tests that need one device pass `devices=jax.devices()[:1]`.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The contract's test method, registered like a user's own (tests/tiny_method.py).
from jaxvad import methods  # noqa: E402

methods.register("tiny_test", "tests.tiny_method")

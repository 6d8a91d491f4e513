"""jaxvad: industrial video anomaly detection in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
  # `jaxvad.load_scorer` without importing jax on `import jaxvad` (the CLI checks its inputs
  # before the seconds that takes).
  if name == "load_scorer":
    from jaxvad.exported import load_scorer
    return load_scorer
  raise AttributeError(f"module 'jaxvad' has no attribute {name!r}")

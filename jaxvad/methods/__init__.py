"""Paper pipelines, one module each, behind one contract (`jaxvad.methods.base.Method`).

Each module here ends with `METHOD = Method(...)`: its model config schema, state, training
phases, score declaration and optional hooks. `get(name)` returns that declaration; the trainer,
`jaxvad score`, evaluation, reports, reproductions and bench/ read nothing else.

Adding a method: a model file in `jaxvad/models/`, a method file here, a config in `configs/`
and one line in `_REGISTRY` (see docs/ARCHITECTURE.md, "Adding a method").
"""

from __future__ import annotations

import importlib

from jaxvad.errors import ConfigError
from jaxvad.methods.base import Method

# name -> module path; modules import on first use so `jaxvad --help` stays fast.
_REGISTRY = {
    "convlstm_ae": "jaxvad.methods.convlstm_ae",
    "cutpaste": "jaxvad.methods.cutpaste",
    "f2lm": "jaxvad.methods.f2lm",
    "ffp": "jaxvad.methods.ffp",
    "predictive_ae": "jaxvad.methods.predictive_ae",
    "r3d_partition": "jaxvad.methods.r3d_partition",
}


def names() -> list[str]:
  """Names of the registered methods."""
  return sorted(_REGISTRY)


def register(name: str, module: str) -> None:
  """Registers a method module (one that defines `METHOD`) under `name`, e.g. a user's own."""
  _REGISTRY[name] = module


def get(name: str) -> Method:
  """The declaration of the method registered as `name`.

  Raises:
    ConfigError: an unknown name (listing the known ones).
  """
  if name not in _REGISTRY:
    raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(names())}")
  method = importlib.import_module(_REGISTRY[name]).METHOD
  if method.name != name:
    raise ConfigError(f"module {_REGISTRY[name]} declares method {method.name!r}, registered "
                      f"as {name!r}")
  return method

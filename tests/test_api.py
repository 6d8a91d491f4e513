"""The public surface users import: every exported function documented, options keyword-only."""

import importlib
import inspect

import pytest

# Modules whose `__all__` is the public API people import directly.
PUBLIC_MODULES = [
    "jaxvad_kernels.dtw",
    "jaxvad_kernels.partition",
    "jaxvad_kernels.image_scores",
    "jaxvad.scoring",
    "jaxvad.losses",
    "jaxvad.models.convert_torch",
    "jaxvad.cam",
    "jaxvad.masking",
    "jaxvad.augment",
    "jaxvad.models.resnet",
    "jaxvad.models.predictive_ae",
]


def _public_functions():
  for module_name in PUBLIC_MODULES:
    module = importlib.import_module(module_name)
    for name in module.__all__:
      obj = getattr(module, name)
      if inspect.isfunction(obj):
        yield pytest.param(obj, id=f"{module_name}.{name}")


@pytest.mark.parametrize("fn", list(_public_functions()))
def test_documented_with_args_and_returns(fn):
  doc = inspect.getdoc(fn) or ""
  assert doc.strip(), f"{fn.__qualname__} has no docstring"
  assert "Returns:" in doc, f"{fn.__qualname__}'s docstring has no Returns: section"
  params = inspect.signature(fn).parameters
  if params:
    assert "Args:" in doc, f"{fn.__qualname__}'s docstring has no Args: section"
    section = doc.split("Args:", 1)[1].split("Returns:", 1)[0]
    # Entries look like "  name: ..." or "  a, b: ..." at the start of a line.
    documented = {n.strip() for line in section.splitlines() if ":" in line
                  for n in line.split(":", 1)[0].split(",")}
    missing = [name for name in params if name not in documented]
    assert not missing, f"{fn.__qualname__}: arguments {missing} are not documented under Args:"


@pytest.mark.parametrize("fn", list(_public_functions()))
def test_options_are_keyword_only(fn):
  """Parameters with a default are options: callers must name them (dm-pix style)."""
  positional_options = [
      p.name for p in inspect.signature(fn).parameters.values()
      if p.default is not inspect.Parameter.empty
      and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  assert not positional_options, (f"{fn.__qualname__}: options {positional_options} can be "
                                  f"passed by position; put them after `*`")


def test_package_exports_every_kernel():
  import jaxvad_kernels
  for module_name in PUBLIC_MODULES[:3]:
    module = importlib.import_module(module_name)
    for name in module.__all__:
      assert getattr(jaxvad_kernels, name, None) is getattr(module, name), (
          f"jaxvad_kernels does not export {module_name}.{name}")

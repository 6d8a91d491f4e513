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
    "jaxvad.pseudo_anomalies",
    "jaxvad.density",
    "jaxvad.evaluation.localize",
    "jaxvad.models.resnet",
    "jaxvad.models.cutpaste",
    "jaxvad.models.predictive_ae",
    "jaxvad.data.semantic",
    "jaxvad.data.flow",
    "jaxvad.exported",
    "jaxvad.export",
    "jaxvad.live",
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


# --------------------------------------------------------------------------- import graph

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1] / "jaxvad"


def _module_name(path):
  parts = ("jaxvad",) + path.relative_to(_ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, known):
  """(module-level jaxvad imports, jaxvad imports inside functions) of one source file."""
  import ast
  tree = ast.parse(path.read_text())
  top, nested = set(), []

  def targets(node):
    if isinstance(node, ast.Import):
      return [a.name for a in node.names if a.name.startswith("jaxvad.") or a.name == "jaxvad"]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "jaxvad":
      # `from jaxvad.x import y`: the submodule x.y when there is one, else x itself.
      return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
              for a in node.names]
    return []

  for node in tree.body:
    top.update(targets(node))
    if isinstance(node, ast.If):   # e.g. `if TYPE_CHECKING:` blocks
      for child in ast.walk(node):
        top.update(targets(child))
  for fn in ast.walk(tree):
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for child in ast.walk(fn):
        nested += targets(child)
  return top, nested


def test_import_graph_has_no_cycles_and_no_late_imports():
  """The layers of docs/ARCHITECTURE.md: no module imports one that (indirectly) imports it,
  and no function imports a jaxvad module to dodge a cycle (the CLI's commands import their
  modules lazily so `jaxvad --help` stays fast, and the package's `jaxvad.load_scorer` so
  `import jaxvad` does not import jax: those are the exceptions)."""
  files = {_module_name(p): p for p in _ROOT.rglob("*.py")}
  graph, late = {}, []
  for name, path in files.items():
    top, nested = _imports(path, set(files))
    graph[name] = {m for m in top if m in files and m != name}
    if nested and name not in ("jaxvad.cli", "jaxvad"):
      late.append(f"{name}: {sorted(set(nested))}")
  assert not late, f"imports inside functions: {late}"

  state = {}

  def visit(node, stack):
    state[node] = "active"
    for dep in sorted(graph[node]):
      if state.get(dep) == "active":
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
      if dep not in state:
        visit(dep, stack + [dep])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])

"""The import graph of medjax/: no cycle, the layers one way, medjax's own modules imported at the
top. Read from the source with `ast`, function-level imports included (they hide cycles)."""

import ast
import os

import medjax

ROOT = os.path.dirname(medjax.__file__)

# Modules that wrap an optional third-party dependency: imported inside the function that needs
# them, so that medjax works without the dependency.
OPTIONAL = {"medjax.data.pipeline", "medjax.data.tfds.source"}  # TensorFlow (Datasets)


def _modules() -> dict[str, str]:
  """Module name -> path of every module of medjax."""
  out = {}
  for directory, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(directory, f)
        parts = os.path.relpath(path[:-3], os.path.dirname(ROOT)).split(os.sep)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


MODULES = _modules()


def _imports(path: str):
  """(imported medjax module, line, whether inside a function) for each import in `path`. An
  imported name that is a submodule (`from medjax.train import loop`) counts as that module."""
  tree = ast.parse(open(path).read(), path)
  in_function = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      in_function.update(id(n) for n in ast.walk(node) if n is not node)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
               for a in node.names]
    else:
      continue
    for name in names:
      if name.split(".")[0] == "medjax":
        while name not in MODULES:  # `import medjax.x.y` of a name: its module
          name = name.rsplit(".", 1)[0]
        yield name, node.lineno, id(node) in in_function


def _graph() -> dict[str, set[str]]:
  return {m: {n for n, _, _ in _imports(p) if n != m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(component)

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_import_graph_has_no_cycle():
  cycles = [sorted(c) for c in _cycles(_graph())]
  assert not cycles, f"medjax modules that import each other (with function-level imports): {cycles}"


def test_the_layers_import_one_way():
  """analysis (post-run tools) sits above train, train above eval; models know nothing of data,
  training or evaluation."""
  below = {
      "medjax.eval": ("medjax.train", "medjax.analysis"),
      "medjax.train": ("medjax.analysis",),
      "medjax.models": ("medjax.data", "medjax.train", "medjax.eval", "medjax.analysis"),
      "medjax.data": ("medjax.train", "medjax.eval", "medjax.analysis"),
  }
  wrong = []
  for module, imported in _graph().items():
    for layer, forbidden in below.items():
      if module == layer or module.startswith(layer + "."):
        wrong += [f"{module} imports {n}" for n in sorted(imported)
                  if any(n == f or n.startswith(f + ".") for f in forbidden)]
  assert not wrong, wrong


def test_medjax_modules_are_imported_at_the_top():
  """A function-level import is for an optional dependency only."""
  late = [f"medjax/{os.path.relpath(path, ROOT)}:{line} imports {module} inside a function"
          for path in MODULES.values() for module, line, in_function in _imports(path)
          if in_function and module not in OPTIONAL]
  assert not late, late

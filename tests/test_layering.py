"""Imports go one way: a stunet package imports only its own layer and the layers below it
(README, Layout). Read from the source, function-level imports included."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stunet")

# Lowest first. Packages in one layer may import each other.
LAYERS = (
    ("parallel",),
    ("nn", "text", "diffusion", "data", "convert"),
    ("conditioning",),
    ("train", "config"),  # `stunet.config` assembles the sections with train's numbers
    ("eval", "sampling"),  # evaluation samples runs; sampling writes the gallery
    ("apps",),
)
def _level(package: str) -> int:
  for i, layer in enumerate(LAYERS):
    if package in layer:
      return i
  raise AssertionError(f"stunet.{package} is in no layer of tests/test_layering.py: add it")


def _imports(path: str, module: str):
  """(imported stunet module, line) of every import in the file."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("stunet."):
          yield alias.name, node.lineno
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "stunet":
        for alias in node.names:
          yield f"stunet.{alias.name}", node.lineno
      elif node.module.startswith("stunet."):
        for alias in node.names:
          # `from stunet.apps import sample_run` names the module; `from stunet.x.y import f`
          # a member: both count as importing what they name, down to a module.
          yield f"{node.module}.{alias.name}", node.lineno


def _modules():
  for directory, _, files in os.walk(ROOT):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        yield path, rel.removesuffix(".__init__")


def _package(module: str) -> str:
  return module.split(".")[1]


def _target_module(name: str) -> str:
  """`stunet.a.b[.member]` -> the module file it lives in (`stunet.a.b`)."""
  parts = name.split(".")
  for end in range(len(parts), 1, -1):
    candidate = os.path.join(os.path.dirname(ROOT), *parts[:end])
    if os.path.isfile(candidate + ".py") or os.path.isdir(candidate):
      return ".".join(parts[:end])
  return name


def upward_imports():
  found = set()
  for path, module in _modules():
    if module == "stunet":
      continue
    here = _level(_package(module))
    for name, line in _imports(path, module):
      target = _target_module(name)
      if _level(_package(target)) > here:
        found.add((module, target, line))
  return found


def test_no_package_imports_a_higher_layer():
  upward = upward_imports()
  new = sorted(f"{m}:{line} imports {t}" for m, t, line in upward)
  assert not new, "imports against the layering (README, Layout):\n  " + "\n  ".join(new)


def test_every_package_has_a_layer():
  packages = {_package(m) for _, m in _modules() if m != "stunet"}
  assert packages == {p for layer in LAYERS for p in layer}

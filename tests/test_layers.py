"""The import graph keeps the layers of docs/design.md: no circles, no import upwards, no
private names across modules, and no experiment config imported by library code.

Read from the source (every ``import``, also inside functions), not from what
happens to be loaded, so a lazy import that would close a circle fails here.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DESIGN = os.path.join(REPO, 'docs', 'design.md')


def _documented_layers():
  """``((layer, module prefixes), ...)`` from docs/design.md's table, bottom first."""
  text = open(DESIGN).read()
  start = text.index('<!-- layers')
  rows = text[start:text.index('<!-- end of layers -->')].splitlines()[3:]
  layers = []
  for row in rows:
    name, modules = [c.strip() for c in row.strip('|').split('|')][:2]
    paths = [m.strip().strip('`') for m in modules.split(',')]
    layers.append((name, tuple(p.rstrip('/').removesuffix('.py').replace('/', '.')
                               for p in paths)))
  return tuple(layers)


# A module may import modules of its own layer and of the layers below it.
LAYERS = _documented_layers()
# Experiment configs sit beside the library: they build on its model settings and on each
# other; library code loads them by path (avslowfast_jax.cli) and never imports them.
CONFIG_PACKAGES = ('configs', 'avslowfast_jax.studies.configs')
CONFIG_MAY_IMPORT = ('configs', 'avslowfast_jax.studies.configs', 'avslowfast_jax.models.config',
                     'data_pipelines.errors')
PACKAGES = ('avslowfast_jax', 'data_pipelines', 'configs')


def _within(name, prefix):
  return name == prefix or name.startswith(prefix + '.')


def _modules():
  """``{module name: path}`` of every Python file of the three packages."""
  out = {}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(REPO, package)):
      for f in files:
        if f.endswith('.py'):
          path = os.path.join(folder, f)
          name = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
          out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
  return out


MODULES = _modules()


def _resolve(name):
  """The project module an import names (a package's submodule, else the package)."""
  while name and name not in MODULES:
    name = name.rpartition('.')[0]
  return name or None


def _imports(path):
  """``[(imported module, names taken from it, line)]`` of every import in ``path``, and
  the private attributes read through an imported module's name."""
  tree = ast.parse(open(path).read(), path)
  found, aliases = [], {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        target = _resolve(a.name)
        if target:
          found.append((target, (), node.lineno))
          aliases[a.asname or a.name.split('.')[0]] = target if a.asname else None
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        sub = _resolve(f'{node.module}.{a.name}')
        if sub and sub != _resolve(node.module):  # a module of a package
          found.append((sub, (), node.lineno))
          aliases[a.asname or a.name] = sub
        elif _resolve(node.module):
          found.append((_resolve(node.module), (a.name,), node.lineno))
  private = [(aliases[n.value.id], n.attr, n.lineno) for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
             and aliases.get(n.value.id) and n.attr.startswith('_') and not n.attr.startswith('__')]
  return found, private


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(name):
  if any(_within(name, c) for c in CONFIG_PACKAGES):
    return None
  if name == 'avslowfast_jax':  # the package's __init__
    return 1
  for i, (_, prefixes) in enumerate(LAYERS):
    if any(_within(name, p) for p in prefixes):
      return i
  raise AssertionError(f'{name} is in no layer of LAYERS: add it (and to docs/design.md)')


def test_every_module_has_a_layer():
  for name in MODULES:
    _layer(name)


def test_no_import_points_up():
  wrong = []
  for name, (imports, _) in GRAPH.items():
    mine = _layer(name)
    for target, _, line in imports:
      if mine is None:  # a config
        if not any(_within(target, p) for p in CONFIG_MAY_IMPORT):
          wrong.append(f'{MODULES[name]}:{line}: the config imports {target}')
        continue
      theirs = _layer(target)
      if theirs is None:
        wrong.append(f'{MODULES[name]}:{line}: library code imports the config {target} '
                     '(load it by path: avslowfast_jax.cli)')
      elif theirs > mine:
        wrong.append(f'{MODULES[name]}:{line}: {LAYERS[mine][0]} imports {target} '
                     f'({LAYERS[theirs][0]}, a layer above)')
  assert not wrong, '\n'.join(wrong)


def test_no_import_circles():
  edges = {name: {t for t, _, _ in imports if t != name and not _within(name, t)}
           for name, (imports, _) in GRAPH.items()}
  state, stack, circles = {}, [], []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == 'open':
        circles.append(' -> '.join(stack[stack.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = 'done'

  for node in sorted(edges):
    if node not in state:
      visit(node)
  assert not circles, '\n'.join(circles)


def test_no_module_takes_another_modules_private_names():
  wrong = []
  for name, (imports, private) in GRAPH.items():
    for target, names, line in imports:
      wrong += [f'{MODULES[name]}:{line}: imports {target}.{n}' for n in names
                if n.startswith('_') and target != name]
    wrong += [f'{MODULES[name]}:{line}: reads {target}.{attr}' for target, attr, line in private
              if target != name]
  assert not wrong, '\n'.join(wrong)


def test_tests_import_no_other_test_module():
  """Tests share helpers through conftest.py fixtures and the helper modules, never by
  importing another test module; nor do they reach into a module's private names (of the
  project or of a helper module), by import or by attribute."""
  tests_dir = os.path.join(REPO, 'tests')
  test_modules = {f[:-3] for f in os.listdir(tests_dir) if f.startswith('test_')}
  helpers = {f[:-3] for f in os.listdir(tests_dir)
             if f.endswith('.py') and not f.startswith('test_') and f != 'conftest.py'}
  wrong = []
  for f in sorted(os.listdir(tests_dir)):
    if not f.endswith('.py'):
      continue
    path = os.path.join(tests_dir, f)
    tree = ast.parse(open(path).read(), path)
    aliases = {}  # local name -> project or helper module it names
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [a.name.split('.')[-1] for a in node.names]
        for a in node.names:
          if a.asname and (_resolve(a.name) or a.name in helpers):
            aliases[a.asname] = a.name
          elif a.name in helpers:
            aliases[a.name] = a.name
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module.split('.')[-1]]
        wrong += [f'tests/{f}:{node.lineno}: imports the private {node.module}.{a.name}'
                  for a in node.names if a.name.startswith('_') and node.module != '__future__'
                  and not node.module.startswith(('jax', 'flax'))]
        for a in node.names:
          sub = _resolve(f'{node.module}.{a.name}')
          if sub and sub != _resolve(node.module):  # a module of a package
            aliases[a.asname or a.name] = sub
      else:
        continue
      wrong += [f'tests/{f}:{node.lineno}: imports the test module {n}' for n in names
                if n in test_modules]
    wrong += [f'tests/{f}:{n.lineno}: reads {aliases[n.value.id]}.{n.attr}'
              for n in ast.walk(tree)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id in aliases and n.attr.startswith('_')
              and not n.attr.startswith('__')]
  assert not wrong, '\n'.join(wrong)


def test_the_layers_are_those_of_the_design():
  names = [name for name, _ in LAYERS]
  assert names[0] == 'data' and names[-1] == 'studies', names
  assert ('models', ('avslowfast_jax.models',)) in LAYERS
  # Losses and metrics below the tasks; training and evaluation above them.
  order = {name: i for i, (name, _) in enumerate(LAYERS)}
  assert order['losses and metrics'] < order['tasks'] < order['evaluation'] < order['train']

"""How the absl commands read their config flags, and how library code loads a config file.

:func:`run_absl` runs an absl ``main`` with every flag mistake (an unknown
flag, a bad value, an override of a field the config lacks, a config file
that is not there) reported as one ``UserError`` line and exit status 2
(``data_pipelines.errors``). :func:`load_config_file` loads
``path/to/config.py[:variant]``; :func:`project_config` loads one of the
project's own config files by its path relative to the checkout, so library
code never imports an experiment config.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from typing import Callable, Iterable, Optional, Sequence

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from data_pipelines.errors import EXIT_USER_ERROR, UserError, report

# The folder that holds ``configs/`` (the checkout, or site-packages for an installed wheel).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _missing_field(config, path: Sequence[str]) -> Optional[str]:
  """Why ``config.<path>`` is not a field (with a suggestion), or None if it is."""
  node = config
  for depth, name in enumerate(path):
    try:
      keys = list(node.keys())
    except AttributeError:
      return f'{".".join(path[:depth])} is a value, not a section'
    if name not in keys:
      where = '.'.join(path[:depth]) or 'the config'
      close = difflib.get_close_matches(name, keys, n=1)
      hint = f'; did you mean {close[0]!r}?' if close else f'; it has {sorted(keys)}'
      return f'{where} has no field {name!r}{hint}'
    node = node[name]
  return None


def _load_config(argv: Sequence[str], name: str):
  """The config that ``--<name> FILE[:variant]`` in ``argv`` loads, or None."""
  for i, arg in enumerate(argv):
    if arg in (f'--{name}', f'-{name}') and i + 1 < len(argv):
      spec = argv[i + 1]
    elif arg.startswith(f'--{name}='):
      spec = arg.split('=', 1)[1]
    else:
      continue
    try:
      # ml_collections applies overrides while it parses the flag, so a failed
      # override leaves the flag without a value: load the file again, bare.
      return load_config_file(spec)
    except Exception:  # pylint: disable=broad-except  # then the original error stands
      return None
  return None


def load_config_file(spec: str):
  """``path/to/config.py[:variant]`` -> the ConfigDict its ``get_config`` returns."""
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('loaded_config', path)
  if module_spec is None or not os.path.isfile(path):
    raise UserError(f'{path}: no such config file')
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS,
                config_flag_names: Sequence[str] = ('config',)) -> list:
  """``flag_values(argv)`` with every mistake as a ``UserError``.

  Covers what absl reports (a bad value, an unknown flag), an override of a
  config field that does not exist (ml_collections raises a bare ``KeyError``
  or ``AttributeError`` for those) and a config file that cannot be found.
  """
  try:
    rest = flag_values(list(argv))
  except (flags.Error, KeyError, AttributeError) as e:
    # An override of a field the config lacks: absl calls it an unknown flag,
    # ml_collections raises a bare KeyError or AttributeError. Name the field.
    for arg in argv[1:]:
      name = arg.lstrip('-').partition('=')[0]
      head, _, path = name.partition('.')
      if head in config_flag_names and path:
        config = _load_config(argv, head)
        why = _missing_field(config, path.split('.')) if config is not None else None
        if why:
          raise UserError(f'--{name}: {why}') from None
    if isinstance(e, flags.Error):
      raise UserError(str(e)) from None
    raise UserError(f'a config override names no field of the config: {e}') from None
  for name in config_flag_names:
    if name not in flag_values or flag_values[name].value is None:
      continue
    try:
      flag_values[name].value.keys()
    except OSError:  # ml_collections defers a config file that could not be read
      path = config_flags.get_config_filename(flag_values[name])
      raise UserError(f'--{name} {path}: no such config file') from None
  return rest


def project_config(relative_path: str, variant: str = ''):
  """A config of this project's own files, e.g. ``project_config('configs/ucf101.py',
  'linear_split1')``; the path is relative to :data:`PROJECT_ROOT`."""
  spec = os.path.join(PROJECT_ROOT, relative_path)
  return load_config_file(f'{spec}:{variant}' if variant else spec)


def set_fields(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
  """Applies ``a.b.c=value`` overrides (Python literals, else strings) to ``config``."""
  for item in overrides:
    key, sep, text = item.partition('=')
    if not sep:
      raise UserError(f'--set {item!r}: expected FIELD=VALUE, e.g. train.total_steps=1000')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    node = config
    *parents, leaf = key.split('.')
    try:
      for p in parents:
        node = node[p]
      old = node[leaf]
    except (KeyError, AttributeError):
      raise UserError(f'--set {item!r}: the config has no field {key!r}') from None
    if isinstance(old, tuple) and not isinstance(value, (tuple, list)):
      value = (value,)  # as on the command line: a tuple field given one value
    node[leaf] = tuple(value) if isinstance(old, tuple) else value


def run_absl(main: Callable, config_flag_names: Sequence[str] = ('config',)) -> None:
  """``absl.app.run(main)`` with clean messages for ``UserError`` and config mistakes."""
  try:
    app.run(main, flags_parser=lambda argv: parse_flags(argv, flags.FLAGS, config_flag_names))
  except UserError as e:
    report(e)
    sys.exit(EXIT_USER_ERROR)

"""How every command of the project ends on a user's mistake.

A mistake in what the user asked for or supplied (a folder without prepared
data, an unknown config variant or field, a manifest without the expected
columns, a workdir without checkpoints, a damaged export) raises
:class:`UserError` with a message that names the thing that is wrong and says
what was expected. Entry points run their ``main`` through :func:`run`
(argparse commands) or :func:`run_absl` (absl commands with ml_collections
configs): a ``UserError`` becomes one line on stderr and exit status 2, without
a traceback. Any other exception is a bug in the project and keeps its
traceback.

This module lives in ``data_pipelines`` because that package is the bottom
layer: ``avslowfast_jax`` imports it, never the other way round.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

EXIT_USER_ERROR = 2


class UserError(Exception):
  """A mistake in the command line, the config or the files a user supplied.

  Deliberately not a ``ValueError``: ml_collections re-raises ``ValueError``s
  from ``get_config`` with their traceback pasted into the message, and absl
  turns them into flag-parsing errors; a ``UserError`` passes through both
  unchanged.
  """


def _prog() -> str:
  main = sys.modules.get('__main__')
  spec = getattr(main, '__spec__', None)
  if spec is not None and spec.name:
    return spec.name
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'avslowfast'


def report(error: BaseException, prog: Optional[str] = None) -> None:
  """Prints ``error`` as the one-line (or few-line) message of a failed command."""
  print(f'{prog or _prog()}: error: {error}', file=sys.stderr)


def run(main: Callable[..., Optional[int]], argv: Optional[Sequence[str]] = None,
        prog: Optional[str] = None) -> None:
  """Runs an argparse ``main(argv)`` and exits with its status (2 on a ``UserError``).

  An int that ``main`` returns is the exit status; anything else (a path, for
  callers in Python) means success.
  """
  try:
    code = main(argv)
  except UserError as e:
    report(e, prog)
    sys.exit(EXIT_USER_ERROR)
  sys.exit(code if isinstance(code, int) else 0)


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


def run_absl(main: Callable, config_flag_names: Sequence[str] = ('config',)) -> None:
  """``absl.app.run(main)`` with clean messages for ``UserError`` and config mistakes."""
  try:
    app.run(main, flags_parser=lambda argv: parse_flags(argv, flags.FLAGS, config_flag_names))
  except UserError as e:
    report(e)
    sys.exit(EXIT_USER_ERROR)

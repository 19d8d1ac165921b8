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
import re
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


def _config_line(error: BaseException, path: str) -> str:
  """``path:LINE`` of the deepest frame of ``error``'s traceback in the config file ``path``."""
  line = None
  target = os.path.realpath(path)
  tb = error.__traceback__
  while tb is not None:
    if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
      line = tb.tb_lineno
    tb = tb.tb_next
  return f'{path}:{line}' if line else path


def load_config_file(spec: str):
  """``path/to/config.py[:variant]`` -> the ConfigDict its ``get_config`` returns.

  Every way a config file can fail to give a config is a ``UserError`` that
  names the file (and the line): not there, a syntax error, an error while it
  runs, no ``get_config``, or a ``get_config`` that fails for the variant.
  """
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('loaded_config', path)
  if module_spec is None or not os.path.isfile(path):
    raise UserError(f'{path}: no such config file')
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:  # in the file, or in a module it imports (then that one is named)
    if not e.filename or os.path.realpath(e.filename) == os.path.realpath(path):
      where = f'{path}:{e.lineno}'
    else:
      where = f'{e.filename}:{e.lineno} (imported by {path})'
    raise UserError(f'{where}: syntax error in the config file: {e.msg}') from None
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # any error of the user's file
    raise UserError(f'{_config_line(e, path)}: the config file fails to load: '
                    f'{type(e).__name__}: {e}') from None
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise UserError(f'{path}: not a config file: it defines no get_config() function')
  try:
    return get_config(variant) if variant else get_config()
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    call = f'get_config({variant!r})' if variant else 'get_config()'
    raise UserError(f'{_config_line(e, path)}: {call} failed: {type(e).__name__}: {e}') from None


_HELP_FLAGS = ('-h', '--help', '-help', '--helpshort', '-helpshort', '--helpfull', '-helpfull',
               '-?')


def _config_specs(argv: Sequence[str], names: Sequence[str]):
  """``(name, FILE[:variant])`` of each config flag given in ``argv``."""
  for i, arg in enumerate(argv):
    for name in names:
      if arg in (f'--{name}', f'-{name}') and i + 1 < len(argv):
        yield name, argv[i + 1]
      elif arg.startswith((f'--{name}=', f'-{name}=')):
        yield name, arg.split('=', 1)[1]


def _expected_type(message: str) -> Optional[str]:
  """What a value should have been, from absl's "could not convert string to float" (and
  alike), else None."""
  for pattern, kind in (('could not convert string to float', 'a number'),
                        ('invalid literal for int()', 'an integer'),
                        ('could not convert string to int', 'an integer')):
    if pattern in message:
      return kind
  return None


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS,
                config_flag_names: Sequence[str] = ('config',)) -> list:
  """``flag_values(argv)`` with every mistake as a ``UserError``.

  Covers what absl reports (a bad value, an unknown flag), an override of a
  config field that does not exist (ml_collections raises a bare ``KeyError``
  or ``AttributeError`` for those), a config file that cannot be found or
  loaded (:func:`load_config_file` names the file and line), and a tuple field
  given a value that is not a tuple (:func:`check_tuple_overrides`).
  ``--help`` prints the help and exits 0.
  """
  # The config files first, by load_config_file: it names the file and line of any way a
  # file fails to load (ml_collections pastes a traceback into its message, or lets a
  # SyntaxError through, and reuses a module of the same name that it loaded before).
  if not any(a in _HELP_FLAGS for a in argv[1:]):
    for name, spec in _config_specs(argv[1:], config_flag_names):
      try:
        load_config_file(spec)
      except UserError as e:
        named = str(e).startswith(spec.partition(':')[0])  # the file's own errors name it
        raise UserError(f'--{name} {e}' if named else f'--{name} {spec}: {e}') from None
  try:
    rest = flag_values(list(argv))
  except SystemExit as e:
    if e.code == 1 and any(a in _HELP_FLAGS for a in argv[1:]):
      sys.exit(0)  # absl exits 1 after printing the help that was asked for
    raise
  except Exception as e:  # pylint: disable=broad-except  # each kind is named below
    # An override of a field the config lacks: absl calls it an unknown flag,
    # ml_collections raises a bare KeyError or AttributeError. Name the field.
    for arg in argv[1:]:
      name, _, value = arg.lstrip('-').partition('=')
      head, _, path = name.partition('.')
      if head in config_flag_names and path:
        config = _load_config(argv, head)
        why = _missing_field(config, path.split('.')) if config is not None else None
        if why:
          raise UserError(f'--{name}: {why}') from None
        if f'--{name}={value}' in str(e) or f'-{name}={value}' in str(e):
          kind = _expected_type(str(e))
          if kind:
            raise UserError(f'--{name}={value}: expected {kind}') from None
    if isinstance(e, flags.Error):
      raise UserError(str(e)) from None
    if isinstance(e, (KeyError, AttributeError)):
      raise UserError(f'a config override names no field of the config: {e}') from None
    raise
  for name in config_flag_names:
    if name not in flag_values or flag_values[name].value is None:
      continue
    try:
      flag_values[name].value.keys()
    except OSError:  # ml_collections defers a config file that could not be read
      path = config_flags.get_config_filename(flag_values[name])
      raise UserError(f'--{name} {path}: no such config file') from None
    check_tuple_overrides(argv, name, flag_values[name].value)
  return rest


def _tuple_example(default: tuple) -> str:
  """A tuple literal for a message: ``default`` itself, or two stage names if it is empty."""
  return repr(tuple(default)) if default else "('res4', 'res5')"


def check_tuple_overrides(argv: Sequence[str], name: str, config) -> None:
  """A ``UserError`` for a tuple field whose ``--<name>.field=value`` did not read as a tuple.

  ml_collections reads the value as a Python literal and, when that fails,
  keeps the whole text as the tuple's one element: ``--config.x=(res4,)`` (the
  inner quotes lost) becomes ``('(res4,)',)`` and ``--config.x=res4,res5``
  becomes ``('res4,res5',)``, as does ``abc`` for a tuple of numbers; each would
  run on silently.
  """
  prefix = f'--{name}.'
  for arg in argv[1:]:
    if not arg.startswith((prefix, prefix[1:])):
      continue
    field, sep, text = arg.lstrip('-')[len(name) + 1:].partition('=')
    if not sep:
      continue
    node = config
    try:
      for part in field.split('.'):
        node = node[part]
    except (KeyError, AttributeError, TypeError):
      continue
    if not isinstance(node, tuple) or not any(isinstance(v, str) for v in node):
      continue
    looks_wrong = any(isinstance(v, str) and re.search(r'[()\[\],\'"]', v) for v in node)
    if not looks_wrong:
      default = _field_default(argv, name, field)
      if default is None or not default or all(isinstance(v, str) for v in default):
        continue
    else:
      default = _field_default(argv, name, field) or ()
    example = _tuple_example(default)
    raise UserError(
        f'--{name}.{field}={text}: {field} is a tuple; give a Python tuple in quotes, e.g. '
        f'--{name}.{field}="{example}" (strings quoted inside), or one value')


def _field_default(argv: Sequence[str], name: str, field: str):
  """The value of ``field`` in the config file of ``--<name>`` without overrides, or None."""
  config = _load_config(argv, name)
  try:
    for part in field.split('.'):
      config = config[part]
  except (KeyError, AttributeError, TypeError):
    return None
  return config


def check_overrides(spec: str, overrides: Sequence[str], flag: str) -> None:
  """A ``UserError`` naming ``flag`` if the ``--config.x=y`` items of ``overrides`` do not
  parse against the config file ``spec`` (a command that passes them on to
  ``avslowfast_jax.main`` checks them before it starts any work)."""
  argv = ['prog', '--config', spec, *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  try:
    rest = parse_flags(argv, values)
  except UserError as e:
    raise UserError(f'{flag}: {e}') from None
  if len(rest) > 1:
    raise UserError(f'{flag} {" ".join(rest[1:])}: expected --config.FIELD=VALUE items')


def project_config(relative_path: str, variant: str = ''):
  """A config of this project's own files, e.g. ``project_config('configs/ucf101.py',
  'linear_split1')``; the path is relative to :data:`PROJECT_ROOT`."""
  spec = os.path.join(PROJECT_ROOT, relative_path)
  return load_config_file(f'{spec}:{variant}' if variant else spec)


def set_fields(config: ml_collections.ConfigDict, overrides: Iterable[str],
               flag: str = '--set') -> None:
  """Applies ``a.b.c=value`` overrides (Python literals, else strings) to ``config``;
  a mistake is a ``UserError`` naming ``flag`` and the item."""
  for item in overrides:
    key, sep, text = item.partition('=')
    if not sep:
      raise UserError(f'{flag} {item!r}: expected FIELD=VALUE, e.g. train.total_steps=1000')
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
      raise UserError(f'{flag} {item!r}: the config has no field {key!r}') from None
    if isinstance(old, tuple) and not isinstance(value, (tuple, list)):
      numbers = bool(old) and not any(isinstance(v, str) for v in old)
      if isinstance(value, str) and (numbers or re.search(r'[()\[\],\'"]', value)):
        raise UserError(f'{flag} {item!r}: {key} is a tuple; give a Python tuple, e.g. '
                        f'{key}="{_tuple_example(old)}" (strings quoted inside), or one value')
      value = (value,)  # as on the command line: a tuple field given one value
    node[leaf] = tuple(value) if isinstance(old, tuple) else value


def run_absl(main: Callable, config_flag_names: Sequence[str] = ('config',)) -> None:
  """``absl.app.run(main)`` with clean messages for ``UserError`` and config mistakes."""
  try:
    app.run(main, flags_parser=lambda argv: parse_flags(argv, flags.FLAGS, config_flag_names))
  except UserError as e:
    report(e)
    sys.exit(EXIT_USER_ERROR)

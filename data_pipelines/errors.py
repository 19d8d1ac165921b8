"""How every command of the project ends on a user's mistake.

A mistake in what the user asked for or supplied (a folder without prepared
data, an unknown config variant or field, a manifest without the expected
columns, a workdir without checkpoints, a damaged export) raises
:class:`UserError` with a message that names the thing that is wrong and says
what was expected. Entry points run their ``main`` through :func:`run`
(argparse commands) or ``avslowfast_jax.cli.run_absl`` (absl commands with
ml_collections configs): a ``UserError`` becomes one line on stderr and exit
status 2, without a traceback. Any other exception is a bug in the project and
keeps its traceback.

``data_pipelines`` is the bottom layer, so the class lives here and
``avslowfast_jax`` imports it.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

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


def last_line(text: str) -> str:
  """The last non-empty line of a command's output: its error message, if it follows
  this module's rule (a run of another command that failed names it in one line)."""
  lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
  return lines[-1] if lines else '(no output)'


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

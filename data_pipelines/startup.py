"""A console without TensorFlow's start-up banners.

TensorFlow writes a few lines to stderr while it is imported, before any
command has printed anything: the oneDNN notice ("oneDNN custom operations
are on ..."), the absl notice that precedes it ("All log messages before
absl::InitializeLog() is called are written to STDERR"), the CPU-instruction
notice and, in builds with CUDA, its probing of the CUDA libraries. None of
them is about the command. TensorFlow 2.21 writes the oneDNN notice whatever
``TF_CPP_MIN_LOG_LEVEL`` says (its C++ logging is not set up yet), so
:func:`quiet_tensorflow_startup` does two things, before TensorFlow is
imported (both packages call it from their ``__init__``, so every entry point
does):

- ``TF_CPP_MIN_LOG_LEVEL`` defaults to 1: TensorFlow's C++ INFO messages are
  dropped, its warnings and errors kept (a value already set wins);
- the first ``import tensorflow`` runs with the process's stderr (file
  descriptor 2) captured; afterwards every captured line is written back
  except the banners above. Anything else TensorFlow or Python writes during
  the import (a real error, a warning) reaches the console unchanged, and all
  of it does if the import fails.

Nothing imports TensorFlow here: a process that never does (clip finishing
on the device, the model alone) is not slowed down.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile

# Lines of TensorFlow's import that say nothing about the command.
_BANNERS = re.compile('|'.join([
    r'^WARNING: All log messages before absl::InitializeLog\(\) is called',
    r'^I\d{4} [\d:. ]+\s+\d+ \S+:\d+\] ',  # C++ INFO lines (absl's format)
    r'oneDNN custom operations are on',
    r'This TensorFlow binary is optimized to use available CPU instructions',
    r'^To enable the following instructions: .*rebuild TensorFlow',
    r'Unable to register cu(DNN|FFT|BLAS) factory',
    r'computation placer already registered',
    r'TF-TRT Warning: Could not find TensorRT',
    r'Could not find cuda drivers on your machine',
    r'failed call to cuInit',
]))


def is_banner(line: str) -> bool:
  """Whether ``line`` is one of TensorFlow's start-up banners."""
  return bool(_BANNERS.search(line))


@contextlib.contextmanager
def stderr_without_banners(drop=is_banner):
  """Captures file descriptor 2 for the block, then writes back the lines not ``drop``ped
  (default: all but the banners).

  On an exception in the block everything captured is written back.
  """
  try:
    saved = os.dup(2)
  except OSError:  # no stderr to capture
    yield
    return
  failed = False
  with tempfile.TemporaryFile() as captured:
    try:
      sys.stderr.flush()
    except (AttributeError, ValueError):
      pass
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      failed = True
      raise
    finally:
      try:
        sys.stderr.flush()
      except (AttributeError, ValueError):
        pass
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode('utf-8', 'replace')
      kept = [line for line in text.splitlines(True) if failed or not drop(line)]
      if kept:
        os.write(2, ''.join(kept).encode('utf-8', 'replace'))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Finds ``tensorflow`` as the other finders do and runs its import without the banners."""

  def find_spec(self, name, path=None, target=None):
    if name != 'tensorflow':
      return None
    if self in sys.meta_path:
      sys.meta_path.remove(self)  # the first import only
    for finder in sys.meta_path:
      find = getattr(finder, 'find_spec', None)
      spec = find(name, path, target) if find else None
      if spec is not None:
        break
    else:
      return None
    loader = spec.loader
    if loader is None or not hasattr(loader, 'exec_module'):
      return spec
    exec_module = loader.exec_module

    def quiet_exec_module(module):
      with stderr_without_banners():
        exec_module(module)

    try:
      loader.exec_module = quiet_exec_module  # this loader object serves this module only
    except AttributeError:
      pass
    return spec


def quiet_tensorflow_startup() -> None:
  """Hides TensorFlow's start-up banners from the console (module docstring). Idempotent."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  if 'tensorflow' in sys.modules:
    return
  if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())

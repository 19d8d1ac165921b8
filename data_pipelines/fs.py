"""The one filesystem layer: every file the project reads or writes goes through here.

Paths may be local (``/data/k400``), cloud buckets (``gs://bucket/k400``) or
any other scheme TensorFlow's filesystem registry knows (``ram://`` in the
tests). Everything is a thin wrapper over ``tf.io.gfile`` so that callers
never use ``open``, ``os.path.exists``, ``os.makedirs`` or ``os.listdir`` on a
path a user gave: those silently make a local folder named ``gs:``.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from typing import Any, Iterator, List

import tensorflow as tf


def is_remote(path: str) -> bool:
  """True for a path with a scheme (``gs://``, ``ram://``, ...)."""
  return '://' in str(path)


def join(path: str, *parts: str) -> str:
  """``os.path.join`` that keeps ``scheme://`` intact."""
  path = str(path)
  if is_remote(path):
    return posixpath.join(path, *parts)
  return tf.io.gfile.join(path, *parts)


def open(path: str, mode: str = 'r'):  # pylint: disable=redefined-builtin
  """A file object for ``path`` (``'r'``, ``'rb'``, ``'w'``, ``'wb'``, ``'a'``)."""
  return tf.io.gfile.GFile(str(path), mode)


def exists(path: str) -> bool:
  return tf.io.gfile.exists(str(path))


def isdir(path: str) -> bool:
  return tf.io.gfile.isdir(str(path))


def makedirs(path: str) -> None:
  """Creates ``path`` and its parents; an existing folder is fine."""
  tf.io.gfile.makedirs(str(path))


def listdir(path: str) -> List[str]:
  """Names in a folder (no trailing ``/`` on sub-folders), sorted."""
  return sorted(name.rstrip('/') for name in tf.io.gfile.listdir(str(path)))


def glob(pattern: str) -> List[str]:
  return sorted(tf.io.gfile.glob(str(pattern)))


def remove(path: str) -> None:
  tf.io.gfile.remove(str(path))


def rmtree(path: str) -> None:
  tf.io.gfile.rmtree(str(path))


def rename(src: str, dst: str, overwrite: bool = False) -> None:
  tf.io.gfile.rename(str(src), str(dst), overwrite=overwrite)


def copy(src: str, dst: str, overwrite: bool = False) -> None:
  tf.io.gfile.copy(str(src), str(dst), overwrite=overwrite)


def size(path: str) -> int:
  return int(tf.io.gfile.stat(str(path)).length)


def read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def read_text(path: str) -> str:
  with open(path, 'r') as f:
    return f.read()


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary name, so readers never see half a file."""
  tmp = str(path) + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  rename(tmp, path, overwrite=True)


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  write_text(path, json.dumps(obj, indent=indent) + '\n')


@contextlib.contextmanager
def open_lines(path: str) -> Iterator[Iterator[str]]:
  """Yields an iterator over the lines of a text file (newlines stripped)."""
  with open(path, 'r') as f:
    yield (line.rstrip('\n') for line in f)

"""The one filesystem layer: every file the project reads or writes goes through here.

Paths may be local (``/data/k400``), cloud buckets (``gs://bucket/k400``) or
any other scheme TensorFlow's filesystem registry knows (``ram://`` in the
tests). Everything is a thin wrapper over ``tf.io.gfile`` so that callers
never use ``open``, ``os.path.exists``, ``os.makedirs`` or ``os.listdir`` on a
path a user gave: those silently make a local folder named ``gs:``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import threading
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np


def _gfile():
  """``tf.io.gfile``, imported on first use: the model and the train step import this module
  but need no TensorFlow until they touch a file."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


def is_remote(path: str) -> bool:
  """True for a path with a scheme (``gs://``, ``ram://``, ...)."""
  return '://' in str(path)


def join(path: str, *parts: str) -> str:
  """``os.path.join`` that keeps ``scheme://`` intact."""
  path = str(path)
  if is_remote(path):
    return posixpath.join(path, *parts)
  return _gfile().join(path, *parts)


def open(path: str, mode: str = 'r'):  # pylint: disable=redefined-builtin
  """A file object for ``path`` (``'r'``, ``'rb'``, ``'w'``, ``'wb'``, ``'a'``)."""
  return _gfile().GFile(str(path), mode)


def exists(path: str) -> bool:
  return _gfile().exists(str(path))


def isdir(path: str) -> bool:
  return _gfile().isdir(str(path))


def isfile(path: str) -> bool:
  return exists(path) and not isdir(path)


def basename(path: str) -> str:
  """The last component of ``path`` (``posixpath.basename`` keeps ``scheme://`` parts intact)."""
  return posixpath.basename(str(path).rstrip('/'))


def dirname(path: str) -> str:
  """The folder of ``path``; ``gs://bucket/a/b`` -> ``gs://bucket/a``."""
  return posixpath.dirname(str(path).rstrip('/'))


def abspath(path: str) -> str:
  """``os.path.abspath`` for local paths; remote paths are already absolute."""
  path = str(path)
  return path if is_remote(path) else posixpath.abspath(path)


def isabs(path: str) -> bool:
  return is_remote(path) or posixpath.isabs(str(path))


def walk(top: str) -> Iterator[Tuple[str, List[str], List[str]]]:
  """``os.walk`` over any filesystem: ``(folder, subfolder names, file names)``."""
  for folder, subdirs, files in _gfile().walk(str(top)):
    yield folder, [d.rstrip('/') for d in subdirs], list(files)


def makedirs(path: str) -> None:
  """Creates ``path`` and its parents; an existing folder is fine."""
  _gfile().makedirs(str(path))


def listdir(path: str) -> List[str]:
  """Names in a folder (no trailing ``/`` on sub-folders), sorted."""
  return sorted(name.rstrip('/') for name in _gfile().listdir(str(path)))


def glob(pattern: str) -> List[str]:
  return sorted(_gfile().glob(str(pattern)))


def remove(path: str) -> None:
  _gfile().remove(str(path))


def rmtree(path: str) -> None:
  _gfile().rmtree(str(path))


def rename(src: str, dst: str, overwrite: bool = False) -> None:
  _gfile().rename(str(src), str(dst), overwrite=overwrite)


def copy(src: str, dst: str, overwrite: bool = False) -> None:
  _gfile().copy(str(src), str(dst), overwrite=overwrite)


def size(path: str) -> int:
  return int(_gfile().stat(str(path)).length)


def read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def write_bytes(path: str, data: bytes) -> None:
  with open(path, 'wb') as f:
    f.write(data)


def read_text(path: str) -> str:
  with open(path, 'r') as f:
    return f.read()


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary name, so readers never see half a file."""
  tmp = str(path) + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  rename(tmp, path, overwrite=True)


def append_text(path: str, text: str) -> None:
  """Appends ``text`` to ``path``.

  Object stores (gs://) cannot append: tf.io.gfile rewrites the whole object,
  which is fine for the small logs this is used for (``train_metrics.jsonl``).
  """
  with open(path, 'a') as f:
    f.write(text)


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  write_text(path, json.dumps(obj, indent=indent) + '\n')


@contextlib.contextmanager
def open_lines(path: str) -> Iterator[Iterator[str]]:
  """Yields an iterator over the lines of a text file (newlines stripped)."""
  with open(path, 'r') as f:
    yield (line.rstrip('\n') for line in f)


def save_npz(path: str, arrays: Dict[str, np.ndarray], compressed: bool = False) -> None:
  """``np.savez`` (or ``np.savez_compressed``) to any filesystem.

  Built in memory first: zipfile needs ``tell()``, which not every filesystem's
  writable file has (ram://, and gs:// uploads).
  """
  buffer = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def save_figure(fig, path: str, **kwargs) -> None:
  """``fig.savefig`` (matplotlib) to any filesystem, in the format of the path's extension."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format=posixpath.splitext(str(path))[1][1:] or 'png', **kwargs)
  write_bytes(path, buffer.getvalue())


def load_npz(path: str) -> Dict[str, np.ndarray]:
  """Every array of an ``.npz`` file on any filesystem, read in one request."""
  with np.load(io.BytesIO(read_bytes(path))) as data:
    return {k: data[k] for k in data.files}


class RangeReader:
  """Positioned reads of byte ranges of a fixed list of files, safe from many threads.

  A local file is read with ``os.pread`` (one descriptor per call of
  :meth:`read_many`, so no number of shards exhausts the descriptor limit):
  a range costs exactly its bytes. Any other path is read through a
  ``tf.io.gfile`` handle per file and thread: its ``seek`` passes over the
  bytes in between without reading them, and its reads come in its 512 KiB
  buffer, so ranges close together (a clip's frames) share a fetch and a
  range costs at most its bytes plus one buffer. Nothing before a range is
  read.
  (``tf.data.FixedLengthRecordDataset`` reads its ``header_bytes`` through: a
  record at byte N of a shard costs N bytes.)
  """

  def __init__(self, paths):
    self.paths = [str(p) for p in paths]
    self._local = threading.local()

  def read_many(self, index, offsets, lengths) -> np.ndarray:
    """The ranges ``(offsets[i], lengths[i])`` of file ``index`` as an object array of bytes."""
    index = int(index)
    path = self.paths[index]
    out = np.empty(len(offsets), object)
    if not is_remote(path):
      fd = os.open(path, os.O_RDONLY)
      try:
        for i, (offset, length) in enumerate(zip(offsets, lengths)):
          out[i] = os.pread(fd, int(length), int(offset))
      finally:
        os.close(fd)
    else:
      handles = self._local.__dict__.setdefault('handles', {})
      handle = handles.get(index)
      if handle is None:
        handle = handles[index] = _gfile().GFile(path, 'rb')
      for i, (offset, length) in enumerate(zip(offsets, lengths)):
        handle.seek(int(offset))
        out[i] = handle.read(int(length))
    for i, (offset, length) in enumerate(zip(offsets, lengths)):
      if len(out[i]) != length:
        raise IOError(f'{path}: {length} bytes at {offset} asked, {len(out[i])} read '
                      '(file shorter than its index says)')
    return out

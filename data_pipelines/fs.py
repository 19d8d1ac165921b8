"""The one filesystem layer: every file the project reads or writes goes through here.

Paths may be local (``/data/k400``), cloud buckets (``gs://bucket/k400``) or
any other scheme TensorFlow's filesystem registry knows (``ram://`` in the
tests). Everything is a thin wrapper over ``tf.io.gfile`` so that callers
never use ``open``, ``os.path.exists``, ``os.makedirs`` or ``os.listdir`` on a
path a user gave: those silently make a local folder named ``gs:``.

The first access to each remote location (``gs://bucket``) in a process is a
probe bounded in time (:func:`check_access`): a machine without credentials,
without network, or a bucket that is not there ends in one ``UserError`` that
names the path and what failed, within :data:`ACCESS_TIMEOUT_S` seconds,
instead of TensorFlow's retries and traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import re
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from data_pipelines import startup
from data_pipelines.errors import UserError

# How long the first access to a remote location may take before the command gives up.
ACCESS_TIMEOUT_S = float(os.environ.get('AVSLOWFAST_ACCESS_TIMEOUT_S', '20'))
# Schemes that are no network service: never probed.
_LOCAL_SCHEMES = ('ram', 'file')
_reached = set()  # roots (scheme://netloc) that answered a probe
_probe_lock = threading.Lock()


def _gfile():
  """``tf.io.gfile``, imported on first use: the model and the train step import this module
  but need no TensorFlow until they touch a file."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


def is_remote(path: str) -> bool:
  """True for a path with a scheme (``gs://``, ``ram://``, ...)."""
  return '://' in str(path)


def root(path: str) -> str:
  """``scheme://netloc`` of a remote path (``gs://bucket/a/b`` -> ``gs://bucket``)."""
  scheme, _, rest = str(path).partition('://')
  return f'{scheme}://{rest.split("/", 1)[0]}'


def _first_line(error: BaseException) -> str:
  text = str(getattr(error, 'message', '') or error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def describe_access_error(error: BaseException) -> str:
  """What a TensorFlow filesystem error says about access, in words."""
  text = str(getattr(error, 'message', '') or error)
  name = type(error).__name__
  host = re.search(r'Could not resolve (?:host|proxy): (\S+)', text)
  if host or 'libcurl code 6' in text:
    return (f'no network (cannot resolve {host.group(1) if host else "the service"}\'s '
            'address)')
  if re.search(r'libcurl code (7|28|35|56)\b|Couldn\'t connect|Timeout was reached', text):
    return f'no network (cannot connect: {_first_line(error)})'
  if name == 'UnauthenticatedError' or re.search(r'\b401\b|[Aa]nonymous caller', text):
    return ('no credentials (sign in, e.g. gcloud auth application-default login, or set '
            f'GOOGLE_APPLICATION_CREDENTIALS): {_first_line(error)}')
  if name == 'PermissionDeniedError' or re.search(r'\b403\b', text):
    return f'no access (permission denied): {_first_line(error)}'
  if name in ('UnavailableError', 'DeadlineExceededError'):
    return f'the storage service does not answer: {_first_line(error)}'
  return f'{name}: {_first_line(error)}'


def check_access(path: str, timeout: Optional[float] = None) -> None:
  """Raises a ``UserError`` naming ``path`` if its remote location cannot be reached.

  Runs once per ``scheme://netloc`` and process (local paths and ``ram://``
  are not probed): ``exists(path)`` in a thread, given ``timeout`` seconds
  (default :data:`ACCESS_TIMEOUT_S`). No answer in time, an error of access
  (no network, no credentials, permission denied) and, for a path that is not
  there, a bucket that is not there either, are ``UserError``s; a path that
  simply does not exist yet is not (the caller decides).
  """
  path = str(path)
  if not is_remote(path) or path.partition('://')[0] in _LOCAL_SCHEMES:
    return
  where = root(path)
  if where in _reached:
    return
  timeout = ACCESS_TIMEOUT_S if timeout is None else timeout
  _gfile()  # TensorFlow's import (seconds) is not part of the time the service has
  with _probe_lock:
    if where in _reached:
      return
    answer = {}

    def probe():
      try:
        answer['exists'] = _probe(path)
      except Exception as e:  # pylint: disable=broad-except  # classified below
        answer['error'] = e
        return
      if not answer['exists']:
        try:  # a definite "no" only: reading a bucket's metadata may need more rights
          answer['root_exists'] = _probe(where)
        except Exception:  # pylint: disable=broad-except
          pass

    thread = threading.Thread(target=probe, name=f'probe {where}', daemon=True)
    # TensorFlow logs each failed attempt to find credentials; the message below says it
    # better when the probe fails, and the log line stays when it does not.
    failed = lambda line: 'error' in answer and 'google_auth_provider' in line
    with startup.stderr_without_banners(drop=failed):
      thread.start()
      thread.join(timeout)
    if thread.is_alive():
      raise UserError(f'{path}: no answer from {where} within {timeout:g} s (no network, or the '
                      'storage service does not respond)')
    if 'error' in answer:
      raise UserError(f'{path}: cannot reach {where}: {describe_access_error(answer["error"])}')
    if not answer['exists'] and answer.get('root_exists') is False:
      raise UserError(f'{path}: no such bucket {where} (or no access to it)')
    _reached.add(where)


def _probe(path: str) -> bool:
  """``tf.io.gfile.exists`` (the probe of :func:`check_access`; tests replace it)."""
  return _gfile().exists(path)


def _checked(path) -> str:
  """``path`` as a string, its remote location probed (:func:`check_access`)."""
  path = str(path)
  check_access(path)
  return path


def join(path: str, *parts: str) -> str:
  """``os.path.join`` that keeps ``scheme://`` intact."""
  path = str(path)
  if is_remote(path):
    return posixpath.join(path, *parts)
  return _gfile().join(path, *parts)


def open(path: str, mode: str = 'r'):  # pylint: disable=redefined-builtin
  """A file object for ``path`` (``'r'``, ``'rb'``, ``'w'``, ``'wb'``, ``'a'``)."""
  return _gfile().GFile(_checked(path), mode)


def exists(path: str) -> bool:
  return _gfile().exists(_checked(path))


def isdir(path: str) -> bool:
  return _gfile().isdir(_checked(path))


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
  for folder, subdirs, files in _gfile().walk(_checked(top)):
    yield folder, [d.rstrip('/') for d in subdirs], list(files)


def makedirs(path: str) -> None:
  """Creates ``path`` and its parents; an existing folder is fine."""
  _gfile().makedirs(_checked(path))


def listdir(path: str) -> List[str]:
  """Names in a folder (no trailing ``/`` on sub-folders), sorted."""
  return sorted(name.rstrip('/') for name in _gfile().listdir(_checked(path)))


def glob(pattern: str) -> List[str]:
  return sorted(_gfile().glob(_checked(pattern)))


def remove(path: str) -> None:
  _gfile().remove(_checked(path))


def rmtree(path: str) -> None:
  _gfile().rmtree(_checked(path))


def rename(src: str, dst: str, overwrite: bool = False) -> None:
  _gfile().rename(_checked(src), _checked(dst), overwrite=overwrite)


def copy(src: str, dst: str, overwrite: bool = False) -> None:
  _gfile().copy(_checked(src), _checked(dst), overwrite=overwrite)


def size(path: str) -> int:
  return int(_gfile().stat(_checked(path)).length)


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

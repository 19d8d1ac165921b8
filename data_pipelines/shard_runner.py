"""The shard runner of both preparations: a shard is one unit of work, done by a worker
process (local) or an Apache Beam worker, and recorded by a progress file when done.

``prepare.py`` (a record per video) and ``ava_prepare.py`` (a record per segment of
keyframes) plug their per-video work into :func:`write_shard`; :func:`run_shards`
runs the shards not done yet. A shard's file is written as ``<shard>.tmp-<pid>``
and renamed, and its report goes to ``_progress/<split>-<index>.json`` last, so a
rerun skips exactly the shards that were finished (:func:`pending`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_lib
import sys
from typing import Callable, List, Sequence

import av
import av.logging
import tensorflow as tf
from tqdm import tqdm

from data_pipelines import decode, fs, shards
from data_pipelines.errors import UserError

RUNNERS = ('local', 'beam')


@dataclasses.dataclass
class PrepareOptions:
  """How videos are decoded (recorded in ``shards.json``)."""
  fps: float = 30.0
  short_side: int = 320
  jpeg_quality: int = 90
  sample_rate: int = 16000
  min_frames: int = 64  # windows shorter than this are reported (the pipeline pads them)


def progress_path(output_dir: str, split: str, index: int) -> str:
  """The progress file of shard ``index`` of ``split``: written when the shard is done."""
  return fs.join(output_dir, '_progress', f'{split}-{index:05d}.json')


def pending(tasks: Sequence, output_dir: str) -> list:
  """The tasks (``.split``, ``.index``) whose shard has no progress file yet."""
  return [t for t in tasks if not fs.exists(progress_path(output_dir, t.split, t.index))]


def quiet_ffmpeg() -> None:
  """Silences FFmpeg's log: corrupt inputs make it print pages of errors, and the report
  names each bad file with its reason."""
  av.logging.set_level(av.logging.PANIC)


def write_shard(task, items: Sequence, write_item: Callable, progress_queue=None):
  """Writes the shard file of ``task`` (``.output_dir``, ``.name``, ``.split``, ``.index``,
  ``.count``); returns ``(path, entries)``, one report entry per item.

  ``write_item(item, writer)`` decodes an item (``.path``, ``.video_id``), writes its
  records with ``writer`` and returns the fields of its entry. Never raises for a bad
  video: its entry says ``skipped`` with the reason.
  """
  tf.config.set_visible_devices([], 'GPU')
  quiet_ffmpeg()
  final = fs.join(task.output_dir, shards.shard_filename(task.name, task.split, task.index,
                                                         task.count))
  tmp = f'{final}.tmp-{os.getpid()}'
  entries = []
  with tf.io.TFRecordWriter(tmp) as writer:
    for item in items:
      entry = {'path': item.path, 'video_id': item.video_id, 'split': task.split}
      try:
        fields = write_item(item, writer)
        entry.update(status='written', **fields)
      except decode.BadVideoError as e:
        entry.update(status='skipped', reason=str(e))
      except Exception as e:  # anything unexpected is still one bad file, not a dead job
        entry.update(status='skipped', reason=f'unexpected {type(e).__name__}: {e}')
      entries.append(entry)
      if progress_queue is not None:
        progress_queue.put(1)
  fs.rename(tmp, final, overwrite=True)
  return final, entries


def write_progress(task, path: str, num_examples: int, entries: List[dict], **extra) -> dict:
  """Writes the shard's report (its progress file, :func:`progress_path`) and returns it."""
  report = {'split': task.split, 'shard': task.index, 'file': fs.basename(path),
            'num_examples': num_examples, 'num_bytes': fs.size(path), 'entries': entries,
            **extra}
  shards.write_json_atomic(progress_path(task.output_dir, task.split, task.index), report)
  return report


def run_shards(tasks: Sequence, worker: Callable, *, runner: str = 'local', num_workers: int = 0,
               num_items: int = 0, beam_options: Sequence[str] = ()) -> None:
  """Runs ``worker(task, progress_queue=None)`` on every task: in this process
  (``num_workers`` 0), in ``num_workers`` processes, or as an Apache Beam pipeline
  (``runner='beam'``). ``num_items`` sizes the local progress bar."""
  if runner == 'beam':
    run_beam(tasks, beam_options, worker)
  elif runner == 'local':
    run_local(tasks, num_workers, num_items, worker)
  else:
    raise UserError(f'unknown runner {runner!r} (local | beam)')


def run_local(tasks: Sequence, num_workers: int, total_items: int, worker: Callable) -> None:
  """The tasks in this process or a pool of ``num_workers`` processes, with a progress bar."""
  bar = tqdm(total=total_items, unit='video', desc='prepare', dynamic_ncols=True,
             file=sys.stderr)
  if num_workers <= 0:
    for task in tasks:
      report = worker(task)
      bar.update(len(report['entries']))
    bar.close()
    return
  num_workers = min(num_workers, max(1, len(tasks)))  # a process per shard at most: none idle
  # spawn, not fork: the parent may have TensorFlow threads running.
  context = multiprocessing.get_context('spawn')
  with context.Manager() as manager:
    progress = manager.Queue()
    with context.Pool(num_workers) as pool:
      result = pool.starmap_async(worker, [(t, progress) for t in tasks], chunksize=1)
      while not result.ready():
        try:
          progress.get(timeout=0.2)
          bar.update(1)
        except queue_lib.Empty:
          pass
      result.get()  # re-raises a worker crash (not a bad video: those are caught)
      while not progress.empty():
        progress.get()
        bar.update(1)
  bar.close()


def run_beam(tasks: Sequence, beam_options: Sequence[str], worker: Callable) -> None:
  """The tasks as an Apache Beam pipeline (``beam_options``: its pipeline options)."""
  try:  # the optional [beam] extra
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        '--runner beam needs Apache Beam: pip install "avslowfast-jax[beam]"') from None
  with beam.Pipeline(options=PipelineOptions(list(beam_options))) as pipeline:
    _ = (pipeline
         | 'Shards' >> beam.Create(tasks)
         | 'Reshuffle' >> beam.Reshuffle()
         | 'Prepare' >> beam.Map(worker))

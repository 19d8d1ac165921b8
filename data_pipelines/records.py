"""Prepared shards as the tf.data pipelines read them: this host's shard files, their
records' byte offsets, positioned reads, and the endless epoch order of training.

Both input pipelines build on it: the classification one (input_pipeline.py) and
the detection one (ava_pipeline.py). A host's training order is a pure function
of ``(seed, process_index, epoch)`` (:func:`epoch_orders`), so the example at
stream position ``p`` is known without reading what came before.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data_pipelines import fs, shards
from data_pipelines.errors import UserError

# TensorFlow only feeds the host: it must never take an accelerator from JAX.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF already initialised its devices (then by the caller's choice)
  pass

# A TFRecord record: a 12-byte header (length, its CRC), the data, a 4-byte CRC.
HEADER_BYTES = 12
FOOTER_BYTES = 4


def check_config(config, data_dir: str) -> None:
  """Raises a UserError when the folder was prepared at another frame rate or audio sample
  rate than ``config.data`` reads."""
  meta = shards.read_metadata(data_dir)
  fps, sample_rate = float(meta['fps']), int(meta['audio_sample_rate'])
  if abs(fps - config.data.fps) > 1e-6:
    raise UserError(f'{data_dir}: prepared at {fps} fps but config.data.fps is '
                     f'{config.data.fps}; prepare again with --fps {config.data.fps} or change it')
  if sample_rate != config.data.audio.sample_rate:
    raise UserError(f'{data_dir}: audio prepared at {sample_rate} Hz but '
                     f'config.data.audio.sample_rate is {config.data.audio.sample_rate}')


def resolve_host(process_index, process_count):
  """This host's index and the host count; a single host unless told otherwise."""
  return int(process_index or 0), int(process_count or 1)


def host_seed(seed: int, process_index: int) -> int:
  """The seed of a host's stream: hosts draw independent orders and clips."""
  return (int(seed) * 1_000_003 + process_index) % (2**62)


def host_files(data_dir: str, split: str, process_index: int, process_count: int):
  """This host's shard files, their lengths and the global index of their first example."""
  files, lengths = shards.load_split_files(data_dir, split)
  if len(files) < process_count:
    raise UserError(f'{data_dir}: split {split!r} has {len(files)} shard files, fewer than the '
                     f'{process_count} hosts; prepare it with a smaller --videos_per_shard')
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  chosen = list(range(process_index, len(files), process_count))
  return [files[i] for i in chosen], [lengths[i] for i in chosen], [int(offsets[i]) for i in chosen]


def checked_record_offsets(path: str, length: int) -> np.ndarray:
  """Byte offsets of a shard's records, checked against the count in ``shards.json``."""
  starts = shards.record_offsets(path)
  if len(starts) != length:
    raise UserError(f'{path}: damaged shard file (has {len(starts)} records, shards.json says '
                    f'{length}); prepare the dataset again')
  return starts


def record_data_spans(path: str, length: int):
  """``(offsets, sizes)`` of the data of each of a shard's records (without their header and
  footer), for :func:`read_ranges`."""
  starts = checked_record_offsets(path, length)
  ends = np.append(starts[1:], fs.size(path))
  return ([int(begin) + HEADER_BYTES for begin in starts],
          [int(end - begin - HEADER_BYTES - FOOTER_BYTES) for begin, end in zip(starts, ends)])


def read_ranges(reader: fs.RangeReader, file_index, offsets, lengths) -> tf.Tensor:
  """In-graph positioned reads: ``[n]`` strings, the ranges of file ``file_index``
  (an index into ``reader.paths``) at ``offsets`` of ``lengths`` bytes."""
  parts = tf.numpy_function(reader.read_many, [file_index, offsets, lengths], tf.string,
                            stateful=False)
  return tf.ensure_shape(parts, offsets.shape)


def epoch_orders(num: int, seed: int, start_position: int) -> tf.data.Dataset:
  """``(example, position)`` pairs from ``start_position`` of this host's endless stream.

  Epoch ``e`` is a permutation of the host's ``num`` examples drawn
  statelessly from ``(seed, e)``; the starting epoch and the offset into it
  come from arithmetic on ``start_position``, so resuming reads nothing twice.
  """
  first_epoch, first_offset = divmod(int(start_position), num)

  def epoch_order(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    skip = tf.where(epoch == first_epoch, tf.constant(first_offset, tf.int64), 0)
    positions = epoch * num + skip + tf.range(num - skip, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((order[skip:], positions))

  return tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_order)


def dataset_options() -> tf.data.Options:
  """The options of every pipeline: deterministic order, parallel maps, autotuning."""
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  options.autotune.enabled = True
  return options

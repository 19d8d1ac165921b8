"""tf.data input pipelines over prepared shards (docs/design.md, "Prepared data").

Training reads records by random access (byte offsets of the TFRecord files),
in an order that is a pure function of ``(seed, process_index, epoch)``, and
draws every random choice of an example (window, scale, crop, flip, hard
negative) from a stateless RNG keyed by the example's position in that order.
So the batch at step ``s`` depends only on ``(seed, s)``: a run resumed at
``start_step`` starts there by arithmetic, without reading what came before,
and sees exactly the batches an uninterrupted run saw.

Audio time axis: a window of ``num_frames * sampling_rate`` frames spans
``window / fps`` s; its log-mel (n_fft 512, hop 256, not centred) has
``1 + (S - 512) // 256`` frames (132 for 64 frames at 30 fps), which are
linearly resampled along time to ``data.audio.num_frames`` (128). The span
stays exactly the frames' span; only the spectrogram's frame spacing changes.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, Optional

import numpy as np
import tensorflow as tf

from data_pipelines import audio as audio_lib
from data_pipelines import augment, sampling, shards
from data_pipelines.errors import UserError

# TensorFlow only feeds the host: it must never take an accelerator from JAX.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF already initialised its devices (then by the caller's choice)
  pass

_MAX_INT32 = 2**31 - 1

def dataset_info(data_dir: str) -> dict:
  """``{'num_examples': {split: n}, 'label_map': [...], 'noun_map': [...], 'name', 'fps', ...}``."""
  meta = shards.read_metadata(data_dir)
  labels_path = os.path.join(data_dir, 'label_map.json')
  labels = shards.read_json(labels_path) if os.path.exists(labels_path) else {}
  return {
      'name': meta['name'],
      'num_examples': {s: int(sum(v['lengths'])) for s, v in meta['splits'].items()},
      'label_map': list(labels.get('labels', [])),
      'noun_map': list(labels.get('nouns', [])),
      'num_classes': len(labels.get('labels', [])),
      'fps': float(meta['fps']),
      'short_side': int(meta['short_side']),
      'audio_sample_rate': int(meta['audio_sample_rate']),
  }


def _host(process_index, process_count):
  """This host's index and the host count; a single host unless told otherwise."""
  return int(process_index or 0), int(process_count or 1)


def _host_files(data_dir: str, split: str, process_index: int, process_count: int):
  """This host's shard files, their lengths and the global index of their first example."""
  files, lengths = shards.load_split_files(data_dir, split)
  if len(files) < process_count:
    raise UserError(f'{data_dir}: split {split!r} has {len(files)} shard files, fewer than the '
                     f'{process_count} hosts; prepare it with a smaller --videos_per_shard')
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  chosen = list(range(process_index, len(files), process_count))
  return [files[i] for i in chosen], [lengths[i] for i in chosen], [int(offsets[i]) for i in chosen]


def _record_offsets(path: str, length: int) -> np.ndarray:
  """Byte offsets of a shard's records, checked against the count in ``shards.json``."""
  starts = shards.record_offsets(path)
  if len(starts) != length:
    raise UserError(f'{path}: damaged shard file (has {len(starts)} records, shards.json says '
                    f'{length}); prepare the dataset again')
  return starts


def _check_config(config, data_dir: str):
  info = dataset_info(data_dir)
  if abs(info['fps'] - config.data.fps) > 1e-6:
    raise UserError(f'{data_dir}: prepared at {info["fps"]} fps but config.data.fps is '
                     f'{config.data.fps}; prepare again with --fps {config.data.fps} or change it')
  if info['audio_sample_rate'] != config.data.audio.sample_rate:
    raise UserError(f'{data_dir}: audio prepared at {info["audio_sample_rate"]} Hz but '
                     f'config.data.audio.sample_rate is {config.data.audio.sample_rate}')
  return info


def _parse(record):
  return tf.io.parse_single_example(record, shards.parse_spec())


def _labels(example, config) -> Dict[str, tf.Tensor]:
  """Targets in the form the task wants (docs/design.md: ``label``, ``noun_label``)."""
  labels = tf.cast(example['label'], tf.int32)
  if config.task == 'multilabel':
    hot = tf.one_hot(labels, config.model.num_classes, dtype=tf.float32)
    return {'label': tf.reduce_max(tf.concat([hot, tf.zeros([1, config.model.num_classes])], 0), 0)}
  first = tf.cond(tf.size(labels) > 0, lambda: labels[0], lambda: tf.constant(-1, tf.int32))
  out = {'label': first}
  if config.task in ('verb_noun', 'noun'):  # the EPIC-Kitchens tasks
    out['noun_label'] = tf.cast(example['noun_label'], tf.int32)
  return out


def _waveform(example, config):
  pcm = tf.io.decode_raw(example['audio'], tf.int16, little_endian=True)
  return audio_lib.pcm16_to_float(pcm)


def clip_log_mel(waveform, start_frame, config, audio_start_sec) -> tf.Tensor:
  """Normalised log-mel ``[T_a, F, 1]`` of the audio spanning frames ``[start, start + window)``."""
  d = config.data
  a = d.audio
  window = d.num_frames * d.sampling_rate
  first, length = sampling.audio_span(start_frame, window, d.fps, a.sample_rate, audio_start_sec)
  length = max(length, a.n_fft)
  span = sampling.slice_with_zero_padding(waveform, first, length)
  spec = audio_lib.log_mel_spectrogram(span, a.sample_rate, a.n_fft, a.hop_length, a.num_mels,
                                       a.log_offset)
  spec = audio_lib.resample_time_axis(spec, a.num_frames)
  spec = (spec - a.mean) / a.std
  return tf.reshape(spec, [a.num_frames, a.num_mels, 1])


def _visual(frames, config):
  """Frames in [0, 255] ``[T, H, W, 3]`` -> normalised (slow, fast)."""
  fast = augment.normalize(frames, config.data.mean, config.data.std)
  slow = tf.gather(fast, sampling.slow_indices(config.data.num_frames, config.model.alpha_f))
  return slow, fast


def make_train_example(record, position, video_index, config, seed: int,
                       with_metadata: bool = False) -> Dict[str, tf.Tensor]:
  """One augmented training example from a serialized record.

  ``position`` (this host's stream position) keys the stateless RNG, so the
  example's window, scale, crop, flip and hard-negative shift are reproducible.
  """
  d = config.data
  example = _parse(record)
  key = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
  keys = tf.random.experimental.stateless_split(key, num=6)
  uniforms = [tf.random.stateless_uniform([], seed=keys[i]) for i in range(5)]
  num_video_frames = tf.cast(example['num_frames'], tf.int32)
  window = d.num_frames * d.sampling_rate
  start = sampling.train_clip_start(num_video_frames, window, uniforms[0])
  indices = sampling.clip_frame_indices(start, d.num_frames, d.sampling_rate, num_video_frames)
  jpegs = tf.gather(example['frames'], indices)
  low, high = d.train_jitter_scales
  short_side = tf.random.stateless_uniform([], seed=keys[5], minval=low, maxval=high + 1,
                                           dtype=tf.int32)
  crop = augment.train_crop_window(example['height'], example['width'], d.train_crop_size,
                                   short_side, uniforms[1], uniforms[2])
  frames = augment.decode_jpegs(jpegs, crop)
  if d.random_flip:
    # On the uint8 square crop, before resizing: a quarter of the bytes, same result.
    frames = augment.maybe_flip(frames, uniforms[3] < 0.5)
  frames = augment.resize_frames(frames, d.train_crop_size, d.train_crop_size)
  slow, fast = _visual(frames, config)
  waveform = _waveform(example, config)
  audio_start = example['audio_start_sec']
  out = {'slow': slow, 'fast': fast,
         'audio': clip_log_mel(waveform, start, config, audio_start),
         'audio_mask': tf.cast(example['has_audio'], tf.float32),
         'video_index': tf.cast(video_index, tf.int32)}
  if d.avs_negatives:
    min_shift = int(np.ceil(d.hard_negative_min_shift_sec * d.fps))
    shifted = sampling.hard_negative_start(start, num_video_frames, window, min_shift, uniforms[4])
    out['audio_shifted'] = clip_log_mel(waveform, shifted, config, audio_start)
  out.update(_labels(example, config))
  if with_metadata:
    out.update(_metadata(example, start, window, d.fps))
  return out


def _metadata(example, start, window, fps):
  start_sec = tf.cast(start, tf.float32) / fps
  return {'video_id': example['video_id'], 'clip_start_sec': start_sec,
          'clip_end_sec': start_sec + window / fps}


def create_train_iterator(config, data_dir: str, split: str, per_host_batch: int, *, seed: int,
                          start_step: int = 0, process_index: Optional[int] = None,
                          process_count: Optional[int] = None,
                          with_metadata: bool = False) -> Iterator[Dict[str, np.ndarray]]:
  """Endless iterator of training batches (numpy dicts, docs/design.md).

  Deterministic given ``(seed, start_step)``: a resumed run sees the batches
  an uninterrupted run saw from ``start_step`` on. ``with_metadata`` adds
  ``video_id`` (bytes), ``clip_start_sec`` and ``clip_end_sec`` (for inspection).
  """
  dataset = make_train_dataset(config, data_dir, split, per_host_batch, seed=seed,
                               start_step=start_step, process_index=process_index,
                               process_count=process_count, with_metadata=with_metadata)
  return dataset.as_numpy_iterator()


def _epoch_orders(num: int, seed: int, start_position: int) -> tf.data.Dataset:
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


def make_train_dataset(config, data_dir, split, per_host_batch, *, seed, start_step=0,
                       process_index=None, process_count=None, with_metadata=False):
  """The ``tf.data.Dataset`` behind :func:`create_train_iterator`.

  Records are read in-graph by byte range (``FixedLengthRecordDataset`` over
  one record's span, offsets found once from the TFRecord headers): random
  access without Python in the loop and without reading skipped records.
  """
  _check_config(config, data_dir)
  process_index, process_count = _host(process_index, process_count)
  files, lengths, offsets = _host_files(data_dir, split, process_index, process_count)
  file_of, header_of, size_of, footer_of, video_of = [], [], [], [], []
  for file_index, (path, length, first) in enumerate(zip(files, lengths, offsets)):
    starts = _record_offsets(path, length)
    file_size = os.path.getsize(path)
    ends = np.append(starts[1:], file_size)
    for record, (begin, end) in enumerate(zip(starts, ends)):
      data_bytes = int(end - begin - 16)  # 12-byte header, 4-byte footer CRC
      file_of.append(file_index)
      header_of.append(int(begin) + 12)
      size_of.append(data_bytes)
      footer_of.append(int(file_size - (begin + 12 + data_bytes)))
      video_of.append(first + record)
  num = len(file_of)
  if num == 0:
    raise UserError(f'{data_dir}: no {split!r} examples on host {process_index}')
  names = tf.constant(files)
  tables = {k: tf.constant(v, tf.int64) for k, v in (('file', file_of), ('header', header_of),
                                                     ('size', size_of), ('footer', footer_of),
                                                     ('video', video_of))}
  # One RNG stream per host, so hosts draw independent orders and clips.
  host_seed = (int(seed) * 1_000_003 + process_index) % (2**62)

  def read_record(example, position):
    record = tf.data.FixedLengthRecordDataset(
        tf.gather(names, tables['file'][example]), record_bytes=tables['size'][example],
        header_bytes=tables['header'][example], footer_bytes=tables['footer'][example],
        buffer_size=1 << 16)  # a 64 KiB buffer read 10% faster than 1 MiB here
    video = tables['video'][example]
    return record.map(lambda r: (r, position, video))

  dataset = _epoch_orders(num, host_seed, int(start_step) * int(per_host_batch))
  # Each inner dataset holds one record; deterministic interleave keeps the order.
  dataset = dataset.interleave(read_record, cycle_length=8, block_length=1,
                               num_parallel_calls=8, deterministic=True)
  dataset = dataset.map(
      lambda r, p, v: make_train_example(r, p, v, config, host_seed, with_metadata),
      num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  dataset = dataset.batch(per_host_batch, drop_remainder=True)
  return dataset.prefetch(config.data.prefetch_batches).with_options(_options())


def _options():
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  options.autotune.enabled = True
  return options


# ----------------------------------------------------------------- evaluation
def make_eval_views(record, video_index, clip_index, config, with_metadata=False):
  """The ``num_test_crops`` views of temporal clip ``clip_index`` of a video, stacked."""
  d = config.data
  example = _parse(record)
  num_video_frames = tf.cast(example['num_frames'], tf.int32)
  window = d.num_frames * d.sampling_rate
  starts = sampling.eval_clip_starts(num_video_frames, window, d.num_test_clips)
  start = tf.gather(starts, clip_index)
  indices = sampling.clip_frame_indices(start, d.num_frames, d.sampling_rate, num_video_frames)
  frames = augment.decode_jpegs(tf.gather(example['frames'], indices))
  frames = augment.resize_short_side(frames, d.test_short_side)
  crops = augment.spatial_crops(frames, d.test_crop_size, d.num_test_crops)
  crops = tf.ensure_shape(crops, [d.num_test_crops, d.num_frames, d.test_crop_size,
                                  d.test_crop_size, 3])
  spec = clip_log_mel(_waveform(example, config), start, config, example['audio_start_sec'])
  views = []
  for crop in range(d.num_test_crops):
    slow, fast = _visual(crops[crop], config)
    view = {'slow': slow, 'fast': fast, 'audio': spec,
            'audio_mask': tf.cast(example['has_audio'], tf.float32),
            'video_index': tf.cast(video_index, tf.int32),
            'view_index': tf.cast(clip_index * d.num_test_crops + crop, tf.int32),
            'valid': tf.constant(1.0)}
    view.update(_labels(example, config))
    if with_metadata:
      view.update(_metadata(example, start, window, d.fps))
    views.append(view)
  return tf.nest.map_structure(lambda *xs: tf.stack(xs), *views)


def eval_num_batches(config, data_dir: str, split: str, per_host_batch: int,
                     process_count: int) -> int:
  """Batches every host yields: enough for the host with the most views (all hosts equal)."""
  files, lengths = shards.load_split_files(data_dir, split)
  views = config.data.num_test_clips * config.data.num_test_crops
  per_host = [sum(lengths[h::process_count]) * views for h in range(process_count)]
  return max(1, -(-max(per_host) // per_host_batch))


def create_eval_iterator(config, data_dir: str, split: str, per_host_batch: int, *,
                         process_index: Optional[int] = None, process_count: Optional[int] = None,
                         with_metadata: bool = False) -> Iterator[Dict[str, np.ndarray]]:
  """One pass over every view of every video of ``split`` on this host (numpy dicts).

  Each video gives ``num_test_clips * num_test_crops`` views tagged with
  ``video_index`` (global over hosts) and ``view_index``; rows with
  ``valid == 0`` pad the last batches so every host yields the same number of
  batches and every view is evaluated exactly once.
  """
  return make_eval_dataset(config, data_dir, split, per_host_batch, process_index=process_index,
                           process_count=process_count,
                           with_metadata=with_metadata).as_numpy_iterator()


def make_eval_dataset(config, data_dir, split, per_host_batch, *, process_index=None,
                      process_count=None, with_metadata=False):
  """The ``tf.data.Dataset`` behind :func:`create_eval_iterator`."""
  _check_config(config, data_dir)
  process_index, process_count = _host(process_index, process_count)
  files, lengths, offsets = _host_files(data_dir, split, process_index, process_count)
  for path, length in zip(files, lengths):
    _record_offsets(path, length)  # a missing or truncated shard is named before reading
  num_batches = eval_num_batches(config, data_dir, split, per_host_batch, process_count)
  num_clips = config.data.num_test_clips

  def file_records(path, offset):
    return tf.data.TFRecordDataset(path).enumerate().map(lambda i, r: (r, offset + i))

  dataset = tf.data.Dataset.from_tensor_slices((files, tf.constant(offsets, tf.int64)))
  dataset = dataset.flat_map(file_records)
  # One element per (video, temporal clip); the record string is shared, not copied.
  dataset = dataset.flat_map(lambda r, v: tf.data.Dataset.from_tensors((r, v)).repeat(num_clips)
                             .enumerate().map(lambda c, rv: (rv[0], rv[1], tf.cast(c, tf.int32))))
  dataset = dataset.map(lambda r, v, c: make_eval_views(r, v, c, config, with_metadata),
                        num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  dataset = dataset.unbatch().batch(per_host_batch)

  def pad(batch):
    count = tf.shape(batch['valid'])[0]
    def pad_one(x):
      padding = [[0, per_host_batch - count]] + [[0, 0]] * (len(x.shape) - 1)
      padded = tf.pad(x, padding, constant_values='' if x.dtype == tf.string else 0)
      padded.set_shape([per_host_batch] + x.shape[1:])
      return padded
    return tf.nest.map_structure(pad_one, batch)

  dataset = dataset.map(pad)
  filler = tf.nest.map_structure(
      lambda s: tf.fill(s.shape, '') if s.dtype == tf.string else tf.zeros(s.shape, s.dtype),
      dataset.element_spec)
  dataset = dataset.concatenate(tf.data.Dataset.from_tensors(filler).repeat())
  dataset = dataset.take(num_batches)
  return dataset.prefetch(config.data.prefetch_batches).with_options(_options())

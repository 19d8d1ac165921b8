"""tf.data input pipelines over prepared shards (docs/design.md, "Prepared data").

Training reads records by random access (byte offsets of the TFRecord files),
in an order that is a pure function of ``(seed, process_index, epoch)``, and
draws every random choice of an example (window, scale, crop, flip, hard
negative) from a stateless RNG keyed by the example's position in that order.
So the batch at step ``s`` depends only on ``(seed, s)``: a run resumed at
``start_step`` starts there by arithmetic, without reading what came before,
and sees exactly the batches an uninterrupted run saw.

A config of the ``ava`` task gets the detection pipeline (ava_pipeline.py) from
the same entry points. Both pipelines read shards through records.py and make a
clip's frames and audio with clips.py.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Dict, Iterator, List, Optional
import weakref

import numpy as np
import tensorflow as tf

from data_pipelines import augment, ava_pipeline, clips, frame_index, fs, records, sampling
from data_pipelines import shards
from data_pipelines.errors import UserError


def _detection(config) -> bool:
  """Whether the config's task reads AVA-format detection data (ava_pipeline.py)."""
  return config.task == 'ava'


def dataset_info(data_dir: str) -> dict:
  """``{'num_examples': {split: n}, 'label_map': [...], 'noun_map': [...], 'name', 'fps', ...}``."""
  meta = shards.read_metadata(data_dir)
  labels_path = fs.join(data_dir, 'label_map.json')
  labels = shards.read_json(labels_path) if fs.exists(labels_path) else {}
  num_examples = {s: int(sum(v['lengths'])) for s, v in meta['splits'].items()}
  if 'ava' in meta:  # an example is a keyframe with ground truth, not a record
    num_examples = {s: int(n) for s, n in meta['ava']['num_keyframes_with_gt'].items()}
  return {
      'name': meta['name'],
      'num_examples': num_examples,
      'label_map': list(labels.get('labels', [])),
      'noun_map': list(labels.get('nouns', [])),
      'num_classes': len(labels.get('labels', [])),
      'fps': float(meta['fps']),
      'short_side': int(meta['short_side']),
      'audio_sample_rate': int(meta['audio_sample_rate']),
  }


def finishes_on_device(config) -> bool:
  """``data.finish_on_device`` resolved: 'on', 'off', or 'auto' (on unless jax runs on CPU)."""
  value = config.data.get('finish_on_device', 'off')
  text = str(value).strip().lower()
  if text == 'auto':
    import jax  # pylint: disable=import-outside-toplevel
    return jax.default_backend() != 'cpu'
  if text in ('on', 'off'):
    return text == 'on'
  raise UserError(f'data.finish_on_device={value!r}: on, off or auto')


def device_window_side(config, data_dir: str) -> Optional[int]:
  """With ``data.finish_on_device`` on: the largest side a training crop window can have (at
  the smallest jitter scale), which sizes the batches' frame buffers; else None."""
  if not finishes_on_device(config):
    return None
  stored = dataset_info(data_dir)['short_side']
  if stored <= 0:
    raise UserError(f'{data_dir}: frames are stored at their source sizes (short_side '
                    f'{stored}); data.finish_on_device needs one stored short side: prepare '
                    'again with --short_side N')
  return largest_window_side(config, stored)


def largest_window_side(config, stored: int) -> int:
  """The side of the crop window that becomes ``train_crop_size`` at the smallest jitter scale,
  in frames stored at short side ``stored`` (never more than ``stored``)."""
  crop, low = config.data.train_crop_size, min(config.data.train_jitter_scales)
  return int(min(stored, -(-crop * stored // low)))


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


def has_frames(config) -> bool:
  """Whether the model reads frames: an audio-only model's clips skip reading and decoding
  them (its batches have no ``slow``, ``fast`` or ``frames``)."""
  return config.model.get('arch', 'avslowfast') != 'audio'


def make_train_example(record, position, video_index, config, seed: int,
                       with_metadata: bool = False, window_side: Optional[int] = None
                       ) -> Dict[str, tf.Tensor]:
  """One augmented training example from a serialized record.

  ``position`` (this host's stream position) keys the stateless RNG, so the
  example's window, scale, crop, flip and hard-negative shift are reproducible.
  With ``window_side`` (:func:`device_window_side`) the frames leave as the
  decoded crop window for ``avslowfast_jax.clip_finish``.
  """
  example = _parse(record)
  choices = train_choices(example['num_frames'], position, config, seed)
  waveform = clips.waveform(example)
  return _assemble_train_example(example, choices, tf.gather(example['frames'], choices['indices']),
                                 (waveform, 0), (waveform, 0), video_index, config, with_metadata,
                                 window_side)


def train_choices(num_frames, position, config, seed: int) -> Dict[str, tf.Tensor]:
  """Every random choice of a training clip, from the stateless RNG at ``(seed, position)``:
  window ``start`` and its frame ``indices``, ``short_side``, crop and flip ``uniforms``, and
  the hard negative's start ``shifted`` (when ``data.avs_negatives``)."""
  d = config.data
  key = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
  keys = tf.random.experimental.stateless_split(key, num=6)
  uniforms = [tf.random.stateless_uniform([], seed=keys[i]) for i in range(5)]
  num_video_frames = tf.cast(num_frames, tf.int32)
  window = d.num_frames * d.sampling_rate
  start = sampling.train_clip_start(num_video_frames, window, uniforms[0])
  low, high = d.train_jitter_scales
  out = {'start': start, 'uniforms': uniforms,
         'indices': sampling.clip_frame_indices(start, d.num_frames, d.sampling_rate,
                                                num_video_frames),
         'short_side': tf.random.stateless_uniform([], seed=keys[5], minval=low,
                                                   maxval=high + 1, dtype=tf.int32)}
  if d.avs_negatives:
    min_shift = int(np.ceil(d.hard_negative_min_shift_sec * d.fps))
    out['shifted'] = sampling.hard_negative_start(start, num_video_frames, window, min_shift,
                                                  uniforms[4])
  return out


def _assemble_train_example(example, choices, jpegs, audio, shifted_audio, video_index, config,
                            with_metadata, window_side=None):
  """The training example from the clip's JPEGs and the ``(waveform, first sample)`` of its
  audio and of its hard negative's; ``example`` holds the record's small features.

  With ``window_side`` the example holds ``frames`` (the decoded crop window, uint8,
  flattened and zero-padded to the largest window's length), ``window`` (its side and the
  flip draw) and ``audio_pcm`` (the int16 samples of the clip's audio span and of its hard
  negative's), which ``avslowfast_jax.clip_finish`` turns into ``slow``, ``fast``, ``audio``
  and ``audio_shifted``."""
  d = config.data
  uniforms, start = choices['uniforms'], choices['start']
  window = d.num_frames * d.sampling_rate
  crop = augment.train_crop_window(example['height'], example['width'], d.train_crop_size,
                                   choices['short_side'], uniforms[1], uniforms[2])
  flip = uniforms[3] < 0.5 if d.random_flip else tf.constant(False)
  if not has_frames(config):
    out = {}
  elif window_side:
    fits = tf.debugging.assert_less_equal(
        crop[2], window_side, message=f'crop window over data.finish_on_device\'s '
        f'{window_side} pixels: frames stored above the dataset\'s short side')
    # The decoded frames and the pad go into the flat row in one copy, which the batch
    # copies; stacking them and then padding at the batch (a fill of the whole batch,
    # then the copy) is one more pass over every pixel.
    frames = [tf.reshape(f, [-1]) for f in augment.decode_jpegs(jpegs, crop, stack=False)]
    length = d.num_frames * window_side * window_side * 3
    with tf.control_dependencies([fits]):  # before the pad, whose size is negative then
      pad = tf.zeros([length - d.num_frames * crop[2] * crop[3] * 3], tf.uint8)
      out = {'frames': tf.ensure_shape(tf.concat(frames + [pad], 0), [length]),
             'window': tf.stack([crop[2], tf.cast(flip, tf.int32)])}
  else:
    frames = augment.decode_jpegs(jpegs, crop)
    if d.random_flip:
      # On the uint8 square crop, before resizing: a quarter of the bytes, same result.
      frames = augment.maybe_flip(frames, flip)
    frames = augment.resize_frames(frames, d.train_crop_size, d.train_crop_size)
    slow, fast = clips.slow_fast(frames, config)
    out = {'slow': slow, 'fast': fast}
  audio_start = example['audio_start_sec']
  spans = [clips.clip_audio(audio[0], start, config, audio_start, audio[1])]
  if d.avs_negatives:
    spans.append(clips.clip_audio(shifted_audio[0], choices['shifted'], config, audio_start,
                                  shifted_audio[1]))
  out.update(audio_mask=tf.cast(example['has_audio'], tf.float32),
             video_index=tf.cast(video_index, tf.int32))
  if window_side:
    out['audio_pcm'] = tf.stack(spans)
  else:
    # The clip's audio and its hard negative's in one spectrogram op chain.
    specs = clips.log_mels(tf.stack(spans), config)
    out['audio'] = specs[0]
    if d.avs_negatives:
      out['audio_shifted'] = specs[1]
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
  A config of the ``ava`` task gets detection batches (data_pipelines/ava_pipeline.py).
  """
  if _detection(config):
    return ClosingIterator(ava_pipeline.create_train_iterator(
        config, data_dir, split, per_host_batch, seed=seed, start_step=start_step,
        process_index=process_index, process_count=process_count))
  dataset = make_train_dataset(config, data_dir, split, per_host_batch, seed=seed,
                               start_step=start_step, process_index=process_index,
                               process_count=process_count, with_metadata=with_metadata)
  return ClosingIterator(dataset.as_numpy_iterator())


class ClosingIterator:
  """A training iterator that lets go of its tf.data pipeline before Python shuts down.

  The training pipelines read by ``tf.numpy_function`` (``records.read_ranges``), i.e. run
  Python on tf.data's threads, and keep reading ahead. A pipeline still alive when the
  interpreter finalises cannot be torn down: a tf.data thread that enters Python then is
  stopped by the interpreter mid-read, and the teardown waits for that read forever (a
  script that ends holding an iterator hangs at exit). So every iterator made here is
  closed by an ``atexit`` hook, which runs while Python can still serve those reads;
  :meth:`close` lets go of it earlier.

  The teardown also waits for tf.data's autotuning thread to wake, which it does
  once per optimisation period (up to 60 s): up to a minute spent in the thread
  that drops the pipeline. ``close(wait=False)`` drops it on a background thread
  instead. The ``atexit`` hook drops every live iterator that way and waits at most
  ``EXIT_WAIT_S`` for those threads (the pipeline's reads finish in that time); a
  teardown still waiting then, for the autotuning thread, ends with the process.
  """

  EXIT_WAIT_S = 10.0

  _live = weakref.WeakSet()
  _teardowns: List[threading.Thread] = []

  def __init__(self, iterator):
    self._iterator = iterator
    ClosingIterator._live.add(self)

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      raise StopIteration
    return next(self._iterator)

  def close(self, wait: bool = True) -> None:
    """Deletes the pipeline (its threads finish their reads); ``next`` then stops.
    With ``wait=False`` the deletion runs on a background thread."""
    held = [self._iterator]
    self._iterator = None
    if wait or held[0] is None:
      return
    # The thread holds the last reference: the teardown runs there.
    thread = threading.Thread(target=held.clear, name='tf.data teardown', daemon=True)
    ClosingIterator._teardowns.append(thread)
    thread.start()

  @classmethod
  def teardowns_pending(cls) -> int:
    """Background teardowns (``close(wait=False)``) not yet waited for by :meth:`close_all`."""
    return len(cls._teardowns)

  @classmethod
  def close_all(cls, timeout: float) -> None:
    """Closes every live iterator in the background and waits for the teardowns, at most
    ``timeout`` seconds in all."""
    for it in list(cls._live):
      it.close(wait=False)
    deadline = time.monotonic() + timeout
    while cls._teardowns:
      cls._teardowns.pop().join(max(0.0, deadline - time.monotonic()))


atexit.register(lambda: ClosingIterator.close_all(ClosingIterator.EXIT_WAIT_S))


def make_train_dataset(config, data_dir, split, per_host_batch, *, seed, start_step=0,
                       process_index=None, process_count=None, with_metadata=False,
                       read='auto'):
  """The ``tf.data.Dataset`` behind :func:`create_train_iterator`.

  Reads are positioned reads of byte ranges (:class:`fs.RangeReader`).
  ``read='records'``: a clip reads its video's whole record (~9 MB for 10 s
  at short side 320). ``read='ranges'``: with the shards' frame indexes
  (frame_index.py) a clip reads only its frames' JPEGs and its audio spans
  (~1 MB, ~34 reads) and parses no record. ``'auto'`` reads ranges when every
  shard has an index, else whole records. Both give the same examples.
  """
  records.check_config(config, data_dir)
  window_side = device_window_side(config, data_dir)
  process_index, process_count = records.resolve_host(process_index, process_count)
  files, lengths, offsets = records.host_files(data_dir, split, process_index, process_count)
  if read not in ('auto', 'ranges', 'records'):
    raise ValueError(f'read={read!r}: auto | ranges | records')
  tables = None if read == 'records' else index_tables(files, lengths, offsets)
  if tables is None and read == 'ranges':
    raise UserError(f'{data_dir}: split {split!r} has shards without a frame index '
                    f'(*{frame_index.SUFFIX}); prepare it again to read by frame')
  if tables is not None:
    return _ranged_train_dataset(config, files, tables, per_host_batch, seed, start_step,
                                 process_index, with_metadata, window_side)
  file_of, header_of, size_of, video_of = [], [], [], []
  for file_index, (path, length, first) in enumerate(zip(files, lengths, offsets)):
    data_offsets, data_sizes = records.record_data_spans(path, length)
    file_of += [file_index] * len(data_offsets)
    header_of += data_offsets
    size_of += data_sizes
    video_of += [first + record for record in range(len(data_offsets))]
  num = len(file_of)
  if num == 0:
    raise UserError(f'{data_dir}: no {split!r} examples on host {process_index}')
  reader = fs.RangeReader(files)
  tables = {k: tf.constant(v, tf.int64) for k, v in (('file', file_of), ('header', header_of),
                                                     ('size', size_of), ('video', video_of))}
  # One RNG stream per host, so hosts draw independent orders and clips.
  host_seed = records.host_seed(seed, process_index)

  def example_of(example, position):
    record = records.read_ranges(reader, tables['file'][example],
                                 tables['header'][example][None], tables['size'][example][None])[0]
    return make_train_example(record, position, tables['video'][example], config, host_seed,
                              with_metadata, window_side)

  dataset = records.epoch_orders(num, host_seed, int(start_step) * int(per_host_batch))
  dataset = dataset.map(example_of, num_parallel_calls=config.data.num_parallel_calls,
                        deterministic=True)
  dataset = dataset.batch(per_host_batch, drop_remainder=True)
  return dataset.prefetch(config.data.prefetch_batches).with_options(records.dataset_options())


def index_tables(files, lengths, offsets) -> Optional[Dict[str, np.ndarray]]:
  """This host's examples' frame-index entries concatenated over its shards (frame_base and
  label_start index the concatenated frame and label arrays), or None if a shard has none."""
  parts = []
  for path, length in zip(files, lengths):
    index = frame_index.read(path)
    if index is None:
      return None
    if len(index['record_offset']) != length:
      raise UserError(f'{frame_index.index_path(path)}: indexes {len(index["record_offset"])} '
                      f'records, shards.json says {length}; prepare the dataset again')
    if not fs.exists(path):
      raise UserError(f'{path}: shard file missing (shards.json lists it); prepare the dataset '
                      'again into the same --output_dir to rewrite it')
    end = int(index['record_offset'][-1] + index['record_length'][-1] + 4) if length else 0
    if fs.size(path) != end:
      raise UserError(f'{path}: damaged shard file ({fs.size(path)} bytes, its frame index '
                      f'says {end}); prepare the dataset again')
    parts.append(index)
  frame_totals = np.cumsum([0] + [len(p['frame_offset']) for p in parts])
  label_totals = np.cumsum([0] + [len(p['label']) for p in parts])
  out = {
      'file': np.concatenate([np.full(n, i, np.int64) for i, n in enumerate(lengths)]),
      'video': np.concatenate([first + np.arange(n) for first, n in zip(offsets, lengths)]),
      'num_frames': np.concatenate([np.diff(p['frame_start']) for p in parts]),
      'frame_base': np.concatenate([p['frame_start'][:-1] + t
                                    for p, t in zip(parts, frame_totals)]),
      'label_start': np.concatenate([p['label_start'][:-1] + t for p, t in zip(parts, label_totals)]
                                    + [label_totals[-1:]]),
  }
  for key in ('frame_offset', 'frame_length', 'label', 'audio_offset', 'audio_length', 'height',
              'width', 'has_audio', 'noun_label', 'audio_start_sec', 'video_id'):
    out[key] = np.concatenate([p[key] for p in parts])
  out['video'] = out['video'].astype(np.int64)
  return out


def _ranged_train_dataset(config, files, tables, per_host_batch, seed, start_step,
                          process_index, with_metadata, window_side):
  """Training clips read by frame: each clip's JPEGs and audio spans are its only reads."""
  d = config.data
  num = len(tables['file'])
  if num == 0:
    raise UserError(f'{files[0]}...: no training examples on host {process_index}')
  t = {k: tf.constant(v) for k, v in tables.items()}
  reader = fs.RangeReader(files)
  host_seed = records.host_seed(seed, process_index)
  num_audio = 2 if d.avs_negatives else 1
  num_frames = d.num_frames if has_frames(config) else 0

  def clip_ranges(example, choices):
    """Byte offsets and lengths of the clip's frames (none for an audio-only model), then of
    its audio spans; and the first stored sample of each span (spans are cut to the stored
    audio, the rest is zeros)."""
    frame_ids = t['frame_base'][example] + tf.cast(choices['indices'][:num_frames], tf.int64)
    offsets = [tf.gather(t['frame_offset'], frame_ids)]
    lengths = [tf.gather(t['frame_length'], frame_ids)]
    firsts = []
    stored = t['audio_length'][example] // 2
    for start in [choices['start'], choices.get('shifted')][:num_audio]:
      first, length = clips.audio_span(start, config, t['audio_start_sec'][example])
      first = tf.cast(first, tf.int64)
      low = tf.clip_by_value(first, 0, stored)
      high = tf.clip_by_value(first + length, 0, stored)
      offsets.append([t['audio_offset'][example] + 2 * low])
      lengths.append([2 * (high - low)])
      firsts.append(low)
    return tf.concat(offsets, 0), tf.concat(lengths, 0), tf.stack(firsts)

  def make(example, position):
    choices = train_choices(t['num_frames'][example], position, config, host_seed)
    offsets, lengths, firsts = clip_ranges(example, choices)
    parts = records.read_ranges(reader, t['file'][example], offsets, lengths)
    audio = []
    for j in range(num_audio):
      pcm = tf.io.decode_raw(parts[num_frames + j], tf.int16, little_endian=True)
      audio.append((pcm, firsts[j]))
    begin, end = t['label_start'][example], t['label_start'][example + 1]
    fields = {k: t[k][example] for k in ('height', 'width', 'has_audio', 'noun_label',
                                          'audio_start_sec', 'video_id', 'num_frames')}
    fields['label'] = t['label'][begin:end]
    return _assemble_train_example(fields, choices, parts[:num_frames], audio[0], audio[-1],
                                   t['video'][example], config, with_metadata, window_side)

  dataset = records.epoch_orders(num, host_seed, int(start_step) * int(per_host_batch))
  dataset = dataset.map(make, num_parallel_calls=d.num_parallel_calls, deterministic=True)
  dataset = dataset.batch(per_host_batch, drop_remainder=True)
  return dataset.prefetch(d.prefetch_batches).with_options(records.dataset_options())


def train_read_bytes(config, data_dir: str, split: str, num_clips: int, *, seed: int,
                     process_index: int = 0, process_count: int = 1) -> Dict[str, float]:
  """Mean bytes per training clip over the first ``num_clips`` clips of this host's stream.

  ``records``: a whole-record read (the record of the clip's video);
  ``ranges``: the byte ranges a read by frame fetches (frames, audio spans);
  ``used``: the bytes of the distinct frames and the stored audio samples the
  clip uses. Needs the frame index (frame_index.py).
  """
  files, lengths, offsets = records.host_files(data_dir, split, process_index, process_count)
  tables = index_tables(files, lengths, offsets)
  if tables is None:
    raise UserError(f'{data_dir}: no frame index (*{frame_index.SUFFIX}); prepare it again')
  num = len(tables['file'])
  host_seed = records.host_seed(seed, process_index)
  order = records.epoch_orders(num, host_seed, 0).take(num_clips)
  record_bytes = np.concatenate([np.asarray(frame_index.read(f)['record_length'])
                                 for f in files])
  d = config.data
  totals = {'records': 0.0, 'ranges': 0.0, 'used': 0.0}
  for example, position in order.as_numpy_iterator():
    choices = train_choices(tables['num_frames'][example], position, config, host_seed)
    frame_ids = tables['frame_base'][example] + choices['indices'].numpy()
    frame_bytes = tables['frame_length'][frame_ids]
    totals['records'] += record_bytes[example]
    totals['ranges'] += frame_bytes.sum()
    totals['used'] += tables['frame_length'][np.unique(frame_ids)].sum()
    stored = tables['audio_length'][example] // 2
    samples = set()
    starts = [choices['start']] + ([choices['shifted']] if d.avs_negatives else [])
    for start in starts:
      first, length = clips.audio_span(start, config, tables['audio_start_sec'][example])
      low, high = np.clip([int(first), int(first) + length], 0, stored)
      totals['ranges'] += max(2 * (high - low), 1)
      samples.update(range(low, high))
    totals['used'] += 2 * len(samples)
  return {k: v / num_clips for k, v in totals.items()}


# ----------------------------------------------------------------- evaluation
def make_eval_views(record, video_index, clip_index, config, with_metadata=False):
  """The ``num_test_crops`` views of temporal clip ``clip_index`` of a video, stacked."""
  d = config.data
  example = _parse(record)
  num_video_frames = tf.cast(example['num_frames'], tf.int32)
  window = d.num_frames * d.sampling_rate
  starts = sampling.eval_clip_starts(num_video_frames, window, d.num_test_clips)
  start = tf.gather(starts, clip_index)
  spec = clips.clip_log_mel(clips.waveform(example), start, config, example['audio_start_sec'])
  if has_frames(config):
    indices = sampling.clip_frame_indices(start, d.num_frames, d.sampling_rate,
                                          num_video_frames)
    frames = augment.decode_jpegs(tf.gather(example['frames'], indices))
    frames = augment.resize_short_side(frames, d.test_short_side)
    crops = augment.spatial_crops(frames, d.test_crop_size, d.num_test_crops)
    crops = tf.ensure_shape(crops, [d.num_test_crops, d.num_frames, d.test_crop_size,
                                    d.test_crop_size, 3])
  views = []
  for crop in range(d.num_test_crops):
    view = {}
    if has_frames(config):
      view['slow'], view['fast'] = clips.slow_fast(crops[crop], config)
    view.update({'audio': spec, 'audio_mask': tf.cast(example['has_audio'], tf.float32),
                 'video_index': tf.cast(video_index, tf.int32),
                 'view_index': tf.cast(clip_index * d.num_test_crops + crop, tf.int32),
                 'valid': tf.constant(1.0)})
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
  batches and every view is evaluated exactly once. A config of the ``ava`` task gets
  one detection example per keyframe (data_pipelines/ava_pipeline.py).
  """
  if _detection(config):
    return ava_pipeline.create_eval_iterator(config, data_dir, split, per_host_batch,
                                       process_index=process_index, process_count=process_count)
  return make_eval_dataset(config, data_dir, split, per_host_batch, process_index=process_index,
                           process_count=process_count,
                           with_metadata=with_metadata).as_numpy_iterator()


def make_eval_dataset(config, data_dir, split, per_host_batch, *, process_index=None,
                      process_count=None, with_metadata=False):
  """The ``tf.data.Dataset`` behind :func:`create_eval_iterator`."""
  records.check_config(config, data_dir)
  process_index, process_count = records.resolve_host(process_index, process_count)
  files, lengths, offsets = records.host_files(data_dir, split, process_index, process_count)
  for path, length in zip(files, lengths):  # a missing or truncated shard is named before reading
    records.checked_record_offsets(path, length)
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
  return dataset.prefetch(config.data.prefetch_batches).with_options(records.dataset_options())

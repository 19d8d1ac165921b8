"""tf.data pipelines of AVA-format detection data (records of data_pipelines/ava_prepare.py).

``input_pipeline.create_train_iterator`` / ``create_eval_iterator`` hand over
to this module for a config of the ``ava`` task. One example is one
keyframe: a clip of ``num_frames`` frames every ``sampling_rate`` frames
centred on it (frame ``c - num_frames * sampling_rate // 2 + i * sampling_rate``,
clamped to the video, as PySlowFast's AVA loader takes it), the log-mel of the
audio spanning the clip (as for Kinetics), and its boxes.

Training: every keyframe inside ``data.ava.train_keyframe_range`` (configs/ava.py:
902-1798, PySlowFast's ``AVA_VALID_FRAMES``) with a ground-truth box (with
``data.ava.train_use_detected_boxes``, the default of configs/ava.py, also one
with a detected box scoring >= ``data.ava.train_detection_score_threshold``,
whose boxes then join the ground-truth ones) once per epoch, in the
deterministic, resumable order of the classification pipeline (the batch at
step ``s`` depends only on ``(seed, s)``); short side jittered in
``data.train_jitter_scales``, a random ``train_crop_size`` square, a random
horizontal flip; boxes go through the same scale, crop and flip and are
clipped to the crop, and a box left empty is masked out. Evaluation: every
keyframe once, its short side resized to ``test_short_side``, the whole frame,
and the detected boxes scoring >= ``data.ava.detection_score_threshold``
(highest scores first). With ``data.ava.eval_frames = 'own'`` (configs/ava.py)
each frame keeps its own size, as PySlowFast evaluates it, and a batch holds
frames of one size (sizes in a fixed order, each padded with ``valid`` 0 rows
to whole batches, the same on every host); with ``'canvas'`` every frame sits
at the top left of one static canvas (``data.ava.test_canvas``, or else the
largest resized frame of the split rounded up to a multiple of 32) padded
with zeros, which changes the scores of the boxes (docs/ava.md, "Evaluation
frame"). ``predict`` pads to ``test_canvas``, the static view of the export.

Batch keys besides ``slow``, ``fast``, ``audio``, ``audio_mask`` (and
``audio_shifted`` when ``data.avs_negatives``): ``boxes`` ``[N, 4]`` float32
``(x1, y1, x2, y2)`` in pixels of the model's input frame, ``box_mask`` ``[N]``
(1 = a real box), ``video_index``, ``timestamp`` (the keyframe second);
training adds ``box_labels`` ``[N, C]`` multi-hot (class = action id - 1);
evaluation adds ``image_size`` ``(height, width)`` of the frame (inside the
canvas, if any) and ``valid`` (0 for padding rows). ``N = data.ava.max_boxes``,
``C = model.num_classes``.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterator, List, Optional

import numpy as np
import tensorflow as tf

from data_pipelines import augment, ava_files, ava_prepare, clips, fs, records, sampling, shards
from data_pipelines.errors import UserError

CANVAS_MULTIPLE = 32
EVAL_FRAMES = ('own', 'canvas')


def _meta(config, data_dir: str) -> dict:
  """The ``ava`` section of ``shards.json``, checked against the config."""
  records.check_config(config, data_dir)
  meta = shards.read_metadata(data_dir)
  if 'ava' not in meta:
    raise UserError(f'{data_dir}: not AVA-format data (shards.json has no "ava" section), but '
                    'the config\'s task is ava; prepare it with python -m data_pipelines.prepare '
                    '--dataset ava')
  a, d = meta['ava'], config.data
  window = d.num_frames * d.sampling_rate
  before = window // 2
  after = (d.num_frames - 1) * d.sampling_rate - before
  if max(before, after) > a['margin_frames']:
    raise UserError(
        f'{data_dir}: segments store {a["margin_frames"]} frames around their keyframes, but '
        f'clips of {d.num_frames} x {d.sampling_rate} frames reach {max(before, after)} frames '
        f'from theirs; prepare again with --ava_margin_sec {max(before, after) / d.fps:.2f}')
  if d.ava.max_boxes < a['max_boxes']:
    raise UserError(f'{data_dir}: prepared with up to {a["max_boxes"]} boxes per keyframe, but '
                    f'config.data.ava.max_boxes is {d.ava.max_boxes}: boxes would be dropped '
                    f'uncounted; prepare again with --max_boxes {d.ava.max_boxes} or raise it')
  for field in ('detection_score_threshold', 'train_detection_score_threshold'):
    if d.ava[field] < a['detection_score_threshold'] - 1e-9:
      raise UserError(f'config.data.ava.{field} = {d.ava[field]} is below the '
                      f'{a["detection_score_threshold"]} the detections of {data_dir} were '
                      'stored at; prepare again with a lower --detection_score_threshold')
  return meta


def _index(data_dir: str, split: str) -> List[list]:
  """Per shard file, per record: ``[video_index, height, width, [[sec, gt, det, top], ...]]``."""
  path = fs.join(data_dir, 'ava', f'{split}_index.json')
  if not fs.exists(path):
    raise UserError(f'{path}: missing (written by prepare --dataset ava); prepare again')
  return fs.read_json(path)['shards']


def _parse(record):
  return tf.io.parse_single_example(record, ava_prepare.parse_spec())


def _boxes_of(example, prefix: str, slot, num_classes: int, min_score: Optional[float]):
  """The ``prefix`` boxes of keyframe ``slot``: ``(boxes [n, 4], labels [n, C])``."""
  boxes = tf.reshape(example[f'{prefix}_boxes'], [-1, 4])
  keep = tf.equal(example[f'{prefix}_keyframe'], tf.cast(slot, tf.int64))
  if min_score is not None:
    keep &= example[f'{prefix}_scores'] >= min_score
  rows = tf.where(keep)[:, 0]
  owner = example[f'{prefix}_label_box']
  action = example[f'{prefix}_label_action']
  known = (action >= 1) & (action <= num_classes)  # actions past num_classes are not trained
  pairs = tf.stack([tf.boolean_mask(owner, known), tf.boolean_mask(action, known) - 1], 1)
  hot = tf.scatter_nd(pairs, tf.ones([tf.shape(pairs)[0]]),
                      tf.cast(tf.stack([tf.shape(boxes)[0], num_classes]), tf.int64))
  return tf.gather(boxes, rows), tf.minimum(tf.gather(hot, rows), 1.0)


def _pad(x, n: int):
  """First ``n`` rows of ``x``, zero-padded to ``n``."""
  x = x[:n]
  padding = [[0, n - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
  return tf.pad(x, padding)


def _clip(example, slot, config):
  """Frame indices and first frame of the clip centred on keyframe ``slot``."""
  d = config.data
  window = d.num_frames * d.sampling_rate
  num_video_frames = tf.cast(example['num_frames'], tf.int32)
  centre = tf.cast(tf.gather(example['keyframe_frame'], slot), tf.int32)
  start = centre - window // 2
  return sampling.clip_frame_indices(start, d.num_frames, d.sampling_rate,
                                     num_video_frames), start


def _audio(example, start, config):
  waveform = clips.waveform(example)
  return waveform, clips.clip_log_mel(waveform, start, config, example['audio_start_sec'])


def crop_boxes(boxes, height, width, crop, crop_size: int, flip):
  """Normalised boxes ``[n, 4]`` -> pixels of the ``crop_size`` crop, and which are non-empty.

  ``crop`` is the ``(y, x, h, w)`` window in stored-frame pixels of
  ``augment.train_crop_window`` (resized to ``crop_size``); the boxes are
  scaled, shifted and clipped as the frames are, then mirrored when ``flip``.
  """
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  crop = tf.cast(crop, tf.float32)
  scale = crop_size / crop[2]
  pixels = boxes * tf.stack([width, height, width, height])
  pixels = (pixels - tf.stack([crop[1], crop[0], crop[1], crop[0]])) * scale
  pixels = tf.clip_by_value(pixels, 0.0, float(crop_size))
  flipped = tf.stack([crop_size - pixels[:, 2], pixels[:, 1], crop_size - pixels[:, 0],
                      pixels[:, 3]], 1)
  pixels = tf.where(flip, flipped, pixels)
  return pixels, (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])


def make_train_example(record, position, slot, config, seed: int) -> Dict[str, tf.Tensor]:
  """One augmented training example: keyframe ``slot`` of a serialized segment."""
  d, a = config.data, config.data.ava
  n = a.max_boxes
  example = _parse(record)
  key = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
  keys = tf.random.experimental.stateless_split(key, num=6)
  uniforms = [tf.random.stateless_uniform([], seed=keys[i]) for i in range(5)]
  indices, start = _clip(example, slot, config)
  low, high = d.train_jitter_scales
  short_side = tf.random.stateless_uniform([], seed=keys[5], minval=low, maxval=high + 1,
                                           dtype=tf.int32)
  crop = augment.train_crop_window(example['height'], example['width'], d.train_crop_size,
                                   short_side, uniforms[1], uniforms[2])
  frames = augment.decode_jpegs(tf.gather(example['frames'], indices), crop)
  flip = uniforms[3] < 0.5 if d.random_flip else tf.constant(False)
  frames = augment.maybe_flip(frames, flip)
  frames = augment.resize_frames(frames, d.train_crop_size, d.train_crop_size)
  slow, fast = clips.slow_fast(frames, config)

  boxes, labels = _boxes_of(example, 'gt', slot, config.model.num_classes, None)
  if a.train_use_detected_boxes:
    det, det_labels = _boxes_of(example, 'det', slot, config.model.num_classes,
                                a.train_detection_score_threshold)
    boxes, labels = tf.concat([boxes, det], 0), tf.concat([labels, det_labels], 0)
  pixels, nonempty = crop_boxes(boxes, example['height'], example['width'], crop,
                                d.train_crop_size, flip)
  mask = _pad(tf.cast(nonempty, tf.float32), n)
  waveform, spec = _audio(example, start, config)
  out = {'slow': slow, 'fast': fast, 'audio': spec,
         'audio_mask': tf.cast(example['has_audio'], tf.float32),
         'boxes': tf.ensure_shape(_pad(pixels, n) * mask[:, None], [n, 4]),
         'box_mask': tf.ensure_shape(mask, [n]),
         'box_labels': tf.ensure_shape(_pad(labels, n) * mask[:, None],
                                       [n, config.model.num_classes]),
         'video_index': tf.cast(example['video_index'], tf.int32),
         'timestamp': tf.cast(tf.gather(example['keyframe_sec'], slot), tf.int32)}
  if d.avs_negatives:
    min_shift = int(np.ceil(d.hard_negative_min_shift_sec * d.fps))
    shifted = sampling.hard_negative_start(start, tf.cast(example['num_frames'], tf.int32),
                                           d.num_frames * d.sampling_rate, min_shift, uniforms[4])
    out['audio_shifted'] = clips.clip_log_mel(waveform, shifted, config,
                                              example['audio_start_sec'])
  return out


def train_keyframes(config, index_shard) -> List[tuple]:
  """``(record, slot)`` of the keyframes of one shard that training uses: those inside
  ``data.ava.train_keyframe_range`` (inclusive; empty or absent = all) with a ground-truth
  box or, with ``train_use_detected_boxes``, a detected box scoring at least
  ``train_detection_score_threshold``."""
  a = config.data.ava
  bounds = tuple(a.get('train_keyframe_range') or ())
  if bounds and len(bounds) != 2:
    raise UserError(f'config.data.ava.train_keyframe_range={bounds!r}: expected (first, last) '
                    'keyframe seconds, e.g. (902, 1798), or () for every keyframe')
  out = []
  for record, (_, _, _, keyframes) in enumerate(index_shard):
    for slot, (sec, num_gt, num_det, top) in enumerate(keyframes):
      if bounds and not bounds[0] <= sec <= bounds[1]:
        continue
      if num_gt > 0 or (a.train_use_detected_boxes and num_det > 0
                        and top >= a.train_detection_score_threshold):
        out.append((record, slot))
  return out


def make_train_dataset(config, data_dir, split, per_host_batch, *, seed, start_step=0,
                       process_index=None, process_count=None):
  """Endless ``tf.data.Dataset`` of training batches (see the module docstring)."""
  _meta(config, data_dir)
  process_index, process_count = records.resolve_host(process_index, process_count)
  files, lengths, _ = records.host_files(data_dir, split, process_index, process_count)
  index = _index(data_dir, split)
  host_index = index[process_index::process_count]
  columns = {k: [] for k in ('file', 'header', 'size', 'slot')}
  for file_index, (path, length, shard) in enumerate(zip(files, lengths, host_index)):
    data_offsets, data_sizes = records.record_data_spans(path, length)
    for record, slot in train_keyframes(config, shard):
      columns['file'].append(file_index)
      columns['header'].append(data_offsets[record])
      columns['size'].append(data_sizes[record])
      columns['slot'].append(slot)
  num = len(columns['file'])
  if num == 0:
    raise UserError(f'{data_dir}: no {split!r} keyframe with a training box on host '
                    f'{process_index}')
  reader = fs.RangeReader(files)
  tables = {k: tf.constant(v, tf.int64) for k, v in columns.items()}
  host_seed = records.host_seed(seed, process_index)

  def example_of(example, position):
    record = records.read_ranges(reader, tables['file'][example],
                                 tables['header'][example][None], tables['size'][example][None])[0]
    return make_train_example(record, position, tables['slot'][example], config, host_seed)

  dataset = records.epoch_orders(num, host_seed, int(start_step) * int(per_host_batch))
  dataset = dataset.map(example_of, num_parallel_calls=config.data.num_parallel_calls,
                        deterministic=True)
  dataset = dataset.batch(per_host_batch, drop_remainder=True)
  return dataset.prefetch(config.data.prefetch_batches).with_options(records.dataset_options())


def create_train_iterator(config, data_dir: str, split: str, per_host_batch: int, *, seed: int,
                          start_step: int = 0, process_index: Optional[int] = None,
                          process_count: Optional[int] = None) -> Iterator[Dict[str, np.ndarray]]:
  """Endless iterator of training batches, deterministic given ``(seed, start_step)``."""
  return make_train_dataset(config, data_dir, split, per_host_batch, seed=seed,
                            start_step=start_step, process_index=process_index,
                            process_count=process_count).as_numpy_iterator()


# ----------------------------------------------------------------- evaluation
def _resized(height, width, short_side: int):
  scale = short_side / min(height, width)
  return int(round(height * scale)), int(round(width * scale))


def eval_canvas(config, data_dir: str, split: str):
  """``(height, width)`` of the eval canvas: ``data.ava.test_canvas`` when the config sets
  it (a frame that does not fit is an error), else the largest resized frame of the split
  rounded up to a multiple of 32."""
  sizes = [_resized(h, w, config.data.test_short_side)
           for shard in _index(data_dir, split) for _, h, w, _ in shard]
  if not sizes:
    raise UserError(f'{data_dir}: split {split!r} has no keyframes')
  largest = (max(h for h, _ in sizes), max(w for _, w in sizes))
  canvas = tuple(config.data.ava.get('test_canvas') or ())
  if canvas:
    if largest[0] > canvas[0] or largest[1] > canvas[1]:
      raise UserError(
          f'{data_dir}: split {split!r} has frames of up to {largest[0]}x{largest[1]} pixels at '
          f'short side {config.data.test_short_side}, larger than config.data.ava.test_canvas '
          f'{tuple(canvas)}; set it to at least ({largest[0]}, {largest[1]})')
    return int(canvas[0]), int(canvas[1])
  up = lambda v: -(-v // CANVAS_MULTIPLE) * CANVAS_MULTIPLE
  return up(largest[0]), up(largest[1])


def eval_frames(config) -> str:
  """``data.ava.eval_frames``: ``'own'`` (each keyframe at its own resized size, batches of
  one size) or ``'canvas'`` (every frame padded to one static canvas; the default of a
  config without the field)."""
  mode = config.data.ava.get('eval_frames', 'canvas')
  if mode not in EVAL_FRAMES:
    raise UserError(f'config.data.ava.eval_frames={mode!r}: expected one of {EVAL_FRAMES}')
  return mode


def make_eval_example(record, slot, config, canvas, size=None) -> Dict[str, tf.Tensor]:
  """Keyframe ``slot`` of a segment: the whole frame, its detected boxes.

  ``canvas`` ``(height, width)``: the resized frame at the top left of a zero canvas of
  that static size; ``None``: the frame alone, resized to ``size`` ``(height, width)``
  (given by the caller, who batches frames of one size together).
  """
  d, a = config.data, config.data.ava
  n = a.max_boxes
  example = _parse(record)
  indices, start = _clip(example, slot, config)
  frames = augment.decode_jpegs(tf.gather(example['frames'], indices))
  if size is None:
    height = tf.cast(example['height'], tf.float32)
    width = tf.cast(example['width'], tf.float32)
    scale = d.test_short_side / tf.minimum(height, width)
    new_h = tf.cast(tf.round(height * scale), tf.int32)
    new_w = tf.cast(tf.round(width * scale), tf.int32)
  else:
    new_h, new_w = tf.cast(size[0], tf.int32), tf.cast(size[1], tf.int32)
  frames = augment.resize_frames(frames, new_h, new_w)
  slow, fast = clips.slow_fast(frames, config)
  if canvas is None:
    pad = lambda x: x
  else:
    pad = lambda x: tf.ensure_shape(
        tf.pad(x, [[0, 0], [0, canvas[0] - new_h], [0, canvas[1] - new_w], [0, 0]]),
        [x.shape[0], canvas[0], canvas[1], 3])
  boxes, _ = _boxes_of(example, 'det', slot, 1, a.detection_score_threshold)
  size_f = tf.cast(tf.stack([new_w, new_h, new_w, new_h]), tf.float32)
  mask = _pad(tf.ones([tf.shape(boxes)[0]]), n)
  _, spec = _audio(example, start, config)
  return {'slow': pad(slow), 'fast': pad(fast), 'audio': spec,
          'audio_mask': tf.cast(example['has_audio'], tf.float32),
          'boxes': tf.ensure_shape(_pad(boxes * size_f, n), [n, 4]),
          'box_mask': tf.ensure_shape(mask, [n]),
          'video_index': tf.cast(example['video_index'], tf.int32),
          'timestamp': tf.cast(tf.gather(example['keyframe_sec'], slot), tf.int32),
          'image_size': tf.cast(tf.stack([new_h, new_w]), tf.float32),
          'valid': tf.constant(1.0)}


def eval_num_batches(data_dir: str, split: str, per_host_batch: int, process_count: int) -> int:
  """Batches every host yields: enough for the host with the most keyframes."""
  index = _index(data_dir, split)
  per_host = [sum(len(r[3]) for shard in index[h::process_count] for r in shard)
              for h in range(process_count)]
  return max(1, -(-max(per_host) // per_host_batch))


def own_size_rows(config, data_dir: str, split: str, per_host_batch: int, process_index: int,
                   process_count: int, files, lengths) -> Dict[str, list]:
  """The evaluation examples of this host for ``eval_frames='own'``: per resized frame size
  (every host takes the sizes in the same order), the host's keyframes of that size, then
  filler rows (``valid`` 0, any record of the host resized to that size) up to the batches
  the host with the most keyframes of that size needs; so every batch holds one size and
  every host yields the same sequence of batch shapes."""
  short_side = config.data.test_short_side
  index = _index(data_dir, split)
  counts = collections.defaultdict(lambda: [0] * process_count)
  for host in range(process_count):
    for shard in index[host::process_count]:
      for _, height, width, keyframes in shard:
        counts[_resized(height, width, short_side)][host] += len(keyframes)
  mine = collections.defaultdict(list)
  for file_index, (path, length, shard) in enumerate(
      zip(files, lengths, index[process_index::process_count])):
    offsets, sizes = records.record_data_spans(path, length)
    for record, (_, height, width, keyframes) in enumerate(shard):
      for slot in range(len(keyframes)):
        mine[_resized(height, width, short_side)].append(
            (file_index, int(offsets[record]), int(sizes[record]), slot))
  anyone = next((r for rows in mine.values() for r in rows), None)
  if anyone is None:
    raise UserError(f'{data_dir}: split {split!r} has no keyframe on host {process_index} of '
                    f'{process_count}; evaluate on fewer hosts, or set '
                    "config.data.ava.eval_frames='canvas'")
  out = {k: [] for k in ('file', 'header', 'length', 'slot', 'height', 'width', 'valid')}
  for size in sorted(counts):
    real = mine.get(size, [])
    total = -(-max(counts[size]) // per_host_batch) * per_host_batch
    for i in range(total):
      file_index, header, length, slot = real[i] if i < len(real) else (real or [anyone])[0]
      for key, value in zip(out, (file_index, header, length, slot, size[0], size[1],
                                  int(i < len(real)))):
        out[key].append(value)
  return out


def _own_size_dataset(config, data_dir, split, per_host_batch, process_index, process_count,
                      files, lengths):
  rows = own_size_rows(config, data_dir, split, per_host_batch, process_index, process_count,
                        files, lengths)
  tables = {k: tf.constant(v, tf.int64) for k, v in rows.items()}
  reader = fs.RangeReader(files)

  def example_of(i):
    record = records.read_ranges(reader, tables['file'][i], tables['header'][i][None],
                                 tables['length'][i][None])[0]
    out = make_eval_example(record, tables['slot'][i], config, None,
                            size=(tables['height'][i], tables['width'][i]))
    out['valid'] = tf.cast(tables['valid'][i], tf.float32)
    return out

  dataset = tf.data.Dataset.range(len(rows['valid']))
  dataset = dataset.map(example_of, num_parallel_calls=config.data.num_parallel_calls,
                        deterministic=True)
  dataset = dataset.batch(per_host_batch, drop_remainder=True)
  return dataset.prefetch(config.data.prefetch_batches).with_options(records.dataset_options())


def make_eval_dataset(config, data_dir, split, per_host_batch, *, process_index=None,
                      process_count=None):
  """One pass over every keyframe of ``split`` on this host, padded like the classification
  eval iterator so that every host yields the same number of batches (of the same shapes)."""
  _meta(config, data_dir)
  process_index, process_count = records.resolve_host(process_index, process_count)
  files, lengths, _ = records.host_files(data_dir, split, process_index, process_count)
  for path, length in zip(files, lengths):
    records.checked_record_offsets(path, length)
  if eval_frames(config) == 'own':
    return _own_size_dataset(config, data_dir, split, per_host_batch, process_index,
                             process_count, files, lengths)
  host_index = _index(data_dir, split)[process_index::process_count]
  counts = [len(r[3]) for shard in host_index for r in shard]
  canvas = eval_canvas(config, data_dir, split)
  num_batches = eval_num_batches(data_dir, split, per_host_batch, process_count)
  segments = tf.data.TFRecordDataset(files)
  dataset = tf.data.Dataset.zip((segments, tf.data.Dataset.from_tensor_slices(
      tf.constant(counts, tf.int64))))
  dataset = dataset.flat_map(lambda r, k: tf.data.Dataset.from_tensors(r).repeat(k).enumerate()
                             .map(lambda s, rr: (rr, s)))
  dataset = dataset.map(lambda r, s: make_eval_example(r, s, config, canvas),
                        num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  dataset = dataset.batch(per_host_batch)

  def pad(batch):
    count = tf.shape(batch['valid'])[0]
    def pad_one(x):
      padded = tf.pad(x, [[0, per_host_batch - count]] + [[0, 0]] * (len(x.shape) - 1))
      padded.set_shape([per_host_batch] + x.shape[1:])
      return padded
    return tf.nest.map_structure(pad_one, batch)

  dataset = dataset.map(pad)
  filler = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), dataset.element_spec)
  dataset = dataset.concatenate(tf.data.Dataset.from_tensors(filler).repeat())
  dataset = dataset.take(num_batches)
  return dataset.prefetch(config.data.prefetch_batches).with_options(records.dataset_options())


def create_eval_iterator(config, data_dir: str, split: str, per_host_batch: int, *,
                         process_index: Optional[int] = None,
                         process_count: Optional[int] = None) -> Iterator[Dict[str, np.ndarray]]:
  """One pass over every keyframe of ``split`` on this host (numpy dicts, module docstring)."""
  return make_eval_dataset(config, data_dir, split, per_host_batch, process_index=process_index,
                           process_count=process_count).as_numpy_iterator()


def predict_batch(config, video, boxes=None, keyframe_frame: Optional[int] = None,
                  canvas=None) -> Dict[str, np.ndarray]:
  """The evaluation example of one keyframe of a decoded video, as a numpy batch of one.

  ``video``: a ``decode.DecodedVideo`` (``decode.decode_video``); ``boxes``:
  normalised ``(x1, y1, x2, y2)`` rows (default: the whole frame as one box);
  ``keyframe_frame``: the centre frame of the clip (default: the middle of the
  video); ``canvas``: ``(height, width)`` (default ``data.ava.test_canvas``, or
  the resized frame rounded up to 32). For ``predict``: the same ops as
  ``--mode eval``.
  """
  boxes = np.asarray([[0.0, 0.0, 1.0, 1.0]] if boxes is None else boxes, np.float32).reshape(-1, 4)
  if len(boxes) > config.data.ava.max_boxes:
    raise UserError(f'{len(boxes)} boxes, more than config.data.ava.max_boxes '
                    f'({config.data.ava.max_boxes})')
  if keyframe_frame is None:
    keyframe_frame = video.num_frames // 2
  if canvas is None:
    canvas = tuple(config.data.ava.get('test_canvas') or ())
    if not canvas:
      up = lambda v: -(-v // CANVAS_MULTIPLE) * CANVAS_MULTIPLE
      canvas = tuple(up(v) for v in _resized(video.height, video.width,
                                             config.data.test_short_side))
  keyframe = ava_prepare.Keyframe(0, [], [ava_files.Box(tuple(b), [], 1.0) for b in boxes])
  item = ava_prepare.AvaVideo('predict', '', 0, [keyframe])
  record = ava_prepare.serialize_segment(
      item, video.jpegs, video.height, video.width, video.fps, video.audio,
      video.audio_sample_rate, video.audio_start_sec, [keyframe], [keyframe_frame], 0.0)
  canvas = (int(canvas[0]), int(canvas[1]))
  config = _with_threshold(config, 0.0)  # the given boxes are all kept
  example = make_eval_example(tf.constant(record), 0, config, canvas)
  return {k: v.numpy()[None] for k, v in example.items()}


def _with_threshold(config, threshold: float):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.ava.detection_score_threshold = threshold
  return config

"""The prepared-data format: one ``tf.train.Example`` per video segment in TFRecord shards.

Layout of a prepared directory (``tfds.builder_from_directory`` reads it):

  <name>-<split>.tfrecord-00000-of-00008   TFRecord shards
  dataset_info.json, features.json          TFDS metadata
  shards.json                               splits, shard files and lengths, fps, ...
  label_map.json                            {"labels": [...], "nouns": [...]}
  prepare_report.json                       every input: written / skipped / repaired, why
  <shard>.frames.npz                        byte ranges of each record's frames and audio
                                            (frame_index.py; absent in older prepared data)
  _progress/<split>-<shard>.json            one per finished shard (what makes a run resumable)

Features of an example (all scalars unless noted):
  video_id (bytes), source_path (bytes), frames (bytes list: one JPEG per frame,
  frame i at i / fps s), num_frames, height, width (int64), fps (float),
  audio (bytes: int16 little-endian mono PCM, empty without audio),
  audio_num_samples, audio_sample_rate (int64), audio_start_sec (float: time of
  audio sample 0 relative to frame 0), has_audio (int64 0/1), label (int64 list),
  noun_label (int64, -1 if none), start_sec, end_sec (float: the segment in the
  source file, -1 for whole files).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import fs
from data_pipelines.errors import UserError

SHARD_TEMPLATE = '{name}-{split}.tfrecord-{index:05d}-of-{count:05d}'
TFDS_TEMPLATE = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}'
FORMAT_VERSION = 1


def shard_filename(name: str, split: str, index: int, count: int) -> str:
  """File name of shard ``index`` of ``count`` (TFDS naming)."""
  return SHARD_TEMPLATE.format(name=name, split=split, index=index, count=count)


def bytes_feature(values):
  """A ``tf.train.Feature`` of byte strings."""
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def ints_feature(values):
  """A ``tf.train.Feature`` of int64s."""
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def floats_feature(values):
  """A ``tf.train.Feature`` of float32s."""
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def audio_bytes(video) -> bytes:
  """The ``audio`` feature of a ``decode.DecodedVideo``: int16 little-endian PCM, or empty."""
  return b'' if video.audio is None else video.audio.astype('<i2').tobytes()


def serialize_example(video, item) -> bytes:
  """Serialized ``tf.train.Example`` of a ``decode.DecodedVideo`` and its ``adapters.VideoItem``."""
  audio = audio_bytes(video)
  feature = {
      'video_id': bytes_feature([item.video_id.encode()]),
      'source_path': bytes_feature([item.path.encode()]),
      'frames': bytes_feature(video.jpegs),
      'num_frames': ints_feature([video.num_frames]),
      'height': ints_feature([video.height]),
      'width': ints_feature([video.width]),
      'fps': floats_feature([video.fps]),
      'audio': bytes_feature([audio]),
      'audio_num_samples': ints_feature([0 if video.audio is None else len(video.audio)]),
      'audio_sample_rate': ints_feature([video.audio_sample_rate]),
      'audio_start_sec': floats_feature([video.audio_start_sec]),
      'has_audio': ints_feature([video.audio is not None]),
      'label': ints_feature(item.labels),
      'noun_label': ints_feature([item.noun]),
      'start_sec': floats_feature([-1.0 if item.start_sec is None else item.start_sec]),
      'end_sec': floats_feature([-1.0 if item.end_sec is None else item.end_sec]),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_spec():
  """``tf.io.parse_single_example`` spec of the features above."""
  scalar = lambda dtype, default=None: tf.io.FixedLenFeature([], dtype, default_value=default)
  return {
      'video_id': scalar(tf.string),
      'frames': tf.io.RaggedFeature(tf.string),
      'num_frames': scalar(tf.int64),
      'height': scalar(tf.int64),
      'width': scalar(tf.int64),
      'fps': scalar(tf.float32),
      'audio': scalar(tf.string, b''),
      'audio_num_samples': scalar(tf.int64, 0),
      'audio_sample_rate': scalar(tf.int64, 16000),
      'audio_start_sec': scalar(tf.float32, 0.0),
      'has_audio': scalar(tf.int64, 0),
      'label': tf.io.RaggedFeature(tf.int64),
      'noun_label': scalar(tf.int64, -1),
      'start_sec': scalar(tf.float32, -1.0),
      'end_sec': scalar(tf.float32, -1.0),
  }


def tfds_features():
  """The same features as a ``tfds.features.FeaturesDict`` (for the TFDS metadata)."""
  tensor = tfds.features.Tensor
  return tfds.features.FeaturesDict({
      'video_id': tensor(shape=(), dtype=tf.string),
      'source_path': tensor(shape=(), dtype=tf.string),
      'frames': tensor(shape=(None,), dtype=tf.string),
      'num_frames': tensor(shape=(), dtype=np.int64),
      'height': tensor(shape=(), dtype=np.int64),
      'width': tensor(shape=(), dtype=np.int64),
      'fps': tensor(shape=(), dtype=np.float32),
      'audio': tensor(shape=(), dtype=tf.string),
      'audio_num_samples': tensor(shape=(), dtype=np.int64),
      'audio_sample_rate': tensor(shape=(), dtype=np.int64),
      'audio_start_sec': tensor(shape=(), dtype=np.float32),
      'has_audio': tensor(shape=(), dtype=np.int64),
      'label': tensor(shape=(None,), dtype=np.int64),
      'noun_label': tensor(shape=(), dtype=np.int64),
      'start_sec': tensor(shape=(), dtype=np.float32),
      'end_sec': tensor(shape=(), dtype=np.float32),
  })


def write_tfds_metadata(data_dir: str, name: str, split_lengths: Dict[str, Sequence[int]],
                        split_bytes: Dict[str, int], description: str = '',
                        features=None) -> None:
  """Writes ``dataset_info.json`` / ``features.json`` so ``tfds.builder_from_directory`` works.

  ``features``: a ``tfds.features.FeaturesDict`` of the records (default: :func:`tfds_features`).

  TFDS writes through etils.epath, which knows local paths and gs:// but not
  every filesystem TensorFlow has (ram://, ...): the metadata is written into
  a local scratch folder (beside empty stand-ins for the shard files, which
  TFDS lists to find the file names) and copied to ``data_dir`` through fs.
  """
  with tempfile.TemporaryDirectory(prefix='tfds_metadata_') as scratch:
    for split, lengths in split_lengths.items():
      for index in range(len(lengths)):
        with open(os.path.join(scratch, shard_filename(name, split, index, len(lengths))), 'wb'):
          pass
    template = tfds.core.ShardedFileTemplate(data_dir=scratch, template=TFDS_TEMPLATE,
                                             dataset_name=name, filetype_suffix='tfrecord')
    split_infos = [
        tfds.core.SplitInfo(name=split, shard_lengths=[int(n) for n in lengths],
                            num_bytes=int(split_bytes.get(split, 0)),
                            filename_template=template.replace(split=split))
        for split, lengths in split_lengths.items()]
    tfds.folder_dataset.write_metadata(data_dir=scratch, features=features or tfds_features(),
                                       split_infos=split_infos, filename_template=template,
                                       description=description, check_data=False)
    for filename in sorted(os.listdir(scratch)):
      if filename.endswith('.json'):
        fs.copy(os.path.join(scratch, filename), fs.join(data_dir, filename), overwrite=True)


def record_offsets(path: str) -> np.ndarray:
  """Byte offset of every record in a TFRecord file (reads only the length headers).

  TFRecord framing: uint64 length, uint32 CRC of the length, data, uint32 CRC.
  """
  offsets = []
  if not fs.exists(path):
    raise UserError(f'{path}: shard file missing (shards.json lists it); prepare the dataset '
                    'again into the same --output_dir to rewrite it')
  size = fs.size(path)
  with fs.open(path, 'rb') as f:
    position = 0
    while position < size:
      header = f.read(8)
      if len(header) < 8:
        raise UserError(f'{path}: damaged shard file (truncated TFRecord header at byte '
                        f'{position})')
      (length,) = struct.unpack('<Q', header)
      offsets.append(position)
      position += 12 + length + 4
      if position < size:  # GFile cannot seek past the end (a truncated last record)
        f.seek(position)
    if position != size:
      raise UserError(f'{path}: damaged shard file (truncated TFRecord: the last record ends '
                      f'at byte {position}, the file has {size} bytes)')
  return np.asarray(offsets, np.int64)


def read_json(path: str):
  """The JSON value in ``path``; a file that is not valid JSON is a ``UserError`` naming it."""
  try:
    return json.loads(fs.read_text(path))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'{path}: damaged JSON file ({e})') from None


def read_metadata(data_dir: str) -> dict:
  """``shards.json`` of a prepared dataset, with a message that says how to make one."""
  if not str(data_dir or '').strip():
    raise UserError('no prepared-data folder given (the path is empty): give the folder '
                    'python -m data_pipelines.prepare wrote')
  meta_path = fs.join(data_dir, 'shards.json')
  if not fs.exists(meta_path):
    what = 'does not exist' if not fs.exists(data_dir) else 'holds no prepared data'
    raise UserError(f'{data_dir} {what} (no shards.json): prepare videos into it with '
                    'python -m data_pipelines.prepare --output_dir DIR ..., or make the '
                    'built-in dataset with python -m data_pipelines.synthetic')
  meta = read_json(meta_path)
  if not isinstance(meta, dict) or not isinstance(meta.get('splits'), dict):
    raise UserError(f'{meta_path}: damaged metadata (no "splits" table); prepare the dataset '
                    'again')
  return meta


def write_json_atomic(path: str, value) -> None:
  """Writes JSON through a temporary file and a rename, so readers never see half a file."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with fs.open(tmp, 'w') as f:
    f.write(json.dumps(value, indent=1))
  fs.rename(tmp, path, overwrite=True)


def load_split_files(data_dir: str, split: str) -> (List[str], List[int]):
  """Shard paths and their example counts for ``split`` (from ``shards.json``)."""
  meta = read_metadata(data_dir)
  if split not in meta['splits']:
    raise UserError(f'{fs.join(data_dir, "shards.json")}: no split {split!r} '
                    f'(have {sorted(meta["splits"])})')
  entry = meta['splits'][split]
  return [fs.join(data_dir, f) for f in entry['files']], list(entry['lengths'])


def read_video_ids(data_dir: str, split: str) -> List[str]:
  """The ``video_id`` of every example of ``split``, in the order evaluation indexes them
  (``video_index``: the shards of ``shards.json`` in order, records in file order).

  Reads every record whole (TFRecord has no index of features): one pass over the split.
  """
  files, lengths = load_split_files(data_dir, split)
  spec = {'video_id': tf.io.FixedLenFeature([], tf.string)}
  ids = []
  for path, length in zip(files, lengths):
    before = len(ids)
    for record in tf.data.TFRecordDataset(path):
      ids.append(tf.io.parse_single_example(record, spec)['video_id'].numpy().decode())
    if len(ids) - before != length:
      raise UserError(f'{path}: {len(ids) - before} records, but shards.json says {length}')
  return ids

"""Where every frame and the audio of each record lie inside a shard file.

``prepare`` writes ``<shard>.frames.npz`` beside each shard it writes, with
byte positions in the shard file (not in the record):

  record_offset  int64 [R]     first byte of record r's serialized example
  record_length  int64 [R]     its length
  frame_start    int64 [R + 1] record r's frames are entries frame_start[r]:frame_start[r + 1]
  frame_offset   int64 [F]     first byte of a frame's JPEG
  frame_length   int64 [F]     its length
  audio_offset   int64 [R]     first byte of record r's int16 PCM (0 without audio)
  audio_length   int64 [R]     its length (0 without audio)

and the record's small features, so that a clip needs nothing else from the
record: ``height``, ``width``, ``has_audio``, ``noun_label`` (int64 [R]),
``audio_start_sec`` (float32 [R]), ``video_id`` (str [R]) and its labels,
``label[label_start[r]:label_start[r + 1]]``.

With it a reader can fetch a clip's frames and audio span by byte range
instead of the whole record (all frames and the whole soundtrack);
benchmarks/input_pipeline.py reports both sizes per training clip. Shards
prepared before this index existed have none: :func:`read` returns None.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from data_pipelines import fs, shards

SUFFIX = '.frames.npz'
# TFRecord framing around each record: uint64 length + uint32 CRC, then data, then uint32 CRC.
_HEADER, _FOOTER = 12, 4


def index_path(shard_path: str) -> str:
  return str(shard_path) + SUFFIX


def locate(serialized: bytes, jpegs: Sequence[bytes], audio: bytes):
  """``(frame offsets, audio offset)`` of the JPEGs and the PCM inside one serialized example.

  The frames of a ``bytes_list`` are stored in order, each right after its
  own tag and length, so each is searched from the end of the previous one
  (identical consecutive frames find their own copy).
  """
  offsets = []
  position = 0
  for jpeg in jpegs:
    found = serialized.find(jpeg, position)
    if found < 0:
      raise ValueError('frame bytes not found in the serialized example')
    offsets.append(found)
    position = found + len(jpeg)
  audio_at = serialized.find(audio) if audio else 0
  if audio_at < 0:
    raise ValueError('audio bytes not found in the serialized example')
  return offsets, audio_at


class Builder:
  """Collects the index of one shard while its records are written in order."""

  def __init__(self):
    self._position = 0
    self._records, self._frame_starts = [], [0]
    self._frames, self._frame_lengths, self._audio = [], [], []
    self._meta = {k: [] for k in ('height', 'width', 'has_audio', 'noun_label',
                                  'audio_start_sec', 'video_id')}
    self._labels, self._label_starts = [], [0]

  def add(self, serialized: bytes, video, item) -> None:
    """Records the example of ``decode.DecodedVideo`` ``video`` and ``adapters.VideoItem``
    ``item``, serialized as ``serialized`` (shards.serialize_example), the next record."""
    jpegs, audio = video.jpegs, shards.audio_bytes(video)
    data_at = self._position + _HEADER
    frame_offsets, audio_at = locate(serialized, jpegs, audio)
    self._records.append((data_at, len(serialized)))
    self._frames.extend(data_at + o for o in frame_offsets)
    self._frame_lengths.extend(len(j) for j in jpegs)
    self._frame_starts.append(len(self._frames))
    self._audio.append((data_at + audio_at if audio else 0, len(audio)))
    self._position = data_at + len(serialized) + _FOOTER
    for key, value in (('height', video.height), ('width', video.width),
                       ('has_audio', video.audio is not None), ('noun_label', item.noun),
                       ('audio_start_sec', video.audio_start_sec), ('video_id', item.video_id)):
      self._meta[key].append(value)
    self._labels.extend(item.labels)
    self._label_starts.append(len(self._labels))

  def arrays(self) -> Dict[str, np.ndarray]:
    records = np.asarray(self._records, np.int64).reshape(-1, 2)
    audio = np.asarray(self._audio, np.int64).reshape(-1, 2)
    out = {'record_offset': records[:, 0], 'record_length': records[:, 1],
           'frame_start': np.asarray(self._frame_starts, np.int64),
           'frame_offset': np.asarray(self._frames, np.int64),
           'frame_length': np.asarray(self._frame_lengths, np.int64),
           'audio_offset': audio[:, 0], 'audio_length': audio[:, 1],
           'label': np.asarray(self._labels, np.int64),
           'label_start': np.asarray(self._label_starts, np.int64),
           'audio_start_sec': np.asarray(self._meta['audio_start_sec'], np.float32),
           'video_id': np.asarray(self._meta['video_id'], str)}
    for key in ('height', 'width', 'has_audio', 'noun_label'):
      out[key] = np.asarray(self._meta[key], np.int64)
    return out

  def write(self, shard_path: str) -> None:
    fs.save_npz(index_path(shard_path), self.arrays())


def read(shard_path: str) -> Optional[Dict[str, np.ndarray]]:
  """The index of a shard, or None for a shard prepared without one."""
  path = index_path(shard_path)
  return fs.load_npz(path) if fs.exists(path) else None

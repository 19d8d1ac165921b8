"""Preparation of real mp4 files: good, silent, short, corrupt, truncated, zero-byte, missing."""

import json
import os

import numpy as np
import pytest

from data_pipelines import adapters, input_pipeline, prepare, shards
from data_pipelines.video_io import write_video
from data_testing import frames, tone


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp('videos')
  paths = {}
  paths['good'] = str(root / 'good.mp4')
  write_video(paths['good'], frames(90, 0), 30, tone(3.0))
  paths['silent'] = str(root / 'silent.mp4')  # no audio track at all
  write_video(paths['silent'], frames(90, 1), 30, None)
  paths['short'] = str(root / 'short.mp4')  # 0.5 s: shorter than a 64-frame window
  write_video(paths['short'], frames(15, 2), 30, tone(0.5))
  paths['short_audio'] = str(root / 'short_audio.mp4')  # audio stops after 1 of 3 s
  write_video(paths['short_audio'], frames(90, 3), 30, tone(1.0))
  paths['corrupt'] = str(root / 'corrupt.mp4')
  with open(paths['corrupt'], 'wb') as f:
    f.write(np.random.default_rng(4).bytes(20000))
  paths['truncated'] = str(root / 'truncated.mp4')
  with open(paths['good'], 'rb') as f:
    data = f.read()
  with open(paths['truncated'], 'wb') as f:
    f.write(data[:len(data) // 2])
  paths['zero'] = str(root / 'zero.mp4')
  open(paths['zero'], 'wb').close()
  paths['missing'] = str(root / 'missing.mp4')
  return paths


def _items(videos):
  names = ['good', 'silent', 'short', 'short_audio', 'corrupt', 'truncated', 'zero', 'missing']
  return [adapters.VideoItem(videos[n], [i % 3], 'train', n) for i, n in enumerate(names)]


def test_prepare_reports_every_bad_file_and_resumes(videos, tmp_path):
  out = str(tmp_path / 'prepared')
  report = prepare.prepare(_items(videos), out, name='toy', label_names=['a', 'b', 'c'],
                           num_workers=2, videos_per_shard=3, verbose=False)
  summary = report['summary']
  assert summary['num_inputs'] == 8 and summary['num_written'] == 4
  assert summary['num_skipped'] == 4 and summary['num_without_audio'] == 1
  skipped = {os.path.basename(e['path']): e['reason'] for e in report['skipped']}
  assert set(skipped) == {'corrupt.mp4', 'truncated.mp4', 'zero.mp4', 'missing.mp4'}
  assert skipped['zero.mp4'] == 'zero-byte file' and skipped['missing.mp4'] == 'missing file'
  assert 'corrupt' in skipped['corrupt.mp4'] and 'corrupt' in skipped['truncated.mp4']
  repaired = {os.path.basename(e['path']): ' '.join(e['repairs']) for e in report['repaired']}
  assert 'no audio track' in repaired['silent.mp4']
  assert 'shorter than a 64-frame window' in repaired['short.mp4']
  assert 'zero-padded' in repaired['short_audio.mp4'] and 'good.mp4' not in repaired
  # The report file on disk is the same, machine-readable.
  with open(os.path.join(out, 'prepare_report.json')) as f:
    assert json.load(f)['summary'] == summary
  info = input_pipeline.dataset_info(out)
  assert info['num_examples'] == {'train': 4} and info['label_map'] == ['a', 'b', 'c']

  # Resume: a rerun redoes no finished shard.
  shard_files = sorted(p for p in os.listdir(out) if '.tfrecord-' in p and '.frames' not in p)
  assert len(shard_files) == 3
  mtimes = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in shard_files}
  os.remove(os.path.join(out, '_progress', 'train-00001.json'))  # as if killed mid-shard 1
  prepare.prepare(_items(videos), out, name='toy', label_names=['a', 'b', 'c'], num_workers=0,
                  videos_per_shard=3, verbose=False)
  redone = [p for p in shard_files if os.stat(os.path.join(out, p)).st_mtime_ns != mtimes[p]]
  assert redone == ['toy-train.tfrecord-00001-of-00003']


def test_prepared_examples_and_tfds(videos, tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  out = str(tmp_path / 'prepared')
  items = [it for it in _items(videos) if it.video_id in ('good', 'silent', 'short_audio')]
  prepare.prepare(items, out, name='toy', label_names=['a', 'b', 'c'], num_workers=0,
                  videos_per_shard=2, verbose=False)
  builder = tfds.builder_from_directory(out)
  assert builder.info.splits['train'].num_examples == 3
  examples = {e['video_id'].decode(): e for e in tfds.as_numpy(builder.as_dataset(split='train'))}
  good = examples['good']
  assert good['num_frames'] == 90 and (good['height'], good['width']) == (320, 427)
  assert good['has_audio'] == 1 and good['audio_sample_rate'] == 16000
  pcm = np.frombuffer(good['audio'], '<i2')
  assert len(pcm) == good['audio_num_samples'] >= 3 * 16000 - 16
  assert abs(good['audio_start_sec']) < 0.01
  assert examples['silent']['has_audio'] == 0 and examples['silent']['audio'] == b''
  padded = np.frombuffer(examples['short_audio']['audio'], '<i2')
  assert len(padded) >= 3 * 16000 - 16 and np.all(padded[-16000:] == 0)
  assert good['frames'][0][:2] == b'\xff\xd8'  # JPEG


def test_shard_record_offsets(videos, tmp_path):
  out = str(tmp_path / 'prepared')
  items = [it for it in _items(videos) if it.video_id in ('good', 'silent', 'short')]
  prepare.prepare(items, out, name='toy', label_names=['a', 'b', 'c'], num_workers=0,
                  videos_per_shard=8, verbose=False)
  files, lengths = shards.load_split_files(out, 'train')
  offsets = shards.record_offsets(files[0])
  assert len(offsets) == lengths[0] == 3 and offsets[0] == 0
  import tensorflow as tf
  records = [r.numpy() for r in tf.data.TFRecordDataset(files[0])]
  # Each record starts right after the previous one's 12-byte header, data and 4-byte CRC.
  np.testing.assert_array_equal(np.diff(offsets), [16 + len(r) for r in records[:-1]])

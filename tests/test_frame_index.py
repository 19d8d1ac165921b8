"""The frame index beside each shard points at each frame's JPEG and the audio; clips read
by frame are the clips read from whole records."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import adapters, fs, frame_index, input_pipeline, prepare, shards
from data_pipelines.errors import UserError
from data_pipelines.video_io import write_video
import data_testing
from data_testing import pipeline_config


def test_index_locates_every_frame_and_the_audio(tmp_path):
  still = np.repeat(data_testing.frames(1, 5), 20, axis=0)  # identical frames: identical JPEGs
  paths = {'good': str(tmp_path / 'good.mp4'), 'silent': str(tmp_path / 'silent.mp4'),
           'still': str(tmp_path / 'still.mp4')}
  write_video(paths['good'], data_testing.frames(30, 0), 30, data_testing.tone(1.0))
  write_video(paths['silent'], data_testing.frames(30, 1), 30, None)
  write_video(paths['still'], still, 30, data_testing.tone(20 / 30))
  items = [adapters.VideoItem(p, [0], 'train', n) for n, p in paths.items()]
  out = 'ram://index-test/prepared'
  prepare.prepare(items, out, name='toy', label_names=['a'], videos_per_shard=8,
                  options=prepare.PrepareOptions(short_side=32, min_frames=8), verbose=False)
  (path,), (length,) = shards.load_split_files(out, 'train')
  index = frame_index.read(path)
  data = fs.read_bytes(path)
  np.testing.assert_array_equal(index['record_offset'], shards.record_offsets(path) + 12)
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  assert len(records) == length == 3
  seen_duplicates = False
  for r, record in enumerate(records):
    begin, size = index['record_offset'][r], index['record_length'][r]
    assert data[begin:begin + size] == record
    example = tf.io.parse_single_example(record, shards.parse_spec())
    jpegs = example['frames'].numpy().tolist()
    first, last = index['frame_start'][r], index['frame_start'][r + 1]
    assert last - first == len(jpegs) == int(example['num_frames'])
    for jpeg, at, n in zip(jpegs, index['frame_offset'][first:last],
                           index['frame_length'][first:last]):
      assert data[at:at + n] == jpeg
    seen_duplicates |= len(set(jpegs)) < len(jpegs)
    audio = example['audio'].numpy()
    at, n = index['audio_offset'][r], index['audio_length'][r]
    assert n == len(audio) and data[at:at + n] == audio
    assert (n > 0) == bool(example['has_audio']) == bool(index['has_audio'][r])
    for key in ('height', 'width', 'noun_label', 'audio_start_sec'):
      assert index[key][r] == example[key].numpy(), key
    assert index['video_id'][r] == example['video_id'].numpy().decode()
    labels = index['label'][index['label_start'][r]:index['label_start'][r + 1]]
    assert labels.tolist() == example['label'].numpy().tolist() == [0]
  assert seen_duplicates  # the still video's frames: each found at its own place
  assert frame_index.read(fs.join(out, 'no-such-shard')) is None


def test_reading_by_frame_gives_the_examples_of_whole_records(pipeline_dir):
  # Windows of 64 frames: the 45-frame video pads its clip, hard negatives run past the end.
  config = pipeline_config(sampling_rate=8)
  for seed, start_step in ((0, 0), (3, 2)):
    batches = {}
    for read in ('records', 'ranges'):
      dataset = input_pipeline.make_train_dataset(
          config, pipeline_dir, 'train', 4, seed=seed, start_step=start_step, with_metadata=True,
          read=read)
      batches[read] = list(dataset.take(3).as_numpy_iterator())
    for by_record, by_frame in zip(batches['records'], batches['ranges']):
      assert set(by_record) == set(by_frame)
      for key, value in by_record.items():
        np.testing.assert_array_equal(by_frame[key], value, err_msg=key)
    seen = np.concatenate([b['video_index'] for b in batches['ranges']])
    assert {1, 2} <= set(seen.tolist())  # the short video and the silent one
  sizes = input_pipeline.train_read_bytes(config, pipeline_dir, 'train', 12, seed=0)
  assert sizes['used'] <= sizes['ranges'] <= 1.5 * sizes['used']
  assert sizes['records'] > 2 * sizes['ranges']


def test_shards_without_an_index_are_read_by_record(pipeline_dir, tmp_path):
  copy = tmp_path / 'old'
  shutil.copytree(pipeline_dir, copy)
  for path in copy.glob('*' + frame_index.SUFFIX):
    path.unlink()
  config = pipeline_config(avs_negatives=False)
  old = next(input_pipeline.create_train_iterator(config, str(copy), 'train', 2, seed=1))
  new = next(input_pipeline.make_train_dataset(config, pipeline_dir, 'train', 2, seed=1,
                                               read='ranges').as_numpy_iterator())
  np.testing.assert_array_equal(old['fast'], new['fast'])
  with pytest.raises(UserError, match=r'has shards without a frame index'):
    input_pipeline.make_train_dataset(config, str(copy), 'train', 2, seed=1, read='ranges')


def test_a_truncated_shard_is_named_before_reading(pipeline_dir, tmp_path):
  copy = tmp_path / 'cut'
  shutil.copytree(pipeline_dir, copy)
  shard = sorted(p for p in copy.glob('*-train.tfrecord-*') if '.frames' not in p.name)[0]
  with open(shard, 'r+b') as f:
    f.truncate(100)
  with pytest.raises(UserError, match=rf'{shard.name}: damaged shard file \(100 bytes'):
    input_pipeline.make_train_dataset(pipeline_config(), str(copy), 'train', 2, seed=0,
                                      read='ranges')

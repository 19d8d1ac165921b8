"""The frame index prepare writes beside each shard points at each frame's JPEG and the audio."""

import numpy as np
import tensorflow as tf

from data_pipelines import adapters, fs, frame_index, prepare, shards
from data_pipelines.video_io import write_video
import test_data_prepare as videos_lib


def test_index_locates_every_frame_and_the_audio(tmp_path):
  still = np.repeat(videos_lib._frames(1, 5), 20, axis=0)  # identical frames: identical JPEGs
  paths = {'good': str(tmp_path / 'good.mp4'), 'silent': str(tmp_path / 'silent.mp4'),
           'still': str(tmp_path / 'still.mp4')}
  write_video(paths['good'], videos_lib._frames(30, 0), 30, videos_lib._tone(1.0))
  write_video(paths['silent'], videos_lib._frames(30, 1), 30, None)
  write_video(paths['still'], still, 30, videos_lib._tone(20 / 30))
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
    assert (n > 0) == bool(example['has_audio'])
  assert seen_duplicates  # the still video's frames: each found at its own place
  assert frame_index.read(fs.join(out, 'no-such-shard')) is None

"""AVA-format data: annotation readers, prepare --dataset ava, the detection pipelines,
the synthetic detection dataset."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import kinetics
from data_pipelines import ava_files, ava_pipeline, ava_prepare, decode, errors, input_pipeline
from data_pipelines import prepare, shards, synthetic, synthetic_detection
from data_pipelines.errors import UserError

MAX_BOXES = 2
SHORT_SIDE = 48  # prepared frames are 64x48 (the synthetic size)


def _write(path, text):
  with open(path, 'w') as f:
    f.write(text)
  return str(path)


# ------------------------------------------------------------------ readers
def test_readers_group_clip_threshold_and_name_bad_lines(tmp_path):
  gt = _write(tmp_path / 'gt.csv',
              'vid_a,0902,0.1,0.2,0.5,0.9,12,0\n'
              'vid_a,0902,0.1,0.2,0.5,0.9,80,0\n'      # the same box, a second action
              'vid_a,0902,-0.05,0.2,0.5,1.2,1,1\n'     # outside [0, 1]: clipped, counted
              '\n'
              'vid_b,1798,0.0,0.0,1.0,1.0,3\n')        # no person id column
  boxes = ava_files.read_boxes(gt)
  assert boxes.num_rows == 4 and boxes.num_clipped == 1
  first, second = boxes.boxes[('vid_a', 902)]
  assert first.actions == [12, 80] and first.coords == (0.1, 0.2, 0.5, 0.9)
  assert second.coords == (0.0, 0.2, 0.5, 1.0) and second.actions == [1]
  assert boxes.boxes[('vid_b', 1798)][0].person_id == -1
  det = _write(tmp_path / 'det.csv', 'vid_a,0902,0.1,0.2,0.5,0.9,,0.95\n'
               'vid_a,0902,0.6,0.2,0.9,0.9,-1,0.5\n')
  dets = ava_files.read_boxes(det, detections=True, min_score=0.8)
  assert dets.num_below_threshold == 1 and dets.boxes[('vid_a', 902)][0].score == 0.95
  assert ava_files.read_excluded(_write(tmp_path / 'ex.csv', 'vid_a,0902\nvid_b,1000\n')) == {
      ('vid_a', 902), ('vid_b', 1000)}
  pbtxt = _write(tmp_path / 'l.pbtxt', ava_files.format_label_map([(1, 'bend/bow'), (80, 'watch')])
                 + 'item {\n  label_id: 3\n  display_name: "carry"\n}\n')
  assert ava_files.read_label_map(pbtxt) == [(1, 'bend/bow'), (80, 'watch'), (3, 'carry')]
  bad_rows = {'vid,0902,0.1,0.2,0.5\n': 'expected video_id',
              'vid,09x2,0.1,0.2,0.5,0.9,1,0\n': 'timestamp must be a number',
              'vid,0902,0.1,0.2,0.5,0.9,81,0\n': 'outside 1..80',
              'vid,0902,0.5,0.2,0.1,0.9,1,0\n': 'x2 < x1',
              'vid,0902,0.1,0.2,0.5,0.9,,0\n': 'without an action_id'}
  for row, message in bad_rows.items():
    path = _write(tmp_path / 'bad.csv', 'vid,0902,0.1,0.2,0.5,0.9,1,0\n' + row)
    with pytest.raises(UserError, match=f'{path}:2: .*{message}'):
      ava_files.read_boxes(path)
  with pytest.raises(UserError, match='det.csv:1: expected'):
    ava_files.read_boxes(_write(tmp_path / 'det.csv', 'v,0902,0.1,0.2,0.5,0.9,1\n'), detections=True)
  with pytest.raises(UserError, match='no "item'):
    ava_files.read_label_map(_write(tmp_path / 'x.pbtxt', 'nothing here'))


# The two label-map forms of AVA's files: the evaluated classes of the ActivityNet
# challenge (ava_action_list_v2.2_for_activitynet_2019.pbtxt) and the full action list
# (ava_action_list_v2.2.pbtxt); the official evaluation's parser reads both.
ITEM_FORM = ('item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\n'
             'item {\n  name: "watch (a person)"\n  id: 80\n}\n')
LABEL_FORM = ('label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n'
              '  label_type: PERSON_MOVEMENT\n}\n'
              'label {\n  name: "watch (a person)"\n  label_id: 80\n'
              '  label_type: PERSON_INTERACTION\n}\n')


@pytest.mark.parametrize('text', [ITEM_FORM, LABEL_FORM], ids=['item', 'label'])
def test_both_label_map_forms_for_preparation_and_evaluation(tmp_path, text):
  from avslowfast_jax.metrics import ava_frame_map  # pylint: disable=import-outside-toplevel
  path = _write(tmp_path / 'map.pbtxt', text)
  expected = [(1, 'bend/bow (at the waist)'), (80, 'watch (a person)')]
  assert ava_files.read_label_map(path) == expected
  assert ava_frame_map.read_label_map(path) == dict(expected)
  # What preparation writes from either form reads back the same.
  again = _write(tmp_path / 'again.pbtxt', ava_files.format_label_map(expected))
  assert ava_files.read_label_map(again) == expected


# ---------------------------------------------------------------- prepare
@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('ava_raw')
  files = synthetic_detection.generate(str(root), num_videos=5, size=(64, 48), duration_sec=3.0,
                                       val_fraction=0.4, classes=('left_right', 'whistle'),
                                       progress=False)
  with open(os.path.join(files['video_dir'], 'syn_train_bad.mp4'), 'wb') as f:
    f.write(np.random.default_rng(0).bytes(5000))  # corrupt: skipped, named
  with open(files['groundtruth']['train'], 'a') as f:
    f.write('syn_train_bad,0901,0.1,0.1,0.5,0.5,1,0\n'
            'syn_train_missing,0901,0.1,0.1,0.5,0.5,1,0\n'  # no video file
            # Two more boxes on one keyframe (over MAX_BOXES), one outside the frame.
            'syn_train_000,0901,0.0,0.0,0.2,0.2,2,7\n'
            'syn_train_000,0901,0.7,-0.1,1.1,0.4,1,8\n')
  with open(files['groundtruth']['validation']) as f:
    first = f.readline()
  with open(files['groundtruth']['validation'], 'a') as f:
    f.write(first)  # a duplicated row: two boxes for the official evaluation
  return files


def _prepare(raw, out, **kw):
  options = ava_prepare.AvaOptions(segment_sec=1, max_boxes=MAX_BOXES)
  return ava_prepare.prepare_ava(out, raw['video_dir'], raw['groundtruth'], raw['detections'],
                                 raw['excluded'], raw['label_map'], ava_options=options,
                                 options=prepare.PrepareOptions(short_side=SHORT_SIDE),
                                 verbose=False, **kw)


@pytest.fixture(scope='module')
def prepared(raw, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('ava_prepared') / 'data')
  return out, _prepare(raw, out)


def test_prepare_counts_boxes_and_names_bad_videos(raw, prepared):
  out, report = prepared
  train = report['ava']['train']
  gt = ava_files.read_boxes(raw['groundtruth']['train'])
  det = ava_files.read_boxes(raw['detections']['train'], detections=True, min_score=0.8)
  assert train['videos'] == 5 and train['videos_written'] == 3 and train['videos_skipped'] == 2
  assert {e['video_id'] for e in report['skipped']} == {'syn_train_bad', 'syn_train_missing'}
  assert all(e['reason'] for e in report['skipped'])
  assert train['keyframes'] == len(set(gt.boxes) | set(det.boxes)) == 3 * 2 + 2
  assert train['keyframes_written'] == 6 and train['keyframes_of_skipped_videos'] == 2
  assert train['gt_boxes'] == sum(len(b) for b in gt.boxes.values())
  assert train['gt_boxes_clipped'] == gt.num_clipped == 1
  assert train['detections_clipped'] == det.num_clipped
  assert train['gt_boxes_dropped_above_max'] == sum(
      max(len(b) - MAX_BOXES, 0) for b in gt.boxes.values()) > 0
  assert train['detections_dropped_above_max'] == sum(
      max(len(b) - MAX_BOXES, 0) for b in det.boxes.values())
  assert report['max_boxes'] == MAX_BOXES and report['summary']['num_examples']['train'] == 6
  assert report['ava']['validation']['keyframes_written'] == 4
  # segment_sec=1: one record per keyframe second here.
  assert report['summary']['num_records'] == {'train': 6, 'validation': 4}


def test_prepare_writes_evaluation_files_and_tfds_metadata(raw, prepared):
  out, report = prepared
  root = os.path.join(out, 'ava')
  assert ava_files.read_label_map(os.path.join(root, 'label_map.pbtxt')) == [(1, 'left_right'),
                                                                        (2, 'whistle')]
  videos = tf.io.gfile.GFile(os.path.join(root, 'train_videos.json')).read()
  assert '"syn_train_bad"' in videos and '"syn_train_000"' in videos
  # The ground truth as given (what the official evaluation reads), not the merged and
  # clipped boxes training uses: the rows of the prepared videos, byte for byte.
  with open(raw['groundtruth']['train'], 'rb') as f:
    lines = f.readlines()
  kept = [l for l in lines if l.split(b',')[0] not in (b'syn_train_bad', b'syn_train_missing')]
  assert len(kept) == len(lines) - 2
  assert open(os.path.join(root, 'train_groundtruth.csv'), 'rb').read() == b''.join(kept)
  assert ava_files.read_boxes(os.path.join(root, 'train_groundtruth.csv')).num_clipped == 1
  assert report['ava']['train']['gt_rows_of_skipped_videos'] == 2
  # Every validation video was prepared: the whole file, its duplicated row included.
  prepared_gt = os.path.join(root, 'validation_groundtruth.csv')
  assert open(prepared_gt, 'rb').read() == open(raw['groundtruth']['validation'], 'rb').read()
  # Each distinct (box, action) row detected once: every class at AP 1 but the one with
  # the duplicated row, whose second copy no detection can match.
  from avslowfast_jax.metrics import ava_frame_map  # pylint: disable=import-outside-toplevel
  rows = dict.fromkeys(','.join(l.strip().split(',')[:7]) for l in open(prepared_gt) if l.strip())
  detections = _write(out + '_dets.csv', ''.join(f'{r},0.9\n' for r in rows))
  label_map = os.path.join(root, 'label_map.pbtxt')
  result = ava_frame_map.evaluate_files(prepared_gt, detections, label_map)
  assert result == ava_frame_map.evaluate_files(raw['groundtruth']['validation'], detections,
                                                raw['label_map'])
  duplicated = int(open(prepared_gt).readline().split(',')[6])
  assert result['AP'][duplicated] < 1.0
  assert all(ap == 1.0 for c, ap in result['AP'].items() if c != duplicated and ap == ap)
  assert ava_files.read_excluded(os.path.join(root, 'validation_excluded_timestamps.csv')) == \
      ava_files.read_excluded(raw['excluded']['validation'])
  builder = tfds.builder_from_directory(out)
  example = next(iter(builder.as_dataset(split='train').take(1)))
  assert int(example['num_frames']) == len(example['frames'])


def test_segments_hold_the_keyframe_frames_once_decoded(raw, prepared):
  out, _ = prepared
  files, _ = shards.load_split_files(out, 'validation')
  video = os.path.join(raw['video_dir'], 'syn_validation_003.mp4')
  decoded = decode.decode_video(video, short_side=SHORT_SIDE)
  seen = 0
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      ex = tf.io.parse_single_example(record, ava_prepare.parse_spec())
      if ex['video_id'].numpy() != b'syn_validation_003':
        continue
      start = int(round(float(ex['start_sec']) * 30))
      for sec, frame in zip(ex['keyframe_sec'].numpy(), ex['keyframe_frame'].numpy()):
        assert ex['frames'][frame].numpy() == decoded.jpegs[(sec - 900) * 30]
        assert start + frame == (sec - 900) * 30
        seen += 1
      # Margins of 1.1 s (33 frames) around one keyframe, clamped to the 90-frame video.
      assert int(ex['num_frames']) <= 2 * 33 + 1
  assert seen == 2


def test_prepare_resumes_and_rebuilds_a_lost_shard(raw, prepared, tmp_path):
  out, report = prepared
  files, _ = shards.load_split_files(out, 'train')
  progress = os.path.join(out, '_progress', 'train-00001.json')
  before = open(files[1], 'rb').read()
  os.remove(progress)
  os.remove(files[1])
  again = _prepare(raw, out)
  assert open(files[1], 'rb').read() == before
  assert again['ava'] == report['ava']


def test_split_names_must_agree_across_the_flags(raw, tmp_path, capsys):
  """validation= in one flag and val= in another is one error naming both, not two splits."""
  gt, det = raw['groundtruth']['validation'], raw['detections']['validation']
  argv = ['--dataset', 'ava', '--output_dir', str(tmp_path / 'out'), '--video_dir',
          raw['video_dir'], '--label_map', raw['label_map'], '--ava_groundtruth',
          f'validation={gt}', '--ava_detections', f'val={det}']
  with pytest.raises(SystemExit):
    errors.run(prepare.main, argv, prog='prepare')
  message = capsys.readouterr().err.strip().splitlines()[-1]
  assert message == (
      "prepare: error: split names differ: --ava_groundtruth names 'validation', which "
      "--ava_detections does not; --ava_detections names 'val', which --ava_groundtruth does "
      "not (--ava_groundtruth: 'validation'; --ava_detections: 'val'); name every split in "
      "both, with SPLIT=none for a file a split does not have")
  assert not os.path.exists(tmp_path / 'out')
  with pytest.raises(UserError, match=r"--ava_excluded names 'val', but --ava_groundtruth gives "
                                      r"a file only for 'validation'"):
    ava_prepare.check_splits({'validation': gt}, {'validation': det}, {'val': gt})
  with pytest.raises(UserError, match=r"--ava_groundtruth names 'train', which --ava_detections "
                                      r"does not \(--ava_groundtruth: 'train', 'validation'"):
    ava_prepare.check_splits({'train': gt, 'validation': gt}, {'validation': det}, {})
  # SPLIT=none: a split without detected boxes (training on ground truth) or ground truth.
  split_paths = ava_prepare.split_paths  # pylint: disable=protected-access
  paths = split_paths('--ava_detections', ['train=none', f'validation={det}'])
  assert paths == {'train': None, 'validation': det}
  ava_prepare.check_splits({'train': gt, 'validation': gt}, paths, {'validation': gt})
  ava_prepare.check_splits({'train': gt}, {}, {})  # one flag alone: nothing to compare


def test_a_whole_movie_is_read_at_seconds_900_to_1801(tmp_path):
  """AVA's files are cut to seconds 900-1801; a whole movie's keyframe t is at t s of the
  file, not t - 900. A 1900 s movie (1 fps, 16x16, each second's grey level 30 + 30 *
  (second % 7)) is detected by its length and read by time: the stored keyframe frames
  show the keyframes' own seconds."""
  from data_pipelines.video_io import write_video  # pylint: disable=import-outside-toplevel
  videos = tmp_path / 'videos'
  videos.mkdir()
  seconds = np.arange(1900)
  grey = lambda sec: 30 + 30 * (sec % 7)
  frames = np.broadcast_to(grey(seconds).astype(np.uint8)[:, None, None, None],
                           (1900, 16, 16, 3)).copy()
  write_video(str(videos / 'movie.mp4'), frames, fps=1)
  gt = _write(tmp_path / 'gt.csv',
              'movie,1000,0.1,0.1,0.9,0.9,1,0\nmovie,1500,0.1,0.1,0.9,0.9,1,0\n')
  label_map = _write(tmp_path / 'map.pbtxt', ITEM_FORM)
  out = str(tmp_path / 'out')
  report = ava_prepare.prepare_ava(
      out, str(videos), {'train': gt}, {}, {}, label_map,
      options=prepare.PrepareOptions(fps=2, short_side=16, min_frames=1), verbose=False)
  assert report['summary']['num_written'] == 1
  (repaired,) = report['repaired']
  assert any('the whole movie (1900 s' in r and 'seconds 900-1801' in r
             for r in repaired['repairs'])
  files, _ = shards.load_split_files(out, 'train')
  seen = {}
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      ex = tf.io.parse_single_example(record, ava_prepare.parse_spec())
      for sec, frame in zip(ex['keyframe_sec'].numpy(), ex['keyframe_frame'].numpy()):
        seen[int(sec)] = float(tf.reduce_mean(tf.cast(tf.io.decode_jpeg(ex['frames'][frame]),
                                                      tf.float32)))
  assert sorted(seen) == [1000, 1500]
  for sec, value in seen.items():
    assert abs(value - grey(sec)) < 5, (sec, value, grey(sec), grey(sec - 900))
  # A file longer than a cut that ends before the cut's start is named, not misread.
  late = ava_prepare.prepare_ava(
      str(tmp_path / 'late'), str(videos), {'train': gt}, {}, {}, label_map,
      options=prepare.PrepareOptions(fps=2, short_side=16, min_frames=1),
      ava_options=ava_prepare.AvaOptions(video_start_sec=2000), verbose=False)
  (skipped,) = late['skipped']
  assert 'ends before second 2000' in skipped['reason']


def test_prepare_command_line_fails_in_one_line_on_a_bad_row(raw, tmp_path, capsys):
  bad = _write(tmp_path / 'bad.csv', 'syn_train_000,0901,0.1,0.1,0.5\n')
  argv = ['--dataset', 'ava', '--output_dir', str(tmp_path / 'out'), '--video_dir',
          raw['video_dir'], '--ava_groundtruth', f'train={bad}', '--label_map', raw['label_map']]
  with pytest.raises(SystemExit) as exit_info:
    errors.run(prepare.main, argv, prog='prepare')
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.strip().splitlines()[-1] == (
      f'prepare: error: {bad}:1: expected video_id,timestamp,x1,y1,x2,y2,action_id[,person_id], '
      "got 5 fields: 'syn_train_000,0901,0.1,0.1,0.5'")


# ------------------------------------------------------------- pipelines
def _config(**ava_fields):
  c = kinetics.get_config('tiny_avslowfast_4x16_r50')
  c.data.num_frames, c.data.sampling_rate, c.model.alpha_f = 8, 4, 4
  c.data.train_crop_size, c.data.train_jitter_scales = 32, (40, 48)
  c.data.test_short_side = 40
  c.data.audio.num_frames = 32
  c.model.num_classes = 2
  with c.unlocked():
    c.task = 'ava'
    c.data.ava = ml_collections.ConfigDict(dict(
        max_boxes=3, detection_score_threshold=0.8, train_use_detected_boxes=False,
        train_detection_score_threshold=0.9, test_canvas=(48, 64), eval_frames='canvas',
        train_keyframe_range=()))
  c.data.ava.update(ava_fields)
  return c


def test_crop_boxes_scales_shifts_clips_flips():
  boxes = tf.constant([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.1, 0.1]])
  # A 64x48 frame, crop window y=0, x=16, 48x48, resized to 24.
  pixels, nonempty = ava_pipeline.crop_boxes(boxes, 48, 64, [0, 16, 48, 48], 24, False)
  np.testing.assert_allclose(pixels, [[0, 12, 16, 24], [0, 0, 0, 2.4]], atol=1e-5)
  assert list(nonempty.numpy()) == [True, False]  # the second box lies left of the crop
  pixels, _ = ava_pipeline.crop_boxes(boxes, 48, 64, [0, 16, 48, 48], 24, True)
  np.testing.assert_allclose(pixels[0], [8, 12, 24, 24], atol=1e-5)


def test_train_batches_contract_resume_and_hosts(prepared):
  out, _ = prepared
  config = _config()
  config.data.avs_negatives = False
  run = input_pipeline.create_train_iterator(config, out, 'train', 2, seed=3)
  full = [next(run) for _ in range(7)]  # 14 keyframes: more than two epochs of 6
  b = full[0]
  assert {k: (v.shape, v.dtype.name) for k, v in b.items()} == {
      'slow': ((2, 2, 32, 32, 3), 'float32'), 'fast': ((2, 8, 32, 32, 3), 'float32'),
      'audio': ((2, 32, 80, 1), 'float32'), 'audio_mask': ((2,), 'float32'),
      'boxes': ((2, 3, 4), 'float32'), 'box_mask': ((2, 3), 'float32'),
      'box_labels': ((2, 3, 2), 'float32'), 'video_index': ((2,), 'int32'),
      'timestamp': ((2,), 'int32')}
  for batch in full:
    mask = batch['box_mask'] > 0
    assert np.all((batch['boxes'] >= 0) & (batch['boxes'] <= 32))
    real = batch['boxes'][mask]
    assert np.all(real[:, 2] > real[:, 0]) and np.all(real[:, 3] > real[:, 1])
    assert np.all(batch['boxes'][~mask] == 0) and np.all(batch['box_labels'][~mask] == 0)
    assert np.all(batch['box_labels'][mask].sum(-1) >= 1)  # every synthetic box has its action
  keys = [(int(v), int(t)) for b in full for v, t in zip(b['video_index'], b['timestamp'])]
  assert sorted(keys[:6]) == sorted(keys[6:12]) == sorted(
      (v, t) for v in range(3) for t in (901, 902))  # each keyframe once an epoch
  resumed = input_pipeline.create_train_iterator(config, out, 'train', 2, seed=3, start_step=5)
  for step in (5, 6):
    batch = next(resumed)
    for key in ('fast', 'audio', 'boxes', 'box_labels'):
      np.testing.assert_array_equal(batch[key], full[step][key])
  seen = []
  for host in range(2):
    it = input_pipeline.create_train_iterator(config, out, 'train', 1, seed=0,
                                              process_index=host, process_count=2)
    seen.append({int(next(it)['video_index'][0]) for _ in range(6)})
  assert not seen[0] & seen[1] and seen[0] | seen[1] == {0, 1, 2}


def test_train_boxes_follow_the_crop(raw, prepared):
  out, _ = prepared
  # Short side kept at 48 and a 48 crop: only x moves (0..16 px), y is untouched.
  config = _config(train_use_detected_boxes=True)
  config.data.train_crop_size, config.data.train_jitter_scales = 48, (48, 48)
  config.data.random_flip = False
  config.data.avs_negatives = False
  gt = ava_files.read_boxes(raw['groundtruth']['train'])
  det = ava_files.read_boxes(raw['detections']['train'], detections=True, min_score=0.9)
  names = ['syn_train_000', 'syn_train_001', 'syn_train_002']
  batch = next(input_pipeline.create_train_iterator(config, out, 'train', 6, seed=1))
  for i in range(6):
    key = (names[batch['video_index'][i]], int(batch['timestamp'][i]))
    gt_boxes = gt.boxes[key][:MAX_BOXES]
    dets = sorted(det.boxes.get(key, []), key=lambda b: -b.score)[:MAX_BOXES]
    expected = np.array([b.coords for b in gt_boxes + dets])[:3] * [64, 48, 64, 48]
    mask = batch['box_mask'][i] > 0
    got = batch['boxes'][i]
    np.testing.assert_allclose(got[mask][:, [1, 3]], expected[mask][:, [1, 3]], atol=1e-3)
    # One integer x offset of the crop explains every box: shifted, clipped, empty ones masked.
    fits = []
    for offset in range(17):
      x = np.clip(expected[:, [0, 2]] - offset, 0, 48)
      nonempty = x[:, 1] > x[:, 0]
      fits.append(np.array_equal(nonempty, mask[:len(expected)])
                  and np.allclose(x[nonempty], got[:len(expected)][nonempty][:, [0, 2]],
                                  atol=1e-3))
    assert any(fits), (key, got, expected)
    assert not mask[len(expected):].any()


def test_training_keyframes_and_boxes_follow_pyslowfast_by_default():
  """configs/ava.py trains on the ground-truth boxes plus the detected boxes >= 0.8 of
  keyframes 902-1798 (PySlowFast's AVA_VALID_FRAMES and SLOWFAST_32x2_R50_SHORT.yaml)."""
  from configs import ava as ava_configs  # pylint: disable=import-outside-toplevel
  a = ava_configs.get_config('tiny_avslowfast_4x16_r50').data.ava
  assert a.train_use_detected_boxes and a.train_detection_score_threshold == 0.8
  assert tuple(a.train_keyframe_range) == (902, 1798)
  config = _config(train_use_detected_boxes=True, train_detection_score_threshold=0.8,
                   train_keyframe_range=(902, 1798))
  # [sec, ground-truth boxes, detected boxes, top detection score] per keyframe.
  shard = [[0, 48, 64, [[901, 1, 0, 0.0], [902, 1, 0, 0.0], [903, 0, 2, 0.85]]],
           [0, 48, 64, [[1000, 0, 1, 0.79], [1798, 0, 1, 0.8], [1799, 2, 2, 0.99]]]]
  train_keyframes = ava_pipeline.train_keyframes  # pylint: disable=protected-access
  assert train_keyframes(config, shard) == [(0, 1), (0, 2), (1, 1)]
  config = _config(train_keyframe_range=())  # ground truth only, every keyframe
  assert train_keyframes(config, shard) == [(0, 0), (0, 1), (1, 2)]
  with pytest.raises(UserError, match='train_keyframe_range'):
    train_keyframes(_config(train_keyframe_range=(902,)), shard)


@pytest.mark.parametrize('rule,expected', [
    ('stride', [0, 4, 8, 12, 16, 20, 24, 28]),
    ('linspace', [0, 4, 8, 13, 17, 22, 26, 31])])
def test_slow_frames_rule(prepared, rule, expected):
  """model.slow_frames: every alpha-th Fast frame, or PySlowFast's / PyTorchVideo's
  torch.linspace(0, T - 1, T // alpha).long()."""
  from data_pipelines import clips  # pylint: disable=import-outside-toplevel
  assert clips.slow_frame_indices(32, 4, rule).tolist() == expected
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    torch = None
  for frames in range(2, 129):
    for alpha in range(1, frames + 1):
      got = clips.slow_frame_indices(frames, alpha, 'linspace')
      if torch is not None:
        want = torch.linspace(0, frames - 1, frames // alpha).long().numpy()
        np.testing.assert_array_equal(got, want, err_msg=f'T={frames} alpha={alpha}')
      assert len(got) == frames // alpha
  # In the pipeline: Slow is those frames of Fast.
  out, _ = prepared
  config = _config()
  config.data.num_frames = 8
  config.model.slow_frames = rule
  batch = next(iter(input_pipeline.create_eval_iterator(config, out, 'validation', 1)))
  np.testing.assert_array_equal(batch['slow'][0],
                                batch['fast'][0][clips.slow_frame_indices(8, 4, rule)])
  if rule == 'linspace':
    assert clips.slow_frame_indices(8, 4, rule).tolist() == [0, 7]
  # The same frames when the clip is finished on the device (data.finish_on_device).
  from avslowfast_jax import clip_finish  # pylint: disable=import-outside-toplevel
  side = config.data.train_crop_size
  frames = np.broadcast_to((np.arange(8, dtype=np.uint8) * 20)[:, None, None, None],
                           (8, side, side, 3))
  finished = clip_finish.finish_clips(config, {
      'frames': frames.reshape(1, -1), 'window': np.array([[side, 0]], np.int32),
      'audio_pcm': np.zeros((1, 1, 4 * config.data.audio.n_fft), np.int16)})
  fast = np.asarray(finished['fast'][0])
  np.testing.assert_array_equal(np.asarray(finished['slow'][0]),
                                fast[clips.slow_frame_indices(8, 4, rule)])


@pytest.mark.parametrize('frames', ['canvas', 'own'])
@pytest.mark.parametrize('hosts', [1, 2])
def test_eval_every_keyframe_once_with_detected_boxes(raw, prepared, hosts, frames):
  out, _ = prepared
  config = _config(eval_frames=frames)
  det = ava_files.read_boxes(raw['detections']['validation'], detections=True, min_score=0.8)
  names = ['syn_validation_003', 'syn_validation_004']
  keys, counts = [], []
  for host in range(hosts):
    batches = list(input_pipeline.create_eval_iterator(config, out, 'validation', 3,
                                                       process_index=host, process_count=hosts))
    counts.append(len(batches))
    for b in batches:
      # 64x48 at short side 40 is 53x40: on the 48x64 canvas, or alone.
      size = (48, 64) if frames == 'canvas' else (40, 53)
      assert b['fast'].shape == (3, 8, *size, 3) and b['boxes'].shape == (3, 3, 4)
      for i in np.flatnonzero(b['valid']):
        key = (names[b['video_index'][i]], int(b['timestamp'][i]))
        keys.append(key)
        np.testing.assert_array_equal(b['image_size'][i], [40, 53])
        assert np.all(b['fast'][i][:, 40:] == 0) and np.all(b['fast'][i][:, :, 53:] == 0)
        assert np.any(b['fast'][i][:, 39] != 0) and np.any(b['fast'][i][:, :, 52] != 0)
        expected = [x.coords for x in sorted(det.boxes[key], key=lambda x: -x.score)][:2]
        n = len(expected)
        np.testing.assert_array_equal(b['box_mask'][i], [1] * n + [0] * (3 - n))
        np.testing.assert_allclose(b['boxes'][i][:n], np.array(expected) * [53, 40, 53, 40],
                                   atol=1e-3)
      if frames == 'canvas':
        assert np.all(b['fast'][b['valid'] == 0] == 0)
  assert len(set(counts)) == 1
  assert sorted(keys) == sorted((v, t) for v in names for t in (901, 902))


def test_own_size_evaluation_batches_one_size_in_the_same_order_on_every_host(monkeypatch):
  """Two frame sizes over two hosts: each host yields the sizes in the same order, each in
  as many batches as the host with most keyframes of that size needs, fillers invalid."""
  # Records [video_index, height, width, keyframes]: 64x48 frames (53x40 at short side
  # 40) and 48x48 ones (40x40); host 0 takes shards 0 and 2, host 1 shard 1.
  index = [[[0, 48, 64, [[902, 1, 1, 0.9]] * 3]], [[1, 48, 48, [[902, 1, 1, 0.9]]]],
           [[2, 48, 48, [[902, 1, 1, 0.9]] * 2], [3, 48, 64, [[903, 1, 1, 0.9]]]]]
  monkeypatch.setattr(ava_pipeline, '_index', lambda data_dir, split: index)
  monkeypatch.setattr(ava_pipeline.records, 'record_data_spans',
                      lambda path, length: (np.arange(length) * 100, np.full(length, 100)))
  config = _config(eval_frames='own')
  own_size_rows = ava_pipeline.own_size_rows  # pylint: disable=protected-access
  rows = [own_size_rows(config, 'd', 'validation', 2, host, 2, [f's{i}' for i in shards],
                        [len(index[i]) for i in shards])
          for host, shards in ((0, [0, 2]), (1, [1]))]
  # Sizes in order (40, 40) then (40, 53): host 0 has 2 and 4 keyframes, host 1 has 1 and 0.
  for host_rows in rows:
    assert list(zip(host_rows['height'], host_rows['width'])) == [(40, 40)] * 2 + [(40, 53)] * 4
  assert rows[0]['valid'] == [1, 1, 1, 1, 1, 1] and rows[1]['valid'] == [1, 0, 0, 0, 0, 0]
  assert rows[0]['file'] == [1, 1, 0, 0, 0, 1] and rows[0]['slot'] == [0, 1, 0, 1, 2, 0]
  assert rows[1]['file'] == [0] * 6  # fillers re-read the host's one record, resized


def test_pipeline_rejects_configs_the_prepared_data_cannot_serve(prepared):
  out, _ = prepared
  config = _config()
  config.data.num_frames, config.data.sampling_rate = 8, 16  # 128 frames: 64 before the centre
  with pytest.raises(UserError, match='--ava_margin_sec 2.13'):
    input_pipeline.create_eval_iterator(config, out, 'validation', 2)
  with pytest.raises(UserError, match='max_boxes is 1: boxes would be dropped uncounted'):
    input_pipeline.create_train_iterator(_config(max_boxes=1), out, 'train', 2, seed=0)
  with pytest.raises(UserError, match=r'up to 40x53 .* set it to at least \(40, 53\)'):
    input_pipeline.create_eval_iterator(_config(test_canvas=(40, 48)), out, 'validation', 2)
  # Without a canvas in the config: the largest frame rounded up to 32.
  config = _config()
  del config.data.ava['test_canvas']
  assert ava_pipeline.eval_canvas(config, out, 'validation') == (64, 64)


def test_synthetic_detection_command_line(tmp_path, capsys):
  synthetic.main(['--detection', '--output_dir', str(tmp_path), '--num_videos', '2', '--size',
                  '48x32', '--duration_sec', '2', '--no_progress'])
  assert '--dataset ava' in capsys.readouterr().out
  gt = ava_files.read_boxes(str(tmp_path / 'annotations' / 'ava_train.csv'))
  assert set(gt.boxes) == {('syn_train_000', 901)}
  assert 1 <= len(gt.boxes[('syn_train_000', 901)]) <= 3
  assert ava_files.read_label_map(str(tmp_path / 'annotations' / 'label_map.pbtxt'))[0] == (
      1, 'left_right')
  assert os.path.getsize(tmp_path / 'videos' / 'syn_validation_001.mp4') > 1000


def test_predict_batch_is_the_eval_example_of_a_keyframe(raw, prepared):
  out, _ = prepared
  config = _config()
  video = decode.decode_video(os.path.join(raw['video_dir'], 'syn_validation_003.mp4'),
                              short_side=SHORT_SIDE)
  det = ava_files.read_boxes(raw['detections']['validation'], detections=True, min_score=0.8)
  boxes = [b.coords for b in sorted(det.boxes[('syn_validation_003', 902)],
                                    key=lambda b: -b.score)][:2]
  batch = ava_pipeline.predict_batch(config, video, boxes, keyframe_frame=60)
  evals = [b for b in input_pipeline.create_eval_iterator(config, out, 'validation', 4)][0]
  row = [i for i in range(4) if evals['video_index'][i] == 0 and evals['timestamp'][i] == 902]
  for key in ('fast', 'audio', 'boxes', 'box_mask', 'image_size'):
    np.testing.assert_allclose(batch[key][0], evals[key][row[0]], atol=1e-4, err_msg=key)
  whole = ava_pipeline.predict_batch(config, video)  # no boxes: the whole frame
  np.testing.assert_allclose(whole['boxes'][0, 0], [0, 0, 53, 40], atol=1e-3)
  assert whole['box_mask'][0].tolist() == [1, 0, 0]

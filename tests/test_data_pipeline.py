"""The tf.data iterators: batch contract, determinism and resume, host sharding, eval views.

They read conftest.py's ``pipeline_dir`` (data_testing.prepare_pipeline_videos)."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from avslowfast_jax import cli, clip_finish
from avslowfast_jax.tools import inspect_clips
from data_pipelines import input_pipeline
from data_testing import NUM_TEST, NUM_TRAIN, pipeline_config


def _train(config, pipeline_dir, batch, seed, start_step=0, host=(0, 1)):
  return input_pipeline.create_train_iterator(config, pipeline_dir, 'train', batch, seed=seed,
                                              start_step=start_step, process_index=host[0],
                                              process_count=host[1])


def test_train_batch_contract(pipeline_dir):
  config = pipeline_config()
  batch = next(_train(config, pipeline_dir, 4, seed=0))
  expected = {'slow': ((4, 2, 32, 32, 3), np.float32), 'fast': ((4, 8, 32, 32, 3), np.float32),
              'audio': ((4, 32, 80, 1), np.float32), 'audio_shifted': ((4, 32, 80, 1), np.float32),
              'audio_mask': ((4,), np.float32), 'label': ((4,), np.int32),
              'video_index': ((4,), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  np.testing.assert_array_equal(batch['slow'], batch['fast'][:, ::4])
  silent = batch['video_index'] == 2  # the video without an audio track
  np.testing.assert_array_equal(batch['audio_mask'], np.where(silent, 0.0, 1.0))
  a = config.data.audio
  floor = (np.log(a.log_offset) - a.mean) / a.std
  for i in np.flatnonzero(silent):
    np.testing.assert_allclose(batch['audio'][i], floor, rtol=1e-5)
  for i in np.flatnonzero(~silent):
    assert batch['audio'][i].std() > 0.1
    assert not np.allclose(batch['audio'][i], batch['audio_shifted'][i])
  np.testing.assert_array_equal(batch['label'], batch['video_index'] % 3)
  assert abs(float(batch['fast'].mean())) < 1.5  # normalised, not raw pixels
  # Multi-label heads get multi-hot targets.
  config.task = 'multilabel'
  config.data.avs_negatives = False
  batch = next(_train(config, pipeline_dir, 2, seed=0))
  assert batch['label'].shape == (2, 3) and 'audio_shifted' not in batch
  np.testing.assert_array_equal(batch['label'].argmax(1), batch['video_index'] % 3)


@pytest.mark.parametrize('read', ['records', 'ranges'])
def test_audio_only_model_gets_no_frames_and_the_same_audio(pipeline_dir, read):
  def batches(arch, **data):
    config = pipeline_config(**data)
    config.model.arch = arch
    dataset = input_pipeline.make_train_dataset(config, pipeline_dir, 'train', 4, seed=3,
                                                read=read)
    return config, list(dataset.take(2).as_numpy_iterator())

  _, full = batches('avslowfast')
  config, audio_only = batches('audio')
  for b, ref in zip(audio_only, full):
    assert set(b) == set(ref) - {'slow', 'fast'}, sorted(b)
    for key in b:
      np.testing.assert_array_equal(b[key], ref[key], err_msg=key)
  # Finished on the device: the audio samples alone, turned into the same log-mels.
  config, raw = batches('audio', finish_on_device='on')
  assert 'frames' not in raw[0] and 'window' not in raw[0]
  finished = clip_finish.finish_clips(config, raw[0])
  assert set(finished) == set(audio_only[0])
  np.testing.assert_allclose(finished['audio'], audio_only[0]['audio'], atol=1e-4)
  # Evaluation views: the same audio, no frames.
  views = {}
  for arch in ('avslowfast', 'audio'):
    config = pipeline_config()
    config.model.arch = arch
    views[arch] = next(input_pipeline.create_eval_iterator(config, pipeline_dir, 'test', 6))
  assert set(views['audio']) == set(views['avslowfast']) - {'slow', 'fast'}
  for key in views['audio']:
    np.testing.assert_array_equal(views['audio'][key], views['avslowfast'][key], err_msg=key)
  # inspect shows such a model's clips with the frames a visual model gets beside them.
  assert inspect_clips.collect_clips(config, pipeline_dir, 'train', 1)['fast'].shape[0] == 1


def test_resume_sees_the_same_batches(pipeline_dir):
  config = pipeline_config(avs_negatives=False)
  run = _train(config, pipeline_dir, 2, seed=5)
  full = [next(run) for _ in range(6)]  # 12 clips: more than two epochs of 5 videos
  resumed = _train(config, pipeline_dir, 2, seed=5, start_step=4)
  for step in (4, 5):
    batch = next(resumed)
    for key in ('fast', 'audio', 'video_index'):
      np.testing.assert_array_equal(batch[key], full[step][key])
  # Every video once per epoch, in a new order each epoch.
  order = np.concatenate([b['video_index'] for b in full])
  assert sorted(order[:5]) == sorted(order[5:10]) == list(range(5))
  other = next(_train(config, pipeline_dir, 2, seed=6))
  assert not np.array_equal(other['fast'], full[0]['fast'])


def test_hosts_read_disjoint_files(pipeline_dir):
  config = pipeline_config(avs_negatives=False)
  seen = []
  for host in range(2):
    it = _train(config, pipeline_dir, 1, seed=0, host=(host, 2))
    seen.append({int(next(it)['video_index'][0]) for _ in range(6)})
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(NUM_TRAIN))


@pytest.mark.parametrize('hosts', [1, 2])
def test_eval_views_once_each_with_tags(pipeline_dir, hosts):
  config = pipeline_config()
  views = config.data.num_test_clips * config.data.num_test_crops
  batch_size = 4
  tags, counts = [], []
  for host in range(hosts):
    batches = list(input_pipeline.create_eval_iterator(config, pipeline_dir, 'test', batch_size,
                                                       process_index=host, process_count=hosts))
    counts.append(len(batches))
    for b in batches:
      assert b['fast'].shape == (batch_size, 8, 32, 32, 3) and b['valid'].shape == (batch_size,)
      assert set(b) == {'slow', 'fast', 'audio', 'audio_mask', 'label', 'video_index',
                        'view_index', 'valid'}
      for i in np.flatnonzero(b['valid']):
        tags.append((int(b['video_index'][i]), int(b['view_index'][i])))
        assert b['label'][i] == (NUM_TRAIN + b['video_index'][i]) % 3
      assert np.all(b['fast'][b['valid'] == 0] == 0)
  assert len(set(counts)) == 1  # every host runs the same number of eval steps
  assert sorted(tags) == [(v, k) for v in range(NUM_TEST) for k in range(views)]
  assert counts[0] == -(-max(sum(1 for _ in range(h, NUM_TEST, hosts)) for h in range(hosts))
                         * views // batch_size)


def test_eval_crops_differ_and_clips_share_audio(pipeline_dir):
  config = pipeline_config()
  batch = next(input_pipeline.create_eval_iterator(config, pipeline_dir, 'test', 6,
                                                   process_index=0, process_count=1))
  assert list(batch['view_index']) == list(range(6)) and set(batch['video_index']) == {0}
  assert not np.array_equal(batch['fast'][0], batch['fast'][2])  # left vs right crop
  np.testing.assert_array_equal(batch['audio'][0], batch['audio'][1])  # same temporal clip
  assert not np.array_equal(batch['audio'][0], batch['audio'][3])  # the next clip


def test_inspect_writes_arrays_and_contact_sheet(pipeline_dir, tmp_path, monkeypatch):
  pytest.importorskip('matplotlib')
  monkeypatch.setattr(cli, 'load_config_file', lambda spec: pipeline_config())
  output, png = str(tmp_path / 'clips.npz'), str(tmp_path / 'sheet.png')
  inspect_clips.main(['--data_dir', pipeline_dir, '--config', 'x', '--split', 'train',
                      '--num_clips', '3', '--output', output, '--png', png])
  clips = np.load(output)
  for key in ('slow', 'fast', 'audio', 'label', 'video_id', 'clip_start_sec', 'clip_end_sec',
              'audio_mean', 'audio_std'):
    assert key in clips.files
  assert clips['fast'].shape[0] == 3 and clips['video_id'][0].startswith('v')
  np.testing.assert_allclose(clips['clip_end_sec'] - clips['clip_start_sec'], 32 / 30, rtol=1e-5)
  assert os.path.getsize(png) > 1000


# A script that ends while its training iterator is still alive and reading ahead.
_EXIT_HOLDING_ITERATOR = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from configs import kinetics
    from data_pipelines import input_pipeline
    c = kinetics.get_config('tiny_avslowfast_4x16_r50')
    c.data.num_frames, c.data.sampling_rate, c.model.alpha_f = 8, 4, 4
    c.data.train_crop_size, c.data.train_jitter_scales = 32, (40, 48)
    c.data.audio.num_frames = 32
    it = input_pipeline.create_train_iterator(c, {data_dir!r}, 'train', 2, seed=0)
    for _ in range(3):
      next(it)
    {end}
    print('read', flush=True)
""")

# Closed in the background right before the end: the exit waits for that teardown
# (at most ClosingIterator.EXIT_WAIT_S).
_CLOSE_IN_BACKGROUND = ('it.close(wait=False); assert next(it, None) is None; '
                        'assert input_pipeline.ClosingIterator.teardowns_pending()')


@pytest.mark.parametrize('end', ['pass', _CLOSE_IN_BACKGROUND], ids=['live', 'closing'])
def test_exit_with_a_live_train_iterator(pipeline_dir, end):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = _EXIT_HOLDING_ITERATOR.format(repo=repo, data_dir=pipeline_dir, end=end)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  try:
    result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                            text=True, timeout=120)
  except subprocess.TimeoutExpired:
    pytest.fail('the interpreter hung at exit tearing down a live training iterator')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == 'read'


# A teardown that never ends, as one waiting for tf.data's autotuning thread (which
# wakes once a minute) seems to the exit: the exit waits EXIT_WAIT_S for it, no longer.
_EXIT_WITH_A_STUCK_TEARDOWN = textwrap.dedent("""
    import sys, threading, time
    sys.path.insert(0, {repo!r})
    from data_pipelines import input_pipeline
    class Stuck:
      def __del__(self):
        threading.Event().wait()
    input_pipeline.ClosingIterator.EXIT_WAIT_S = 2.0
    it = input_pipeline.ClosingIterator(iter([Stuck()]))
    print(time.monotonic(), flush=True)
""")


def test_exit_waits_a_bounded_time_for_a_stuck_teardown():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    result = subprocess.run([sys.executable, '-c', _EXIT_WITH_A_STUCK_TEARDOWN.format(repo=repo)],
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
                            capture_output=True, text=True, timeout=120)
  except subprocess.TimeoutExpired:
    pytest.fail('the exit waited for a teardown that does not end')
  ended = time.monotonic()
  assert result.returncode == 0, result.stderr[-2000:]
  waited = ended - float(result.stdout.strip())
  assert 2.0 <= waited < 30, waited

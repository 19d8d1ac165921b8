"""data.finish_on_device: the host ships decoded crop windows; the train step resizes, flips and
normalises them into the clips the host pipeline makes. And the positioned reads under both."""

import functools

import jax
import numpy as np
import pytest
import tensorflow as tf

from avslowfast_jax import clip_finish
from avslowfast_jax.train import setup as setup_lib
from avslowfast_jax.train import state as state_lib
from avslowfast_jax.train import step as step_lib
from data_pipelines import clips, fs, input_pipeline, records
from data_testing import pipeline_config


@pytest.mark.parametrize('size,flip', [(40, 0), (29, 1), (24, 1), (36, 0)])
def test_resize_window_is_tf_bilinear_of_the_window(size, flip):
  # Shrinking (40, 29, 36 -> 24), the same size (24) and ...
  window = np.random.default_rng(size).integers(0, 256, (3, size, size, 3)).astype(np.uint8)
  flat = np.zeros(3 * 40 * 40 * 3, np.uint8)  # padded to the largest side, 40
  flat[:window.size] = window.reshape(-1)
  flat[window.size:] = 255  # the padding must never be read
  expected_window = window[:, :, ::-1] if flip else window
  for out in (24, 48):  # ... growing (to 48)
    expected = tf.image.resize(expected_window, [out, out], method='bilinear',
                               antialias=False).numpy()
    got = clip_finish.resize_window(flat, np.array([size, flip], np.int32), 3, out)
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-3)


@pytest.mark.parametrize('read', ['records', 'ranges'])
def test_device_finish_gives_the_host_pipeline_clips(pipeline_dir, read):
  host_config, config = pipeline_config(), pipeline_config(finish_on_device='on')
  side = input_pipeline.device_window_side(config, pipeline_dir)
  assert side == 39  # ceil(32 * 48 / 40): the largest window at the smallest jitter scale
  host = list(input_pipeline.make_train_dataset(host_config, pipeline_dir, 'train', 4, seed=3,
                                                read=read).take(3).as_numpy_iterator())
  raw = list(input_pipeline.make_train_dataset(config, pipeline_dir, 'train', 4, seed=3,
                                               read=read).take(3).as_numpy_iterator())
  finish = jax.jit(functools.partial(clip_finish.finish_clips, config))
  flips = []
  for h, r in zip(host, raw):
    assert r['frames'].dtype == np.uint8 and r['frames'].shape == (4, 8 * side * side * 3)
    assert 'fast' not in r and 'slow' not in r
    flips += r['window'][:, 1].tolist()
    done = {k: np.asarray(v) for k, v in finish(r).items()}
    assert set(done) == set(h)
    # The clip's span and its negative's: 32 frames at 30 fps, 1.067 s.
    assert r['audio_pcm'].dtype == np.int16 and r['audio_pcm'].shape == (4, 2, 17067)
    finished = ('fast', 'slow', 'audio', 'audio_shifted')
    for key in h:
      if key not in finished:
        np.testing.assert_array_equal(done[key], h[key], err_msg=key)
    for key in finished:  # float32 rounding: TensorFlow's FFT and resize vs XLA's
      assert done[key].dtype == np.float32 and done[key].shape == h[key].shape
      np.testing.assert_allclose(done[key], h[key], atol=1e-4, err_msg=key)
  assert set(flips) == {0, 1}


def test_train_step_takes_the_decoded_windows(pipeline_dir):
  config = pipeline_config(finish_on_device='on')
  config.data.data_dir = pipeline_dir
  config.train.num_train_examples, config.train.total_steps, config.train.batch_size = 4, 2, 4
  model, task, plan, lr_fn, tx = setup_lib.setup(config)
  state = jax.eval_shape(state_lib.make_init_fn(config, model, tx), jax.random.PRNGKey(0))
  train_step = step_lib.make_train_step(config, model, task, tx, lr_fn, plan.total_steps)
  raw = next(input_pipeline.make_train_dataset(config, pipeline_dir, 'train', 4, seed=0)
             .as_numpy_iterator())
  config.data.finish_on_device = 'off'
  host = next(input_pipeline.make_train_dataset(config, pipeline_dir, 'train', 4, seed=0)
              .as_numpy_iterator())
  out_raw = jax.eval_shape(train_step, state, raw, jax.random.PRNGKey(1))
  out_host = jax.eval_shape(train_step, state, host, jax.random.PRNGKey(1))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), out_raw) == jax.tree.map(
      lambda a: (a.shape, a.dtype), out_host)


def test_finish_on_device_needs_one_stored_short_side(pipeline_dir, tmp_path):
  meta = fs.read_json(fs.join(pipeline_dir, 'shards.json'))
  meta['short_side'] = 0
  copy = tmp_path / 'sizes'
  copy.mkdir()
  fs.write_json(str(copy / 'shards.json'), meta)
  fs.write_json(str(copy / 'label_map.json'),
                fs.read_json(fs.join(pipeline_dir, 'label_map.json')))
  with pytest.raises(input_pipeline.UserError, match=r'stored at their source sizes'):
    input_pipeline.device_window_side(pipeline_config(finish_on_device='on'), str(copy))
  assert input_pipeline.device_window_side(pipeline_config(), str(copy)) is None


@pytest.mark.parametrize('root', ['local', 'ram://range-reader'])
def test_range_reader_reads_each_range_and_names_a_short_file(root, tmp_path):
  base = str(tmp_path) if root == 'local' else root
  data = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8).tobytes()
  paths = [fs.join(base, 'a.bin'), fs.join(base, 'b.bin')]
  fs.write_bytes(paths[0], data)
  fs.write_bytes(paths[1], data[::-1])
  reader = fs.RangeReader(paths)
  offsets, lengths = np.array([4000, 0, 17, 4999, 12]), np.array([1000, 3, 0, 1, 700])
  for index, blob in enumerate((data, data[::-1])):
    got = records.read_ranges(reader, tf.constant(index, tf.int64),
                              tf.constant(offsets), tf.constant(lengths)).numpy()
    assert [bytes(g) for g in got] == [blob[o:o + n] for o, n in zip(offsets, lengths)]
  with pytest.raises(IOError, match=r'b\.bin: 10 bytes at 4995 asked, 5 read'):
    reader.read_many(1, [4995], [10])


def test_log_mels_are_the_host_front_end():
  config = pipeline_config()
  t = np.arange(17067) / 16000
  waves = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t),
                    np.where(t > 0.5, 0.05 * np.random.default_rng(0).standard_normal(t.size),
                             0.0)])
  waves = np.round(waves * 32767).astype(np.int16)
  expected = clips.log_mels(tf.constant(waves), config).numpy()
  got = np.asarray(jax.jit(lambda w: clip_finish.log_mels(w, config.data.audio))(waves))
  assert got.shape == expected.shape == (3, 32, 80, 1)
  np.testing.assert_allclose(got, expected, atol=1e-3)  # float32 FFTs: the quiet bins differ most


def test_finish_on_device_auto_follows_the_backend():
  config = pipeline_config()
  assert config.data.finish_on_device == 'auto'
  assert input_pipeline.finishes_on_device(config) == (jax.default_backend() != 'cpu')
  config.data.finish_on_device = 'sometimes'
  with pytest.raises(input_pipeline.UserError, match=r"finish_on_device='sometimes': on, off"):
    input_pipeline.finishes_on_device(config)

"""Clip sampling, audio front end (vs librosa) and augmentation, eagerly and inside tf.data."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import kinetics
from data_pipelines import (adapters, audio, augment, clips, decode, input_pipeline, mel_filters,
                            sampling, shards)


# ------------------------------------------------------------------ sampling
def test_clip_frame_indices_and_padding():
  idx = sampling.clip_frame_indices(10, 4, 2, 100).numpy()
  np.testing.assert_array_equal(idx, [10, 12, 14, 16])
  # A video shorter than the window repeats its last frame.
  idx = sampling.clip_frame_indices(0, 8, 2, 9).numpy()
  np.testing.assert_array_equal(idx, [0, 2, 4, 6, 8, 8, 8, 8])
  np.testing.assert_array_equal(clips.slow_frame_indices(32, 8), [0, 8, 16, 24])


def test_train_and_eval_clip_starts():
  assert int(sampling.train_clip_start(100, 64, 0.0)) == 0
  assert int(sampling.train_clip_start(100, 64, 0.999999)) == 36  # last window ends at frame 99
  assert int(sampling.train_clip_start(20, 64, 0.7)) == 0
  starts = sampling.eval_clip_starts(300, 64, 10).numpy()
  assert starts[0] == 0 and starts[-1] == 236 and len(starts) == 10
  assert np.all(np.diff(starts) > 0)
  assert sampling.eval_clip_starts(300, 64, 1).numpy().tolist() == [118]
  assert sampling.eval_clip_starts(30, 64, 3).numpy().tolist() == [0, 0, 0]


def test_audio_span_and_zero_padding():
  first, length = sampling.audio_span(30, 64, 30.0, 16000, 0.0)
  assert int(first) == 16000 and length == 34133
  first, _ = sampling.audio_span(30, 64, 30.0, 16000, 0.25)  # audio starts 0.25 s after frame 0
  assert int(first) == 12000
  signal = tf.range(1, 11, dtype=tf.float32)
  np.testing.assert_array_equal(sampling.slice_with_zero_padding(signal, -2, 5).numpy(),
                                [0, 0, 1, 2, 3])
  np.testing.assert_array_equal(sampling.slice_with_zero_padding(signal, 8, 4).numpy(),
                                [9, 10, 0, 0])
  np.testing.assert_array_equal(sampling.slice_with_zero_padding(tf.zeros([0]), 0, 3).numpy(),
                                [0, 0, 0])


def test_zero_padded_slice_is_the_numpy_slice_anywhere():
  """Every placement of the slice (before, across the start, inside, across the end, after,
  longer than the signal), traced with an unknown signal length as tf.data traces it."""
  signal = np.arange(1, 11, dtype=np.int16)
  for length in (1, 4, 10, 15):
    traced = tf.function(
        lambda s, f, n=length: sampling.slice_with_zero_padding(s, f, n),
        input_signature=[tf.TensorSpec([None], tf.int16), tf.TensorSpec([], tf.int32)])
    for first in range(-length - 2, 13):
      want = np.zeros(length, np.int16)
      for i in range(length):
        if 0 <= first + i < len(signal):
          want[i] = signal[first + i]
      for got in (sampling.slice_with_zero_padding(tf.constant(signal), first, length),
                  traced(tf.constant(signal), tf.constant(first))):
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f'first={first} n={length}')


@pytest.mark.parametrize('start', [0, 50, 100, 236])
def test_hard_negative_is_shifted_at_least_the_minimum(start):
  shifts = []
  for u in np.linspace(0, 0.999, 41):
    shifted = int(sampling.hard_negative_start(start, 300, 64, 15, u))
    assert 0 <= shifted <= 236
    shifts.append(abs(shifted - start))
  assert min(shifts) >= 15 and max(shifts) > 60
  # Too short a video for an in-range shift: shifted by exactly the minimum.
  assert int(sampling.hard_negative_start(0, 70, 64, 15, 0.3)) == 15


# --------------------------------------------------------------------- audio
def test_log_mel_matches_librosa():
  librosa = pytest.importorskip('librosa')
  rng = np.random.default_rng(0)
  t = np.arange(34133) / 16000.0
  wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.5) + 0.05 * rng.standard_normal(t.size))
  wave = wave.astype(np.float32)
  reference = np.log(librosa.feature.melspectrogram(
      y=wave, sr=16000, n_fft=512, hop_length=256, n_mels=80, htk=True, center=False) + 1e-8).T
  eager = audio.log_mel_spectrogram(tf.constant(wave)).numpy()
  assert eager.shape == reference.shape == (132, 80)
  np.testing.assert_allclose(eager, reference, rtol=1e-3)
  in_graph = next(iter(tf.data.Dataset.from_tensors(wave).map(audio.log_mel_spectrogram))).numpy()
  np.testing.assert_allclose(in_graph, reference, rtol=1e-3)
  np.testing.assert_allclose(mel_filters.mel_filterbank(16000, 512, 80),
                             librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, htk=True).T,
                             atol=1e-7)


def test_time_resampling_keeps_timing():
  ramp = tf.tile(tf.range(132, dtype=tf.float32)[:, None], [1, 80])
  out = audio.resample_time_axis(ramp, 128).numpy()
  assert out.shape == (128, 80)
  expected = np.clip((np.arange(128) + 0.5) * 132 / 128 - 0.5, 0, 131)
  np.testing.assert_allclose(out[:, 0], expected, atol=1e-4)
  np.testing.assert_array_equal(audio.resample_time_axis(ramp[:128], 128).numpy(),
                                ramp[:128].numpy())


# ---------------------------------------------------------------- augmentation
def _jpeg(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _static_video_record(num_frames=80, height=60, width=80):
  """A record whose frames are all the same asymmetric picture (a gradient with a corner block)."""
  y, x = np.mgrid[0:height, 0:width]
  image = np.stack([x * 255 // width, y * 255 // height, (x * y) % 255], -1).astype(np.uint8)
  image[:10, :12] = 255
  jpeg = _jpeg(image)
  video = decode.DecodedVideo(jpegs=[jpeg] * num_frames, height=height, width=width, fps=30.0,
                              audio=None, audio_sample_rate=16000, audio_start_sec=0.0, repairs=[])
  item = adapters.VideoItem('/x.mp4', [1], 'train', 'static')
  return tf.constant(shards.serialize_example(video, item))


def _small_config():
  c = kinetics.get_config('tiny_avslowfast_4x16_r50')
  c.data.num_frames, c.data.sampling_rate, c.model.alpha_f = 8, 2, 4
  c.data.train_crop_size, c.data.train_jitter_scales = 32, (40, 56)
  c.model.num_classes = 3
  return c


def test_device_window_guard_names_the_problem_in_a_pipeline():
  """With ``data.finish_on_device`` a crop window larger than the padded row is refused with
  its own message in a tf.data map (without the guard the pad's size fails: "Dimension -N
  must be >= 0"); a window that fits gives the full padded row."""
  config = _small_config()
  dataset = tf.data.Dataset.from_tensors(_static_video_record()).map(
      lambda r: input_pipeline.make_train_example(r, 0, 0, config, seed=7, window_side=8))
  with pytest.raises(tf.errors.InvalidArgumentError, match='crop window over'):
    next(iter(dataset))
  ok = next(iter(tf.data.Dataset.from_tensors(_static_video_record()).map(
      lambda r: input_pipeline.make_train_example(r, 0, 0, config, seed=7, window_side=60))))
  assert ok['frames'].shape == (8 * 60 * 60 * 3,)


def test_same_crop_and_flip_for_every_frame():
  config = _small_config()
  record = _static_video_record()
  flipped, firsts = [], []
  for position in range(12):
    ex = input_pipeline.make_train_example(record, position, 0, config, seed=7)
    fast = ex['fast'].numpy()
    assert fast.shape == (8, 32, 32, 3) and ex['slow'].shape == (2, 32, 32, 3)
    # Identical source frames + one crop/flip per clip => identical output frames.
    np.testing.assert_allclose(fast, np.broadcast_to(fast[:1], fast.shape), atol=1e-5)
    np.testing.assert_array_equal(ex['slow'].numpy(), fast[::4])
    # The red channel grows left to right unless the clip was flipped.
    red = fast[0, :, :, 0].mean(0)
    flipped.append(red[0] > red[-1])
    firsts.append(fast[0])
    assert float(ex['audio_mask']) == 0.0  # no audio track
  assert 0 < sum(flipped) < 12  # both flipped and unflipped clips occur
  assert len({np.round(f.sum(), 2) for f in firsts}) > 6  # crops differ between clips
  # The same (seed, position) gives the same clip.
  again = input_pipeline.make_train_example(record, 3, 0, config, seed=7)['fast'].numpy()
  np.testing.assert_array_equal(again[0], firsts[3])


def test_train_crop_window_stays_inside_the_frame():
  for u in (0.0, 0.5, 0.9999):
    for scale in (256, 320):
      y, x, h, w = augment.train_crop_window(320, 427, 224, scale, u, u).numpy()
      assert h == w == round(224 * 320 / scale)
      assert 0 <= y <= 320 - h and 0 <= x <= 427 - w


def test_spatial_crops_left_centre_right():
  frames = tf.tile(tf.range(12, dtype=tf.float32)[None, None, :, None], [2, 4, 1, 3])
  crops = augment.spatial_crops(frames, 4, 3).numpy()
  assert crops.shape == (3, 2, 4, 4, 3)
  assert [c[0, 0, 0, 0] for c in crops] == [0, 4, 8]

"""A clip's model inputs from a record's features: its frames as the Slow and Fast pathways
take them, and the log-mel of the audio spanning its frames.

Both input pipelines use these ops (input_pipeline.py, ava_pipeline.py), so a
classification clip and a detection clip of the same frames get the same inputs.

Audio time axis: a window of ``num_frames * sampling_rate`` frames spans
``window / fps`` s; its log-mel (n_fft 512, hop 256, not centred) has
``1 + (S - 512) // 256`` frames (132 for 64 frames at 30 fps), which are
linearly resampled along time to ``data.audio.num_frames`` (128). The span
stays exactly the frames' span; only the spectrogram's frame spacing changes.
"""

from __future__ import annotations

import tensorflow as tf

from data_pipelines import audio as audio_lib
from data_pipelines import augment, sampling


def waveform(example) -> tf.Tensor:
  """The record's stored audio, int16 samples (converted to float only per clip span)."""
  return tf.io.decode_raw(example['audio'], tf.int16, little_endian=True)


def slow_fast(frames, config):
  """Frames in [0, 255] ``[T, H, W, 3]`` -> normalised (slow, fast)."""
  fast = augment.normalize(frames, config.data.mean, config.data.std)
  slow = tf.gather(fast, sampling.slow_indices(config.data.num_frames, config.model.alpha_f))
  return slow, fast


def audio_span(start_frame, config, audio_start_sec):
  """``(first sample, num samples)`` of the audio a clip starting at ``start_frame`` uses."""
  d = config.data
  a = d.audio
  window = d.num_frames * d.sampling_rate
  first, length = sampling.audio_span(start_frame, window, d.fps, a.sample_rate, audio_start_sec)
  return first, max(length, a.n_fft)


def clip_audio(samples, start_frame, config, audio_start_sec, samples_first=0) -> tf.Tensor:
  """The samples spanning frames ``[start, start + window)``, zeros where none are stored.

  ``samples`` holds the stored audio from sample ``samples_first`` on (all of
  it by default; a byte-range read gives only the clip's span).
  """
  first, length = audio_span(start_frame, config, audio_start_sec)
  return sampling.slice_with_zero_padding(samples, first - tf.cast(samples_first, tf.int32),
                                          length)


def log_mels(spans, config) -> tf.Tensor:
  """Normalised log-mels ``[n, T_a, F, 1]`` of ``n`` clip spans ``[n, S]`` of int16 samples
  (one op chain)."""
  a = config.data.audio
  spec = audio_lib.log_mel_spectrogram(audio_lib.pcm16_to_float(spans), a.sample_rate, a.n_fft,
                                       a.hop_length, a.num_mels, a.log_offset)
  spec = audio_lib.resample_time_axis(spec, a.num_frames)
  spec = (spec - a.mean) / a.std
  return tf.reshape(spec, [-1, a.num_frames, a.num_mels, 1])


def clip_log_mel(samples, start_frame, config, audio_start_sec, samples_first=0) -> tf.Tensor:
  """Normalised log-mel ``[T_a, F, 1]`` of the audio spanning frames ``[start, start + window)``
  (``samples`` and ``samples_first`` as in :func:`clip_audio`)."""
  span = clip_audio(samples, start_frame, config, audio_start_sec, samples_first)
  return log_mels(span[None], config)[0]

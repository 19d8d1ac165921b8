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

import numpy as np
import tensorflow as tf

from data_pipelines import audio as audio_lib
from data_pipelines import augment, sampling
from data_pipelines.errors import UserError


def waveform(example) -> tf.Tensor:
  """The record's stored audio, int16 samples (converted to float only per clip span)."""
  return tf.io.decode_raw(example['audio'], tf.int16, little_endian=True)


def slow_frame_indices(num_fast_frames: int, alpha_f: int, rule: str = 'stride') -> np.ndarray:
  """The Fast frames the Slow pathway takes (``config.model.slow_frames``).

  ``'stride'``: every ``alpha_f``-th frame from the first (0, a, 2a, ...;
  docs/design.md). ``'linspace'``: ``T // alpha_f`` frames spread from the first
  to the last, ``torch.linspace(0, T - 1, T // alpha_f).long()`` as PySlowFast's
  ``pack_pathway_output`` and PyTorchVideo's ``uniform_temporal_subsample``
  take them (e.g. 0, 4, 8, 13, 17, 22, 26, 31 of 32 frames at alpha 4). The
  values are computed as torch computes them on the CPU, in float32 (the
  first half from the start, the second half back from the end), then
  truncated.
  """
  if rule == 'stride':
    return np.arange(0, num_fast_frames, alpha_f, dtype=np.int32)
  if rule != 'linspace':
    raise UserError(f'config.model.slow_frames={rule!r}: expected stride or linspace')
  count = num_fast_frames // alpha_f
  if count <= 1:
    return np.zeros(count, np.int32)
  start, end = np.float32(0), np.float32(num_fast_frames - 1)
  step = (end - start) / np.float32(count - 1)
  values = [start + step * np.float32(i) if i < count // 2
            else end - step * np.float32(count - 1 - i) for i in range(count)]
  return np.asarray(values, np.float32).astype(np.int32)


def slow_fast(frames, config):
  """Frames in [0, 255] ``[T, H, W, 3]`` -> normalised (slow, fast)."""
  fast = augment.normalize(frames, config.data.mean, config.data.std)
  slow = tf.gather(fast, slow_frame_indices(config.data.num_frames, config.model.alpha_f,
                                            config.model.get('slow_frames', 'stride')))
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

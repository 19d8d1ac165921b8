"""In-graph audio front end: int16 PCM -> log-mel spectrogram.

16 kHz mono, 32 ms windows (n_fft 512) every 16 ms (hop 256), 80 mel bins,
``log(S + 1e-8)``: the AVSlowFast authors' audio-visual SlowFast code computes
its log-mel input so (librosa, ``htk=True``, ``center=False``, power spectrogram).

The mel filterbank (``mel_filters.py``) has the mathematics of
``librosa.filters.mel(htk=True, norm='slaney')`` so the tf.signal spectrogram
matches ``librosa.feature.melspectrogram(..., htk=True, center=False)``
followed by ``log(S + 1e-8)`` (tests/test_data_transforms.py checks this).
"""

from __future__ import annotations

import functools

import tensorflow as tf

from data_pipelines.mel_filters import mel_filterbank


def pcm16_to_float(pcm: tf.Tensor) -> tf.Tensor:
  """int16 samples -> float32 in [-1, 1) (the scale librosa loads audio in)."""
  return tf.cast(pcm, tf.float32) / 32768.0


def log_mel_spectrogram(waveform: tf.Tensor, sample_rate: int = 16000, n_fft: int = 512,
                        hop_length: int = 256, num_mels: int = 80,
                        log_offset: float = 1e-8) -> tf.Tensor:
  """``log(mel @ |STFT|^2 + log_offset)`` of ``waveform [..., S]`` -> ``[..., frames, num_mels]``.

  Frames are not centred (librosa ``center=False``): frame k covers samples
  ``[k * hop, k * hop + n_fft)``, so there are ``1 + (S - n_fft) // hop`` of them.
  The window is the periodic Hann window, as librosa/scipy use for spectra.
  """
  stft = tf.signal.stft(waveform, frame_length=n_fft, frame_step=hop_length, fft_length=n_fft,
                        window_fn=functools.partial(tf.signal.hann_window, periodic=True),
                        pad_end=False)
  power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
  mel = tf.tensordot(power, tf.constant(mel_filterbank(sample_rate, n_fft, num_mels)), axes=1)
  return tf.math.log(mel + log_offset)


def resample_time_axis(spectrogram: tf.Tensor, num_frames: int) -> tf.Tensor:
  """Linearly resamples ``[..., T, F]`` to ``[..., num_frames, F]`` along time.

  Used when the audio span of a clip gives a frame count other than the model's
  (64 frames at 30 fps = 2.133 s -> 132 log-mel frames, the model takes 128).
  Half-pixel centres: output frame j sits at input position
  ``(j + 0.5) * T / num_frames - 0.5``, so the first and last frames keep their
  times to within half an output frame and the span's timing is preserved.
  An identity when ``T == num_frames``.
  """
  num_bins = spectrogram.shape[-1]
  resized = tf.image.resize(spectrogram[..., None], [num_frames, num_bins], method='bilinear',
                            antialias=False)
  return resized[..., 0]

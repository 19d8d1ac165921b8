"""The mel filterbank in numpy, for the tf.data front end (``audio.py``) and the device's
clip finishing (``avslowfast_jax/clip_finish.py``): no TensorFlow, so the latter also runs
where TensorFlow is not installed."""

from __future__ import annotations

import functools

import numpy as np


def hz_to_mel_htk(hz):
  """HTK mel scale: 2595 * log10(1 + f / 700)."""
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz_htk(mel):
  """Inverse of :func:`hz_to_mel_htk`."""
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, num_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """Triangular mel filters ``[n_fft // 2 + 1, num_mels]`` (float32), area-normalised.

  Each filter rises linearly from its left band edge to its centre and falls to
  its right edge (edges equally spaced on the HTK mel scale between ``fmin`` and
  ``fmax``), then is scaled by ``2 / (right - left)`` so every filter has the
  same area ("slaney" normalisation, librosa's default).
  """
  fmax = sample_rate / 2.0 if fmax is None else fmax
  bin_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
  edges_hz = mel_to_hz_htk(np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), num_mels + 2))
  left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
  rising = (bin_hz[None, :] - left) / (centre - left)
  falling = (right - bin_hz[None, :]) / (right - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  weights *= 2.0 / (right - left)
  return weights.T.astype(np.float32)

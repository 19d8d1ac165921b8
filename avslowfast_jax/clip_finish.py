"""The last steps of training-clip augmentation, run inside the jitted train step.

With ``data.finish_on_device`` the input pipeline stops after decoding each
clip's crop window and cutting its audio spans: it ships the window's uint8
pixels flattened and padded to the largest window's length (``frames``,
``[B, T * S * S * 3]``), the window's side and the flip draw (``window``,
``[B, 2]`` int32), and the samples of the clip's audio span and of its hard
negative's (``audio_pcm``, ``[B, n, samples]`` int16). :func:`finish_clips`
then resizes the window to the crop size (bilinear with half-pixel centres
and edge clamping, as ``tf.image.resize`` computes it on the host path),
mirrors it, normalises it, takes the Slow frames, and computes the log-mel
spectrograms as ``data_pipelines/audio.py`` does. The host's CPUs then do
little besides reading and decoding JPEGs, and a clip crosses to the device
as about a third of the bytes of its float32 Slow and Fast stacks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines.mel_filters import mel_filterbank


def _taps(size, out: int, flip=None):
  """Lower and upper source indices and the upper weight of a bilinear resize of ``size``
  pixels to ``out``; ``flip`` mirrors the output."""
  i = jnp.arange(out, dtype=jnp.float32)
  if flip is not None:
    # Mirroring the window before resizing equals reading the resized output backwards.
    i = jnp.where(flip, out - 1 - i, i)
  coord = (i + 0.5) * (size.astype(jnp.float32) / out) - 0.5
  floor = jnp.floor(coord)
  lower = jnp.clip(floor.astype(jnp.int32), 0, size - 1)
  upper = jnp.clip(jnp.ceil(coord).astype(jnp.int32), 0, size - 1)
  return lower, upper, coord - floor


def resize_window(flat, window, num_frames: int, out: int):
  """One clip: uint8 ``flat`` (its ``[T, side, side, 3]`` window, flattened, then padding) and
  ``window`` (side, flip) -> the window resized to float32 ``[T, out, out, 3]`` (values in
  [0, 255]), mirrored left-right when flip is set."""
  side, flip = window[0], window[1] > 0
  extent = math.isqrt(flat.shape[0] // (3 * num_frames))  # the largest side: columns to read
  low_y, up_y, wy = _taps(side, out)
  low_x, up_x, wx = _taps(side, out, flip)
  frame = jnp.arange(num_frames)[:, None, None, None]
  cols = jnp.minimum(jnp.arange(extent), side - 1)[None, None, :, None]
  channel = jnp.arange(3)[None, None, None, :]

  def rows(index):  # [T, out, extent, 3]: the rows ``index`` of every frame (columns clamped)
    at = ((frame * side + index[None, :, None, None]) * side + cols) * 3 + channel
    return jnp.take(flat, at, mode='clip').astype(jnp.float32)

  top = rows(low_y)
  x = top + (rows(up_y) - top) * wy[None, :, None, None]
  left = jnp.take(x, low_x, axis=2)
  return left + (jnp.take(x, up_x, axis=2) - left) * wx[None, None, :, None]


def log_mels(pcm, audio: ml_collections.ConfigDict):
  """Normalised log-mels ``[..., num_frames, num_mels, 1]`` of int16 ``pcm [..., S]``: the
  host's ``data_pipelines.audio`` front end (periodic Hann window, no centring, power
  spectrum, the same mel filterbank, ``log(mel + log_offset)``, time axis resampled linearly
  with half-pixel centres, then ``(x - mean) / std``) in jax."""
  n_fft, hop = int(audio.n_fft), int(audio.hop_length)
  waves = pcm.astype(jnp.float32) / 32768.0
  count = 1 + (waves.shape[-1] - n_fft) // hop
  starts = np.arange(count)[:, None] * hop + np.arange(n_fft)[None, :]
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
  spectrum = jnp.fft.rfft(waves[..., starts] * window.astype(np.float32), n=n_fft)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  mel = power @ mel_filterbank(int(audio.sample_rate), n_fft, int(audio.num_mels))
  spec = jnp.log(mel + audio.log_offset)
  # Time axis: what tf.image.resize (bilinear, half-pixel centres) computes, in numpy indices.
  out = int(audio.num_frames)
  coord = np.maximum((np.arange(out) + 0.5) * count / out - 0.5, 0.0)
  lower = np.floor(coord).astype(np.int32)
  upper = np.minimum(np.ceil(coord).astype(np.int32), count - 1)
  weight = (coord - lower).astype(np.float32)[:, None]
  low = spec[..., lower, :]
  spec = low + (spec[..., upper, :] - low) * weight
  return ((spec - audio.mean) / audio.std)[..., None]


def finish_clips(config: ml_collections.ConfigDict, batch: Mapping[str, Any]) -> Mapping[str, Any]:
  """A batch with ``frames``, ``window`` and ``audio_pcm`` -> the same batch with normalised
  ``fast``, ``slow``, ``audio`` (and ``audio_shifted``), as the host pipeline makes them (an
  audio-only model's batch has only ``audio_pcm``); a batch the host finished is returned as
  is."""
  if 'audio_pcm' not in batch:
    return batch
  d = config.data
  out = {k: v for k, v in batch.items() if k not in ('frames', 'window', 'audio_pcm')}
  if 'frames' in batch:
    def resize(frames, window):
      return resize_window(frames, window, int(d.num_frames), int(d.train_crop_size))
    fast = jax.vmap(resize)(batch['frames'], batch['window'])
    mean = jnp.asarray(d.mean, jnp.float32)
    std = jnp.asarray(d.std, jnp.float32)
    fast = fast * (1.0 / (255.0 * std)) - mean / std
    out['fast'] = fast
    # The Slow frames by config.model.slow_frames, as the host path takes them.
    from data_pipelines.clips import slow_frame_indices  # pylint: disable=import-outside-toplevel
    out['slow'] = fast[:, slow_frame_indices(int(d.num_frames), int(config.model.alpha_f),
                                             config.model.get('slow_frames', 'stride'))]
  specs = log_mels(batch['audio_pcm'], d.audio)
  out['audio'] = specs[:, 0]
  if specs.shape[1] > 1:
    out['audio_shifted'] = specs[:, 1]
  return out

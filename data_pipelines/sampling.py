"""Which frames and which audio samples a clip takes (DMVR's SAMPLE phase).

All functions are TensorFlow ops so they run inside tf.data maps; they also
run eagerly (the tests call them directly). Frame ``i`` of a prepared video is
shown at ``i / fps`` seconds after the first frame; audio sample ``k`` at
``audio_start_sec + k / sample_rate``.
"""

from __future__ import annotations

import tensorflow as tf


def train_clip_start(num_video_frames, window: int, uniform) -> tf.Tensor:
  """First frame of a random training window of ``window`` frames.

  ``uniform`` is a scalar in [0, 1) (from a stateless RNG, so the choice is
  reproducible). Windows longer than the video start at 0 and are padded by
  :func:`clip_frame_indices`.
  """
  num_starts = tf.maximum(tf.cast(num_video_frames, tf.int32) - window, 0) + 1
  scaled = tf.cast(uniform, tf.float32) * tf.cast(num_starts, tf.float32)
  start = tf.cast(tf.floor(scaled), tf.int32)
  return tf.minimum(start, num_starts - 1)


def eval_clip_starts(num_video_frames, window: int, num_clips: int) -> tf.Tensor:
  """``num_clips`` window starts spread uniformly from the first to the last possible one.

  One clip takes the centre window (as PySlowFast's single-clip test does).
  """
  last = tf.cast(tf.maximum(tf.cast(num_video_frames, tf.int32) - window, 0), tf.float32)
  if num_clips == 1:
    fractions = tf.constant([0.5])
  else:
    fractions = tf.range(num_clips, dtype=tf.float32) / float(num_clips - 1)
  return tf.cast(tf.round(last * fractions), tf.int32)


def clip_frame_indices(start, num_frames: int, sampling_rate: int, num_video_frames) -> tf.Tensor:
  """``num_frames`` frame indices from ``start`` every ``sampling_rate`` frames.

  Indices past the end of a short video repeat its last frame (padding), so a
  short clip freezes rather than jumps back in time, and the audio span (which
  is zero past the end) stays aligned with it.
  """
  indices = tf.cast(start, tf.int32) + tf.range(num_frames, dtype=tf.int32) * sampling_rate
  return tf.clip_by_value(indices, 0, tf.maximum(tf.cast(num_video_frames, tf.int32) - 1, 0))


def audio_span(start_frame, window: int, fps: float, sample_rate: int, audio_start_sec):
  """``(first_sample, num_samples)`` of the audio covering frames ``[start, start + window)``.

  The span runs from the time of the first frame of the window to the time the
  window's last frame ends, ``window / fps`` seconds later, so audio and frames
  cover the same instants. ``first_sample`` may be negative or run past the end
  of the stored audio: :func:`slice_with_zero_padding` fills those parts with
  silence.
  """
  start_sec = tf.cast(start_frame, tf.float64) / fps
  offset = tf.cast(audio_start_sec, tf.float64)
  first = tf.cast(tf.round((start_sec - offset) * sample_rate), tf.int32)
  num_samples = int(round(window / fps * sample_rate))
  return first, num_samples


def slice_with_zero_padding(signal: tf.Tensor, first, length: int) -> tf.Tensor:
  """``signal[first:first + length]`` with zeros wherever that runs outside ``signal``."""
  first = tf.cast(first, tf.int32)
  size = tf.shape(signal)[0]
  low = tf.clip_by_value(first, 0, size)
  high = tf.clip_by_value(first + length, 0, size)
  before = tf.clip_by_value(low - first, 0, length)  # zeros ahead of the stored part
  after = length - before - (high - low)
  return tf.ensure_shape(tf.pad(signal[low:high], [[before, after]]), [length])


def hard_negative_start(start, num_video_frames, window: int, min_shift_frames: int,
                        uniform) -> tf.Tensor:
  """Start frame of an audio window shifted by at least ``min_shift_frames`` from ``start``.

  Picks uniformly among all windows inside the video that are at least the
  minimum shift away (before or after). When the video is too short for any,
  the window is shifted forward by exactly the minimum, past the end, where the
  audio is zero-padded (the AVS loss masks near-silent audio out).
  """
  start = tf.cast(start, tf.int32)
  last = tf.maximum(tf.cast(num_video_frames, tf.int32) - window, 0)
  before = tf.maximum(start - min_shift_frames + 1, 0)  # starts 0 .. start - min_shift
  after = tf.maximum(last - (start + min_shift_frames) + 1, 0)  # start + min_shift .. last
  total = before + after
  pick = tf.cast(tf.floor(tf.cast(uniform, tf.float32) * tf.cast(tf.maximum(total, 1), tf.float32)),
                 tf.int32)
  pick = tf.minimum(pick, tf.maximum(total - 1, 0))
  shifted = tf.where(pick < before, pick, start + min_shift_frames + (pick - before))
  return tf.where(total > 0, shifted, start + min_shift_frames)

"""Frame decoding and spatial augmentation (DMVR's DECODE and PREPROCESS phases).

Every random choice is made once per clip and applied to all of its frames,
so a clip is cropped, scaled and flipped consistently through time.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def train_crop_window(height, width, crop_size: int, short_side, uniform_y, uniform_x):
  """Crop window ``(y, x, h, w)`` in stored-frame pixels for a scale-jittered random crop.

  Scaling the frame so its short side is ``short_side`` and then taking a
  ``crop_size`` square is the same as taking a ``crop_size * s / short_side``
  square of the stored frame (``s`` = its short side) and resizing that to
  ``crop_size``. Working in stored pixels lets ``decode_and_crop_jpeg`` decode
  only the window instead of the whole frame.
  """
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  stored_short = tf.minimum(height, width)
  size = tf.cast(crop_size, tf.float32) * stored_short / tf.cast(short_side, tf.float32)
  size = tf.minimum(tf.round(size), stored_short)
  y = tf.floor(tf.cast(uniform_y, tf.float32) * (height - size + 1.0))
  x = tf.floor(tf.cast(uniform_x, tf.float32) * (width - size + 1.0))
  y = tf.minimum(y, height - size)
  x = tf.minimum(x, width - size)
  return tf.cast(tf.stack([y, x, size, size]), tf.int32)


def decode_jpegs(jpegs: tf.Tensor, crop_window=None, stack: bool = True) -> tf.Tensor:
  """Decodes ``[T]`` JPEG strings to uint8 ``[T, H, W, 3]``, optionally only ``crop_window``.

  With a static ``T`` (clips) the decodes are unrolled: independent ops that
  the executor runs concurrently, cheaper than a ``map_fn`` loop; ``stack=False``
  then returns the ``T`` frames as a list.
  """
  def decode(jpeg):
    if crop_window is None:
      return tf.io.decode_jpeg(jpeg, channels=3, dct_method='INTEGER_FAST')
    return tf.io.decode_and_crop_jpeg(jpeg, crop_window, channels=3, dct_method='INTEGER_FAST')
  count = jpegs.shape[0]
  if count is not None:
    frames = [decode(jpegs[i]) for i in range(count)]
    return tf.stack(frames) if stack else frames
  return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def resize_frames(frames: tf.Tensor, height, width) -> tf.Tensor:
  """Bilinear resize of uint8 ``[T, H, W, 3]`` to ``[T, height, width, 3]`` (float32)."""
  return tf.image.resize(frames, tf.stack([height, width]), method='bilinear', antialias=False)


def resize_short_side(frames: tf.Tensor, short_side: int) -> tf.Tensor:
  """Resizes ``[T, H, W, 3]`` so that ``min(H, W) == short_side``, keeping the aspect ratio."""
  shape = tf.shape(frames)
  height = tf.cast(shape[1], tf.float32)
  width = tf.cast(shape[2], tf.float32)
  scale = short_side / tf.minimum(height, width)
  new_h = tf.cast(tf.round(height * scale), tf.int32)
  new_w = tf.cast(tf.round(width * scale), tf.int32)
  return resize_frames(frames, new_h, new_w)


def spatial_crops(frames: tf.Tensor, crop_size: int, num_crops: int) -> tf.Tensor:
  """``num_crops`` squares along the long side of ``[T, H, W, C]`` -> ``[num_crops, T, c, c, C]``.

  Three crops are PySlowFast's left/centre/right (top/centre/bottom for portrait
  frames); one crop is the centre.
  """
  shape = tf.shape(frames)
  height, width = shape[1], shape[2]
  portrait = height > width
  long_side = tf.maximum(height, width)
  short_side = tf.minimum(height, width)
  if num_crops == 1:
    fractions = tf.constant([0.5])
  else:
    fractions = tf.range(num_crops, dtype=tf.float32) / float(num_crops - 1)
  along = tf.cast(tf.round(fractions * tf.cast(long_side - crop_size, tf.float32)), tf.int32)
  across = (short_side - crop_size) // 2
  crops = []
  for i in range(num_crops):
    y = tf.where(portrait, along[i], across)
    x = tf.where(portrait, across, along[i])
    crops.append(frames[:, y:y + crop_size, x:x + crop_size, :])
  return tf.stack(crops)


def normalize(frames: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
  """``(frames / 255 - mean) / std`` as float32 (frames in [0, 255])."""
  frames = tf.cast(frames, tf.float32)
  if len(set(mean)) == 1 and len(set(std)) == 1:
    # The usual statistics are equal across channels: a scalar multiply-add then spares
    # the CPU the broadcast of a per-channel vector.
    return frames * (1.0 / (255.0 * std[0])) - mean[0] / std[0]
  scale = tf.constant([1.0 / (255.0 * s) for s in std], tf.float32)
  shift = tf.constant([m / s for m, s in zip(mean, std)], tf.float32)
  return frames * scale - shift


def maybe_flip(frames: tf.Tensor, flip) -> tf.Tensor:
  """Mirrors every frame of ``[T, H, W, C]`` left-right when ``flip`` is true."""
  def mirror():
    # TensorFlow's CPU kernel reverses the middle axis of a 3-D view with far less work
    # than axis 2 of the 4-D tensor.
    shape = tf.shape(frames)
    flat = tf.reshape(frames, [-1, shape[2], shape[3]])
    return tf.reshape(tf.reverse(flat, axis=[1]), shape)
  return tf.cond(flip, mirror, lambda: frames)

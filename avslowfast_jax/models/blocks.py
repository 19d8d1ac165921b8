"""Residual bottleneck blocks and the pathway stems (video and spectrogram)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.conv import Conv

Dtype = Any
NormFactory = Callable[..., nn.Module]


def max_pool_hw(x: jax.Array) -> jax.Array:
  """The 1x3x3 stride-(1,2,2) max-pool of SlowFast's pool1 (padding 1 in H, W).

  Written as the maximum of the 9 strided window taps: the same values as a
  reduce_window, but its gradient is elementwise selects instead of XLA's
  select-and-scatter, which is slow on CPU.
  """
  n, t, h, w, c = x.shape
  ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  out = None
  for i in range(3):
    for j in range(3):
      tap = xp[:, :, i:i + 2 * (ho - 1) + 1:2, j:j + 2 * (wo - 1) + 1:2]
      out = tap if out is None else jnp.maximum(out, tap)
  return out


class Bottleneck(nn.Module):
  """ResNet bottleneck ``conv_a (kt x 1 x 1) -> conv_b -> conv_c (1x1)`` + shortcut.

  Works for video (3 spatial dims, kernels ``(kt, 1, 1)`` and ``(1, 3, 3)``) and
  spectrograms (2 dims, ``(1, 1)`` and ``(3, 3)``). ``factorize_b`` splits the
  spectrogram ``3x3`` into a time ``3x1`` then a frequency ``1x3`` conv, each
  with BN+ReLU, carrying the stride of its own axis (paper Table 1, res2/res3).

  Submodules: ``conv_a, bn_a, conv_b, bn_b, conv_c, bn_c`` (``conv_b_time,
  bn_b_time, conv_b_freq, bn_b_freq`` when factorised) and, where the shape
  changes, ``shortcut_conv, shortcut_bn``. ``bn_c`` is zero-initialised so the
  block starts as the identity.
  """
  inner: int
  features: int
  temporal_kernel: int = 1
  stride: Sequence[int] = (1, 1, 1)
  factorize_b: bool = False
  norm: NormFactory = None
  dtype: Dtype = jnp.float32
  lower: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    nd = x.ndim - 2
    conv = lambda f, k, s=None, name=None: Conv(f, k, s, dtype=self.dtype, lower=self.lower,
                                                 name=name)
    stride = tuple(self.stride)
    ones = (1,) * nd

    y = conv(self.inner, (self.temporal_kernel,) + ones[1:], name='conv_a')(x)
    y = nn.relu(self.norm(name='bn_a')(y, train))
    if self.factorize_b:
      assert nd == 2, 'factorised conv_b is for (time, frequency) inputs'
      y = conv(self.inner, (3, 1), (stride[0], 1), name='conv_b_time')(y)
      y = nn.relu(self.norm(name='bn_b_time')(y, train))
      y = conv(self.inner, (1, 3), (1, stride[1]), name='conv_b_freq')(y)
      y = nn.relu(self.norm(name='bn_b_freq')(y, train))
    else:
      k = (1, 3, 3) if nd == 3 else (3, 3)
      y = conv(self.inner, k, stride, name='conv_b')(y)
      y = nn.relu(self.norm(name='bn_b')(y, train))
    y = conv(self.features, ones, name='conv_c')(y)
    y = self.norm(name='bn_c', zero_init=True)(y, train)

    if x.shape[-1] != self.features or stride != ones:
      x = conv(self.features, ones, stride, name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x, train)
    return nn.relu(x.astype(y.dtype) + y)


class VideoStem(nn.Module):
  """``conv1`` (kt x 7 x 7, spatial stride 2) + BN + ReLU + 1x3x3 max-pool.

  Submodules ``conv``, ``bn``.
  """
  features: int
  temporal_kernel: int
  norm: NormFactory = None
  dtype: Dtype = jnp.float32
  lower: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = Conv(self.features, (self.temporal_kernel, 7, 7), (1, 2, 2), dtype=self.dtype,
             lower=self.lower, name='conv')(x)
    x = nn.relu(self.norm(name='bn')(x, train))
    return max_pool_hw(x)


class AudioStem(nn.Module):
  """The Audio pathway's ``[9x1, 1x9]`` stem: a time conv and a frequency conv
  on the log-mel input, summed, then BN + ReLU; stride 1 and no pooling.

  Submodules ``conv_time``, ``conv_freq``, ``bn``.
  """
  features: int
  norm: NormFactory = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    t = Conv(self.features, (9, 1), dtype=self.dtype, name='conv_time')(x)
    f = Conv(self.features, (1, 9), dtype=self.dtype, name='conv_freq')(x)
    return nn.relu(self.norm(name='bn')(t + f, train))


def conv_bn_relu(x: jax.Array, train: bool, features: int, kernel: Sequence[int],
                 strides: Sequence[int] | None, norm: NormFactory, dtype: Dtype,
                 conv_name: str, bn_name: str, lower: bool = True) -> jax.Array:
  """Conv + BN + ReLU with the given submodule names (laterals use it)."""
  x = Conv(features, kernel, strides, dtype=dtype, lower=lower, name=conv_name)(x)
  return nn.relu(norm(name=bn_name)(x, train))

"""Residual bottleneck blocks and the pathway stems (video and spectrogram).

Every block takes a ``conv`` and a ``norm`` factory (``Conv`` and
``GroupBatchNorm`` partials that the network builds once, with its dtype and
its :class:`~avslowfast_jax.models.ops.Ops`), so every layer of every pathway
is computed the same way.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
from flax import linen as nn

ModuleFactory = Callable[..., nn.Module]


class Bottleneck(nn.Module):
  """ResNet bottleneck ``conv_a (kt x 1 x 1) -> conv_b -> conv_c (1x1)`` + shortcut.

  Works for video (3 spatial dims, kernels ``(kt, 1, 1)`` and ``(1, 3, 3)``) and
  spectrograms (2 dims, ``(1, 1)`` and ``(3, 3)``). ``factorize_b`` splits the
  spectrogram ``3x3`` into a time ``3x1`` and a frequency ``1x3`` conv, each
  with BN+ReLU (paper Table 1, res2/res3): ``'parallel'``, both on the same
  input with the block's stride, summed; ``'serial'``, time then frequency,
  each carrying the stride of its own axis. ``dilation`` dilates conv_b
  spatially (AVA's res5). ``stride_time_in_a`` moves the time stride from
  conv_b to the 1x1 conv_a (PyTorchVideo's ResNet stages; the paper strides
  the centre filter).

  Submodules: ``conv_a, bn_a, conv_b, bn_b, conv_c, bn_c`` (``conv_b_time,
  bn_b_time, conv_b_freq, bn_b_freq`` when factorised) and, where the shape
  changes, ``shortcut_conv, shortcut_bn``. ``bn_c`` is zero-initialised so the
  block starts as the identity.
  """
  inner: int
  features: int
  conv: ModuleFactory
  norm: ModuleFactory
  temporal_kernel: int = 1
  stride: Sequence[int] = (1, 1, 1)
  factorize_b: str = ''  # '' | 'parallel' | 'serial'
  dilation: int = 1
  stride_time_in_a: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    nd = x.ndim - 2
    stride = tuple(self.stride)
    ones = (1,) * nd

    stride_a = ones
    if self.stride_time_in_a:
      stride_a, stride = (stride[0],) + ones[1:], (1,) + stride[1:]
    y = self.conv(self.inner, (self.temporal_kernel,) + ones[1:], stride_a, name='conv_a')(x)
    y = nn.relu(self.norm(name='bn_a')(y, train))
    if self.factorize_b == 'parallel':
      assert nd == 2, 'factorised conv_b is for (time, frequency) inputs'
      t = self.conv(self.inner, (3, 1), stride, name='conv_b_time')(y)
      f = self.conv(self.inner, (1, 3), stride, name='conv_b_freq')(y)
      y = (nn.relu(self.norm(name='bn_b_time')(t, train))
           + nn.relu(self.norm(name='bn_b_freq')(f, train)))
    elif self.factorize_b == 'serial':
      assert nd == 2, 'factorised conv_b is for (time, frequency) inputs'
      y = self.conv(self.inner, (3, 1), (stride[0], 1), name='conv_b_time')(y)
      y = nn.relu(self.norm(name='bn_b_time')(y, train))
      y = self.conv(self.inner, (1, 3), (1, stride[1]), name='conv_b_freq')(y)
      y = nn.relu(self.norm(name='bn_b_freq')(y, train))
    else:
      k = (1, 3, 3) if nd == 3 else (3, 3)
      dilation = None if self.dilation == 1 else (1,) * (nd - 2) + (self.dilation,) * 2
      y = self.conv(self.inner, k, stride, dilation, name='conv_b')(y)
      y = nn.relu(self.norm(name='bn_b')(y, train))
    y = self.conv(self.features, ones, name='conv_c')(y)
    y = self.norm(name='bn_c', zero_init=True)(y, train)

    stride = tuple(a * b for a, b in zip(stride_a, stride))
    if x.shape[-1] != self.features or stride != ones:
      x = self.conv(self.features, ones, stride, name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x, train)
    return nn.relu(x.astype(y.dtype) + y)


class VideoStem(nn.Module):
  """``conv1`` (kt x 7 x 7, spatial stride 2) + BN + ReLU + 1x3x3 max-pool.

  Submodules ``conv``, ``bn``.
  """
  features: int
  temporal_kernel: int
  conv: ModuleFactory
  norm: ModuleFactory
  max_pool: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = self.conv(self.features, (self.temporal_kernel, 7, 7), (1, 2, 2), name='conv')(x)
    x = nn.relu(self.norm(name='bn')(x, train))
    return self.max_pool(x)


class AudioStem(nn.Module):
  """The Audio pathway's ``[9x1, 1x9]`` stem: a time conv and a frequency conv
  on the log-mel input, summed, then BN + ReLU; stride 1 and no pooling.

  Submodules ``conv_time``, ``conv_freq``, ``bn``.
  """
  features: int
  conv: ModuleFactory
  norm: ModuleFactory

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    t = self.conv(self.features, (9, 1), name='conv_time')(x)
    f = self.conv(self.features, (1, 9), name='conv_freq')(x)
    return nn.relu(self.norm(name='bn')(t + f, train))


def conv_bn_relu(x: jax.Array, train: bool, features: int, kernel: Sequence[int],
                 strides: Sequence[int] | None, conv: ModuleFactory, norm: ModuleFactory,
                 conv_name: str, bn_name: str) -> jax.Array:
  """Conv + BN + ReLU with the given submodule names (laterals use it)."""
  x = conv(features, kernel, strides, name=conv_name)(x)
  return nn.relu(norm(name=bn_name)(x, train))

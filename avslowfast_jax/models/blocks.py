"""Residual bottleneck blocks and the pathway stems (video and spectrogram)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.conv import Conv

Dtype = Any
NormFactory = Callable[..., nn.Module]


def _pool_taps(x: jax.Array):
  """The 9 strided window taps of the 1x3x3 stride-(1,2,2) pool, padding 1 with -inf."""
  _, _, h, w, _ = x.shape
  ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  return [xp[:, :, i:i + 2 * (ho - 1) + 1:2, j:j + 2 * (wo - 1) + 1:2]
          for i in range(3) for j in range(3)]


def _max_pool_plain(x: jax.Array) -> jax.Array:
  out = None
  for tap in _pool_taps(x):
    out = tap if out is None else jnp.maximum(out, tap)
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_cpu(x: jax.Array, in_hw: tuple[int, int]) -> jax.Array:
  del in_hw
  return _max_pool_plain(x)


def _max_pool_cpu_fwd(x, in_hw):
  del in_hw
  out = idx = None
  for k, tap in enumerate(_pool_taps(x)):
    if out is None:
      out, idx = tap, jnp.zeros(tap.shape, jnp.int8)
    else:  # the first maximum in tap order wins, as PyTorch's max-pool
      better = tap > out
      out = jnp.where(better, tap, out)
      idx = jnp.where(better, jnp.int8(k), idx)
  return out, idx


def _max_pool_cpu_bwd(in_hw, idx, dy):
  """Routes ``dy`` to each window's maximum, one pass over the input's size.

  Padded input row ``2m + r`` receives from output row ``m`` (tap row ``r``)
  and, for even rows, from output row ``m - 1`` (tap row 2); the same for
  columns. So each of the four (row, column) parities of the input is a sum of
  at most four shifted masked copies of ``dy``, and the parities interleave
  into the gradient. Autodiff of the maximum chain instead pads each of the 9
  taps' gradients to the input's size and adds them up.
  """
  h, w = in_hw
  zero = jnp.zeros((), dy.dtype)
  phases = {}
  for r in (0, 1):
    for q in (0, 1):
      acc = None
      for a in ((0, 2) if r == 0 else (1,)):
        for b in ((0, 2) if q == 0 else (1,)):
          part = jnp.where(idx == 3 * a + b, dy, zero)
          part = jnp.pad(part, ((0, 0), (0, 0), (a // 2, 1 - a // 2), (b // 2, 1 - b // 2),
                                (0, 0)))
          acc = part if acc is None else acc + part
      phases[r, q] = acc  # [N, T, ho + 1, wo + 1, C]
  rows = [jnp.stack([phases[r, 0], phases[r, 1]], axis=-2) for r in (0, 1)]
  canvas = jnp.stack(rows, axis=3)  # [N, T, ho + 1, 2, wo + 1, 2, C]
  n, t, m, _, l, _, c = canvas.shape
  canvas = canvas.reshape(n, t, 2 * m, 2 * l, c)
  return (canvas[:, :, 1:1 + h, 1:1 + w],)


_max_pool_cpu.defvjp(_max_pool_cpu_fwd, _max_pool_cpu_bwd)


def max_pool_hw(x: jax.Array) -> jax.Array:
  """The 1x3x3 stride-(1,2,2) max-pool of SlowFast's pool1 (padding 1 in H, W).

  Written as the maximum of the 9 strided window taps: the same values as a
  reduce_window, but its gradient is elementwise selects instead of XLA's
  select-and-scatter, which is slow on CPU. On CPU the gradient is
  hand-written (:func:`_max_pool_cpu_bwd`): autodiff's nine input-sized pads
  were ~2.3 GB of memory traffic in the 8x8 R50 train step (estimated from the
  compiled HLO); fwd+bwd alone at the Slow/Fast stem shapes went from 25.5/61.5
  to 12.1/18.3 ms.
  """
  if jax.default_backend() == 'cpu':
    return _max_pool_cpu(x, (x.shape[2], x.shape[3]))
  return _max_pool_plain(x)


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

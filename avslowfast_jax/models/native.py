"""The model's heavy primitives as plain XLA operations, differentiated by autodiff.

This is what runs on GPU and TPU: one ``conv_general_dilated`` per convolution,
``reduce_window`` for the stem max-pool, BatchNorm statistics as written.
:mod:`avslowfast_jax.models.cpu` computes the same functions in forms that
XLA's CPU backend runs faster; :mod:`avslowfast_jax.models.ops` picks one.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
         padding: Sequence[tuple[int, int]],
         dilation: Optional[Sequence[int]] = None) -> jax.Array:
  """Channels-last convolution of ``x`` ``[N, *spatial, C]`` with ``kernel`` ``[*k, C, D]``."""
  nd = kernel.ndim - 2
  spatial = 'DHW'[3 - nd:]
  dn = jax.lax.conv_dimension_numbers(
      x.shape, kernel.shape, (f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'))
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=tuple(int(s) for s in strides),
      padding=tuple((int(lo), int(hi)) for lo, hi in padding),
      rhs_dilation=None if dilation is None else tuple(int(d) for d in dilation),
      dimension_numbers=dn)


def max_pool_hw(x: jax.Array) -> jax.Array:
  """SlowFast's pool1: 1x3x3 max-pool, stride (1, 2, 2), padding 1 in H and W."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3, 1), (1, 1, 2, 2, 1),
                               ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))


def group_stats(xg: jax.Array, epsilon: float, fast_variance: bool):
  """Per-group mean, variance and ``rsqrt(var + eps)`` of ``xg`` ``[G, g, ..., C]``.

  ``fast_variance``: one pass, ``E[x^2] - E[x]^2`` clamped at 0 (flax's
  BatchNorm default); otherwise two passes, ``E[(x - mean)^2]``. In fp32 the
  one-pass form loses digits only when a channel's mean is orders of magnitude
  above its spread.
  """
  axes = tuple(range(1, xg.ndim - 1))
  mean = jnp.mean(xg, axis=axes, keepdims=True)
  if fast_variance:
    mean_sq = jnp.mean(jnp.square(xg), axis=axes, keepdims=True)
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
  else:
    var = jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
  return mean, var, jax.lax.rsqrt(var + epsilon)


def group_normalize(xg: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                    fast_variance: bool):
  """``(y, mean, var)`` of group BatchNorm on fp32 ``xg`` ``[G, g, ..., C]``."""
  mean, var, inv = group_stats(xg, epsilon, fast_variance)
  return (xg - mean) * (inv * scale) + bias, mean, var

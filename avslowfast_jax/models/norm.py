"""BatchNorm whose statistics come from groups of ``group_size`` clips.

The paper trains with 8 clips per GPU and plain (per-GPU) BatchNorm, so each
normalisation sees 8 clips. Here the group is a property of the *global* batch:
the batch axis is reshaped to ``[N / g, g, ...]`` and every group is normalised
with its own statistics. Under ``jit`` with a sharded batch this is an ordinary
reshape, so the result is the same on 1 device or 512, however the batch is
split; XLA inserts whatever communication a group spanning devices needs.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.ops import NATIVE, Ops

Dtype = Any


def group_size_for(batch: int, group_size: int) -> int:
  """The group size actually used: ``group_size`` or, for a batch that it does
  not divide (small eval/test batches), the largest divisor of the batch below it."""
  g = max(1, min(group_size, batch))
  while batch % g:
    g -= 1
  return g


class GroupBatchNorm(nn.Module):
  """BatchNorm over channels-last inputs with per-group batch statistics.

  Variables: ``params/{scale, bias}`` and ``batch_stats/{mean, var}`` (fp32).
  Running statistics follow PyTorch: momentum on the old value (flax
  convention, 0.9 = PyTorch 0.1), unbiased variance; with several groups the
  update uses the statistics of the whole batch (mean of group means; mean of
  group variances plus the variance of group means), which is what an
  all-reduce of per-group statistics gives.

  Attributes:
    group_size: clips per normalisation group.
    momentum, epsilon: as in PyTorch (flax momentum convention).
    frozen: affine mode for fine-tuning: always running statistics, no update.
    zero_init: scale initialised to 0 (the last BN of a residual block).
    dtype: output dtype; statistics are always computed in fp32.
    fast_variance: one-pass variance ``E[x^2] - E[x]^2`` (``native.group_stats``).
    ops: the implementation of the normalisation (and its gradient).
  """
  group_size: int = 8
  momentum: float = 0.9
  epsilon: float = 1e-5
  frozen: bool = False
  zero_init: bool = False
  dtype: Dtype = jnp.float32
  fast_variance: bool = True
  ops: Ops = NATIVE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.zeros if self.zero_init else nn.initializers.ones,
                       (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))

    if not train or self.frozen:
      mean, var = ra_mean.value, ra_var.value
      inv = scale * jax.lax.rsqrt(var + self.epsilon)
      return (x * inv.astype(x.dtype) + (bias - mean * inv).astype(x.dtype)).astype(self.dtype)

    n = x.shape[0]
    g = group_size_for(n, self.group_size)
    xg = x.reshape(n // g, g, *x.shape[1:]).astype(jnp.float32)
    y, mean, var = self.ops.group_normalize(xg, scale, bias, self.epsilon, self.fast_variance)
    mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)

    if not self.is_initializing():
      count = math.prod(xg.shape[1:-1])
      group_mean = mean.reshape(n // g, c)
      group_var = var.reshape(n // g, c)
      batch_mean = jnp.mean(group_mean, axis=0)
      batch_var = jnp.mean(group_var, axis=0) + jnp.var(group_mean, axis=0)
      total = count * (n // g)
      unbiased = batch_var * total / max(total - 1, 1)
      m = self.momentum
      ra_mean.value = m * ra_mean.value + (1 - m) * batch_mean
      ra_var.value = m * ra_var.value + (1 - m) * unbiased
    return y.reshape(x.shape).astype(self.dtype)

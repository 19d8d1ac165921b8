"""Lateral connections: Fast->Slow, and Audio->visual (A->FS, A->F->S, AV Non-local)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.blocks import ModuleFactory, conv_bn_relu

Dtype = Any


class FastToSlow(nn.Module):
  """SlowFast's time-strided lateral: ``kt x 1 x 1`` conv with temporal stride
  ``alpha_f`` + BN + ReLU. The output is concatenated onto Slow by the caller.

  With padding ``kt // 2`` and stride ``alpha``, output step ``t`` is centred on
  Fast frame ``alpha * t``, the frame Slow sees at its step ``t``.
  Submodules ``conv``, ``bn``.
  """
  features: int
  alpha: int
  conv: ModuleFactory
  norm: ModuleFactory
  kernel_size: int = 5

  @nn.compact
  def __call__(self, fast: jax.Array, train: bool) -> jax.Array:
    return conv_bn_relu(fast, train, self.features, (self.kernel_size, 1, 1),
                        (self.alpha, 1, 1), self.conv, self.norm, 'conv', 'bn')


class AudioToVisual(nn.Module):
  """The audio side of an A->FS / A->F->S / AV-Non-local connection.

  Averages the audio feature ``[B, T_a, F, C]`` over frequency, then two
  temporal convs (kernel ``kernel_size``), each with BN + ReLU: the first to
  ``hidden`` channels, the second with stride ``T_a / target_length`` to
  ``features`` channels. Returns ``[B, target_length, features]``; output step
  ``t`` is centred on audio step ``t * stride``, i.e. at the same time in the
  clip as visual step ``t``. Submodules ``conv_a, bn_a, conv_b, bn_b``.
  """
  hidden: int
  features: int
  target_length: int
  conv: ModuleFactory
  norm: ModuleFactory
  kernel_size: int = 5

  @nn.compact
  def __call__(self, audio: jax.Array, train: bool) -> jax.Array:
    length = audio.shape[1]
    if length % self.target_length:
      raise ValueError(f'audio length {length} is not a multiple of the visual '
                       f'length {self.target_length}')
    x = jnp.mean(audio, axis=2)
    k = (self.kernel_size,)
    x = conv_bn_relu(x, train, self.hidden, k, None, self.conv, self.norm, 'conv_a', 'bn_a')
    return conv_bn_relu(x, train, self.features, k, (length // self.target_length,),
                        self.conv, self.norm, 'conv_b', 'bn_b')


class AudiovisualNonLocal(nn.Module):
  """Non-local fusion whose queries come from audio, keys and values from video.

  ``query``: ``[B, T, Cq]`` audio features aligned to the visual time steps (the
  output of :class:`AudioToVisual`); ``x``: the visual feature
  ``[B, T, H, W, C]``. Each audio query attends (dot-product, divided by the
  number of keys) over all visual positions (keys/values max-pooled 1x2x2); the
  attended visual summary is projected to ``C`` and added to every position of
  its time step, so audio selects what the visual stream receives. The final BN
  is zero-initialised (the block starts as the identity). ``keep`` scales the
  residual: 0 or 1 in training (DropPathway), the eval scale outside it.
  Submodules ``theta, phi, g, out, bn``.
  """
  inner: int
  conv: ModuleFactory
  norm: ModuleFactory
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, query: jax.Array, train: bool, keep=1.0) -> jax.Array:
    b, t, h, w, c = x.shape
    theta = nn.Dense(self.inner, dtype=self.dtype, name='theta')(query)
    pooled = pool_hw2(x)
    phi = self.conv(self.inner, (1, 1, 1), use_bias=True,
                    name='phi')(pooled).reshape(b, -1, self.inner)
    g = self.conv(self.inner, (1, 1, 1), use_bias=True,
                  name='g')(pooled).reshape(b, -1, self.inner)
    attn = jnp.einsum('bqc,bkc->bqk', theta, phi) / phi.shape[1]
    y = jnp.einsum('bqk,bkc->bqc', attn, g)
    y = nn.Dense(c, dtype=self.dtype, name='out')(y)
    y = self.norm(name='bn', zero_init=True)(y, train)
    return x + (keep * y)[:, :, None, None, :].astype(x.dtype)


def pool_hw2(x: jax.Array) -> jax.Array:
  """1x2x2 max-pool (stride 1x2x2) of the Non-local keys/values."""
  n, t = x.shape[:2]
  y = nn.max_pool(x.reshape(n * t, *x.shape[2:]), (2, 2), strides=(2, 2), padding='VALID')
  return y.reshape(n, t, *y.shape[1:])

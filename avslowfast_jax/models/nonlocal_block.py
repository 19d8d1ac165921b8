"""The Non-local block (Wang et al. 2018) used in res4 of the R101+NL models."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.blocks import ModuleFactory
from avslowfast_jax.models.fusion import pool_hw2

Dtype = Any


class NonLocal(nn.Module):
  """Space-time non-local block, ``x + BN(W_z(f(theta, phi) g))``.

  ``instantiation``: 'dot_product' (affinity divided by the number of keys, the
  spec's choice) or 'softmax' (scaled by ``inner ** -0.5``, as PySlowFast).
  Keys and values are max-pooled 1x2x2. The final BN is zero-initialised.
  Submodules ``theta, phi, g, out, bn`` (1x1x1 convs with bias).
  """
  inner: int
  conv: ModuleFactory
  norm: ModuleFactory
  instantiation: str = 'dot_product'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b, t, h, w, c = x.shape
    conv = lambda f, name: self.conv(f, (1, 1, 1), use_bias=True, name=name)
    theta = conv(self.inner, 'theta')(x).reshape(b, -1, self.inner)
    pooled = pool_hw2(x)
    phi = conv(self.inner, 'phi')(pooled).reshape(b, -1, self.inner)
    g = conv(self.inner, 'g')(pooled).reshape(b, -1, self.inner)
    affinity = jnp.einsum('bqc,bkc->bqk', theta, phi)
    if self.instantiation == 'softmax':
      attn = jax.nn.softmax(affinity.astype(jnp.float32) * self.inner ** -0.5, axis=-1)
      attn = attn.astype(self.dtype)
    elif self.instantiation == 'dot_product':
      attn = affinity / phi.shape[1]
    else:
      raise ValueError(f'unknown Non-local instantiation {self.instantiation!r}')
    y = jnp.einsum('bqk,bkc->bqc', attn, g).reshape(b, t, h, w, self.inner)
    y = conv(c, 'out')(y)
    y = self.norm(name='bn', zero_init=True)(y, train)
    return x + y

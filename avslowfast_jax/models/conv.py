"""Convolution over video (T, H, W) and spectrograms (T, F), channels-last.

The parameter is always the full kernel ``[*kernel_size, cin, cout]`` (5-D for
video), so a PyTorch ``Conv3d`` weight ``[cout, cin, kt, kh, kw]`` maps onto it
by one transpose. How the convolution is computed is the ``ops``'s business
(:mod:`avslowfast_jax.models.ops`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from avslowfast_jax.models.ops import NATIVE, Ops

Dtype = Any

# Kaiming normal, fan_out, as the PySlowFast/PyTorchVideo ResNets initialise convs.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class Conv(nn.Module):
  """Convolution with PyTorch-style symmetric padding ``dilation * (k // 2)``.

  Attributes:
    features: output channels.
    kernel_size: ``(kt, kh, kw)`` for video, ``(kt, kf)`` for spectrograms, ``(kt,)``.
    strides: same length as ``kernel_size`` (default 1).
    dilation: same length as ``kernel_size`` (default 1).
    use_bias: add a bias (the Non-local blocks' convs have one).
    dtype: compute dtype (the kernel parameter stays fp32).
    ops: the implementation of the convolution.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  dilation: Sequence[int] | None = None
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  ops: Ops = NATIVE
  kernel_init: Any = kaiming_fan_out

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ks = tuple(self.kernel_size)
    strides = tuple(self.strides) if self.strides else (1,) * len(ks)
    dilation = tuple(self.dilation) if self.dilation else (1,) * len(ks)
    kernel = self.param('kernel', self.kernel_init, (*ks, x.shape[-1], self.features),
                        jnp.float32)
    padding = [(d * (k // 2), d * (k // 2)) for k, d in zip(ks, dilation)]
    y = self.ops.conv(x.astype(self.dtype), kernel.astype(self.dtype), strides, padding,
                      None if all(d == 1 for d in dilation) else dilation)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y

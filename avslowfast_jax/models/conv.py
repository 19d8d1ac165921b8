"""Convolutions over video (T, H, W) and spectrograms (T, F), channels-last.

The parameter is always the full kernel ``[*kernel_size, cin, cout]`` (5-D for
video), so a PyTorch ``Conv3d`` weight ``[cout, cin, kt, kh, kw]`` maps onto it
by one transpose. How the convolution is *computed* is chosen at trace time:
XLA's CPU backend runs 3-D convolutions far slower than 2-D ones, and most
video kernels are degenerate (``1xkxk``, ``kx1x1``, ``1x1x1``), so those are
lowered to 2-D convolutions or matmuls over reshaped activations. These are the
same multiply-adds in a layout every backend handles well, so the lowering is
used on GPU/TPU as well. Only on CPU, a full ``kt x kh x kw`` kernel (the Fast
stem) becomes a sum of ``kt`` 2-D convolutions.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Dtype = Any

# Kaiming normal, fan_out, as the PySlowFast/PyTorchVideo ResNets initialise convs.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _strided(x: jax.Array, axis: int, stride: int) -> jax.Array:
  """Every ``stride``-th element along ``axis`` (a kernel-1 conv's stride)."""
  if stride == 1:
    return x
  index = [slice(None)] * x.ndim
  index[axis] = slice(None, None, stride)
  return x[tuple(index)]


def _conv(x, kernel, strides, padding):
  """Plain channels-last convolution with any number of spatial dims."""
  nd = kernel.ndim - 2
  spatial = ''.join('DHW'[3 - nd:])
  dn = jax.lax.conv_dimension_numbers(
      x.shape, kernel.shape, (f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'))
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=tuple(strides), padding=tuple(padding),
      dimension_numbers=dn)


def conv_nd(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
            padding: Sequence[tuple[int, int]], lower: bool = True) -> jax.Array:
  """Convolution of ``x`` ``[N, *spatial, C]`` with ``kernel`` ``[*k, C, D]``.

  With ``lower``, degenerate 3-D kernels are computed as 2-D convolutions or
  matmuls (same result, far faster on XLA CPU); otherwise one N-D convolution.
  """
  ks = kernel.shape[:-2]
  nd = len(ks)
  if lower and all(k == 1 for k in ks):
    # Pointwise: stride by slicing, then a matmul over channels.
    for axis, s in enumerate(strides):
      x = _strided(x, axis + 1, s)
    return jnp.einsum('...c,cd->...d', x, kernel.reshape(kernel.shape[-2:]))
  if lower and nd == 3:
    n, t, h, w, c = x.shape
    kt, kh, kw = ks
    st, sh, sw = strides
    if kt == 1:
      # 1xkxk: fold time into the batch, one 2-D conv over (H, W).
      x = _strided(x, 1, st)
      t = x.shape[1]
      y = _conv(x.reshape(n * t, h, w, c), kernel[0], (sh, sw), padding[1:])
      return y.reshape(n, t, *y.shape[1:])
    if kh == 1 and kw == 1:
      # kx1x1: merge (H, W) into one axis, one 2-D conv with a (kt, 1) kernel.
      x = _strided(_strided(x, 2, sh), 3, sw)
      h, w = x.shape[2:4]
      y = _conv(x.reshape(n, t, h * w, c), kernel[:, 0], (st, 1), (padding[0], (0, 0)))
      return y.reshape(n, y.shape[1], h, w, y.shape[-1])
    if jax.default_backend() == 'cpu':
      # kt x kh x kw (the Fast stem): XLA CPU's 3-D conv, and above all its
      # kernel gradient, is orders of magnitude slower than kt 2-D convs over
      # time-shifted slices, summed. GPUs/TPUs keep the native 3-D conv.
      xp = jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))
      t_out = (xp.shape[1] - kt) // st + 1
      out = None
      for dt in range(kt):
        xs = xp[:, dt:dt + (t_out - 1) * st + 1:st].reshape(n * t_out, h, w, c)
        y = _conv(xs, kernel[dt], (sh, sw), padding[1:])
        out = y if out is None else out + y
      return out.reshape(n, t_out, *out.shape[1:])
  return _conv(x, kernel, strides, padding)


class Conv(nn.Module):
  """Bias-free convolution with PyTorch-style symmetric ``k // 2`` padding.

  Attributes:
    features: output channels.
    kernel_size: ``(kt, kh, kw)`` for video or ``(kt, kf)`` for spectrograms.
    strides: same length as ``kernel_size``.
    dtype: compute dtype (the kernel parameter stays fp32).
    lower: lower degenerate kernels to 2-D convs / matmuls (see module doc).
    use_bias: add a bias (the Non-local blocks' convs have one).
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  dtype: Dtype = jnp.float32
  lower: bool = True
  use_bias: bool = False
  kernel_init: Any = kaiming_fan_out

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ks = tuple(self.kernel_size)
    strides = tuple(self.strides) if self.strides else (1,) * len(ks)
    kernel = self.param('kernel', self.kernel_init, (*ks, x.shape[-1], self.features),
                        jnp.float32)
    padding = [(k // 2, k // 2) for k in ks]
    y = conv_nd(x.astype(self.dtype), kernel.astype(self.dtype), strides, padding,
                lower=self.lower)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y

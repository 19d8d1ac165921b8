"""Earlier CPU lowerings of ``avslowfast_jax.models.conv``, to re-measure against.

Each function switches one lowering back to its previous form (until the
process ends, or ``restore()``); ``ab_train_step.py`` runs them as variants.
The values are the same either way (tests/test_model_lowering.py); only the
computation differs.
"""

from __future__ import annotations

from avslowfast_jax.models import conv

_SAVED = {name: getattr(conv, name) for name in (
    '_one_axis_taps_as_outputs', '_temporal_taps_as_outputs', '_matmul_kernel_grad',
    '_PHASE_SPLIT_MAX_CIN')}


def restore():
  """Every lowering back to the current one."""
  for name, value in _SAVED.items():
    setattr(conv, name, value)


def one_axis_as_2d_conv():
  """kx1x1 / 3x1 / 1x3 stride-1 convs as 2-D convs (before the fifth session)."""

  def lowered(x, kernel, axis, padding):
    k, cin, cout = kernel.shape
    nd = x.ndim - 2
    ks, pads = [1] * nd, [(0, 0)] * nd
    ks[axis - 1], pads[axis - 1] = k, tuple(padding)
    kern = kernel.reshape(*ks, cin, cout)
    if nd == 3:  # video kx1x1: (H, W) merged, a (kt, 1) 2-D conv
      n, t, h, w, c = x.shape
      y = conv._conv(x.reshape(n, t, h * w, c), kern[:, 0], (1, 1), (pads[0], (0, 0)))
      return y.reshape(n, y.shape[1], h, w, cout)
    return conv._conv(x, kern, (1,) * nd, tuple(pads), video=False)

  conv._one_axis_taps_as_outputs = lowered


def fast_stem_as_sum_of_2d_convs():
  """The Fast stem as kt 2-D convs over time-shifted frames, summed."""

  def lowered(x, kernel, spatial_strides, padding):
    n, t, h, w, c = x.shape
    xp = conv.jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))
    out = None
    for dt in range(kernel.shape[0]):
      y = conv._conv(xp[:, dt:dt + t].reshape(n * t, h, w, c), kernel[dt],
                     tuple(spatial_strides), tuple(padding[1:]))
      out = y if out is None else out + y
    return out.reshape(n, t, *out.shape[1:])

  conv._temporal_taps_as_outputs = lowered


def kxk_kernel_grad_needs_28x28():
  """Wide kxk convs take im2col kernel gradients only with >= 28x28 outputs per frame."""
  current = _SAVED['_matmul_kernel_grad']

  def rule(kernel_shape, video):
    ks, (cin, cout) = kernel_shape[:-2], kernel_shape[-2:]
    if video and sum(k > 1 for k in ks) > 1 and cin > 4 and cin * cout >= 64 * 64:
      # Called without the output size: the 8x8 R50's 14x14 and 7x7 stages are
      # the ones with 256 or more input channels.
      return cin < 256
    return current(kernel_shape, video)

  conv._matmul_kernel_grad = rule


def no_phase_split():
  """Strided RGB-stem kernel gradients from strided slices of the input."""
  conv._PHASE_SPLIT_MAX_CIN = 0

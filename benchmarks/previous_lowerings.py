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
    if nd == 3:  # video kx1x1 (a stride along the kernel never reaches here)
      return conv._kx1x1_as_2d_conv(x, kern, (1, 1, 1), pads)
    return conv._conv(x, kern, (1,) * nd, tuple(pads), video=False)

  conv._one_axis_taps_as_outputs = lowered


def fast_stem_as_sum_of_2d_convs():
  """The Fast stem as kt 2-D convs over time-shifted frames, summed."""
  conv._temporal_taps_as_outputs = lambda x, kernel, spatial_strides, padding: (
      conv._sum_of_2d_convs(x, kernel, (1, *spatial_strides), padding))


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

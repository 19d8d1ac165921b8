"""Convolutions over video (T, H, W) and spectrograms (T, F), channels-last.

The parameter is always the full kernel ``[*kernel_size, cin, cout]`` (5-D for
video), so a PyTorch ``Conv3d`` weight ``[cout, cin, kt, kh, kw]`` maps onto it
by one transpose. How the convolution is *computed* is chosen at trace time:
XLA's CPU backend runs 3-D convolutions far slower than 2-D ones, and most
video kernels are degenerate (``1xkxk``, ``kx1x1``, ``1x1x1``), so those are
lowered to 2-D convolutions or matmuls over reshaped activations. These are the
same multiply-adds in a layout every backend handles well, so the lowering is
used on GPU/TPU as well. Only on CPU, kernels are computed with their taps as
extra output channels, then summed over shifted positions: a stride-1
one-axis kernel (``kx1x1``, the spectrogram's ``3x1`` / ``1x3``) as one
matmul, a full ``kt x kh x kw`` kernel (the Fast stem) as one 2-D convolution.

Also only on CPU, convolutions and 1x1 convs carry ``custom_vjp`` rules whose
kernel gradients are matmuls (XLA CPU's own kernel-gradient convolutions were
most of the train step's time; see :func:`_matmul_kernel_grad`). The values
are those of plain autodiff (tests/test_model_lowering.py).
"""

from __future__ import annotations

import functools
import itertools
import math
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


def _conv_plain(x, kernel, strides, padding):
  """Plain channels-last convolution with any number of spatial dims."""
  nd = kernel.ndim - 2
  spatial = ''.join('DHW'[3 - nd:])
  dn = jax.lax.conv_dimension_numbers(
      x.shape, kernel.shape, (f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'))
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=tuple(strides), padding=tuple(padding),
      dimension_numbers=dn)


def _matmul_kernel_grad(kernel_shape, video: bool) -> bool:
  """Whether this conv's kernel gradient should be computed as matmuls.

  Only on CPU. XLA CPU computes a conv's kernel gradient as another
  convolution whose "features" are the batch (N = 2) and whose window is the
  whole output map (e.g. 8 x 784). That is fast for a few-channel kxk conv
  (Fast res2-res4) but 5-10x slower than matmuls for temporal (kx1) and wide
  convs: in the 8x8 R50 train step the Slow res4/res5 ``3x1x1`` conv_a alone
  took ~4 s. Inside ``lax.cond`` (the audio pathway under DropPathway) every
  such kernel gradient falls back to a naive loop, ~50x slower still, so
  spectrogram (non-video) convs always use matmuls, and so do temporal video
  convs (below). For ``kxk`` convs the thresholds follow what was measured on
  the 8x8 R50 shapes (docs/models.md, CPU speed).
  GPUs/TPUs have fast native kernel-gradient convs and keep plain autodiff.
  """
  if jax.default_backend() != 'cpu':
    return False
  if not video:
    return True
  ks = kernel_shape[:-2]
  cin, cout = kernel_shape[-2:]
  if sum(k > 1 for k in ks) <= 1:
    # Temporal (kx1x1) convs that are still convs (the strided Fast->Slow
    # laterals; stride-1 ones are matmuls, _one_axis_taps_as_outputs): XLA's
    # form needs the input transposed to
    # [C, T, HW, N], and XLA fuses that transpose with the BN/ReLU/residual
    # chain that produced the input, recomputing it in transposed order
    # (~0.4 s for one Fast res2 conv_a input); the matmuls read it as it is.
    return True
  if cin <= 4:
    # The stems (RGB input). The Slow stem (7x7, 64 out) measured 120 ms with
    # im2col against 176 ms for XLA's (267 ms inside the train step). A 7x7
    # with 8 outputs (a slice of the Fast stem) is faster in XLA's form; the
    # Fast stem as one conv with its 5 temporal taps as 40 outputs
    # (_temporal_taps_as_outputs) took 339 ms forward plus kernel gradient with
    # im2col against 906 ms with XLA's.
    return cout >= 32
  # Measured alone, with avslowfast_jax.host_memory's settings, XLA's form
  # against im2col: Slow res2 (64 ch, 56x56) 99-120 vs 64 ms, Slow res3 (128 ch,
  # 28x28) 64 vs 32 ms; Slow res4 (256 ch, 14x14) 17 vs 19 ms, Slow res5 equal;
  # the Fast pathway's narrow convs (8-64 ch) are faster in XLA's form. Inside
  # the train step Slow res4/res5 are faster with im2col too (A/B in one
  # process: 4.69 against 4.84 s per step): XLA's form needs the input
  # transposed, and that copy is fused with the BN/ReLU of the temporal conv
  # before it, recomputing its shifted sum (_shift_sum) in transposed order.
  return cin * cout >= 64 * 64


# Budget (elements) of one im2col chunk in the kernel gradient: big enough that
# each dot has a long contraction and many output rows, small enough that
# the patches of the stems (Cin = 3, 49 taps) do not need gigabytes.
_PATCH_BUDGET = 1 << 24


def _tap_slices(xp, tap, out_spatial, strides):
  """The input window of kernel tap ``tap``: ``xp[:, tap + s * o, :]`` for all o."""
  idx = [slice(None)]
  for t, o, s in zip(tap, out_spatial, strides):
    idx.append(slice(t, t + (o - 1) * s + 1, s))
  idx.append(slice(None))
  return xp[tuple(idx)]


# Strided convs with at most this many input channels take their kernel
# gradient on the input split into stride phases (_phase_split_kernel_grad).
_PHASE_SPLIT_MAX_CIN = 4


def _phase_split_kernel_grad(x, dy, kernel_shape, strides, padding):
  """:func:`conv_kernel_grad` of a strided conv, on the input split into phases.

  ``x`` (padded) is rearranged space-to-depth: position ``s * b + r`` of each
  axis becomes block ``b``, phase ``r``, and the phases join the channels. The
  strided ``k``-tap conv is then a stride-1 conv with ``ceil(k / s)`` taps over
  ``s^d * Cin`` channels (the kernel zero-padded to a multiple of ``s``), whose
  im2col slices are contiguous in the input: for the RGB stems (stride 2,
  3 channels) these copies, not the matmuls, were the kernel gradient's cost.
  """
  nd = len(strides)
  ks = tuple(kernel_shape[:nd])
  cin, cout = kernel_shape[-2:]
  out = dy.shape[1:1 + nd]
  blocks = [o + -(-k // s) - 1 for o, k, s in zip(out, ks, strides)]
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  # Pad (zeros meet the kernel's padding taps) or crop (never reached) each
  # axis to exactly ``blocks * stride``.
  for d, (b, s) in enumerate(zip(blocks, strides)):
    size = xp.shape[1 + d]
    if size < b * s:
      widths = [(0, 0)] * xp.ndim
      widths[1 + d] = (0, b * s - size)
      xp = jnp.pad(xp, widths)
    elif size > b * s:
      xp = jax.lax.slice_in_dim(xp, 0, b * s, axis=1 + d)
  n = x.shape[0]
  split = xp.reshape(n, *itertools.chain.from_iterable(zip(blocks, strides)), cin)
  order = [0] + [1 + 2 * d for d in range(nd)] + [2 + 2 * d for d in range(nd)] + [1 + 2 * nd]
  xs = split.transpose(order).reshape(n, *blocks, math.prod(strides) * cin)
  kb = [-(-k // s) for k, s in zip(ks, strides)]
  dk = conv_kernel_grad(xs, dy, (*kb, math.prod(strides) * cin, cout), (1,) * nd,
                        ((0, 0),) * nd)
  # [*kb, *strides, Cin, Cout] -> [kb_1, s_1, ..., kb_d, s_d, Cin, Cout] -> crop.
  dk = dk.reshape(*kb, *strides, cin, cout)
  order = [i for d in range(nd) for i in (d, nd + d)] + [2 * nd, 2 * nd + 1]
  dk = dk.transpose(order).reshape(*(b * s for b, s in zip(kb, strides)), cin, cout)
  return dk[tuple(slice(0, k) for k in ks)]


def conv_kernel_grad(x, dy, kernel_shape, strides, padding):
  """Gradient of ``_conv_plain(x, k, strides, padding)`` w.r.t. ``k``, given ``dy``.

  ``dk[tap] = sum_{n, o} xpad[n, tap + s * o] (x) dy[n, o]``: for each kernel tap
  a matmul ``[M, Cin]^T @ [M, Cout]`` over all ``M`` output positions. Taps are
  concatenated along channels (im2col) in chunks of at most ``_PATCH_BUDGET``
  elements, so each chunk is one large matmul, which XLA CPU runs at full speed.
  """
  ks = tuple(kernel_shape[:-2])
  cin, cout = kernel_shape[-2:]
  if any(s > 1 for s in strides) and cin <= _PHASE_SPLIT_MAX_CIN:
    return _phase_split_kernel_grad(x, dy, kernel_shape, strides, padding)
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_spatial = dy.shape[1:-1]
  m = math.prod(dy.shape[:-1])
  dy2 = dy.reshape(m, cout)
  taps = list(itertools.product(*(range(k) for k in ks)))
  # Wide inputs: one matmul per tap; narrow ones: enough taps per matmul for
  # a contraction of ~256 channels (cheaper than many skinny matmuls).
  per_chunk = max(1, min(256 // cin, _PATCH_BUDGET // max(1, m * cin)))
  parts = []
  for i in range(0, len(taps), per_chunk):
    chunk = [_tap_slices(xp, t, out_spatial, strides) for t in taps[i:i + per_chunk]]
    patches = chunk[0] if len(chunk) == 1 else jnp.concatenate(chunk, axis=-1)
    parts.append(jax.lax.dot_general(patches.reshape(m, -1), dy2, (((0,), (0,)), ((), ())),
                                     preferred_element_type=jnp.float32))
  dk = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)
  return dk.reshape(kernel_shape).astype(dy.dtype)


def strided_conv_input_grad(dy, kernel, x_shape, strides, padding):
  """Gradient of ``_conv_plain(x, kernel, strides, padding)`` w.r.t. ``x``, given ``dy``.

  For a strided conv, XLA CPU computes the input gradient as one convolution
  over ``dy`` dilated by the stride (``lhs_dilate``), which it does not hand to
  its fast convolution library: Slow res3's stride-2 ``3x3`` took 187 ms of a
  train step (56 ms alone) that this form does in 37 ms. Split ``x`` by
  position modulo the stride (its *phases*): phase ``r`` of axis ``d`` only
  receives kernel taps ``k`` with ``k = r + pad_lo (mod s)``, from ``dy`` at
  offset ``(r + pad_lo - k) / s``. So each phase is a stride-1 convolution of
  ``dy`` with those taps (a sub-kernel, channels transposed), and the phases
  interleave back into ``dx``.
  """
  nd = len(strides)
  ks = kernel.shape[:nd]
  n_in = x_shape[1:1 + nd]
  n_out = dy.shape[1:1 + nd]
  cin = kernel.shape[-2]
  # Per axis and phase: the taps (ascending dy offset) and the first offset.
  phase_taps = []
  for d in range(nd):
    s, lo = strides[d], padding[d][0]
    per_axis = []
    for r in range(s):
      taps = sorted((k for k in range(ks[d]) if (k - r - lo) % s == 0), reverse=True)
      per_axis.append(taps)
    phase_taps.append(per_axis)
  sizes = [-(-n // s) for n, s in zip(n_in, strides)]  # positions per phase, rounded up
  outs = {}
  for phase in itertools.product(*(range(s) for s in strides)):
    taps = [phase_taps[d][phase[d]] for d in range(nd)]
    if any(not t for t in taps):
      outs[phase] = None
      continue
    sub = kernel
    for d, t in enumerate(taps):
      sub = jnp.take(sub, jnp.asarray(t), axis=d)
    sub = jnp.swapaxes(sub, -1, -2)  # [*k', Cout, Cin]
    pads, starts = [], []
    for d in range(nd):
      r, s, lo = phase[d], strides[d], padding[d][0]
      first = (r + lo - taps[d][0]) // s  # offset of the first tap (the smallest)
      low = max(0, -first)
      start = first + low
      high = max(0, start + sizes[d] + len(taps[d]) - 1 - n_out[d] - low)
      pads.append((low, high))
      starts.append(start)
    src = jnp.pad(dy, ((0, 0), *pads, (0, 0)))
    index = (slice(None),) + tuple(slice(st, st + sz + len(t) - 1)
                                    for st, sz, t in zip(starts, sizes, taps)) + (slice(None),)
    outs[phase] = _conv_plain(src[index], sub, (1,) * nd, ((0, 0),) * nd)
  # Interleave: dx[n, s*p + r] = outs[r][n, p], then crop to the input size.
  zeros = jnp.zeros((dy.shape[0], *sizes, cin), dy.dtype)
  stacked = jnp.stack([zeros if outs[ph] is None else outs[ph]
                       for ph in itertools.product(*(range(s) for s in strides))], axis=1)
  stacked = stacked.reshape(dy.shape[0], *strides, *sizes, cin)
  # [N, r_1..r_nd, p_1..p_nd, C] -> [N, p_1, r_1, ..., p_nd, r_nd, C]
  order = [0] + [i for d in range(nd) for i in (1 + nd + d, 1 + d)] + [1 + 2 * nd]
  dx = stacked.transpose(order).reshape(dy.shape[0], *(s * z for s, z in zip(strides, sizes)),
                                        cin)
  return dx[(slice(None),) + tuple(slice(0, n) for n in n_in) + (slice(None),)]


def conv_input_grad(dy, kernel, padding):
  """Gradient of a stride-1 ``_conv_plain(x, kernel, 1, padding)`` w.r.t. ``x``, given ``dy``.

  The forward convolution of ``dy`` with the kernel flipped in space and its
  channel axes swapped, padded by ``k - 1 - pad``. Autodiff emits the same
  convolution with the flip and swap left to XLA, which rewrites it into this
  form in the entry computation but not inside ``lax.cond`` branches (the
  audio pathway under DropPathway), where the convolution then misses XLA
  CPU's fast library (~17-20 ms for each audio res2 conv's input gradient;
  with this form the audio pathway's backward went from 424 to 243 ms of op
  time in a profiled 8x8 R50 train step).
  """
  nd = kernel.ndim - 2
  ks = kernel.shape[:nd]
  flipped = jnp.swapaxes(jnp.flip(kernel, axis=tuple(range(nd))), -1, -2)
  pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(ks, padding))
  return _conv_plain(dy, flipped, (1,) * nd, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_cpu(x, kernel, strides, padding, matmul_grad=True):
  return _conv_plain(x, kernel, strides, padding)


def _conv_cpu_fwd(x, kernel, strides, padding, matmul_grad):
  return _conv_plain(x, kernel, strides, padding), (x, kernel)


def _conv_cpu_bwd(strides, padding, matmul_grad, res, dy):
  x, kernel = res
  # Materialise x and dy, so that the transposed copies both kernel-gradient
  # forms need are plain copies rather than fused into the many-input
  # BatchNorm fusions that produce x and dy (which then read every input in
  # transposed order, several times slower). This works for dy; XLA's layout
  # assignment can still hand the transposed layout of x back to its producer.
  x, dy = jax.lax.optimization_barrier((x, dy))
  if any(s > 1 for s in strides):
    dx = strided_conv_input_grad(dy, kernel, x.shape, strides, padding)
  else:
    dx = conv_input_grad(dy, kernel, padding)
  if matmul_grad:
    dk = conv_kernel_grad(x, dy, kernel.shape, strides, padding)
  else:
    _, vjp_k = jax.vjp(lambda k_: _conv_plain(x, k_, strides, padding), kernel)
    (dk,) = vjp_k(dy)
  return dx, dk.astype(kernel.dtype)


_conv_cpu.defvjp(_conv_cpu_fwd, _conv_cpu_bwd)


def _conv(x, kernel, strides, padding, video=True):
  """Channels-last convolution; on CPU with the custom VJP above."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if jax.default_backend() == 'cpu':
    return _conv_cpu(x, kernel, strides, padding, _matmul_kernel_grad(kernel.shape, video))
  return _conv_plain(x, kernel, strides, padding)


@jax.custom_vjp
def _pointwise_cpu(x, k):
  """``x @ k`` over the channel axis (a 1x1 conv), with a CPU-friendly VJP."""
  return jnp.einsum('...c,cd->...d', x, k)


def _pointwise_cpu_fwd(x, k):
  return _pointwise_cpu(x, k), (x, k)


def _pointwise_cpu_bwd(res, dy):
  x, k = res
  cin, cout = k.shape
  # Materialise x and dy: otherwise XLA fuses the transposed copy the
  # kernel-gradient matmul needs into the (many-input) BatchNorm fusion that
  # produces it, which then reads all its inputs in transposed order: up to
  # ~10x slower than a plain copy.
  x2, dy2 = jax.lax.optimization_barrier((x.reshape(-1, cin), dy.reshape(-1, cout)))
  dx = (dy2 @ k.T).reshape(x.shape)
  # The contraction runs over all positions M, so XLA CPU transposes the
  # operand on the left to [C, M]: make it the one with fewer channels.
  if cin <= cout:
    dk = jax.lax.dot_general(x2, dy2, (((0,), (0,)), ((), ())))
  else:
    dk = jax.lax.dot_general(dy2, x2, (((0,), (0,)), ((), ()))).T
  return dx, dk


_pointwise_cpu.defvjp(_pointwise_cpu_fwd, _pointwise_cpu_bwd)


def _shift_sum(y, kt, d, padding, axis):
  """``out[o] = sum_dt y[o + dt - lo][..., dt*d:(dt+1)*d]`` along ``axis``, zero outside.

  The second half of a stride-1 conv computed with its ``kt`` taps as extra
  output channels (``y``: every input position times every tap's kernel).
  Only the narrow per-tap slices are padded: padding all of ``y`` first made
  XLA write a padded copy of it (144 MB for the Fast stem of the 8x8 R50).
  """
  lo, hi = padding
  t = y.shape[axis]
  t_out = t + lo + hi - kt + 1
  out = None
  for dt in range(kt):
    first = dt - lo
    begin, end = max(first, 0), min(first + t_out, t)
    if end <= begin:
      continue  # this tap only ever meets padding
    part = jax.lax.slice_in_dim(y, begin, end, axis=axis)[..., dt * d:(dt + 1) * d]
    widths = [(0, 0)] * y.ndim
    widths[axis] = (begin - first, first + t_out - end)
    part = jnp.pad(part, widths)
    out = part if out is None else out + part
  if out is None:
    shape = list(y.shape)
    shape[axis], shape[-1] = t_out, d
    return jnp.zeros(shape, y.dtype)
  return out


def _one_axis_taps_as_outputs(x, kernel, axis, padding):
  """A stride-1 conv along one ``axis`` (kernel ``[k, C, D]``) as one matmul.

  ``x @ [C, k * D]`` (every tap's kernel side by side) and a shifted sum of
  the ``k`` slices. On CPU this replaces the ``kx1x1`` temporal convs (and the
  spectrogram's ``3x1`` / ``1x3``): measured alone (docs/models.md, fifth
  session), forward and backward of Slow res5's ``3x1x1`` conv_a took 42 ms
  against 76 ms as a 2-D conv, Fast res3's 5.2 against 18.3 ms. The kernel
  gradient is that of the pointwise matmul (:func:`_pointwise_cpu`); the
  input gradient is one matmul with all taps instead of a convolution.
  """
  k, cin, cout = kernel.shape
  wide = jnp.moveaxis(kernel, 0, 1).reshape(cin, k * cout)
  y = _pointwise_cpu(x, wide)
  return _shift_sum(y, k, cout, padding, axis)


def _temporal_taps_as_outputs(x, kernel, spatial_strides, padding):
  """A ``kt x kh x kw`` conv with time stride 1 as one 2-D conv with ``kt * D`` outputs.

  Every frame goes through the 2-D conv with all ``kt`` temporal taps' kernels
  side by side (``[kh, kw, C, kt * D]``); output frame ``t`` then sums slice
  ``dt`` of frame ``t + dt - pad``. The same multiply-adds as ``kt`` 2-D convs
  with ``D`` outputs over shifted frames, but one wide conv instead of several
  narrow ones: for the Fast stem (``5x7x7``, 3 -> 8 channels) on the 8x8 R50's
  64 frames at 224x224, measured alone (docs/models.md, fifth session): 123 ms
  forward against 262 ms, and 339 ms forward plus kernel gradient against 543 ms.
  """
  n, t, h, w, c = x.shape
  kt, kh, kw, _, d = kernel.shape
  wide = jnp.moveaxis(kernel, 0, -2).reshape(kh, kw, c, kt * d)
  z = _conv_cpu(x.reshape(n * t, h, w, c), wide, tuple(spatial_strides), tuple(padding[1:]),
                _matmul_kernel_grad(wide.shape, True))
  return _shift_sum(z.reshape(n, t, *z.shape[1:]), kt, d, padding[0], 1)


def _kx1x1_as_2d_conv(x, kernel, strides, padding):
  """A ``kt x 1 x 1`` video conv: (H, W) merged into one axis, one 2-D ``(kt, 1)`` conv."""
  n, t, _, _, c = x.shape
  st, sh, sw = strides
  x = _strided(_strided(x, 2, sh), 3, sw)
  h, w = x.shape[2:4]
  y = _conv(x.reshape(n, t, h * w, c), kernel[:, 0], (st, 1), (tuple(padding[0]), (0, 0)))
  return y.reshape(n, y.shape[1], h, w, y.shape[-1])


def _sum_of_2d_convs(x, kernel, strides, padding):
  """A ``kt x kh x kw`` video conv as ``kt`` 2-D convs over time-shifted frames, summed."""
  n, _, h, w, c = x.shape
  kt = kernel.shape[0]
  st, sh, sw = strides
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), (0, 0), (0, 0), (0, 0)))
  t_out = (xp.shape[1] - kt) // st + 1
  out = None
  for dt in range(kt):
    xs = xp[:, dt:dt + (t_out - 1) * st + 1:st].reshape(n * t_out, h, w, c)
    y = _conv(xs, kernel[dt], (sh, sw), tuple(padding[1:]))
    out = y if out is None else out + y
  return out.reshape(n, t_out, *out.shape[1:])


def conv_nd(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
            padding: Sequence[tuple[int, int]], lower: bool = True) -> jax.Array:
  """Convolution of ``x`` ``[N, *spatial, C]`` with ``kernel`` ``[*k, C, D]``.

  With ``lower``, degenerate 3-D kernels are computed as 2-D convolutions or
  matmuls (same result, far faster on XLA CPU); otherwise one N-D convolution.
  """
  ks = kernel.shape[:-2]
  nd = len(ks)
  long_axes = [a for a, k in enumerate(ks) if k > 1]
  if (lower and jax.default_backend() == 'cpu' and len(long_axes) == 1
      and strides[long_axes[0]] == 1):
    # One kernel axis longer than 1, stride 1 along it (kx1x1 temporal convs,
    # the spectrogram's 3x1 / 1x3): one matmul with the taps as outputs.
    a = long_axes[0]
    for axis, s in enumerate(strides):
      x = _strided(x, axis + 1, s)
    return _one_axis_taps_as_outputs(x, kernel.reshape(ks[a], *kernel.shape[-2:]), a + 1,
                                     tuple(padding[a]))
  if lower and all(k == 1 for k in ks):
    # Pointwise: stride by slicing, then a matmul over channels.
    for axis, s in enumerate(strides):
      x = _strided(x, axis + 1, s)
    if jax.default_backend() == 'cpu':
      return _pointwise_cpu(x, kernel.reshape(kernel.shape[-2:]))
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
      return _kx1x1_as_2d_conv(x, kernel, strides, padding)
    if jax.default_backend() == 'cpu' and st == 1:
      # kt x kh x kw (the Fast stem): XLA CPU's 3-D conv, and above all its
      # kernel gradient, is orders of magnitude slower than 2-D convs. GPUs/TPUs
      # keep the native 3-D conv.
      return _temporal_taps_as_outputs(x, kernel, (sh, sw), padding)
    if jax.default_backend() == 'cpu':
      return _sum_of_2d_convs(x, kernel, strides, padding)
  return _conv(x, kernel, strides, padding, video=nd == 3)


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

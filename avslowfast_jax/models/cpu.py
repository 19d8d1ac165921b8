"""The model's heavy primitives in the forms XLA's CPU backend runs fastest.

Every XLA-CPU-specific rule of the project lives here, behind three functions
with the signatures of :mod:`avslowfast_jax.models.native`: :func:`conv`,
:func:`max_pool_hw` and :func:`group_normalize`. They compute the same values
and gradients as the native forms (tests/test_model_lowering.py checks each
rule against autodiff of the native one); only the computation differs.
:mod:`avslowfast_jax.models.ops` chooses them on the CPU backend; nothing else
imports this module. docs/cpu.md says what each rule gains and the command
that measures it.

The rules, in short:

- Video convolutions with a degenerate kernel become 2-D convolutions or
  matmuls: ``1xkxk`` folds time into the batch; stride-1 one-axis kernels
  (``kx1x1``, the spectrogram's ``3x1`` / ``1x3``) are one matmul with the taps
  as extra output channels plus a shifted sum; the Fast stem's ``5x7x7`` is one
  2-D convolution with its temporal taps as output channels plus a shifted sum.
  XLA CPU's 3-D convolutions are far slower than its 2-D ones.
- Convolutions carry a ``custom_vjp``: input gradients as explicit
  convolutions (stride-1: flipped kernel; strided: one stride-1 convolution
  per stride phase), kernel gradients as im2col matmuls where XLA's own
  kernel-gradient convolution is slow (:func:`matmul_kernel_grad`).
- The stem max-pool's gradient is routed by a stored argmax in one pass.
- Group BatchNorm has the textbook two-pass gradient.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from avslowfast_jax.models import native

# ----------------------------------------------------------------------------
# Convolution gradients
# ----------------------------------------------------------------------------


def _strided(x: jax.Array, axis: int, stride: int) -> jax.Array:
  """Every ``stride``-th element along ``axis`` (a kernel-1 conv's stride)."""
  if stride == 1:
    return x
  index = [slice(None)] * x.ndim
  index[axis] = slice(None, None, stride)
  return x[tuple(index)]


def matmul_kernel_grad(kernel_shape, video: bool) -> bool:
  """Whether this conv's kernel gradient is computed as im2col matmuls.

  XLA CPU computes a conv's kernel gradient as another convolution whose
  "features" are the batch and whose window is the whole output map. That is
  fast for a few-channel ``kxk`` conv (the Fast pathway) but several times
  slower than matmuls for temporal and wide convs, and inside ``lax.cond``
  (the audio pathway under DropPathway) it falls back to a naive loop. So
  spectrogram convs always use matmuls, and so do temporal video convs (whose
  XLA form also needs the input transposed, a copy XLA fuses with the
  BN/ReLU chain that produced it and recomputes); ``kxk`` convs by width.
  """
  if not video:
    return True
  ks = kernel_shape[:-2]
  cin, cout = kernel_shape[-2:]
  if sum(k > 1 for k in ks) <= 1:
    return True
  if cin <= 4:
    # The RGB stems: the Slow stem (64 outputs) and the Fast stem computed as
    # one conv with its temporal taps as 40 outputs are faster as im2col; a
    # narrow 7x7 (a single Fast tap, 8 outputs) is faster in XLA's form.
    return cout >= 32
  return cin * cout >= 64 * 64


# Budget (elements) of one im2col chunk in the kernel gradient: big enough that
# each dot has a long contraction and many output rows, small enough that the
# patches of the stems (Cin = 3, 49 taps) do not need gigabytes.
_PATCH_BUDGET = 1 << 24

# Strided convs with at most this many input channels take their kernel
# gradient on the input split into stride phases (_phase_split_kernel_grad).
_PHASE_SPLIT_MAX_CIN = 4


def _tap_slices(xp, tap, out_spatial, strides):
  """The input window of kernel tap ``tap``: ``xp[:, tap + s * o, :]`` for all o."""
  idx = [slice(None)]
  for t, o, s in zip(tap, out_spatial, strides):
    idx.append(slice(t, t + (o - 1) * s + 1, s))
  idx.append(slice(None))
  return xp[tuple(idx)]


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
  """Gradient of ``native.conv(x, k, strides, padding)`` w.r.t. ``k``, given ``dy``.

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
  """Gradient of ``native.conv(x, kernel, strides, padding)`` w.r.t. ``x``, given ``dy``.

  For a strided conv, XLA CPU computes the input gradient as one convolution
  over ``dy`` dilated by the stride (``lhs_dilate``), which it does not hand to
  its fast convolution library. Split ``x`` by position modulo the stride (its
  *phases*): phase ``r`` of axis ``d`` only receives kernel taps ``k`` with
  ``k = r + pad_lo (mod s)``, from ``dy`` at offset ``(r + pad_lo - k) / s``. So
  each phase is a stride-1 convolution of ``dy`` with those taps (a sub-kernel,
  channels transposed), and the phases interleave back into ``dx``.
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
    outs[phase] = native.conv(src[index], sub, (1,) * nd, ((0, 0),) * nd)
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
  """Gradient of a stride-1 ``native.conv(x, kernel, 1, padding)`` w.r.t. ``x``, given ``dy``.

  The forward convolution of ``dy`` with the kernel flipped in space and its
  channel axes swapped, padded by ``k - 1 - pad``. Autodiff emits the same
  convolution with the flip and swap left to XLA, which rewrites it into this
  form in the entry computation but not inside ``lax.cond`` branches (the
  audio pathway under DropPathway), where it then misses XLA CPU's fast
  convolution library.
  """
  nd = kernel.ndim - 2
  ks = kernel.shape[:nd]
  flipped = jnp.swapaxes(jnp.flip(kernel, axis=tuple(range(nd))), -1, -2)
  pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(ks, padding))
  return native.conv(dy, flipped, (1,) * nd, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_with_cpu_vjp(x, kernel, strides, padding, matmul_grad=True):
  """One native convolution whose gradients are the CPU rules: the input gradient as
  explicit convolutions, the kernel gradient as im2col matmuls (``matmul_grad``, as
  :func:`matmul_kernel_grad` chooses) or XLA's own."""
  return native.conv(x, kernel, strides, padding)


def _conv_with_cpu_vjp_fwd(x, kernel, strides, padding, matmul_grad):
  return native.conv(x, kernel, strides, padding), (x, kernel)


def _conv_with_cpu_vjp_bwd(strides, padding, matmul_grad, res, dy):
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
    _, vjp_k = jax.vjp(lambda k_: native.conv(x, k_, strides, padding), kernel)
    (dk,) = vjp_k(dy)
  return dx, dk.astype(kernel.dtype)


conv_with_cpu_vjp.defvjp(_conv_with_cpu_vjp_fwd, _conv_with_cpu_vjp_bwd)


def _conv(x, kernel, strides, padding, video=True):
  """One convolution with the CPU gradients above."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  return conv_with_cpu_vjp(x, kernel, strides, padding, matmul_kernel_grad(kernel.shape, video))


@jax.custom_vjp
def pointwise(x, k):
  """``x @ k`` over the channel axis (a 1x1 conv), with a CPU-friendly VJP."""
  return jnp.einsum('...c,cd->...d', x, k)


def _pointwise_fwd(x, k):
  return pointwise(x, k), (x, k)


def _pointwise_bwd(res, dy):
  x, k = res
  cin, cout = k.shape
  # Materialise x and dy: otherwise XLA fuses the transposed copy the
  # kernel-gradient matmul needs into the (many-input) BatchNorm fusion that
  # produces it, which then reads all its inputs in transposed order.
  x2, dy2 = jax.lax.optimization_barrier((x.reshape(-1, cin), dy.reshape(-1, cout)))
  dx = (dy2 @ k.T).reshape(x.shape)
  # The contraction runs over all positions M, so XLA CPU transposes the
  # operand on the left to [C, M]: make it the one with fewer channels.
  if cin <= cout:
    dk = jax.lax.dot_general(x2, dy2, (((0,), (0,)), ((), ())))
  else:
    dk = jax.lax.dot_general(dy2, x2, (((0,), (0,)), ((), ()))).T
  return dx, dk


pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)

# ----------------------------------------------------------------------------
# Convolution forward forms
# ----------------------------------------------------------------------------


def shift_sum(y, kt, d, padding, axis):
  """``out[o] = sum_dt y[o + dt - lo][..., dt*d:(dt+1)*d]`` along ``axis``, zero outside.

  The second half of a stride-1 conv computed with its ``kt`` taps as extra
  output channels (``y``: every input position times every tap's kernel).
  Only the narrow per-tap slices are padded: padding all of ``y`` first makes
  XLA write a padded copy of the whole wide tensor.
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

  ``x @ [C, k * D]`` (every tap's kernel side by side) and a shifted sum of the
  ``k`` slices. The kernel gradient is that of the pointwise matmul; the input
  gradient is one matmul with all taps instead of a convolution.
  """
  k, cin, cout = kernel.shape
  wide = jnp.moveaxis(kernel, 0, 1).reshape(cin, k * cout)
  y = pointwise(x, wide)
  return shift_sum(y, k, cout, padding, axis)


def _temporal_taps_as_outputs(x, kernel, spatial_strides, padding):
  """A ``kt x kh x kw`` conv with time stride 1 as one 2-D conv with ``kt * D`` outputs.

  Every frame goes through the 2-D conv with all ``kt`` temporal taps' kernels
  side by side (``[kh, kw, C, kt * D]``); output frame ``t`` then sums slice
  ``dt`` of frame ``t + dt - pad``. The same multiply-adds as ``kt`` 2-D convs
  with ``D`` outputs over shifted frames, but one wide conv instead of several
  narrow ones (the Fast stem).
  """
  n, t, h, w, c = x.shape
  kt, kh, kw, _, d = kernel.shape
  wide = jnp.moveaxis(kernel, 0, -2).reshape(kh, kw, c, kt * d)
  z = _conv(x.reshape(n * t, h, w, c), wide, spatial_strides, padding[1:])
  return shift_sum(z.reshape(n, t, *z.shape[1:]), kt, d, padding[0], 1)


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


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
         padding: Sequence[tuple[int, int]],
         dilation: Optional[Sequence[int]] = None) -> jax.Array:
  """:func:`native.conv` computed in the forms above (same values and gradients).

  Dilated kernels (AVA's res5) keep the native convolution and autodiff.
  """
  if dilation is not None and any(int(d) != 1 for d in dilation):
    return native.conv(x, kernel, strides, padding, dilation)
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  ks = kernel.shape[:-2]
  nd = len(ks)
  long_axes = [a for a, k in enumerate(ks) if k > 1]
  if len(long_axes) == 1 and strides[long_axes[0]] == 1:
    # One kernel axis longer than 1, stride 1 along it (kx1x1 temporal convs,
    # the spectrogram's 3x1 / 1x3): one matmul with the taps as outputs.
    a = long_axes[0]
    for axis, s in enumerate(strides):
      x = _strided(x, axis + 1, s)
    return _one_axis_taps_as_outputs(x, kernel.reshape(ks[a], *kernel.shape[-2:]), a + 1,
                                     padding[a])
  if not long_axes:
    # Pointwise: stride by slicing, then a matmul over channels.
    for axis, s in enumerate(strides):
      x = _strided(x, axis + 1, s)
    return pointwise(x, kernel.reshape(kernel.shape[-2:]))
  if nd == 3:
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
    if st == 1:
      return _temporal_taps_as_outputs(x, kernel, (sh, sw), padding)
    return _sum_of_2d_convs(x, kernel, strides, padding)
  return _conv(x, kernel, strides, padding, video=False)

# ----------------------------------------------------------------------------
# Stem max-pool
# ----------------------------------------------------------------------------


def _pool_taps(x: jax.Array):
  """The 9 strided window taps of the 1x3x3 stride-(1,2,2) pool, padding 1 with -inf."""
  _, _, h, w, _ = x.shape
  ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  return [xp[:, :, i:i + 2 * (ho - 1) + 1:2, j:j + 2 * (wo - 1) + 1:2]
          for i in range(3) for j in range(3)]


def _max_pool_with_argmax(x):
  """The pool as the maximum of its 9 taps, and the first maximal tap (as PyTorch) per output."""
  out = idx = None
  for k, tap in enumerate(_pool_taps(x)):
    if out is None:
      out, idx = tap, jnp.zeros(tap.shape, jnp.int8)
    else:
      better = tap > out
      out = jnp.where(better, tap, out)
      idx = jnp.where(better, jnp.int8(k), idx)
  return out, idx


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, in_hw: tuple[int, int]) -> jax.Array:
  del in_hw
  return _max_pool_with_argmax(x)[0]


def _max_pool_fwd(x, in_hw):
  del in_hw
  return _max_pool_with_argmax(x)


def _max_pool_bwd(in_hw, idx, dy):
  """Routes ``dy`` to each window's maximum, one pass over the input's size.

  Padded input row ``2m + r`` receives from output row ``m`` (tap row ``r``)
  and, for even rows, from output row ``m - 1`` (tap row 2); the same for
  columns. So each of the four (row, column) parities of the input is a sum of
  at most four shifted masked copies of ``dy``, and the parities interleave
  into the gradient. XLA CPU's select-and-scatter (the gradient of
  ``reduce_window``) and autodiff of a chain of maxima (nine input-sized pads)
  are both much slower.
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


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_hw(x: jax.Array) -> jax.Array:
  """:func:`native.max_pool_hw` with the argmax-routed gradient above."""
  return _max_pool(x, (x.shape[2], x.shape[3]))

# ----------------------------------------------------------------------------
# Group BatchNorm
# ----------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_normalize(xg, scale, bias, epsilon, fast_variance):
  """:func:`native.group_normalize` with the two-pass gradient below."""
  return native.group_normalize(xg, scale, bias, epsilon, fast_variance)


def _group_normalize_fwd(xg, scale, bias, epsilon, fast_variance):
  mean, var, inv = native.group_stats(xg, epsilon, fast_variance)
  y = (xg - mean) * (inv * scale) + bias
  return (y, mean, var), (xg, mean, inv, scale)


def _group_normalize_bwd(epsilon, fast_variance, res, cotangents):
  """The textbook BatchNorm gradient: one pass for two per-group sums, one for ``dx``.

  Autodiff differentiates through ``mean`` and ``var`` as separate
  reductions, which XLA CPU runs as several more elementwise passes over every
  activation of the network.
  """
  del epsilon, fast_variance  # the same gradient for both variance formulas
  xg, mean, inv, scale = res
  dy, dmean, dvar = cotangents
  axes = tuple(range(1, xg.ndim - 1))
  count = math.prod(xg.shape[1:-1])
  xhat = (xg - mean) * inv
  sum_dy = jnp.sum(dy, axis=axes, keepdims=True)
  sum_dy_xhat = jnp.sum(dy * xhat, axis=axes, keepdims=True)
  channels = tuple(range(xg.ndim - 1))
  dbias = jnp.sum(sum_dy, axis=channels)
  dscale = jnp.sum(sum_dy_xhat, axis=channels)
  # d/dx of y through xhat (with mean and var depending on x), plus the
  # direct cotangents of the returned statistics (zero unless a caller
  # differentiates them).
  dx = (scale * inv) * (dy - sum_dy / count - xhat * (sum_dy_xhat / count))
  dx = dx + (dmean + 2.0 * dvar * (xg - mean)) / count
  return dx, dscale, dbias


group_normalize.defvjp(_group_normalize_fwd, _group_normalize_bwd)

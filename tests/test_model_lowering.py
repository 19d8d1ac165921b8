"""The CPU-only gradients of ``models/conv.py`` against plain autodiff.

On CPU, convolutions and 1x1 convs carry ``custom_vjp`` rules (matmul kernel
gradients; see ``conv.py``). They must give the gradients of the plain
formulation: same values within fp32 tolerance, for every kind of conv the
model uses (strided, padded, temporal-only, 1-D, chunked im2col).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax.models import conv as conv_lib


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


# (input shape, kernel shape, strides): a video 3x1 temporal conv (stride 1 and
# the Fast->Slow stride), a strided 3x3, the audio 1x3 / 3x1 with a stride on
# one axis, a 7x7 stem on 3 channels, and a 1-D audio-lateral conv.
_CASES = [
    ((2, 6, 5, 8), (3, 1, 8, 4), (1, 1)),
    ((2, 9, 5, 8), (5, 1, 8, 6), (4, 1)),
    ((3, 9, 10, 6), (3, 3, 6, 5), (2, 2)),
    ((2, 8, 7, 4), (1, 3, 4, 4), (1, 2)),
    ((2, 8, 7, 4), (3, 1, 4, 4), (2, 1)),
    ((2, 13, 11, 3), (7, 7, 3, 4), (2, 2)),
    ((2, 16, 5), (5, 5, 7), (4,)),
    # Strides that do not divide the input, and one larger than the kernel
    # (a phase no tap reaches: its input gradient is zero).
    ((2, 9, 7, 4), (1, 3, 4, 4), (2, 2)),
    ((1, 10, 8, 3), (3, 3, 3, 2), (3, 2)),
]


def _padding(kernel_shape):
  return tuple((k // 2, k // 2) for k in kernel_shape[:-2])


@pytest.mark.parametrize('matmul_grad', [True, False])
@pytest.mark.parametrize('x_shape,k_shape,strides', _CASES)
def test_conv_cpu_vjp_matches_autodiff(x_shape, k_shape, strides, matmul_grad):
  x, k = _random(x_shape, 0), _random(k_shape, 1)
  pad = _padding(k_shape)
  y, vjp_plain = jax.vjp(lambda a, b: conv_lib._conv_plain(a, b, strides, pad), x, k)
  y_cpu, vjp_cpu = jax.vjp(lambda a, b: conv_lib._conv_cpu(a, b, strides, pad, matmul_grad),
                           x, k)
  dy = _random(y.shape, 2)
  np.testing.assert_allclose(y_cpu, y, rtol=1e-5, atol=1e-5)
  for got, want in zip(vjp_cpu(dy), vjp_plain(dy)):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_kernel_grad_chunked_im2col(monkeypatch):
  """With a tiny patch budget every tap is its own matmul (the chunking path)."""
  x_shape, k_shape, strides = _CASES[2]
  x, dy = _random(x_shape, 3), _random((3, 5, 5, 5), 4)
  pad = _padding(k_shape)
  whole = conv_lib.conv_kernel_grad(x, dy, k_shape, strides, pad)
  monkeypatch.setattr(conv_lib, '_PATCH_BUDGET', 1)
  chunked = conv_lib.conv_kernel_grad(x, dy, k_shape, strides, pad)
  _, vjp = jax.vjp(lambda k: conv_lib._conv_plain(x, k, strides, pad), _random(k_shape, 5))
  np.testing.assert_allclose(chunked, vjp(dy)[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('padding', [((0, 2), (1, 0)), ((3, 1), (2, 2))])
def test_strided_input_grad_any_padding(padding):
  """The phase-split input gradient for padding the model does not use (asymmetric, wide)."""
  x, k = _random((2, 11, 9, 3), 8), _random((3, 4, 3, 5), 9)
  strides = (2, 3)
  y, vjp = jax.vjp(lambda a: conv_lib._conv_plain(a, k, strides, padding), x)
  dy = _random(y.shape, 10)
  got = conv_lib.strided_conv_input_grad(dy, k, x.shape, strides, padding)
  np.testing.assert_allclose(got, vjp(dy)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cin,cout', [(3, 8), (8, 3)])
def test_pointwise_cpu_vjp_matches_autodiff(cin, cout):
  """Both operand orders of the 1x1 kernel gradient (fewer channels on the left)."""
  x, k = _random((2, 3, 4, 5, cin), 6), _random((cin, cout), 7)
  plain = lambda a, b: jnp.einsum('...c,cd->...d', a, b)
  y, vjp_plain = jax.vjp(plain, x, k)
  y_cpu, vjp_cpu = jax.vjp(conv_lib._pointwise_cpu, x, k)
  dy = _random(y.shape, 8)
  np.testing.assert_allclose(y_cpu, y, rtol=1e-5, atol=1e-5)
  for got, want in zip(vjp_cpu(dy), vjp_plain(dy)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_module_grads_under_cond_match_native():
  """Gradients of the lowered, custom-VJP video and spectrogram convs inside
  ``lax.cond`` (how the audio pathway runs) equal those of one native conv."""
  cases = [((2, 4, 6, 6, 8), (3, 1, 1, 8, 256), (1, 1, 1)),    # matmul kernel grad
           ((2, 4, 6, 6, 3), (1, 3, 3, 3, 4), (1, 2, 2)),      # native kernel grad
           ((2, 4, 6, 6, 8), (1, 1, 1, 8, 4), (1, 2, 2)),      # pointwise
           ((2, 8, 6, 4), (3, 3, 4, 4), (2, 2))]               # spectrogram
  for x_shape, k_shape, strides in cases:
    x, k = _random(x_shape, 9), _random(k_shape, 10)
    pad = _padding(k_shape)

    def loss(a, b, lower):
      run = lambda a, b: jnp.sum(jnp.sin(conv_lib.conv_nd(a, b, strides, pad, lower=lower)))
      return jax.lax.cond(jnp.asarray(False), lambda a, b: 0.0, run, a, b)

    got = jax.grad(loss, (0, 1))(x, k, True)
    want = jax.grad(lambda a, b: jnp.sum(jnp.sin(
        conv_lib._conv_plain(a, b, strides, pad))), (0, 1))(x, k)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_cpu_kernel_grad_choice():
  """On CPU, spectrogram and temporal video convs always take matmul kernel
  gradients (XLA's own is a naive loop inside ``lax.cond``, and needs a
  transposed input); kxk video convs only when wide enough."""
  assert jax.default_backend() == 'cpu'
  assert conv_lib._matmul_kernel_grad((3, 1, 1, 32), video=False)
  assert conv_lib._matmul_kernel_grad((3, 1, 640, 256), video=True)
  assert conv_lib._matmul_kernel_grad((3, 1, 32, 8), video=True)
  assert not conv_lib._matmul_kernel_grad((3, 3, 8, 8), video=True)
  assert conv_lib._matmul_kernel_grad((3, 3, 128, 128), video=True)
  assert conv_lib._matmul_kernel_grad((3, 3, 64, 64), video=True)
  assert not conv_lib._matmul_kernel_grad((3, 3, 32, 64), video=True)
  assert conv_lib._matmul_kernel_grad((7, 7, 3, 64), video=True)  # the Slow stem
  assert not conv_lib._matmul_kernel_grad((7, 7, 3, 8), video=True)  # a Fast stem slice
  assert conv_lib._matmul_kernel_grad((7, 7, 3, 40), video=True)  # the Fast stem, taps as outputs


@pytest.mark.parametrize('fast_variance', [True, False])
@pytest.mark.parametrize('shape', [(2, 3, 4, 5, 6), (1, 4, 7, 3)])
def test_batchnorm_cpu_vjp_matches_autodiff(shape, fast_variance):
  """The hand-written group-BatchNorm gradient (``norm._normalize_cpu``) equals
  autodiff of the plain formula, for the input, scale, bias, and the returned
  statistics' cotangents, with a ReLU after it as in the blocks."""
  from avslowfast_jax.models import norm
  x = _random(shape, 0) * 3 + 1
  scale, bias = _random(shape[-1:], 1), _random(shape[-1:], 2)
  w = _random(shape, 3)

  def loss(fn, x, s, b):
    y, mean, var = fn(x, s, b, 1e-5, fast_variance)
    return jnp.sum(jax.nn.relu(y) * w) + 0.3 * jnp.sum(mean) + 0.7 * jnp.sum(var)

  want = jax.grad(lambda *a: loss(norm._normalize_plain, *a), argnums=(0, 1, 2))(x, scale, bias)
  got = jax.grad(lambda *a: loss(norm._normalize_cpu, *a), argnums=(0, 1, 2))(x, scale, bias)
  for g, ref in zip(got, want):
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(ref).max()))


def test_batchnorm_fast_variance_agrees_with_two_pass():
  """The one-pass variance matches the two-pass one on activations whose mean is
  several times their spread, and a constant channel gets variance 0, not a
  negative number (rsqrt would give NaN)."""
  from avslowfast_jax.models import norm
  x = _random((2, 4, 6, 6, 8), 0) * 2.0 + 5.0
  x = x.at[..., 3].set(7.25)  # a constant channel
  xg = x.reshape(1, 2, 4, 6, 6, 8)
  mean_f, var_f, inv_f = norm._group_stats(xg, 1e-5, True)
  mean_t, var_t, _ = norm._group_stats(xg, 1e-5, False)
  np.testing.assert_allclose(mean_f, mean_t, rtol=1e-6)
  np.testing.assert_allclose(var_f, var_t, rtol=1e-4, atol=1e-5)
  assert float(var_f[..., 3].min()) >= 0.0 and bool(jnp.all(jnp.isfinite(inv_f)))


@pytest.mark.parametrize('shape', [(2, 3, 8, 8, 4), (1, 2, 7, 9, 3), (2, 1, 5, 6, 2)])
def test_max_pool_cpu_vjp_matches_autodiff(shape):
  """The stem max-pool's hand-written gradient (``blocks._max_pool_cpu_bwd``)
  routes each output's gradient to its window's maximum, as autodiff of the
  maximum chain does (random inputs: no ties), for even and odd sizes."""
  from avslowfast_jax.models import blocks
  x = _random(shape, 0)
  w = _random(blocks._max_pool_plain(x).shape, 1)
  np.testing.assert_array_equal(blocks.max_pool_hw(x), blocks._max_pool_plain(x))
  got = jax.jit(jax.grad(lambda a: jnp.sum(blocks.max_pool_hw(a) * w)))(x)
  want = jax.grad(lambda a: jnp.sum(blocks._max_pool_plain(a) * w))(x)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_cpu_vjp_ties_go_to_the_first_maximum():
  """With a window of equal values the whole gradient goes to its first tap
  (PyTorch's choice), and every window's gradient is passed on exactly once."""
  from avslowfast_jax.models import blocks
  x = jnp.ones((1, 1, 4, 4, 1))
  g = jax.grad(lambda a: jnp.sum(blocks.max_pool_hw(a)))(x)
  # Outputs (2x2) take windows starting at padded rows/cols 0 and 2; the first
  # real pixel of each window is (0,0), (0,1), (1,0), (1,1) ... in input terms.
  assert float(jnp.sum(g)) == 4.0
  np.testing.assert_array_equal(np.asarray(g)[0, 0, :, :, 0],
                                [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize('kernel,strides', [
    ((5, 7, 7), (1, 2, 2)), ((3, 3, 3), (1, 1, 1)), ((3, 3, 3), (2, 2, 2)),
    ((3, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 2, 2)), ((5, 1, 1), (4, 1, 1)), ((1, 1, 3), (1, 1, 1)),
    ((3, 1), (1, 1)), ((1, 3), (2, 1)), ((3, 1), (2, 1))])
def test_lowered_conv_grads_match_native(kernel, strides):
  """The CPU lowerings against one native conv, values and both gradients:
  the Fast stem (temporal taps as output channels, summed over shifted
  frames; time-strided: a sum of 2-D convs), one-axis convs as one matmul with
  the taps as outputs (stride 1 along the kernel; other strides by slicing),
  strided one-axis convs as 2-D convs."""
  cin, cout = 3, 4
  shape = (2, 6, 13, 11, cin) if len(kernel) == 3 else (2, 9, 7, cin)
  x, k = _random(shape, 11), _random((*kernel, cin, cout), 12)
  pad = [(s // 2, s // 2) for s in kernel]
  y, vjp = jax.vjp(lambda a, b: conv_lib.conv_nd(a, b, strides, pad, lower=True), x, k)
  y_ref, vjp_ref = jax.vjp(lambda a, b: conv_lib.conv_nd(a, b, strides, pad, lower=False), x, k)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
  dy = _random(y.shape, 13)
  for got, want in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_shift_sum_with_taps_beyond_the_input():
  """A kernel longer than the input: taps that only meet padding are skipped
  (and a sum with no tap at all is zero)."""
  x, k = _random((1, 2, 5, 3), 14), _random((7, 1, 3, 2), 15)
  pad = [(3, 3), (0, 0)]
  got = conv_lib.conv_nd(x, k, (1, 1), pad)
  np.testing.assert_allclose(got, conv_lib._conv_plain(x, k, (1, 1), pad), rtol=1e-5, atol=1e-5)
  y = jnp.ones((1, 2, 3, 6))
  assert not conv_lib._shift_sum(y, 3, 2, (0, 0), 1).shape[1]  # no output frame at all
  np.testing.assert_array_equal(conv_lib._shift_sum(y, 3, 2, (5, 5), 1)[:, :3], 0.0)

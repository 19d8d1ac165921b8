"""The CPU forms of the model's primitives (``models/cpu.py``) against the native ones.

Every CPU rule (lowered convolutions, custom VJPs of convolutions, 1x1 convs,
the stem max-pool and BatchNorm) must give the values and gradients of the
native form (``models/native.py``, autodiff) within fp32 tolerance, for every
kind of conv the model uses (strided, padded, temporal-only, 1-D, chunked
im2col); and whole tiny models must agree under both implementations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import model_builder
from avslowfast_jax.models import cpu as cpu_lib
from avslowfast_jax.models import native, ops
from data_pipelines.errors import UserError
from model_testing import (assert_close_per_array, assert_gradients_close, tiny_inputs,
                           tiny_model_config)


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
  y, vjp_plain = jax.vjp(lambda a, b: native.conv(a, b, strides, pad), x, k)
  y_cpu, vjp_cpu = jax.vjp(lambda a, b: cpu_lib.conv_with_cpu_vjp(a, b, strides, pad, matmul_grad),
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
  whole = cpu_lib.conv_kernel_grad(x, dy, k_shape, strides, pad)
  monkeypatch.setattr(cpu_lib, '_PATCH_BUDGET', 1)
  chunked = cpu_lib.conv_kernel_grad(x, dy, k_shape, strides, pad)
  _, vjp = jax.vjp(lambda k: native.conv(x, k, strides, pad), _random(k_shape, 5))
  np.testing.assert_allclose(chunked, vjp(dy)[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('padding', [((0, 2), (1, 0)), ((3, 1), (2, 2))])
def test_strided_input_grad_any_padding(padding):
  """The phase-split input gradient for padding the model does not use (asymmetric, wide)."""
  x, k = _random((2, 11, 9, 3), 8), _random((3, 4, 3, 5), 9)
  strides = (2, 3)
  y, vjp = jax.vjp(lambda a: native.conv(a, k, strides, padding), x)
  dy = _random(y.shape, 10)
  got = cpu_lib.strided_conv_input_grad(dy, k, x.shape, strides, padding)
  np.testing.assert_allclose(got, vjp(dy)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cin,cout', [(3, 8), (8, 3)])
def test_pointwise_cpu_vjp_matches_autodiff(cin, cout):
  """Both operand orders of the 1x1 kernel gradient (fewer channels on the left)."""
  x, k = _random((2, 3, 4, 5, cin), 6), _random((cin, cout), 7)
  plain = lambda a, b: jnp.einsum('...c,cd->...d', a, b)
  y, vjp_plain = jax.vjp(plain, x, k)
  y_cpu, vjp_cpu = jax.vjp(cpu_lib.pointwise, x, k)
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
      run = lambda a, b: jnp.sum(jnp.sin((cpu_lib.conv if lower else native.conv)(a, b, strides, pad)))
      return jax.lax.cond(jnp.asarray(False), lambda a, b: 0.0, run, a, b)

    got = jax.grad(loss, (0, 1))(x, k, True)
    want = jax.grad(lambda a, b: jnp.sum(jnp.sin(
        native.conv(a, b, strides, pad))), (0, 1))(x, k)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_cpu_kernel_grad_choice():
  """Spectrogram and temporal video convs always take matmul kernel gradients
  (XLA CPU's own is a naive loop inside ``lax.cond``, and needs a transposed
  input); kxk video convs only when wide enough."""
  assert cpu_lib.matmul_kernel_grad((3, 1, 1, 32), video=False)
  assert cpu_lib.matmul_kernel_grad((3, 1, 640, 256), video=True)
  assert cpu_lib.matmul_kernel_grad((3, 1, 32, 8), video=True)
  assert not cpu_lib.matmul_kernel_grad((3, 3, 8, 8), video=True)
  assert cpu_lib.matmul_kernel_grad((3, 3, 128, 128), video=True)
  assert cpu_lib.matmul_kernel_grad((3, 3, 64, 64), video=True)
  assert not cpu_lib.matmul_kernel_grad((3, 3, 32, 64), video=True)
  assert cpu_lib.matmul_kernel_grad((7, 7, 3, 64), video=True)  # the Slow stem
  assert not cpu_lib.matmul_kernel_grad((7, 7, 3, 8), video=True)  # a Fast stem slice
  assert cpu_lib.matmul_kernel_grad((7, 7, 3, 40), video=True)  # the Fast stem, taps as outputs


@pytest.mark.parametrize('fast_variance', [True, False])
@pytest.mark.parametrize('shape', [(2, 3, 4, 5, 6), (1, 4, 7, 3)])
def test_batchnorm_cpu_vjp_matches_autodiff(shape, fast_variance):
  """The hand-written group-BatchNorm gradient (``cpu.group_normalize``) equals
  autodiff of the native formula, for the input, scale, bias, and the returned
  statistics' cotangents, with a ReLU after it as in the blocks."""
  x = _random(shape, 0) * 3 + 1
  scale, bias = _random(shape[-1:], 1), _random(shape[-1:], 2)
  w = _random(shape, 3)

  def loss(fn, x, s, b):
    y, mean, var = fn(x, s, b, 1e-5, fast_variance)
    return jnp.sum(jax.nn.relu(y) * w) + 0.3 * jnp.sum(mean) + 0.7 * jnp.sum(var)

  want = jax.grad(lambda *a: loss(native.group_normalize, *a), argnums=(0, 1, 2))(x, scale, bias)
  got = jax.grad(lambda *a: loss(cpu_lib.group_normalize, *a), argnums=(0, 1, 2))(x, scale, bias)
  for g, ref in zip(got, want):
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(ref).max()))


def test_batchnorm_fast_variance_agrees_with_two_pass():
  """The one-pass variance matches the two-pass one on activations whose mean is
  several times their spread, and a constant channel gets variance 0, not a
  negative number (rsqrt would give NaN)."""
  x = _random((2, 4, 6, 6, 8), 0) * 2.0 + 5.0
  x = x.at[..., 3].set(7.25)  # a constant channel
  xg = x.reshape(1, 2, 4, 6, 6, 8)
  mean_f, var_f, inv_f = native.group_stats(xg, 1e-5, True)
  mean_t, var_t, _ = native.group_stats(xg, 1e-5, False)
  np.testing.assert_allclose(mean_f, mean_t, rtol=1e-6)
  np.testing.assert_allclose(var_f, var_t, rtol=1e-4, atol=1e-5)
  assert float(var_f[..., 3].min()) >= 0.0 and bool(jnp.all(jnp.isfinite(inv_f)))


@pytest.mark.parametrize('shape', [(2, 3, 8, 8, 4), (1, 2, 7, 9, 3), (2, 1, 5, 6, 2)])
def test_max_pool_cpu_vjp_matches_autodiff(shape):
  """The stem max-pool's hand-written gradient (the custom VJP of ``max_pool_hw``) routes
  each output's gradient to its window's maximum, as the native reduce_window's
  gradient does (random inputs: no ties), for even and odd sizes."""
  x = _random(shape, 0)
  w = _random(native.max_pool_hw(x).shape, 1)
  np.testing.assert_array_equal(cpu_lib.max_pool_hw(x), native.max_pool_hw(x))
  got = jax.jit(jax.grad(lambda a: jnp.sum(cpu_lib.max_pool_hw(a) * w)))(x)
  want = jax.grad(lambda a: jnp.sum(native.max_pool_hw(a) * w))(x)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_cpu_vjp_ties_go_to_the_first_maximum():
  """With a window of equal values the whole gradient goes to its first tap
  (PyTorch's choice), and every window's gradient is passed on exactly once."""
  x = jnp.ones((1, 1, 4, 4, 1))
  g = jax.grad(lambda a: jnp.sum(cpu_lib.max_pool_hw(a)))(x)
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
  """The CPU forms against one native conv, values and both gradients:
  the Fast stem (temporal taps as output channels, summed over shifted
  frames; time-strided: a sum of 2-D convs), one-axis convs as one matmul with
  the taps as outputs (stride 1 along the kernel; other strides by slicing),
  strided one-axis convs as 2-D convs."""
  cin, cout = 3, 4
  shape = (2, 6, 13, 11, cin) if len(kernel) == 3 else (2, 9, 7, cin)
  x, k = _random(shape, 11), _random((*kernel, cin, cout), 12)
  pad = [(s // 2, s // 2) for s in kernel]
  y, vjp = jax.vjp(lambda a, b: cpu_lib.conv(a, b, strides, pad), x, k)
  y_ref, vjp_ref = jax.vjp(lambda a, b: native.conv(a, b, strides, pad), x, k)
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
  got = cpu_lib.conv(x, k, (1, 1), pad)
  np.testing.assert_allclose(got, native.conv(x, k, (1, 1), pad), rtol=1e-5, atol=1e-5)
  y = jnp.ones((1, 2, 3, 6))
  assert not cpu_lib.shift_sum(y, 3, 2, (0, 0), 1).shape[1]  # no output frame at all
  np.testing.assert_array_equal(cpu_lib.shift_sum(y, 3, 2, (5, 5), 1)[:, :3], 0.0)


@pytest.mark.parametrize('kernel,strides,dilation', [
    ((1, 3, 3), (1, 2, 2), None), ((3, 1, 1), (1, 1, 1), None), ((5, 1, 1), (4, 1, 1), None),
    ((1, 1, 1), (1, 2, 2), None), ((3, 3, 3), (2, 2, 2), None), ((5, 7, 7), (1, 2, 2), None),
    ((1, 3, 3), (1, 1, 1), (1, 2, 2))])
def test_cpu_conv_matches_native_3d_conv(kernel, strides, dilation):
  """Forward values of the CPU forms of every video kernel the model has (and
  a dilated one, which keeps the native conv) against one native 3-D conv."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 9, 10, 3)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((*kernel, 3, 4)), jnp.float32)
  d = dilation or (1, 1, 1)
  pad = [(r * (s // 2), r * (s // 2)) for s, r in zip(kernel, d)]
  got = cpu_lib.conv(x, k, strides, pad, dilation)
  want = native.conv(x, k, strides, pad, dilation)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_ops_dispatch():
  """``auto`` is the CPU forms for the CPU backend and native for accelerators;
  explicit names win; anything else is an error naming the field."""
  assert ops.resolve('auto', 'cpu') == 'cpu'
  assert ops.resolve('auto', 'cuda') == ops.resolve('auto', 'tpu') == 'native'
  assert ops.resolve('native', 'cpu') == 'native' and ops.resolve('cpu', 'tpu') == 'cpu'
  assert ops.select('auto') is ops.CPU  # these tests run on the CPU backend
  with pytest.raises(UserError, match='conv_impl'):
    ops.resolve('lowered')


def _random_variables(config, inputs, seed=0):
  """Random variables of the right shapes for ``config``'s model, made in numpy:
  compiling ``model.init`` (hundreds of random initialisers) takes far longer
  than anything these tests compute."""
  model, _ = model_builder.build(config, 'native')
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), inputs))
  rng = np.random.default_rng(seed)

  def make(path, leaf):
    name = jax.tree_util.keystr(path[-1:], simple=True)
    noise = rng.standard_normal(leaf.shape).astype(np.float32)
    if name == 'kernel':
      return noise * np.float32(np.sqrt(2.0 / max(1, np.prod(leaf.shape[:-1]))))
    if name in ('scale', 'var'):
      return 1.0 + 0.1 * np.abs(noise)
    return 0.1 * noise

  return jax.tree_util.tree_map_with_path(make, shapes)


def _model_outputs_and_grads(config, conv_impl, variables, inputs):
  """A training step's logits, features, BN statistics and parameter gradients
  (DropPathway's conditional audio pathway, not dropped), and the inference
  logits and features, of ``config``'s model computed with ``conv_impl``."""
  model, _ = model_builder.build(config, conv_impl)

  def run(params):
    def loss(params):
      (logits, aux), state = model.apply(
          {'params': params, 'batch_stats': variables['batch_stats']}, inputs, train=True,
          drop_audio=jnp.asarray(False), rngs={'dropout': jax.random.key(3)},
          mutable=['batch_stats'])
      return jnp.sum(jnp.sin(logits)), (logits, aux['pool5'], state['batch_stats'])

    (_, train_outs), grads = jax.value_and_grad(loss, has_aux=True)(params)
    logits, aux = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                              inputs, train=False)
    return (train_outs, logits, aux['pool5']), grads

  return jax.jit(run)(variables['params'])


@pytest.mark.parametrize('arch', ['avslowfast', 'slowfast', 'audio'])
def test_whole_model_native_and_cpu_agree(arch):
  """The tiny AVSlowFast, SlowFast and Audio-only models computed with the
  native implementation (what GPUs and TPUs run) and with the CPU forms: the
  same logits, features, BN statistics and parameter gradients in training,
  and the same logits and features in inference. Width 16, as the
  quickstart's: at width 8 the Fast pathway has one channel, and some res5
  channels are all zero after ReLU, so their BN divides rounding noise by
  sqrt(epsilon)."""
  config = tiny_model_config(arch, dropout_rate=0.0, width=16)
  inputs = tiny_inputs(batch=4)
  inputs = {k: v for k, v in inputs.items() if k in model_builder.input_specs(config, 1)}
  variables = _random_variables(config, inputs)
  cpu_outs, cpu_grads = _model_outputs_and_grads(config, 'cpu', variables, inputs)
  nat_outs, nat_grads = _model_outputs_and_grads(config, 'native', variables, inputs)
  # fp32 sums in another order: a few 1e-6 of each output's norm, a few 1e-5 of its
  # largest element (the train-mode features after BN over few values per channel).
  assert_close_per_array(cpu_outs, nat_outs, norm_rtol=1e-4, max_rtol=1e-3)
  assert_gradients_close(cpu_grads, nat_grads)

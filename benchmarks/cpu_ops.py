r"""Each CPU rule of ``avslowfast_jax/models/cpu.py`` alone, against the native form.

  python benchmarks/cpu_ops.py [--batch_size 2] [--repeats 5] [--only NAME]

For every rule, at the shapes of AVSlowFast 8x8 R50 at 224x224 (the layer
named in ``layer``), times the forward pass plus both gradients (one
``jax.vjp`` call, jitted) of the native form (``models/native.py``) and of the
CPU form, alternating, and prints one JSON line per rule: the median
milliseconds of each and their ratio. Run it on the machine you train on:
the rules are chosen for XLA's CPU backend and are not used elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from avslowfast_jax import host_memory  # noqa: E402
from avslowfast_jax.models import cpu, native  # noqa: E402
from data_pipelines import errors  # noqa: E402


def _conv_case(layer, x_shape, kernel, strides, cin, cout, in_cond=False):
  pad = [(k // 2, k // 2) for k in kernel]
  return {'layer': layer, 'inputs': (x_shape, (*kernel, cin, cout)), 'in_cond': in_cond,
          'native': lambda x, k: native.conv(x, k, strides, pad),
          'cpu': lambda x, k: cpu.conv(x, k, strides, pad)}


def cases(b: int) -> dict:
  """``{rule: case}`` at the 8x8 R50 shapes (batch ``b``)."""
  return {
      'one_axis_taps_as_outputs': _conv_case(
          'slow_res5 conv_a (3x1x1, 2048->512, 8x7x7)', (b, 8, 7, 7, 2048), (3, 1, 1),
          (1, 1, 1), 2048, 512),
      'one_axis_taps_as_outputs_fast': _conv_case(
          'fast_res3 conv_a (3x1x1, 128->32, 32x28x28)', (b, 32, 28, 28, 128), (3, 1, 1),
          (1, 1, 1), 128, 32),
      'temporal_taps_as_outputs': _conv_case(
          'fast_stem conv (5x7x7, 3->8, 32x224x224, stride 1x2x2)', (b, 32, 224, 224, 3),
          (5, 7, 7), (1, 2, 2), 3, 8),
      'phase_split_kernel_grad': _conv_case(
          'slow_stem conv (1x7x7, 3->64, 8x224x224, stride 1x2x2)', (b, 8, 224, 224, 3),
          (1, 7, 7), (1, 2, 2), 3, 64),
      'im2col_kernel_grad': _conv_case(
          'slow_res2 conv_b (1x3x3, 64->64, 8x56x56)', (b, 8, 56, 56, 64), (1, 3, 3),
          (1, 1, 1), 64, 64),
      'strided_input_grad': _conv_case(
          'slow_res3 block0 conv_b (1x3x3, 128->128, 8x56x56, stride 1x2x2)',
          (b, 8, 56, 56, 128), (1, 3, 3), (1, 2, 2), 128, 128),
      'pointwise': _conv_case(
          'slow_res2 conv_c (1x1x1, 64->256, 8x56x56)', (b, 8, 56, 56, 64), (1, 1, 1),
          (1, 1, 1), 64, 256),
      'spectrogram_conv_in_cond': _conv_case(
          'audio res3 conv_b_time (3x1, 64->64, 128x80) under lax.cond', (b, 128, 80, 64),
          (3, 1), (1, 1), 64, 64, in_cond=True),
      'max_pool_gradient': {
          'layer': 'fast_stem pool (1x3x3 stride 1x2x2, 32x112x112x8)',
          'inputs': ((b, 32, 112, 112, 8),), 'in_cond': False,
          'native': native.max_pool_hw, 'cpu': cpu.max_pool_hw},
      'batchnorm_gradient': {
          'layer': 'slow_res2 bn_c (groups of 2 clips, 8x56x56x256)',
          'inputs': ((1, b, 8, 56, 56, 256), (256,), (256,)), 'in_cond': False,
          'native': lambda x, s, o: native.group_normalize(x, s, o, 1e-5, True)[0],
          'cpu': lambda x, s, o: cpu.group_normalize(x, s, o, 1e-5, True)[0]},
  }


def _fwd_and_vjp(fn, in_cond: bool):
  """A jitted function computing ``fn``'s output and the gradients of all its inputs."""

  def run(*args):
    def body(*a):
      y, vjp = jax.vjp(fn, *a)
      return vjp(jnp.ones_like(y))
    if in_cond:  # as the audio pathway runs under DropPathway
      zeros = lambda *a: tuple(jnp.zeros_like(x) for x in a)
      return jax.lax.cond(args[0].sum() > -1e30, body, zeros, *args)
    return body(*args)

  return jax.jit(run)


def time_case(case: dict, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  args = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in case['inputs']]
  fns = {impl: _fwd_and_vjp(case[impl], case['in_cond']) for impl in ('native', 'cpu')}
  for fn in fns.values():  # compile, and touch the temporaries once
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
  times = {impl: [] for impl in fns}
  for _ in range(repeats):
    for impl, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[impl].append(1e3 * (time.perf_counter() - start))
  native_ms, cpu_ms = (statistics.median(times[i]) for i in ('native', 'cpu'))
  return {'layer': case['layer'], 'native_ms': round(native_ms, 1), 'cpu_ms': round(cpu_ms, 1),
          'native_over_cpu': round(native_ms / cpu_ms, 2)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--only', action='append', default=[], help='rule name (repeatable)')
  args = parser.parse_args(argv)
  host_memory.keep_host_memory()  # as avslowfast_jax.main runs CPU training
  for name, case in cases(args.batch_size).items():
    if args.only and name not in args.only:
      continue
    print(json.dumps({'rule': name, **time_case(case, args.repeats),
                      'platform': jax.default_backend()}), flush=True)


if __name__ == '__main__':
  errors.run(main)

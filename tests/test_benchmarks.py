"""The benchmark scripts run and print the JSON the README and the notes quote.

Small settings only: these check that the scripts work, not how fast anything
is (the figures come from running the scripts as the README says).
"""

import json
import math
import os
import subprocess
import sys

import pytest

from avslowfast_jax.tools import accelerators
import train_testdata as td

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=600, **env_extra):
  # One CPU device, as a user runs them; the tests' compile-fast flags, since
  # these runs check the scripts, not their speed.
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(1), **env_extra)
  result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_peak_flops_table():
  assert accelerators.peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert accelerators.peak_flops('NVIDIA A100-SXM4-80GB', 'float32') == 19.5e12
  assert accelerators.peak_flops('TPU v5 lite', 'bfloat16') == 197e12
  assert accelerators.peak_flops('TPU v4', 'float32') is None  # no vendor fp32 figure
  assert accelerators.peak_flops('cpu', 'float32') is None
  assert accelerators.utilisation(989e12 / 2, 'NVIDIA H200', 'bfloat16') == 0.5


@pytest.mark.slow
def test_train_step_benchmark_variants_interleaved():
  """An A/B of the two convolution implementations: both variants compiled in
  one process, timed in turn, the same loss (same model, same batch), and every
  field the README quotes."""
  result = subprocess.run(
      [sys.executable, 'benchmarks/train_step.py', '--config', 'avslowfast_jax/studies/configs/quickstart.py:avslowfast',
       '--batch_size', '4', '--image_size', '64', '--steps', '2', '--warmup_steps', '1',
       '--variant', 'model.conv_impl=cpu', '--variant', 'model.conv_impl=native'],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, XLA_FLAGS=td.xla_flags(1)))
  assert result.returncode == 0, result.stderr[-3000:]
  cpu, native = [json.loads(l) for l in result.stdout.strip().splitlines()[-2:]]
  assert (cpu['conv_impl'], native['conv_impl']) == ('cpu', 'native')
  assert len(cpu['step_seconds_all']) == len(native['step_seconds_all']) == 2
  assert math.isfinite(cpu['loss'])
  assert math.isclose(cpu['loss'], native['loss'], rel_tol=1e-4, abs_tol=1e-5)
  out = cpu
  assert out['batch_size'] == 4 and out['image_size'] == 64 and out['platform'] == 'cpu'
  assert out['step_seconds'] > 0 and out['params'] > 0
  assert math.isclose(out['clips_per_sec'], 4 / out['step_seconds'], rel_tol=0.02)
  # Model FLOPs: 6 x the forward multiply-adds of 4 training clips; no peak on CPU.
  assert out['model_tflops_per_step'] > 0
  assert math.isclose(out['achieved_gflops_per_sec'],
                      1e3 * out['model_tflops_per_step'] / out['step_seconds'], rel_tol=0.02)
  assert out['mfu'] is None


def test_cpu_ops_benchmark_prints_each_rule():
  result = subprocess.run(
      [sys.executable, 'benchmarks/cpu_ops.py', '--batch_size', '1', '--repeats', '1',
       '--only', 'pointwise', '--only', 'spectrogram_conv_in_cond'],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, XLA_FLAGS=td.xla_flags(1)))
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(l) for l in result.stdout.strip().splitlines()]
  assert [r['rule'] for r in rows] == ['pointwise', 'spectrogram_conv_in_cond']
  for row in rows:
    assert row['native_ms'] > 0 and row['cpu_ms'] > 0 and row['platform'] == 'cpu'


@pytest.mark.slow
def test_input_pipeline_benchmark_small(tmp_path):
  out = _run(['benchmarks/input_pipeline.py', '--num_videos', '2', '--num_clips', '16',
              '--rounds', '1', '--batch_size', '4', '--baseline_clips', '2', '--num_workers', '1'],
             TMPDIR=str(tmp_path))  # its videos and shards go to a temporary folder
  for key in ('clips_per_sec', 'clips_per_sec_per_core', 'baseline_pyav_clips_per_sec',
              'speedup_per_core', 'mean_jpeg_kb', 'records_clips_per_cpu_sec',
              'ranges_clips_per_cpu_sec', 'decode_only_clips_per_cpu_sec',
              'ranges_cpu_rate_vs_decode_only', 'eval_videos_per_sec',
              'device_finish_ranges_clips_per_cpu_sec',
              'device_finish_ranges_cpu_rate_vs_decode_only'):
    assert out[key] > 0, key
  assert out['cores'] >= 1
  # A clip reads its frames and audio spans: about what it uses, a fraction of its record.
  assert out['mb_used_per_clip'] <= out['mb_read_per_clip'] <= 1.5 * out['mb_used_per_clip']
  assert out['mb_whole_record_per_clip'] > 2 * out['mb_read_per_clip']


@pytest.mark.slow
def test_pytorchvideo_baseline_runs():
  pytest.importorskip('torch')
  pytest.importorskip('pytorchvideo')
  # At its default 224 pixels: the builder's head pools a fixed 7x7 window.
  out = _run(['benchmarks/pytorchvideo_train_step.py', '--batch_size', '1', '--steps', '1'])
  assert out['params'] > 30_000_000  # AVSlowFast 8x8 R50, Kinetics-400 head
  assert out['step_seconds'] > 0 and math.isfinite(out['loss'])


@pytest.mark.slow  # three tiny train-step compiles and a data preparation
def test_device_check_reduced_has_every_field(tmp_path):
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(1))
  # No time budget: on a busy 2-core machine the reduced check alone can take minutes.
  output = tmp_path / 'device_check.json'
  result = subprocess.run([sys.executable, 'benchmarks/device_check.py', '--reduced',
                           '--budget_s', '1e9', '--output', str(output)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert json.loads(output.read_text()) == report
  assert report['reduced'] and report['backend'] == 'cpu' and report['num_devices'] == 1
  (row,) = report['train_steps']
  assert row['error'] is None, row
  for key in ('step_seconds', 'clips_per_sec', 'model_tflops_per_step',
              'achieved_tflops_per_sec', 'compile_seconds'):
    assert row[key] > 0, key
  assert row['mfu'] is None  # no peak figure for a CPU
  assert 'peak_bytes_in_use' in row
  assert set(row['memory_analysis_bytes']) == {'argument', 'output', 'temp', 'generated_code',
                                               'alias'}
  assert row['memory_analysis_bytes']['temp'] > 0
  drop = report['drop_pathway']
  assert drop['error'] is None, drop
  assert drop['step_seconds_always_on'] > 0 and drop['step_seconds_drop_0.8'] > 0
  assert 'saving' in drop
  finish = report['clip_finish']
  assert finish['error'] is None, finish
  assert finish['window_side'] == 39 and finish['ms_per_batch'] > 0  # ceil(32 * 48 / 40)
  # Here the tiny frames weigh less than the 2 s of audio samples; at 224 pixels, 2.8x less.
  assert finish['mb_per_clip_shipped'] > 0 and finish['mb_per_clip_host_finished'] > 0
  pipeline = report['input_pipeline']
  assert pipeline['error'] is None, pipeline
  assert pipeline['clips_per_sec'] > 0 and pipeline['cores'] >= 1
  assert pipeline['finish_on_device_clips_per_sec'] > 0


BLOCK_IMPORTS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'av', 'clu', 'librosa'):
      raise ImportError('not installed here: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_the_train_step_needs_no_tensorflow_or_pyav():
  """Accelerator images often lack TensorFlow and PyAV: the step and its benchmarks still build."""
  code = BLOCK_IMPORTS + """
sys.path[:0] = ['benchmarks', '.']
sys.argv = ['device_check.py']
import device_check
from avslowfast_jax import parallel
from avslowfast_jax.train import setup as setup_lib, state as state_lib
config = device_check.case_config('tiny_avslowfast_8x8_r50', device_check.REDUCED, 1, 'float32')
model, task, plan, lr_fn, tx = setup_lib.setup(config)
mesh = parallel.create_mesh()
state, shardings = state_lib.abstract_train_state(config, model, tx, mesh)
step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
import jax, jax.numpy as jnp
from avslowfast_jax.tools import model_stats
step.lower(state, model_stats.abstract_batch(config, 1), jax.ShapeDtypeStruct((2,), jnp.uint32))
print('tensorflow' in sys.modules, 'av' in sys.modules, plan.total_steps)
"""
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(1))
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['False', 'False', '1000']

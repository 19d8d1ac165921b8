"""The benchmark scripts run and print the JSON the README and the notes quote.

Small settings only: these check that the scripts work, not how fast anything
is (the figures come from running the scripts as the README says).
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from avslowfast_jax.tools import accelerators
import train_testdata as td

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import device_check  # noqa: E402  (benchmarks/device_check.py)
import profile_trace  # noqa: E402  (benchmarks/profile_trace.py)


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


def _check_sweep_and_profile(report):
  sweep = report['batch_sweep']
  assert sweep['variant'] == 'tiny_avslowfast_8x8_r50' and sweep['dtype'] == 'float32'
  assert [r['per_device_batch'] for r in sweep['rows']] == sweep['batches']
  assert sweep['stopped_by'] == 'end'
  for row in sweep['rows']:
    assert row['error'] is None, row
    assert row['compile_seconds'] > 0 and row['clips_per_sec'] > 0 and row['state_bytes'] > 0
    profile = row['profile']
    assert profile['error'] is None, profile
    kinds = {k['kind']: k for k in profile['kinds']}
    assert 'convolution / matmul' in kinds  # a conv net
    shares = [k['share_of_op_time'] for k in profile['kinds'] if k['share_of_op_time'] is not None]
    assert sum(shares) == pytest.approx(1.0)
    times = [o['seconds_per_step'] for o in profile['top_ops']]
    assert times == sorted(times, reverse=True) and times[0] > 0
  assert sweep['best']['per_device_batch'] in sweep['batches']


def _check_torch(report, builders, jax_batches=(2, 4)):
  rows = report['torch']['rows']
  assert [r['builder'] for r in rows if r.get('error') is None] == \
      [b for b in builders for _ in (2, 4)]
  for row in rows:
    if row.get('error') is None:
      # The sweep's dtype: fp32 in the reduced check (bf16 autocast: test_torch_slowfast.py).
      assert row['variant'] == 'tiny_avslowfast_8x8_r50' and row['dtype'] == 'float32'
      assert row['clips_per_sec'] > 0 and row['model_tflops_per_step'] > 0
      assert not row['autocast'] and row['channels_last_3d']
  # Each PyTorch row beside the jax sweep row of its batch.
  pairs = {(c['torch_builder'], c['per_device_batch']): c for c in report['comparison']}
  assert set(pairs) == {(b, n) for b in builders for n in jax_batches}
  for c in pairs.values():
    assert c['jax_over_torch'] == pytest.approx(c['jax_clips_per_sec'] / c['torch_clips_per_sec'])
    # The same network: the FLOP counts of the two frameworks agree (the tiny model's
    # AVS projections, counted by ours only, weigh a little here).
    if c['torch_builder'] == 'minimal':
      assert c['torch_model_tflops_per_step'] == pytest.approx(c['jax_model_tflops_per_step'],
                                                               rel=0.05)


@pytest.mark.slow  # tiny train-step compiles, a PyTorch run and a data preparation: minutes
def test_device_check_reduced_has_every_field(tmp_path):
  pytest.importorskip('torch')
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
  assert 'of step' in result.stderr and 'jax/torch' in result.stderr  # tables, summary
  builders = ['minimal'] + (['pytorchvideo'] if importlib.util.find_spec('pytorchvideo') else [])
  _check_torch(report, builders)
  _check_sweep_and_profile(report)
  (row,) = report['train_steps']
  assert row['error'] is None, row
  assert row['from_batch_sweep']  # the sweep measured this case: no second compile
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


# Packages the GPU machines' image lacks (and the check must not need outside
# input_pipeline), hidden in every process through a sitecustomize: the path
# finder no longer finds them, so importing one raises ModuleNotFoundError and
# importlib.util.find_spec returns None, as where they are not installed.
GPU_IMAGE_LACKS = ('tensorflow', 'tensorflow_datasets', 'av', 'clu', 'librosa', 'pytorchvideo',
                   'fvcore', 'iopath')
HIDE_PACKAGES = '''
import sys
from importlib.machinery import PathFinder
HIDDEN = %r
class HidingPathFinder:
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split('.')[0] in HIDDEN:
      return None
    return PathFinder.find_spec(name, path, target)
  @classmethod
  def invalidate_caches(cls):
    PathFinder.invalidate_caches()
sys.meta_path[:] = [HidingPathFinder if f is PathFinder else f for f in sys.meta_path]
''' % (GPU_IMAGE_LACKS,)


@pytest.mark.slow  # a tiny train-step compile and a PyTorch run
def test_device_check_gpu_plan_runs_without_what_the_gpu_image_lacks(tmp_path):
  pytest.importorskip('torch')
  site = tmp_path / 'site'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(HIDE_PACKAGES)
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(1),
             PYTHONPATH=os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run([sys.executable, 'benchmarks/device_check.py', '--reduced', '--plan',
                           'gpu', '--budget_s', '1e9', '--sweep_batches', '2',
                           '--skip', 'train_steps', 'drop_pathway', 'input_pipeline'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report['plan'] == 'gpu'
  assert report['skip'] == ['train_steps', 'drop_pathway', 'input_pipeline']
  assert 'input_pipeline' not in report and report['train_steps'] == []
  _check_torch(report, ['minimal'], jax_batches=(2,))
  (ptv,) = [r for r in report['torch']['rows'] if r['builder'] == 'pytorchvideo']
  assert ptv['error'] == 'skipped: pytorchvideo is not installed'
  _check_sweep_and_profile(report)
  # clip_finish's log-mels take their filterbank from data_pipelines.audio, a module that
  # imports TensorFlow: without it the case records that (and only that).
  assert report['clip_finish']['error'] in (
      None, "ModuleNotFoundError: No module named 'tensorflow'"), report['clip_finish']


def test_budget_and_memory_prediction():
  budget = device_check.Budget(100.0)
  assert budget.allows('jax a')  # nothing known: allowed while time is left
  budget.record('jax a', 95.0)
  assert not budget.allows('jax a') and budget.allows('jax b')
  assert 'over --budget_s=100' in budget.skipped('jax a')['error']
  row = {'per_device_batch': 8, 'state_bytes': 100,
         'memory_analysis_bytes': {'argument': 180, 'temp': 1000}}
  # The state stays; the batch (80) and the temporaries (1000) double.
  assert device_check.predicted_bytes(row, 16) == 100 + 2 * (80 + 1000)
  assert device_check.predicted_bytes({'per_device_batch': 8}, 16) is None


def test_comparison_pairs_rows_of_the_same_case():
  jax_row = {'variant': 'v', 'per_device_batch': 8, 'dtype': 'bfloat16', 'error': None,
             'clips_per_sec': 300.0, 'model_tflops_per_step': 1.0, 'mfu': 0.1}
  report = {
      'batch_sweep': {'rows': [jax_row, {**jax_row, 'per_device_batch': 16,
                                         'error': 'RESOURCE_EXHAUSTED'}]},
      'train_steps': [],
      'torch': {'rows': [
          {'variant': 'v', 'per_device_batch': 8, 'dtype': 'bfloat16', 'builder': 'minimal',
           'error': None, 'clips_per_sec': 200.0, 'model_tflops_per_step': 1.01, 'mfu': 0.07},
          {'variant': 'v', 'per_device_batch': 16, 'dtype': 'bfloat16', 'builder': 'minimal',
           'error': None, 'clips_per_sec': 210.0, 'model_tflops_per_step': 2.02, 'mfu': 0.07}]},
  }
  (row,) = device_check.comparison(report)
  assert row['per_device_batch'] == 8 and row['jax_over_torch'] == 1.5


def test_clip_finish_window_side_is_the_pipelines():
  pytest.importorskip('tensorflow')
  from data_pipelines import input_pipeline
  for variant in ('tiny_avslowfast_8x8_r50', 'avslowfast_4x16_r50'):
    config = device_check.model_config(variant, device_check.FULL, 'float32')
    for stored in (40, 256, 320):
      assert device_check.largest_window_side(config, stored) == \
          input_pipeline.largest_window_side(config, stored)


BLOCK_IMPORTS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'av', 'clu', 'librosa'):
      raise ModuleNotFoundError('not installed here: ' + name, name=name)
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


@pytest.mark.parametrize('name, hlo_op, kind', [
    ('sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64',
     'custom-call.12', 'convolution / matmul'),
    ('sm80_xmma_wgrad_implicit_gemm_indexed_bf16bf16', '', 'convolution / matmul'),
    ('cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_nn_align8', '',
     'convolution / matmul'),
    ('convolution.3', '', 'convolution / matmul'),
    ('dot.7', '', 'convolution / matmul'),
    ('input_reduce_fusion_12', 'fusion.12', 'batchnorm / reduction'),
    ('reduce.4', '', 'batchnorm / reduction'),
    ('loop_convert_fusion_3', 'fusion.3', 'elementwise / fusion'),  # 'convert' is no conv
    ('loop_multiply_fusion', '', 'elementwise / fusion'),
    ('fusion.21', '', 'elementwise / fusion'),
    ('loop_transpose_fusion_2', '', 'transpose / copy'),
    ('nchwToNhwcKernel', '', 'transpose / copy'),
    ('MemcpyD2H', '', 'transpose / copy'),
    ('copy.5', '', 'transpose / copy'),
    ('ncclDevKernel_AllReduce_Sum_f32_RING_LL', '', 'collective'),
    ('all-reduce.1', '', 'collective'),
    ('SomethingElse::Run', '', 'other'),
])
def test_profile_kinds(name, hlo_op, kind):
  assert profile_trace.kind_of(name, hlo_op) == kind


def _gpu_like_events():
  """Two steps of a GPU trace: kernels on a stream, host events beside them (not counted)."""
  E = profile_trace.Event
  dev, stream, host = '/device:GPU:0', 'Stream #7(Compute)', '/host:CPU'
  out = []
  for step in range(2):
    t = 1000.0 * step
    out += [E(dev, stream, 'sm90_xmma_fprop_implicit_gemm_x', t, 500.0, {'hlo_op': 'conv.1'}),
            E(dev, stream, 'input_reduce_fusion', t + 500, 200.0, {'hlo_op': 'fusion.2'}),
            E(dev, stream, 'loop_add_fusion', t + 700, 100.0, {'hlo_op': 'fusion.3'}),
            E(host, 'python', 'PjitFunction(train_step)', t, 900.0, {})]
  return out


def test_profile_summary_of_gpu_like_events():
  summary = profile_trace.summarise(_gpu_like_events(), steps=2, step_seconds=1e-3)
  assert summary['events_from'] == 'device streams' and summary['ops_per_step'] == 3
  kinds = {k['kind']: k for k in summary['kinds']}
  assert kinds['convolution / matmul']['seconds_per_step'] == pytest.approx(500e-6)
  assert kinds['convolution / matmul']['share_of_step'] == pytest.approx(0.5)
  assert kinds['batchnorm / reduction']['share_of_op_time'] == pytest.approx(0.25)
  # 800 us of kernels in a 1000 us step: 200 us idle.
  assert kinds[profile_trace.IDLE]['share_of_step'] == pytest.approx(0.2)
  assert summary['busy_fraction'] == pytest.approx(0.8)
  # Operations by HLO instruction, kernels by name.
  assert summary['top_ops'][0]['name'] == 'conv.1'
  assert summary['top_kernels'][0]['name'] == 'sm90_xmma_fprop_implicit_gemm_x'
  text = profile_trace.format_table(summary)
  assert 'convolution / matmul' in text and 'idle' in text
  # Device lines of another name count too; the profiler's derived lines do not.
  renamed = [profile_trace.Event(e.process, 'Queue 0' if 'Stream' in e.thread else e.thread,
                                 e.name, e.start_us, e.duration_us, e.args)
             for e in _gpu_like_events()]
  renamed.append(profile_trace.Event('/device:GPU:0', 'XLA Modules', 'jit_train_step', 0.0,
                                     1800.0, {}))
  again = profile_trace.summarise(renamed, steps=2, step_seconds=1e-3)
  assert again['events_from'] == 'device lines' and again['ops_per_step'] == 3
  with pytest.raises(ValueError, match='no device operation'):
    profile_trace.summarise([e for e in _gpu_like_events() if 'host' in e.process], 2, 1e-3,
                            device_only=True)


def test_profile_of_a_cpu_trace():
  """A real trace (jax.profiler on the CPU backend) of a small conv + BatchNorm + ReLU step:
  the parser finds the operations, names their kinds from the program's HLO (a
  convolution among them), and the shares add up; the Chrome-trace JSON and the
  xplane give the same convolutions."""
  import jax
  import jax.numpy as jnp

  def step(x, w):
    def loss(w):
      y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      mean = jnp.mean(y, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(y - mean), axis=(0, 1, 2))
      y = jax.nn.relu((y - mean) * jax.lax.rsqrt(var + 1e-5))
      return jnp.mean(jnp.square(jnp.transpose(y, (0, 3, 1, 2))))
    return w - 0.1 * jax.grad(loss)(w)

  x = jnp.ones((4, 32, 32, 16)) * jnp.arange(16.0)
  w = jnp.full((3, 3, 16, 32), 0.01)
  compiled = jax.jit(step).lower(x, w).compile()
  hlo = compiled.as_text()
  op_kinds = profile_trace.hlo_op_kinds(hlo)
  assert 'convolution / matmul' in {kind for kind, _ in op_kinds.values()}
  run = lambda: jax.block_until_ready(compiled(x, w))
  run()
  summaries = [profile_trace.trace_steps(run, steps=3, source=source, hlo_text=hlo)
               for source in ('json', 'xplane')]
  for summary in summaries:
    assert summary['steps'] == 3 and summary['ops_per_step'] >= 1
    assert summary['kinds_from_hlo'] == pytest.approx(1.0)
    kinds = {k['kind']: k for k in summary['kinds']}
    assert 'convolution / matmul' in kinds, summary
    assert 'conv_general_dilated' in ' '.join(o['op_name'] for o in summary['top_ops'])
    shares = [k['share_of_op_time'] for k in summary['kinds']
              if k['share_of_op_time'] is not None]
    assert sum(shares) == pytest.approx(1.0)
    times = [o['seconds_per_step'] for o in summary['top_ops']]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert 0 < summary['busy_fraction']
  # Both files hold the same operations (a sub-microsecond one may be missing from either).
  json_convs, xplane_convs = ({o['name'] for o in s['top_ops']
                               if o['kind'] == 'convolution / matmul'} for s in summaries)
  assert json_convs == xplane_convs and json_convs

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=600, **env_extra):
  env = dict(os.environ, **env_extra)
  env.pop('XLA_FLAGS', None)  # one CPU device, as a user runs them
  result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_step_benchmark_tiny():
  out = _run(['benchmarks/train_step.py', '--config', 'configs/quickstart.py:avslowfast',
              '--batch_size', '4', '--steps', '2', '--image_size', '64'])
  assert out['batch_size'] == 4 and out['image_size'] == 64 and out['platform'] == 'cpu'
  assert out['step_seconds'] > 0 and len(out['step_seconds_all']) == 2
  assert math.isclose(out['clips_per_sec'], 4 / out['step_seconds'], rel_tol=0.02)
  assert math.isfinite(out['loss']) and out['params'] > 0


def test_ab_train_step_with_the_previous_lowerings():
  """The A/B harness compiles the current lowerings and all previous ones
  (benchmarks/previous_lowerings.py) into the same model: same loss."""
  result = subprocess.run(
      [sys.executable, 'benchmarks/ab_train_step.py', '--config',
       'configs/quickstart.py:avslowfast', '--batch_size', '2', '--image_size', '64',
       '--rounds', '2', '--variant', 'pass', '--variant',
       'previous.one_axis_as_2d_conv(); previous.fast_stem_as_sum_of_2d_convs(); '
       'previous.kxk_kernel_grad_needs_28x28(); previous.no_phase_split()'],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env={k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'})
  assert result.returncode == 0, result.stderr[-3000:]
  current, previous = [json.loads(l) for l in result.stdout.strip().splitlines()[-2:]]
  assert current['variant'] == 'pass' and len(current['all']) == len(previous['all']) == 2
  assert math.isfinite(current['loss'])
  assert math.isclose(current['loss'], previous['loss'], rel_tol=1e-4, abs_tol=1e-5)


def test_input_pipeline_benchmark_small(tmp_path):
  out = _run(['benchmarks/input_pipeline.py', '--num_videos', '2', '--num_clips', '16',
              '--batch_size', '4', '--baseline_clips', '2', '--num_workers', '1'],
             TMPDIR=str(tmp_path))  # its videos and shards go to a temporary folder
  for key in ('clips_per_sec', 'clips_per_sec_per_core', 'baseline_pyav_clips_per_sec',
              'speedup_per_core', 'mean_jpeg_kb'):
    assert out[key] > 0, key
  assert out['cores'] >= 1


def test_pytorchvideo_baseline_runs():
  pytest.importorskip('torch')
  pytest.importorskip('pytorchvideo')
  out = _run(['benchmarks/pytorchvideo_train_step.py', '--batch_size', '1', '--steps', '1'])
  assert out['params'] > 30_000_000  # AVSlowFast 8x8 R50, Kinetics-400 head
  assert out['step_seconds'] > 0 and math.isfinite(out['loss'])

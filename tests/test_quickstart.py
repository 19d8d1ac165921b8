"""The main job's smallest setting, end to end: synthetic mp4s ->
shards -> train -> multi-view eval -> export -> predict -> plots -> summary.
"""

import json
import os
import subprocess
import sys

import pytest

import train_testdata as td

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_smallest_setting(tmp_path):
  workdir = tmp_path / 'qs'
  # One CPU device, as a user's machine; the tests' compile-fast flags (the
  # quickstart's compiles, not its 60 steps, take most of this test's time).
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(1))
  cmd = [sys.executable, '-m', 'avslowfast_jax.quickstart', '--workdir', str(workdir),
         '--num_videos', '10', '--steps', '60', '--variants', 'avslowfast']
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  assert 'Quickstart finished' in proc.stdout

  summary = json.loads((workdir / 'summary.json').read_text())
  run_dir = workdir / 'runs' / 'avslowfast'
  # A checkpoint at the last step, the evaluation, the export, the plots.
  assert (run_dir / 'checkpoints' / '60').is_dir()
  results = json.loads((run_dir / 'eval_results.json').read_text())
  assert results['num_videos'] == 16  # 2 validation videos per class x 8 classes
  assert len(results['per_class_accuracy']) == 8
  for name in ('config.json', 'label_map.json'):
    assert (run_dir / 'export' / name).exists(), name
  for path in summary['plots'].values():
    assert os.path.getsize(path) > 10_000, path  # a real PNG, not an empty figure
  # The exported model's prediction names one of the classes.
  assert any(name in summary['prediction']['output'] for name in summary['class_names'])
  # It learned something in 60 steps: above chance (1/8).
  assert summary['results']['avslowfast']['top1'] > summary['chance_top1']

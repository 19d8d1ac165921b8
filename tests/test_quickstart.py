"""The main job's smallest setting, end to end: synthetic mp4s ->
shards -> train -> multi-view eval -> export -> predict -> plots -> summary.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_smallest_setting(tmp_path):
  workdir = tmp_path / 'qs'
  # One CPU device and XLA's default optimisation, as on a user's machine: at this
  # model size the optimised steps save more than the tests' compile-fast flags
  # (tests/train_testdata.py:xla_flags) save in compiling.
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  # DropPathway at a constant 0.3, not the quickstart's ramp from 1.0: with the audio dropped
  # on most of only 60 steps the model is still at chance; at 0.3 the audio classes make
  # the check below meaningful this early.
  cmd = [sys.executable, '-m', 'avslowfast_jax.quickstart', '--workdir', str(workdir),
         '--num_videos', '10', '--num_val_videos', '2', '--steps', '60', '--variants', 'avslowfast',
         '--override=--config.train.drop_pathway_prob=0.3']
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  assert 'Quickstart finished' in proc.stdout

  summary = json.loads((workdir / 'summary.json').read_text())
  # The quickstart's default sync events, not the generator's.
  made = json.loads((workdir / 'videos' / 'classes.json').read_text())['settings']
  assert made['sync_events'] == 'ringing'
  assert summary['steps'] == {'avslowfast': 60}
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


def test_summary_compares_each_modalitys_classes(capsys):
  # Per-class top-1 of the three models, in the label map's (alphabetical) order.
  from avslowfast_jax.studies import quickstart  # the module under test; light (no jax)
  names = ['click_in_sync', 'click_out_of_sync', 'hum', 'left_right', 'noise_bursts',
           'rotating', 'up_down', 'whistle']
  modalities = {'click_in_sync': 'audiovisual', 'click_out_of_sync': 'audiovisual',
                'hum': 'audio', 'noise_bursts': 'audio', 'whistle': 'audio',
                'left_right': 'visual', 'up_down': 'visual', 'rotating': 'visual'}
  per_class = {'avslowfast': [0.5, 0.5, 1.0, 0.875, 1.0, 1.0, 0.75, 1.0],
               'slowfast': [0.5, 0.5, 0.25, 0.875, 0.5, 1.0, 1.0, 0.25],
               'audio': [0.5, 0.5, 1.0, 0.25, 1.0, 0.5, 0.25, 0.875]}
  groups = quickstart.modality_groups(names, modalities, per_class)
  assert groups['visual']['classes'] == ['left_right', 'rotating', 'up_down']
  assert groups['visual']['mean']['slowfast'] == pytest.approx((0.875 + 1 + 1) / 3)
  # up_down 75% < SlowFast's 100%: not at least as good on every visual class.
  assert groups['visual']['avslowfast_at_least'] == {'slowfast': False, 'audio': True}
  assert groups['audio']['avslowfast_at_least'] == {'slowfast': True, 'audio': True}
  summary = {'minutes': 1.0, 'steps': {'avslowfast': 1300, 'slowfast': 600, 'audio': 600},
             'results': {v: {'top1': 0.5} for v in per_class},
             'chance_top1': 0.125, 'class_names': names, 'per_class_top1': per_class,
             'modality_groups': groups, 'prediction': None, 'workdir': '/w', 'plots': {},
             'export_dir': None, 'tensorboard': 'tb'}
  quickstart.print_summary(summary, list(per_class))
  out = capsys.readouterr().out
  assert '(training steps: AVSlowFast 1300, SlowFast 600, Audio 600)' in out
  assert 'AVSlowFast >= SlowFast (visual only) on every visual class: no' in out
  assert 'AVSlowFast >= Audio only on every audio class: yes' in out


def test_existing_videos_with_other_sync_events_are_an_error(tmp_path):
  from avslowfast_jax.studies import quickstart  # pylint: disable=g-import-not-at-top
  from data_pipelines.errors import UserError  # pylint: disable=g-import-not-at-top
  videos = tmp_path / 'videos'
  videos.mkdir()
  (videos / 'manifest.csv').write_text('path,label\n')
  (videos / 'classes.json').write_text(json.dumps({'settings': {'sync_events': 'brief'}}))

  def must_not_run(cmd):
    raise AssertionError(f'ran {cmd}')

  with pytest.raises(UserError, match='brief sync events, not ringing'):
    quickstart.make_data(str(tmp_path), 4, 0, must_not_run, sync_events='ringing')
  # Asked for what is there, or for the generator's default: the stage is skipped.
  (tmp_path / 'shards').mkdir()
  (tmp_path / 'shards' / 'label_map.json').write_text('{}')
  for asked in ('brief', None):
    quickstart.make_data(str(tmp_path), 4, 0, must_not_run, sync_events=asked)

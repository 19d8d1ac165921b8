"""The ablation tool (avslowfast_jax/studies/ablate.py): run plan, shared runs,
aggregation over seeds, tables and plot; and one small run for real."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train_testdata as td
from avslowfast_jax.studies import ablate
from data_pipelines import errors
from data_pipelines.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ['click_in_sync', 'click_out_of_sync', 'hum', 'left_right', 'noise_bursts', 'rotating',
         'up_down', 'whistle']
MODALITIES = {'click_in_sync': 'audiovisual', 'click_out_of_sync': 'audiovisual',
              'hum': 'audio', 'noise_bursts': 'audio', 'whistle': 'audio',
              'left_right': 'visual', 'up_down': 'visual', 'rotating': 'visual'}


def test_plan_trains_a_shared_setting_once_per_seed():
  runs, tables = ablate.plan(list(ablate.STUDIES), [0, 1, 2])
  names = [r.name for r in runs]
  # The default AVSlowFast is the P_d 0.8 row, the AVS res3+res4+pool5 row and the
  # res3,4 laterals row: one run per seed.
  defaults = {t: [n for row, n in rows if row.key in ('0.8', 'res3_res4_pool5', 'res3_res4')]
              for t, rows in tables.items()}
  assert defaults == {'drop_pathway': ['avslowfast'], 'avs': ['avslowfast'],
                      'fusion': ['avslowfast']}
  assert [r.seed for r in runs if r.name == 'avslowfast'] == [0, 1, 2]
  # 8 trained settings and the late fusion per seed, each once; the lateral rows
  # res4 and res2,3,4 are not default rows.
  assert len(runs) == 3 * 9 and len({(r.name, r.seed) for r in runs}) == len(runs)
  assert not any('res2' in n or n.endswith('stages=res4') for n in names)
  every_row, _ = ablate.plan([f'{s}:all' for s in ablate.STUDIES], [0])
  assert len(every_row) == 11
  assert 'avslowfast-model.audio_lateral_stages=res2+res3+res4' in [r.name for r in every_row]
  fusion = [r for r in runs if r.members]
  assert [(r.name, r.members) for r in fusion] == [('slowfast+audio', ('slowfast', 'audio'))] * 3
  # A fusion comes after its members within a seed.
  for r in fusion:
    before = [(x.name, x.seed) for x in runs[:runs.index(r)]]
    assert ('slowfast', r.seed) in before and ('audio', r.seed) in before
  # A setting's name says what differs from its variant; different settings differ.
  assert 'avslowfast-train.drop_pathway_prob=0.0' in names
  assert 'avslowfast-model.audio_lateral_stages=none' in names
  assert 'avslowfast-avs.junctions=pool5' in names
  # The default seen through a user override is another setting.
  assert ablate.setting_name('avslowfast', ('train.drop_pathway_prob=0.8',),
                             ('train.drop_pathway_prob=0.3',)) == \
      'avslowfast-train.drop_pathway_prob=0.8'


def test_plan_selects_rows_and_rejects_unknown_ones():
  runs, tables = ablate.plan(['fusion:slowfast+audio'], [0])
  assert [r.name for r in runs] == ['slowfast', 'audio', 'slowfast+audio']
  assert [row.key for row, _ in tables['fusion']] == ['slowfast+audio']
  with pytest.raises(UserError, match="unknown study 'dropout'"):
    ablate.plan(['dropout'], [0])
  with pytest.raises(UserError, match='no row 0.3 in drop_pathway'):
    ablate.plan(['drop_pathway:0.3'], [0])
  with pytest.raises(UserError, match='no field'):
    ablate.plan(['avs'], [0], ['train.dropout=0.1'])


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
  for argv, message in ((['--seeds', '0', 'one'], '--seeds 0 one'),
                        (['--seeds', '1', '1'], 'distinct'),
                        (['--studies', 'fusion', 'tables'], "unknown study 'tables'"),
                        (['--num_videos', '1'], 'at least 2 videos')):
    with pytest.raises(SystemExit) as exit_info:
      errors.run(ablate.main, ['--workdir', str(tmp_path / 'w'), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / 'w').exists()  # nothing done before the arguments are checked


def test_class_groups_of_one_run():
  per_class = [0.5, 0.0, 1.0, 0.75, 1.0, 0.5, 0.25, None]
  got = ablate.summarize({'top1': 0.5, 'per_class_accuracy': per_class}, NAMES, MODALITIES)
  assert got['top1'] == 0.5
  assert got['visual_classes'] == pytest.approx((0.75 + 0.5 + 0.25) / 3)
  assert got['sync_classes'] == pytest.approx(0.25)
  assert np.isnan(got['audio_classes'])  # a class without validation videos


def _results(tables, seeds):
  """Hand-made per-run numbers: each run's top-1 = base + 0.125 * seed."""
  out = {}
  for rows in tables.values():
    for i, (_, name) in enumerate(rows):
      base = 0.25 + 0.0625 * i
      out[name] = {s: {'top1': base + 0.125 * s, 'visual_classes': 1.0,
                       'audio_classes': 0.5 * s, 'sync_classes': 0.5} for s in seeds}
  return out


def test_aggregate_table_and_plot(tmp_path):
  seeds = [0, 1, 2]
  _, tables = ablate.plan([f'{s}:all' for s in ablate.STUDIES], seeds)
  results = _results(tables, seeds)
  results['avslowfast'] = {s: {'top1': v, 'visual_classes': 1.0, 'audio_classes': 0.0,
                               'sync_classes': 0.5} for s, v in zip(seeds, (0.5, 0.625, 1.0))}
  del results['avslowfast-avs.enabled=False'][2]  # a run not done yet
  studies = ablate.aggregate(results, tables, seeds)
  default_rows = [e for s in studies.values() for e in s['rows'] if e['run'] == 'avslowfast']
  assert len(default_rows) == 3  # the shared run, in each study
  for e in default_rows:
    assert e['mean']['top1'] == pytest.approx(0.708333333)
    assert e['std']['top1'] == pytest.approx(np.std([0.5, 0.625, 1.0], ddof=1))
    assert e['std']['visual_classes'] == 0.0
  no_avs = studies['avs']['rows'][0]
  assert no_avs['seeds'] == [0, 1] and no_avs['values']['top1'] == [0.25, 0.375]
  assert no_avs['std']['top1'] == pytest.approx(0.0883883476)  # sample std of two
  one_seed = ablate.aggregate(results, tables, [0])
  assert one_seed['fusion']['rows'][0]['std']['top1'] is None

  text = ablate.markdown(studies)
  assert '### DropPathway rate P_d (paper Table 5c)' in text
  assert ('| P_d 0.8 | 3 | 70.8 ± 26.0 | 100.0 ± 0.0 | 0.0 ± 0.0 | 50.0 ± 0.0 | '
          '77.0 (Table 5c) |') in text
  assert '| no AVS | 2 | 31.2 ± 8.8 |' in text
  assert '| SlowFast + Audio (late fusion) | 3 |' in text
  assert '76.1 (Table 6)' in text and '24.8 (Table A.3)' in text
  for study in ablate.STUDIES.values():
    for row in study[1]:
      assert f'| {row.label} |' in text

  pytest.importorskip('matplotlib')
  path = ablate.plot(studies, str(tmp_path / 'ablate.png'))
  assert os.path.getsize(path) > 10_000  # three panels of bars, not an empty figure


@pytest.mark.slow
def test_ablate_runs_for_real(tmp_path):
  """The data stage, then the Audio-only row trained a few steps (the tests' tiny
  model) and evaluated in the tool's process; tables, JSON and plot written."""
  workdir = tmp_path / 'ablate'
  tiny = [f'{k}={td.flag_value(v)}' for k, v in td.TINY.items() if k != 'model.num_classes']
  cmd = [sys.executable, '-m', 'avslowfast_jax.studies.ablate', '--workdir', str(workdir),
         '--seeds', '0', '--steps', '2', '--num_videos', '2', '--studies', 'fusion:audio',
         '--set', *tiny, 'model.width=8', 'model.audio_lateral_hidden_channels=8',
         'train.warmup_steps=1']
  env = td.subprocess_env(devices=1)
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = json.loads((workdir / 'ablate.json').read_text())
  assert [(r['name'], r['seed']) for r in out['runs']] == [('audio', 0)]
  run = out['runs'][0]
  results = json.loads((tmp_path / 'ablate' / 'runs' / 'audio' / 'seed0' /
                        'eval_results.json').read_text())
  assert results['num_videos'] == 8  # 1 validation video per class (2 videos per class)
  assert run['top1'] == results['top1']
  for key, _ in ablate.METRICS:
    assert 0.0 <= run[key] <= 1.0, (key, run[key])
  row = out['studies']['fusion']['rows'][0]
  assert row['run'] == 'audio' and row['seeds'] == [0] and row['std']['top1'] is None
  assert '| Audio only | 1 |' in (workdir / 'ablate.md').read_text()
  assert (workdir / 'ablate.png').stat().st_size > 10_000


def test_an_evaluated_run_is_reused_only_with_its_settings(tmp_path):
  config = ablate.run_config('audio', (), 0, 5, str(tmp_path / 'shards'))
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text(config.to_json_best_effort(indent=2))
  (run / 'eval_results.json').write_text(json.dumps({'top1': 0.25}))
  # Evaluated: nothing is trained (there is no data to train on).
  assert ablate.train_and_eval(config, str(run)) == ({'top1': 0.25}, 0.0)
  other = ablate.run_config('audio', (), 0, 7, str(tmp_path / 'shards'))
  with pytest.raises(UserError, match='other settings .train.total_steps.'):
    ablate.train_and_eval(other, str(run))


def test_late_fusion_row_is_the_mean_of_its_members_scores(tmp_path):
  from avslowfast_jax.studies.configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config('slowfast')
  labels = np.arange(8)
  members = []
  for name, right in (('slowfast', (3, 5, 6)), ('audio', (2, 4, 7))):
    # Each member is sure of its modality's classes and unsure (a near tie) elsewhere.
    scores = np.full((8, 8), 0.1)
    scores[np.arange(8), (labels + 1) % 8] = 0.2
    scores[list(right), list(right)] = 0.9
    path = tmp_path / name
    path.mkdir()
    (path / 'config.json').write_text(config.to_json_best_effort())
    np.savez(path / 'per_video_scores.npz', video_index=labels, scores=scores, labels=labels)
    members.append(str(path))
  out = str(tmp_path / 'slowfast+audio')
  metrics = ablate.late_fusion(out, members)
  assert os.path.exists(os.path.join(out, 'eval_results.json'))
  got = ablate.summarize(metrics, NAMES, MODALITIES)
  # Alphabetical NAMES: 3, 5, 6 are the visual classes, 2, 4, 7 the audio ones.
  assert got == {'top1': 0.75, 'visual_classes': 1.0, 'audio_classes': 1.0,
                 'sync_classes': 0.0}

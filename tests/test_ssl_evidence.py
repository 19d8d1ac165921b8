"""The self-supervised evidence: its probe, its control, its record and the results page."""

import copy
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avslowfast_jax import cli
from avslowfast_jax.studies import results, ssl_evidence
from avslowfast_jax.tools import transfer
from avslowfast_jax.train import optimizer as optimizer_lib
from avslowfast_jax.train import schedules
from configs import ucf101


# -------------------------------------------------------- the committed record
def _committed():
  with open(results.record_path('evidence')) as f:
    return json.load(f)


def test_results_page_has_the_evidence_table():
  # tests/test_results_page.py checks that the table is the rendering of the record.
  with open(results.PAGE) as f:
    page = f.read()
  assert '<!-- table: evidence -->' in page
  assert results.RENDERERS['evidence'] is results.evidence_table


def test_committed_record_says_what_made_it():
  record = _committed()
  versions = record['environment']['versions']
  for library in ('jax', 'flax', 'optax', 'tensorflow', 'numpy'):
    assert versions[library], library
  assert record['environment']['cpu_count'] >= 1 and record['environment']['platform']
  settings = record['settings']
  assert settings['upright'] is True and settings['probe_normalise'] == 'zscore'
  for name in ssl_evidence.BACKBONES:
    assert sorted(record['probe'][name]) == [str(s) for s in settings['seeds']], name
    for metrics in record['probe'][name].values():
      assert 0 <= metrics['top1'] <= 1  # fractions, as every record's figures
  assert record['timing']['minutes'] > 0 and record['timing']['cpu_minutes'] > 0
  assert record['goal'] == ssl_evidence.goal(record)


# ------------------------------------------------------------ the tables
def _record(tops, per_class=None):
  """A record with the given top-1 (fractions) per backbone and seed."""
  probe = {name: {str(s): {'top1': t, 'per_class_top1': per_class or [t] * 8}
                  for s, t in enumerate(values)} for name, values in tops.items()}
  return {'settings': {'seeds': [0, 1, 2], 'pretrain_steps': 10,
                       'class_names': ['click_in_sync', 'click_out_of_sync', 'hum', 'left_right',
                                       'noise_bursts', 'rotating', 'up_down', 'whistle']},
          'probe': probe,
          'pretrain': {'avs_rotation': {str(s): {'loss_rotation': 0.5, 'rotation_top1': 0.8,
                                                 'loss_avs': 0.3, 'avs_top1': 0.9,
                                                 'seconds': 60.0} for s in range(3)}}}


def test_evidence_tables_and_goal():
  record = _record({'avs_rotation': [0.70, 0.72, 0.74], 'avs': [0.66, 0.66, 0.66],
                    'rotation': [0.60, 0.61, 0.62], 'calibrated': [0.60, 0.60, 0.60],
                    'random_init': [0.55, 0.55, 0.55]})
  checks = ssl_evidence.goal(record)
  assert checks['avs_rotation'] == {'points_over_control': 12.0, 'margin': 5.0, 'met': True}
  assert checks['avs']['met'] and checks['rotation']['met'] and checks['combined_best']
  text = ssl_evidence.evidence_markdown(record)
  assert '| AVS + rotation | 70.0 | 72.0 | 74.0 | 72.0 ± 2.0 | +12.0 ± 2.0 |' in text
  assert '| control: random weights, BN calibrated' in text
  assert '| AVS + rotation | 0.50 | 80.0 | 0.30 | 90.0 | – | 1.0 |' in text
  assert 'AVS + rotation +12.0 points over the control (goal: at least 5): met' in text
  # The labelled reference: its gain over the control is shown beside the others, not judged.
  record['probe']['supervised'] = {str(s): {'top1': 0.65, 'per_class_top1': [0.65] * 8}
                                   for s in range(3)}
  record['pretrain']['supervised'] = {str(s): {'top1': 0.57, 'seconds': 90.0} for s in range(3)}
  assert ssl_evidence.goal(record) == checks
  text = ssl_evidence.evidence_markdown(record)
  assert ('| reference: trained with the labels, the same steps (not label-free) | 65.0 | 65.0 '
          '| 65.0 | 65.0 ± 0.0 | +5.0 ± 0.0 |') in text
  assert '| reference: trained with the labels, the same steps (not label-free) | – | – | – | – ' \
      '| 57.0 | 1.5 |' in text
  # A single pretext that only ties the control does not meet its goal.
  record['probe']['rotation'] = copy.deepcopy(record['probe']['calibrated'])
  assert not ssl_evidence.goal(record)['rotation']['met']


def test_results_keeps_the_evidence_as_a_record_and_renders_it(tmp_path, monkeypatch):
  # python -m avslowfast_jax.studies.results --record evidence WORKDIR/evidence.json
  page = tmp_path / 'results.md'
  page.write_text('# Title\n\n<!-- table: evidence -->\nold table\n<!-- end table -->\n')
  monkeypatch.setattr(results, 'PAGE', str(page))
  monkeypatch.setattr(results, 'RECORDS', str(tmp_path / 'records'))
  monkeypatch.setattr(results, 'PAGES', (str(page),))
  record = _record({'avs_rotation': [0.7, 0.7, 0.7], 'calibrated': [0.5, 0.5, 0.5]})
  assert results.main(['--record', 'evidence', str(_write(tmp_path / 'e.json', record))]) == 0
  kept = results.read_record('evidence')
  assert kept['probe'] == record['probe'] and kept['environment']['versions']['jax']
  text = page.read_text()
  assert 'old table' not in text
  assert ssl_evidence.evidence_markdown(record) in text
  assert '| AVS + rotation | 70.0 | 70.0 | 70.0 | 70.0 ± 0.0 | +20.0 ± 0.0 |' in text
  assert results.main(['--check']) == 0


def _write(path, value):
  path.write_text(json.dumps(value))
  return path


# ------------------------------------------------------------- the probe
def test_zscored_probe_does_not_see_the_scale_of_the_features():
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((3, 12))
  labels = np.repeat(np.arange(3), 40)
  videos = np.arange(120) // 2  # two views per video
  feats = (centres[labels] + 0.8 * rng.standard_normal((120, 12))).astype(np.float32)
  train = ucf101.get_config('linear_split1').train
  train.total_steps, train.batch_size = 200, 32
  heads = []
  for scale in (1.0, 1 / 15):
    mean, std = transfer.feature_statistics(feats * scale)
    x = (feats * scale - mean) / std
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-3)
    heads.append(transfer.train_linear(x, labels, 3, train)[0])
  np.testing.assert_allclose(heads[0]['kernel'], heads[1]['kernel'], rtol=1e-3, atol=1e-4)
  # The paper's probe ('none') leaves them as they are.
  mean, std = transfer.feature_statistics(feats, 'none')
  assert not mean.any() and np.all(std == 1)
  # A dimension that never varies is not blown up.
  flat = np.concatenate([feats, np.full((120, 1), 3.0, np.float32)], 1)
  mean, std = transfer.feature_statistics(flat)
  assert np.all(np.isfinite((flat - mean) / std)) and std[-1] > 0
  # The weight decay is chosen on held-out videos: every view of a video on one side.
  held = transfer.held_out_videos(labels, videos, 0.25)
  assert not set(videos[held]) & set(videos[~held])
  assert [int(np.sum(held & (labels == c))) for c in range(3)] == [10, 10, 10]
  best, scores = transfer.select_weight_decay(feats, labels, videos, 3, train, (0.0, 10.0))
  assert best == 0.0 and scores[0.0][1] < scores[10.0][1]  # a huge decay underfits


def test_control_keeps_the_random_weights():
  # Learning rate 0 all the way, warm-up included: AdamW (and its decoupled weight
  # decay, scaled by the learning rate) leaves every weight where it was.
  config = ssl_evidence.pretrain_config()
  cli.set_fields(config, ssl_evidence.BACKBONES[ssl_evidence.CONTROL][1])
  config.train.total_steps = 50
  plan = schedules.make_plan(config.train, 0)
  lr = schedules.create_learning_rate_fn(config.train.schedule, plan)
  assert all(float(lr(s)) == 0.0 for s in range(50))
  tx = optimizer_lib.create_optimizer(config.train, lr)
  params = {'conv': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones((3,))}}
  grads = jax.tree.map(lambda p: 5 * p, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  moved = optax.apply_updates(params, updates)
  assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(moved),
                                                   jax.tree.leaves(params)))
  assert config.task == 'pretrain' and config.pretext.rotation and config.avs.enabled


def test_pretraining_end_is_the_mean_of_the_last_logged_steps(tmp_path):
  lines = [{'step': 10 * i, 'train/loss_rotation': float(i), 'train/rotation_top1': 0.1 * i}
           for i in range(1, 9)]
  (tmp_path / 'train_metrics.jsonl').write_text('\n'.join(json.dumps(l) for l in lines) + '\n')
  end = ssl_evidence.last_logged(str(tmp_path))
  assert end['loss_rotation'] == 6.0 and math.isclose(end['rotation_top1'], 0.6)
  assert end['steps'] == 80 and 'loss_avs' not in end


def test_supervised_reference_differs_from_the_pretexts_only_by_its_labels():
  pretext = ssl_evidence.pretrain_config()
  reference = ssl_evidence.pretrain_config()
  cli.set_fields(reference, ssl_evidence.BACKBONES['supervised'][1])
  assert reference.task == 'classification'
  assert not reference.pretext.rotation and not reference.avs.enabled
  for section in ('data', 'model', 'train'):
    assert reference[section].to_dict() == pretext[section].to_dict(), section


def test_evidence_videos_leave_room_for_real_hard_negatives():
  # Every training window of the evidence's videos has a hard negative inside the video
  # (shifted by at least the minimum), none past its end in zero padding.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data_pipelines import sampling  # pylint: disable=g-import-not-at-top
  d = ssl_evidence.pretrain_config().data
  window = d.num_frames * d.sampling_rate
  frames = int(ssl_evidence.DURATION_SEC * d.fps)
  min_shift = int(math.ceil(d.hard_negative_min_shift_sec * d.fps))
  for start in range(frames - window + 1):
    for uniform in (0.0, 0.5, 0.999):
      shifted = int(sampling.hard_negative_start(tf.constant(start), tf.constant(frames), window,
                                                 min_shift, tf.constant(uniform)))
      assert 0 <= shifted <= frames - window and abs(shifted - start) >= min_shift, (start,
                                                                                     shifted)

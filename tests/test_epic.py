"""EPIC-Kitchens: the separate verb and noun models' recipes, action accuracy from the pair of
models (tools/epic.py) and the test-server submission file."""

import json

import numpy as np
import pytest
import tensorflow as tf

from avslowfast_jax.tasks import get_task
from avslowfast_jax.tools import epic
from configs import epic_kitchens
from data_pipelines.errors import UserError


def _run(path, config, **arrays):
  path.mkdir()
  (path / 'config.json').write_text(config.to_json_best_effort())
  np.savez(path / 'per_video_scores.npz', **arrays)
  return str(path)


def _prepared_split(root, video_ids, split='validation', per_shard=3):
  """A prepared-data directory whose records hold only their ``video_id`` (all the
  submission writer reads), split over shard files of ``per_shard`` records."""
  root.mkdir()
  files, lengths = [], []
  for start in range(0, len(video_ids), per_shard):
    name = f'epic-{split}.tfrecord-{len(files):05d}'
    with tf.io.TFRecordWriter(str(root / name)) as writer:
      for vid in video_ids[start:start + per_shard]:
        feature = {'video_id': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[vid.encode()]))}
        writer.write(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    files.append(name)
    lengths.append(len(video_ids[start:start + per_shard]))
  (root / 'shards.json').write_text(json.dumps({'splits': {split: {'files': files,
                                                                   'lengths': lengths}}}))
  return str(root)


def test_recipes_of_the_verb_and_noun_models():
  """Appendix A.5: 8x8 R101 from Kinetics, BN frozen, batch 32, verb lr 0.01 for 24k
  iterations, noun lr 6e-4 for 30k, decays at 2/3 and 5/6, one centre view at test."""
  verb = epic_kitchens.get_config('avslowfast_8x8_r101_verb')
  noun = epic_kitchens.get_config('avslowfast_8x8_r101_noun')
  for c, lr, steps, classes in ((verb, 0.01, 24000, 125), (noun, 0.0006, 30000, 352)):
    t = c.train
    assert (c.model.depth, c.model.alpha_f, c.data.num_frames, c.model.nonlocal_stages) == \
        (101, 4, 32, ())
    assert c.model.freeze_bn and t.batch_size == 32 and t.reference_batch_size == 32
    assert (t.base_lr, t.total_steps, t.schedule) == (lr, steps, 'steps')
    assert [s / steps for s in t.lr_decay_steps] == pytest.approx([2 / 3, 5 / 6], abs=1e-4)
    assert (c.data.num_test_clips, c.data.num_test_crops) == (1, 1)
    assert c.model.num_classes == classes and t.init_skip == ('head',)
  assert (verb.task, noun.task) == ('classification', 'noun')
  assert epic_kitchens.get_config('avslowfast_8x8_r101').task == 'verb_noun'
  assert epic_kitchens.get_config('slowfast_8x8_r101_noun').model.arch == 'slowfast'


def test_noun_task_reads_the_noun_label():
  task = get_task(epic_kitchens.get_config('tiny_avslowfast_8x8_r101_noun'))
  assert task.label_keys == ('noun_label',)
  logits = np.array([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]], np.float32)
  batch = {'label': np.array([0, 0]), 'noun_label': np.array([1, 2])}
  _, terms = task.loss(logits, batch)
  assert float(task.train_metrics(logits, batch)['top1']) == 0.5
  assert float(terms['loss_cls']) > 1.0  # the second row is wrong under noun_label only
  evaluation = task.evaluation()
  evaluation.add({'video_index': np.array([0, 1]), 'valid': np.ones(2),
                  'scores': np.array(logits), **batch})
  metrics, arrays = evaluation.result()
  assert metrics['top1'] == 0.5 and list(arrays['labels']) == [1, 2]
  assert task.class_names({'labels': ['take'], 'nouns': ['knife', 'pan']}) == ['knife', 'pan']


def _hand_made_runs(tmp_path):
  """Four segments, 12 verbs x 10 nouns; per segment what each model gets right:
  0: both; 1: verb only; 2: noun only; 3: neither, but the true pair ranks 4th among
  the verb x noun products."""
  verb_labels = np.array([1, 2, 3, 4])
  noun_labels = np.array([5, 6, 7, 8])
  verbs = np.full((4, 12), 0.01)
  nouns = np.full((4, 10), 0.01)
  verbs[0, 1], nouns[0, 5] = 0.8, 0.8
  # The wrong model's true class scores lowest, so no tie decides the top 5.
  verbs[1, 2], nouns[1, 0], nouns[1, 6] = 0.8, 0.8, 0.001
  verbs[2, 0], nouns[2, 7], verbs[2, 3] = 0.8, 0.8, 0.001
  # Segment 3: products (0, 0) .225, (0, 8) .22, (4, 0) .18, then the true (4, 8) .176.
  verbs[3, 0], verbs[3, 4], nouns[3, 0], nouns[3, 8] = 0.5, 0.4, 0.45, 0.44
  ids = np.array([2, 0, 3, 1])  # evaluation order is not the split's order
  verb_run = _run(tmp_path / 'verb', epic_kitchens.get_config('tiny_avslowfast_8x8_r101_verb'),
                  video_index=ids, scores=verbs, labels=verb_labels)
  noun_run = _run(tmp_path / 'noun', epic_kitchens.get_config('tiny_avslowfast_8x8_r101_noun'),
                  video_index=ids, scores=nouns, labels=noun_labels)
  return verb_run, noun_run, ids, verbs, nouns


def test_action_accuracy_from_the_pair_of_models(tmp_path):
  verb_run, noun_run, _, _, _ = _hand_made_runs(tmp_path)
  metrics, arrays, _ = epic.combine(verb_run, noun_run)
  assert metrics['verb_top1'] == 0.5 and metrics['noun_top1'] == 0.5
  assert metrics['action_top1'] == 0.25  # segment 0 only
  # Top-5 actions: segments 0 and 3 have the true pair among their five best products;
  # segments 1 and 2 have one true factor scored lowest of its model's classes.
  assert metrics['action_top5'] == 0.5
  assert metrics['verb_top5'] == 0.75 and metrics['noun_top5'] == 0.75
  assert metrics['num_labelled'] == 4
  # A joint (verb_noun) run gives the head that is asked for.
  joint = _run(tmp_path / 'joint', epic_kitchens.get_config('tiny_avslowfast_8x8_r101'),
               video_index=arrays['video_index'], scores_verb=arrays['scores_verb'],
               scores_noun=arrays['scores_noun'], labels_verb=arrays['labels_verb'],
               labels_noun=arrays['labels_noun'])
  assert epic.combine(verb_run, joint)[0] == metrics
  # Runs of the wrong task or of other segments are refused with the reason.
  with pytest.raises(UserError, match="'noun' run has no verb scores"):
    epic.combine(noun_run, noun_run)
  other = _run(tmp_path / 'other', epic_kitchens.get_config('tiny_avslowfast_8x8_r101_noun'),
               video_index=np.array([0, 1, 2, 4]), scores=np.ones((4, 10)),
               labels=np.zeros(4, int))
  with pytest.raises(UserError, match='other segments'):
    epic.combine(verb_run, other)


def test_top_actions_match_a_full_search():
  rng = np.random.default_rng(1)
  verbs, nouns = rng.random((6, 12)), rng.random((6, 10))
  v, n, p = epic.top_actions(verbs, nouns, 100)
  full = (verbs[:, :, None] * nouns[:, None, :]).reshape(6, -1)
  expect = np.sort(full, axis=1)[:, ::-1][:, :100]
  np.testing.assert_allclose(p, expect)
  np.testing.assert_allclose(verbs[np.arange(6)[:, None], v] * nouns[np.arange(6)[:, None], n], p)


def test_submission_file(tmp_path, capsys):
  verb_run, noun_run, ids, verbs, nouns = _hand_made_runs(tmp_path)
  segments = ['P01_11_1924', 'P01_11_1925', 'P02_03_2001', 'P30_07_13']
  data_dir = _prepared_split(tmp_path / 'shards', segments)
  out = tmp_path / 'seen.json'
  assert epic.main(['--verb', verb_run, '--noun', noun_run, '--data_dir', data_dir,
                    '--submission', str(out), '--output_dir', str(tmp_path / 'action')]) == 0
  printed = capsys.readouterr().out
  assert 'WARNING: 12 verb classes' in printed  # tiny models, not the server's 125
  sub = json.loads(out.read_text())
  assert (sub['version'], sub['challenge']) == ('0.1', 'action_recognition')
  assert sorted(sub['results']) == sorted(['1924', '1925', '2001', '13'])
  for row, index in enumerate(ids):
    entry = sub['results'][segments[index].rsplit('_', 1)[1]]
    assert sorted(entry) == ['action', 'noun', 'verb']
    assert list(entry['verb']) == [str(c) for c in range(12)]
    assert list(entry['noun']) == [str(c) for c in range(10)]
    np.testing.assert_allclose([entry['verb'][str(c)] for c in range(12)], verbs[row])
    assert len(entry['action']) == 100
    best = max(entry['action'], key=entry['action'].get)
    assert best == f'{np.argmax(verbs[row])},{np.argmax(nouns[row])}'
    assert entry['action'][best] == pytest.approx(verbs[row].max() * nouns[row].max())
  results = json.loads((tmp_path / 'action' / 'eval_results.json').read_text())
  assert results['action_top1'] == 0.25 and results['noun_run'] == noun_run
  # A split that is not the evaluated one is refused.
  short = _prepared_split(tmp_path / 'short', segments[:3])
  with pytest.raises(UserError, match='has 3 segments but the runs scored 4'):
    epic.main(['--verb', verb_run, '--noun', noun_run, '--data_dir', short,
               '--submission', str(out)])

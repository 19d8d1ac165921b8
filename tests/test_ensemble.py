"""Late fusion of separately evaluated runs (tools/ensemble.py)."""

import json

import numpy as np
import pytest

from avslowfast_jax.tools import ensemble
from avslowfast_jax.studies.configs import quickstart
from configs import epic_kitchens
from data_pipelines.errors import UserError


def _run(path, config, **arrays):
  path.mkdir()
  (path / 'config.json').write_text(config.to_json_best_effort())
  np.savez(path / 'per_video_scores.npz', **arrays)
  return str(path)


def test_average_of_two_runs_fixes_what_each_gets_wrong(tmp_path):
  config = quickstart.get_config('avslowfast')
  labels = np.array([0, 1, 2, 3])
  ids = np.array([3, 5, 8, 9])
  # Run a: confident and right on videos 0, 1; unsure and wrong on 2, 3.
  # Run b: the opposite. Neither alone gets more than half; their mean gets all.
  a = np.full((4, 8), 0.01)
  b = np.full((4, 8), 0.01)
  for v in (0, 1):
    a[v, labels[v]], b[v, (labels[v] + 1) % 8] = 0.9, 0.3
  for v in (2, 3):
    b[v, labels[v]], a[v, (labels[v] + 1) % 8] = 0.9, 0.3
  runs = [_run(tmp_path / 'sf', config, video_index=ids, scores=a, labels=labels),
          _run(tmp_path / 'audio', config, video_index=ids, scores=b, labels=labels)]
  metrics, arrays, _ = ensemble.ensemble(runs)
  assert metrics['top1'] == 1.0 and metrics['num_videos'] == 4
  np.testing.assert_allclose(arrays['scores'], (a + b) / 2)
  # Weighted towards run a, its wrong answers win on videos 2 and 3.
  metrics, _, _ = ensemble.ensemble(runs, [0.9, 0.1])
  assert metrics['top1'] == 0.5
  # The command writes what --mode eval writes.
  assert ensemble.main(['--runs', *runs, '--output_dir', str(tmp_path / 'out')]) == 0
  results = json.load(open(tmp_path / 'out' / 'eval_results.json'))
  assert results['top1'] == 1.0 and results['runs'] == runs
  assert np.load(tmp_path / 'out' / 'per_video_scores.npz')['scores'].shape == (4, 8)


def test_verb_noun_runs_average_each_head(tmp_path):
  config = epic_kitchens.get_config('tiny_avslowfast_8x8_r50')
  rng = np.random.default_rng(0)
  ids, verbs, nouns = np.arange(5), rng.integers(0, 4, 5), rng.integers(0, 6, 5)
  heads = [(rng.random((5, 4)), rng.random((5, 6))) for _ in range(2)]
  runs = [_run(tmp_path / f'r{i}', config, video_index=ids, scores_verb=v, scores_noun=n,
               labels_verb=verbs, labels_noun=nouns) for i, (v, n) in enumerate(heads)]
  metrics, _, _ = ensemble.ensemble(runs)
  verb_ok = np.argmax(heads[0][0] + heads[1][0], -1) == verbs
  noun_ok = np.argmax(heads[0][1] + heads[1][1], -1) == nouns
  assert metrics['verb_top1'] == pytest.approx(verb_ok.mean())
  assert metrics['action_top1'] == pytest.approx((verb_ok & noun_ok).mean())


def test_runs_of_other_videos_or_without_eval_are_refused(tmp_path):
  config = quickstart.get_config('avslowfast')
  scores, labels = np.full((2, 8), 0.125), np.array([0, 1])
  a = _run(tmp_path / 'a', config, video_index=np.array([0, 1]), scores=scores, labels=labels)
  b = _run(tmp_path / 'b', config, video_index=np.array([0, 2]), scores=scores, labels=labels)
  with pytest.raises(UserError, match='evaluated other videos'):
    ensemble.ensemble([a, b])
  (tmp_path / 'c').mkdir()
  with pytest.raises(UserError, match=r'c/per_video_scores.npz: missing; evaluate it first'):
    ensemble.ensemble([a, str(tmp_path / 'c')])
  with pytest.raises(UserError, match='at least two'):
    ensemble.ensemble([a])

r"""EPIC-Kitchens: action accuracy of a verb model and a noun model, and the submission file.

  python -m avslowfast_jax.tools.epic --verb /ckpt/epic_verb --noun /ckpt/epic_noun
  # optional: --submission seen.json --data_dir /data/epic_shards --output_dir /ckpt/epic_action

The paper trains one model for verbs and one for nouns (appendix A.5, Table 3).
``--verb`` and ``--noun`` are workdirs in which ``--mode eval`` has written
``per_video_scores.npz`` for the same split: a ``classification`` run's scores
are verb scores, a ``noun`` run's noun scores, and a ``verb_noun`` run gives
the head that is asked for. Printed (and, with ``--output_dir``, written to
``eval_results.json``): verb and noun top-1/top-5, and action top-1/top-5
over segments with both labels. An action is the pair (verb, noun) scored
``p(verb) * p(noun)``; action top-1 is right when both models' top-1 are, and
top-5 when the true pair is among the five highest-scoring pairs.

``--submission`` writes the EPIC-Kitchens-55 action recognition test-server
file (format of epic-kitchens/epic-kitchens-55-lib,
``docs/source/submission_format.md``)::

  {"version": "0.1", "challenge": "action_recognition",
   "results": {"<uid>": {"verb": {"0": p, ... every verb class},
                         "noun": {"0": p, ... every noun class},
                         "action": {"<verb>,<noun>": p(verb) p(noun), ... exactly 100}}}}

keyed by the segment's ``uid`` (the segment ids are read from the prepared
split, ``--data_dir``, default the verb run's ``data.data_dir``, and are
``<video_id>_<uid>``). The server ranks actions by the ``action`` scores
when given, so they are the top 100 of the product of the two models'
probabilities. The server takes a flat zip of ``seen.json`` (test split S1)
and ``unseen.json`` (S2): one run of this tool per evaluated split, then
``zip -j submission.zip seen.json unseen.json``.
"""

from __future__ import annotations

import argparse
import json
from typing import List, Optional

import numpy as np

from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.tools import ensemble
from data_pipelines import errors, fs, shards
from data_pipelines.errors import UserError

# Scores per segment in the submission's "action" object (the server's rule).
NUM_SUBMITTED_ACTIONS = 100
# The classes the EPIC-Kitchens-55 server scores.
SERVER_CLASSES = {'verb': 125, 'noun': 352}


def load_run(run_dir: str, head: str):
  """``(config, video_index, scores [N, C], labels [N])`` of the ``head`` ('verb' | 'noun')
  of an evaluated run."""
  config, arrays = ensemble.load_run(run_dir)
  scores_path = fs.join(run_dir, 'per_video_scores.npz')
  task = config.get('task')
  wanted = {'verb': {'classification': '', 'verb_noun': '_verb'},
            'noun': {'noun': '', 'verb_noun': '_noun'}}[head]
  if task not in wanted:
    raise UserError(f'{run_dir}: a {task!r} run has no {head} scores (expected a run of task '
                    f'{" or ".join(repr(t) for t in wanted)})')
  suffix = wanted[task]
  for key in ('video_index', 'scores' + suffix, 'labels' + suffix):
    if key not in arrays:
      raise UserError(f'{scores_path}: no {key!r} (not an evaluation of a {task!r} run)')
  return (config, arrays['video_index'], arrays['scores' + suffix].astype(np.float64),
          arrays['labels' + suffix].astype(np.int64))


def top_actions(verb_scores: np.ndarray, noun_scores: np.ndarray, k: int):
  """The ``k`` highest ``p(verb) * p(noun)`` pairs of every segment, best first.

  Returns ``(verbs [N, k], nouns [N, k], scores [N, k])``. A pair among the top
  ``k`` has a verb among the top ``k`` verbs and a noun among the top ``k``
  nouns (the product grows with each factor), so only those ``k x k`` are scored.
  """
  kv, kn = min(k, verb_scores.shape[1]), min(k, noun_scores.shape[1])
  if kv * kn < k:
    raise UserError(f'{verb_scores.shape[1]} verbs x {noun_scores.shape[1]} nouns give fewer '
                    f'than {k} actions')
  verbs = np.argsort(-verb_scores, axis=1, kind='stable')[:, :kv]
  nouns = np.argsort(-noun_scores, axis=1, kind='stable')[:, :kn]
  pv = np.take_along_axis(verb_scores, verbs, 1)
  pn = np.take_along_axis(noun_scores, nouns, 1)
  pairs = (pv[:, :, None] * pn[:, None, :]).reshape(len(pv), -1)
  best = np.argsort(-pairs, axis=1, kind='stable')[:, :k]
  rows = np.arange(len(pv))[:, None]
  return (verbs[rows, best // kn], nouns[rows, best % kn],
          np.take_along_axis(pairs, best, 1))


def _topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return np.any(top == labels[:, None], axis=1)


def action_metrics(verb_scores, verb_labels, noun_scores, noun_labels) -> dict:
  """Verb, noun and action top-1/top-5 (fractions) over the segments that have both labels."""
  keep = (verb_labels >= 0) & (noun_labels >= 0)
  if not keep.any():
    return {'num_labelled': 0}
  vs, vl, ns, nl = verb_scores[keep], verb_labels[keep], noun_scores[keep], noun_labels[keep]
  verbs, nouns, _ = top_actions(vs, ns, 5)
  action5 = np.any((verbs == vl[:, None]) & (nouns == nl[:, None]), axis=1)
  verb1, noun1 = _topk_correct(vs, vl, 1), _topk_correct(ns, nl, 1)
  frac = lambda x: float(np.mean(x))
  return {'verb_top1': frac(verb1), 'verb_top5': frac(_topk_correct(vs, vl, 5)),
          'noun_top1': frac(noun1), 'noun_top5': frac(_topk_correct(ns, nl, 5)),
          'action_top1': frac(verb1 & noun1), 'action_top5': frac(action5),
          'num_labelled': int(keep.sum())}


def segment_uid(video_id: str, where: str) -> str:
  """``P01_11_1924`` (a prepared EPIC segment: ``<video_id>_<uid>``) -> ``'1924'``."""
  uid = video_id.rsplit('_', 1)[-1]
  if not uid.isdigit():
    raise UserError(f'{where}: segment id {video_id!r} does not end in a numeric uid (prepare '
                    'EPIC-Kitchens with --dataset epic_kitchens_55)')
  return uid


def submission(uids, verb_scores: np.ndarray, noun_scores: np.ndarray) -> dict:
  """The test-server JSON object (module docstring) of per-segment probabilities."""
  verbs, nouns, products = top_actions(verb_scores, noun_scores, NUM_SUBMITTED_ACTIONS)
  results = {}
  for i, uid in enumerate(uids):
    if uid in results:
      raise UserError(f'segment uid {uid} occurs twice in the split')
    results[uid] = {
        'verb': {str(c): float(p) for c, p in enumerate(verb_scores[i])},
        'noun': {str(c): float(p) for c, p in enumerate(noun_scores[i])},
        'action': {f'{v},{n}': float(p) for v, n, p in zip(verbs[i], nouns[i], products[i])}}
  return {'version': '0.1', 'challenge': 'action_recognition', 'results': results}


def combine(verb_dir: str, noun_dir: str):
  """``(metrics, arrays, verb_config)`` of a verb run and a noun run of the same split."""
  verb_config, index, verb_scores, verb_labels = load_run(verb_dir, 'verb')
  _, noun_index, noun_scores, noun_labels = load_run(noun_dir, 'noun')
  if not np.array_equal(index, noun_index):
    raise UserError(f'{noun_dir}: evaluated other segments than {verb_dir} (evaluate both on '
                    'the same split)')
  metrics = action_metrics(verb_scores, verb_labels, noun_scores, noun_labels)
  metrics['num_videos'] = int(len(index))
  arrays = {'video_index': index, 'scores_verb': verb_scores, 'scores_noun': noun_scores,
            'labels_verb': verb_labels, 'labels_noun': noun_labels}
  return metrics, arrays, verb_config


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--verb', required=True, help='evaluated workdir of the verb model')
  parser.add_argument('--noun', required=True, help='evaluated workdir of the noun model')
  parser.add_argument('--submission', default=None, help='write the test-server JSON here')
  parser.add_argument('--data_dir', default=None,
                      help="prepared split the runs evaluated (default: the verb run's "
                           'data.data_dir); read for the segment ids of --submission')
  parser.add_argument('--output_dir', default=None,
                      help='write eval_results.json and per_video_scores.npz here')
  args = parser.parse_args(argv)
  metrics, arrays, config = combine(args.verb, args.noun)
  if args.output_dir:
    path = evaluator.write_results(args.output_dir, metrics, arrays,
                                   {'verb_run': args.verb, 'noun_run': args.noun})
    print(f'wrote {path}')
  print(json.dumps(metrics))
  if args.submission:
    data_dir = args.data_dir or config.data.data_dir
    split = config.data.eval_split
    ids = shards.read_video_ids(data_dir, split)
    index = arrays['video_index']
    if len(ids) != len(index) or not np.array_equal(np.sort(index), np.arange(len(ids))):
      raise UserError(f'{data_dir}: split {split!r} has {len(ids)} segments but the runs scored '
                      f'{len(index)} (evaluate the whole split: eval.max_batches=0)')
    where = f'{data_dir} ({split})'
    uids = [segment_uid(ids[i], where) for i in index]
    for head, scores in (('verb', arrays['scores_verb']), ('noun', arrays['scores_noun'])):
      if scores.shape[1] != SERVER_CLASSES[head]:
        print(f'WARNING: {scores.shape[1]} {head} classes; the EPIC-Kitchens-55 server scores '
              f'{SERVER_CLASSES[head]}')
    fs.write_text(args.submission, json.dumps(
        submission(uids, arrays['scores_verb'], arrays['scores_noun'])))
    print(f'wrote {args.submission} ({len(uids)} segments)')
  return 0


if __name__ == '__main__':
  errors.run(main)

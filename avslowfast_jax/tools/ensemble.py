r"""Late fusion: average the per-video scores of separately trained models.

  python -m avslowfast_jax.tools.ensemble --runs /ckpt/slowfast /ckpt/audio \
      --output_dir /ckpt/slowfast+audio [--weights 0.5,0.5]

Each run is a workdir in which ``--mode eval`` has written
``per_video_scores.npz`` (and the trainer ``config.json``). The scores of the
same videos are averaged (weighted, if asked), and the run's task reports
the same metrics as ``--mode eval`` into ``OUTPUT_DIR/eval_results.json`` and
``per_video_scores.npz``. This is the "SlowFast + Audio" late fusion of the
paper's Tables 4 and 6. All runs must be evaluations of one split by models
of the same task; the videos and labels must agree.
"""

from __future__ import annotations

import argparse
import json
from typing import List, Optional, Sequence

import ml_collections
import numpy as np

from avslowfast_jax import tasks
from avslowfast_jax.evaluation import evaluator
from data_pipelines import errors, fs, shards
from data_pipelines.errors import UserError


def load_run(run_dir: str):
  """``(config, arrays)`` of one evaluated run."""
  scores_path = fs.join(run_dir, 'per_video_scores.npz')
  config_path = fs.join(run_dir, 'config.json')
  for path, how in ((scores_path, 'evaluate it first (--mode eval)'),
                    (config_path, 'it is written when the run trains')):
    if not fs.exists(path):
      raise UserError(f'{path}: missing; {how}')
  config = ml_collections.ConfigDict(shards.read_json(config_path))
  return config, fs.load_npz(scores_path)


def _split_heads(arrays, prefix: str):
  """``scores`` -> array, or ``scores_verb``, ``scores_noun`` -> {'verb': ..., 'noun': ...}."""
  if prefix in arrays:
    return arrays[prefix]
  return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + '_')}


def ensemble(run_dirs: Sequence[str], weights: Optional[Sequence[float]] = None):
  """``(metrics, arrays, task)`` of the weighted mean of the runs' per-video scores."""
  if len(run_dirs) < 2:
    raise UserError('--runs needs at least two evaluated runs')
  weights = list(weights) if weights else [1.0] * len(run_dirs)
  if len(weights) != len(run_dirs) or min(weights) < 0 or sum(weights) <= 0:
    raise UserError(f'--weights {weights}: one non-negative weight per run, not all zero')
  runs = [load_run(d) for d in run_dirs]
  config, first = runs[0]
  task = tasks.get_task(config)
  total = {k: np.zeros_like(v, np.float64) for k, v in first.items() if k.startswith('scores')}
  for run_dir, (run_config, arrays), weight in zip(run_dirs, runs, weights):
    if run_config.get('task') != config.get('task'):
      raise UserError(f'{run_dir}: task {run_config.get("task")!r}, but {run_dirs[0]} is '
                      f'{config.get("task")!r}')
    if not np.array_equal(arrays['video_index'], first['video_index']):
      raise UserError(f'{run_dir}: evaluated other videos than {run_dirs[0]} (evaluate both '
                      'on the same split)')
    for key in (k for k in first if k.startswith('labels')):
      if not np.array_equal(arrays.get(key), first[key]):
        raise UserError(f'{run_dir}: {key} differ from those of {run_dirs[0]}')
    for key in total:
      if key not in arrays or arrays[key].shape != total[key].shape:
        raise UserError(f'{run_dir}: {key} of another shape than in {run_dirs[0]} (models of '
                        'different class counts)')
      total[key] += weight * arrays[key]
  mean = {k: v / sum(weights) for k, v in total.items()}
  out = {k: v for k, v in first.items() if not k.startswith('scores')}
  out.update(mean)
  metrics = task.video_metrics(_split_heads(out, 'scores'), _split_heads(out, 'labels'))
  metrics['num_videos'] = int(len(first['video_index']))
  return metrics, out, task


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', nargs='+', required=True, help='evaluated workdirs')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--weights', default=None, help='comma list, one per run (default equal)')
  args = parser.parse_args(argv)
  try:
    weights = [float(w) for w in args.weights.split(',')] if args.weights else None
  except ValueError:
    parser.error(f'--weights {args.weights!r}: expected numbers, e.g. 0.7,0.3')
  metrics, arrays, _ = ensemble(args.runs, weights)
  path = evaluator.write_results(args.output_dir, metrics, arrays,
                                 {'runs': list(args.runs), 'weights': weights})
  print(json.dumps({k: v for k, v in metrics.items() if np.isscalar(v)}))
  print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  errors.run(main)

"""Evaluation: every view of a split through the model, aggregated and scored by the task.

Each eval batch row is one view (temporal clip x spatial crop) of one video.
The task (``avslowfast_jax/tasks``) reads scores from the logits, aggregates
the views of each video and computes what the evaluation reports.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from avslowfast_jax import model_builder, parallel, preflight
from avslowfast_jax.tasks import Task
from avslowfast_jax import checkpoints as ckpt_lib
from data_pipelines import fs, input_pipeline
from data_pipelines.errors import UserError


def evaluate(config: ml_collections.ConfigDict, model, task: Task, variables, mesh, *,
             split: Optional[str] = None, num_clips: Optional[int] = None,
             num_crops: Optional[int] = None):
  """Runs every view of ``split`` through the model; returns ``(metrics, arrays)``.

  ``arrays`` are the task's per-video numpy arrays (``video_index``,
  ``scores``, ``labels``, ...). Every process feeds its own share of the
  views; outputs come back replicated, so every process aggregates the same.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # a private, unlocked copy
  if num_clips is not None:
    config.data.num_test_clips = num_clips
  if num_crops is not None:
    config.data.num_test_crops = num_crops
  split = split or config.data.eval_split
  per_host = parallel.per_process_batch(config.eval.batch_size)
  predict = model_builder.make_predict_fn(model, task)
  kept_keys = tuple(task.eval_keys)

  def eval_step(variables, batch):
    scores = predict(variables, model_builder.model_inputs(config, batch))['scores']
    return {'scores': scores, **{k: batch[k] for k in kept_keys if k in batch}}

  var_shardings = jax.tree.map(lambda x: x.sharding, variables)
  eval_step = jax.jit(eval_step, in_shardings=(var_shardings, parallel.batch_sharding(mesh)),
                      out_shardings=parallel.replicated(mesh))
  evaluation = task.evaluation(split)
  data = input_pipeline.create_eval_iterator(
      config, config.data.data_dir, split, per_host, process_index=jax.process_index(),
      process_count=jax.process_count())
  for i, batch in enumerate(data):
    if config.eval.max_batches and i >= config.eval.max_batches:
      break
    batch = dict(batch)
    if 'valid' not in batch:
      batch['valid'] = np.ones(len(batch['video_index']), np.float32)
    evaluation.add(jax.device_get(eval_step(variables, parallel.host_to_global(batch, mesh))))
  try:
    return evaluation.result()
  except UserError as e:
    raise UserError(f'split {split!r} of {config.data.data_dir}: {e}') from None


def evaluate_during_training(config, model, task: Task, variables, mesh) -> dict:
  """Cheap held-out evaluation (``eval.train_num_clips x eval.train_num_crops`` views)."""
  try:
    metrics, _ = evaluate(config, model, task, variables, mesh,
                          num_clips=config.eval.train_num_clips,
                          num_crops=config.eval.train_num_crops)
  except UserError as e:  # no held-out split, or one that scores no video
    logging.warning('Skipping evaluation during training: %s', e)
    return {}
  logging.info('eval: %s', {k: v for k, v in metrics.items() if np.isscalar(v)})
  return metrics


def write_results(out_dir: str, metrics: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                  extra: Optional[Mapping[str, Any]] = None) -> str:
  """Writes ``eval_results.json`` and ``per_video_scores.npz``; returns the json path."""
  fs.makedirs(out_dir)
  path = fs.join(out_dir, 'eval_results.json')
  fs.write_text(path, json.dumps({**dict(extra or {}), **dict(metrics)}, indent=2))
  fs.save_npz(fs.join(out_dir, 'per_video_scores.npz'), dict(arrays))
  return path


def run_eval_mode(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``--mode eval``: restores ``eval.checkpoint`` (latest | best | step | path) and evaluates."""
  preflight.check_evaluation(config, workdir)  # before the model is built
  mesh = parallel.create_mesh()
  model, task = model_builder.build(config)
  variables, item_dir = ckpt_lib.restore_variables(config, model, workdir, mesh,
                                                   config.eval.checkpoint)
  metrics, arrays = evaluate(config, model, task, variables, mesh)
  extra = {'checkpoint': item_dir, 'step': ckpt_lib.checkpoint_step(item_dir),
           'split': config.data.eval_split,
           'views_per_video': config.data.num_test_clips * config.data.num_test_crops,
           'aggregate': config.eval.aggregate}
  if jax.process_index() == 0:
    path = write_results(workdir, metrics, arrays, extra)
    config_path = fs.join(workdir, 'eval_config.json')
    fs.write_text(config_path, config.to_json_best_effort(indent=2))
    logging.info('Config: %s', config_path)
    written = task.write_outputs(workdir, arrays)  # e.g. AVA's detections.csv
    logging.info('Wrote %s: %s', ', '.join([path, *written]),
                 {k: v for k, v in metrics.items() if np.isscalar(v)})
  return metrics

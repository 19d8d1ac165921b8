"""Multi-view evaluation: per-video aggregation of view scores and the paper's metrics.

Each eval batch row is one view (temporal clip x spatial crop) of one video.
Scores (softmax, or sigmoid for multi-label) of all views of a video are
averaged (or max-pooled, Charades) and the video-level metrics are computed
from those.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from avslowfast_jax import parallel
from avslowfast_jax.train import state as state_lib
from avslowfast_jax.train import step as step_lib


class VideoAggregator:
  """Accumulates per-view scores into per-video scores (``mean`` or ``max``)."""

  def __init__(self, aggregate: str = 'mean'):
    if aggregate not in ('mean', 'max'):
      raise ValueError(f"eval.aggregate must be 'mean' or 'max', got {aggregate!r}")
    self.aggregate = aggregate
    self.scores: Dict[int, Any] = {}
    self.views: Dict[int, int] = {}
    self.labels: Dict[int, Any] = {}

  def add(self, video_index, scores, labels, valid) -> None:
    """``scores`` is ``[B, C]`` or a dict of those (verb/noun); ``labels`` likewise."""
    video_index = np.asarray(video_index)
    valid = np.asarray(valid) > 0
    for row in np.flatnonzero(valid):
      vid = int(video_index[row])
      s = jax.tree.map(lambda x: np.asarray(x[row], np.float64), scores)
      if vid not in self.scores:
        self.scores[vid] = s
        self.views[vid] = 1
        self.labels[vid] = jax.tree.map(lambda x: np.asarray(x[row]), labels)
      else:
        combine = np.add if self.aggregate == 'mean' else np.maximum
        self.scores[vid] = jax.tree.map(combine, self.scores[vid], s)
        self.views[vid] += 1

  def result(self):
    """``(video_ids, scores, labels)`` sorted by video id; scores stacked per head."""
    ids = sorted(self.scores)
    scores = [self.scores[i] if self.aggregate == 'max'
              else jax.tree.map(lambda x, n=self.views[i]: x / n, self.scores[i]) for i in ids]
    stack = lambda xs: jax.tree.map(lambda *a: np.stack(a), *xs)
    return np.asarray(ids), stack(scores), stack([self.labels[i] for i in ids])


def topk_accuracy(scores, labels, k: int) -> float:
  top = np.argsort(-scores, axis=-1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=-1)))


def per_class_accuracy(scores, labels, num_classes: int) -> np.ndarray:
  """Top-1 accuracy of each class (NaN for classes without videos)."""
  pred = np.argmax(scores, axis=-1)
  out = np.full(num_classes, np.nan)
  for c in range(num_classes):
    sel = labels == c
    if sel.any():
      out[c] = float(np.mean(pred[sel] == c))
  return out


def average_precision(scores, positives) -> float:
  """AP of one class: mean precision at the rank of each positive."""
  order = np.argsort(-scores, kind='stable')
  hits = positives[order] > 0
  if not hits.any():
    return float('nan')
  precision = np.cumsum(hits) / (np.arange(len(hits)) + 1)
  return float(np.sum(precision * hits) / hits.sum())


def mean_average_precision(scores, multi_hot) -> float:
  """mAP over the classes that have at least one positive video (Charades protocol)."""
  aps = [average_precision(scores[:, c], multi_hot[:, c]) for c in range(scores.shape[1])]
  aps = [a for a in aps if not np.isnan(a)]
  return float(np.mean(aps)) if aps else float('nan')


def video_metrics(head: str, scores, labels) -> dict:
  """The metrics of a head from per-video scores and labels."""
  if head == 'softmax':
    pca = per_class_accuracy(scores, labels, scores.shape[-1])
    return {'top1': topk_accuracy(scores, labels, 1), 'top5': topk_accuracy(scores, labels, 5),
            'mean_class_accuracy': float(np.nanmean(pca)) if np.isfinite(pca).any() else 0.0,
            'per_class_accuracy': [None if np.isnan(a) else a for a in pca.tolist()]}
  if head == 'sigmoid':
    return {'mAP': mean_average_precision(scores, labels)}
  if head == 'verb_noun':
    verb_ok = np.argmax(scores['verb'], -1) == labels['verb']
    noun_ok = np.argmax(scores['noun'], -1) == labels['noun']
    return {'verb_top1': float(verb_ok.mean()), 'noun_top1': float(noun_ok.mean()),
            'action_top1': float((verb_ok & noun_ok).mean()),
            'verb_top5': topk_accuracy(scores['verb'], labels['verb'], 5),
            'noun_top5': topk_accuracy(scores['noun'], labels['noun'], 5),
            # A single number for "best checkpoint" selection.
            'top1': float((verb_ok & noun_ok).mean())}
  raise ValueError(f'Unknown head {head!r}')


def _batch_labels(head: str, batch):
  if head == 'verb_noun':
    return {'verb': batch['label'], 'noun': batch['noun_label']}
  return batch['label']


def evaluate(config: ml_collections.ConfigDict, model, variables, mesh, *,
             split: Optional[str] = None, num_clips: Optional[int] = None,
             num_crops: Optional[int] = None):
  """Runs every view of ``split`` through the model; returns ``(metrics, per_video)``.

  ``per_video`` = ``{'video_index', 'scores', 'labels'}`` numpy arrays (dicts
  per head for ``verb_noun``). Every process feeds its own share of the
  views; scores come back replicated, so every process aggregates the same.
  """
  from data_pipelines import input_pipeline  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(config.to_dict())  # a private, unlocked copy
  if num_clips is not None:
    config.data.num_test_clips = num_clips
  if num_crops is not None:
    config.data.num_test_crops = num_crops
  split = split or config.data.eval_split
  head = config.model.head
  per_host = parallel.per_process_batch(config.eval.batch_size)
  predict = step_lib.make_predict_fn(config, model)

  def eval_step(variables, batch):
    logits = predict(variables, state_lib.model_inputs(config, batch))
    keep = {k: batch[k] for k in ('video_index', 'valid', 'label', 'noun_label') if k in batch}
    return step_lib.scores_from_logits(head, logits), logits, keep

  replicated = parallel.replicated(mesh)
  var_shardings = jax.tree.map(lambda x: x.sharding, variables)
  eval_step = jax.jit(eval_step, in_shardings=(var_shardings, parallel.batch_sharding(mesh)),
                      out_shardings=replicated)
  aggregator = VideoAggregator(config.eval.aggregate)
  data = input_pipeline.create_eval_iterator(
      config, config.data.data_dir, split, per_host, process_index=jax.process_index(),
      process_count=jax.process_count())
  num_views = 0
  for i, batch in enumerate(data):
    if config.eval.max_batches and i >= config.eval.max_batches:
      break
    batch = dict(batch)
    if 'valid' not in batch:
      batch['valid'] = np.ones(len(batch['video_index']), np.float32)
    scores, _, kept = jax.device_get(eval_step(variables, parallel.host_to_global(batch, mesh)))
    aggregator.add(kept['video_index'], scores, _batch_labels(head, kept), kept['valid'])
    num_views += int(np.sum(kept['valid']))
  if not aggregator.scores:
    raise ValueError(f'Split {split!r} of {config.data.data_dir} gave no evaluation views')
  ids, scores, labels = aggregator.result()
  metrics = video_metrics(head, scores, labels)
  metrics.update(num_videos=len(ids), num_views=num_views)
  return metrics, {'video_index': ids, 'scores': scores, 'labels': labels}


def evaluate_during_training(config, model, variables, mesh) -> dict:
  """Cheap held-out evaluation (``eval.train_num_clips x eval.train_num_crops`` views)."""
  try:
    metrics, _ = evaluate(config, model, variables, mesh, num_clips=config.eval.train_num_clips,
                          num_crops=config.eval.train_num_crops)
  except (FileNotFoundError, KeyError, ValueError) as e:
    logging.warning('Skipping evaluation during training: %s', e)
    return {}
  logging.info('eval: %s', {k: v for k, v in metrics.items() if np.isscalar(v)})
  return metrics


def write_results(out_dir: str, metrics: Mapping[str, Any], per_video: Mapping[str, Any],
                  extra: Optional[Mapping[str, Any]] = None) -> str:
  """Writes ``eval_results.json`` and ``per_video_scores.npz``; returns the json path."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, 'eval_results.json')
  with open(path, 'w') as f:
    json.dump({**dict(extra or {}), **dict(metrics)}, f, indent=2)
  arrays = {'video_index': per_video['video_index']}
  for key in ('scores', 'labels'):
    value = per_video[key]
    if isinstance(value, dict):
      for head, v in value.items():
        arrays[f'{key}_{head}'] = v
    else:
      arrays[key] = value
  np.savez(os.path.join(out_dir, 'per_video_scores.npz'), **arrays)
  return path


def run_eval_mode(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``--mode eval``: restores ``eval.checkpoint`` (latest | best | step | path) and evaluates."""
  from avslowfast_jax.train import checkpoints as ckpt_lib  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import trainer  # pylint: disable=g-import-not-at-top
  mesh = parallel.create_mesh()
  variables, item_dir = restore_variables(config, workdir, mesh, config.eval.checkpoint)
  model = trainer.build_model(config)
  metrics, per_video = evaluate(config, model, variables, mesh)
  extra = {'checkpoint': item_dir, 'step': ckpt_lib.checkpoint_step(item_dir),
           'split': config.data.eval_split,
           'views_per_video': config.data.num_test_clips * config.data.num_test_crops,
           'aggregate': config.eval.aggregate}
  if jax.process_index() == 0:
    path = write_results(workdir, metrics, per_video, extra)
    logging.info('Wrote %s: %s', path, {k: v for k, v in metrics.items() if np.isscalar(v)})
  return metrics


def restore_variables(config, workdir: str, mesh, which: str):
  """``{'params', 'batch_stats'}`` of a checkpoint, replicated on ``mesh``; no optimizer state."""
  from avslowfast_jax.train import checkpoints as ckpt_lib  # pylint: disable=g-import-not-at-top
  from avslowfast_jax.train import trainer  # pylint: disable=g-import-not-at-top
  model = trainer.build_model(config)
  item_dir = ckpt_lib.resolve_checkpoint(workdir, which)
  abstract = jax.eval_shape(
      lambda: model.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)},
                         state_lib.dummy_inputs(config, max(1, config.model.bn_group_size)),
                         train=False, drop_audio=False))
  replicated = parallel.replicated(mesh)
  abstract = {k: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                              abstract[k]) for k in ('params', 'batch_stats') if k in abstract}
  variables = ckpt_lib.restore_subtree(item_dir, abstract)
  logging.info('Restored %s', item_dir)
  return variables, item_dir

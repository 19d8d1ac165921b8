"""Evaluation metrics on numpy arrays, and the per-video aggregation of view scores.

Each evaluation batch row is one view (temporal clip x spatial crop) of one
video. :class:`VideoAggregator` averages (or max-pools, Charades) the scores
of all views of a video; the metrics are computed from those per-video scores.
"""

from __future__ import annotations

from typing import Any, Dict

import jax
import numpy as np

from data_pipelines.errors import UserError


class VideoAggregator:
  """Accumulates per-view scores into per-video scores (``mean`` or ``max``)."""

  def __init__(self, aggregate: str = 'mean'):
    if aggregate not in ('mean', 'max'):
      raise UserError(f"eval.aggregate must be 'mean' or 'max', got {aggregate!r}")
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


def aggregate_views(scores, aggregate: str):
  """Scores of one video's views ``[V, C]`` (or a dict of those) -> ``[C]``."""
  reduce = np.max if aggregate == 'max' else np.mean
  return jax.tree.map(lambda s: reduce(np.asarray(s, np.float64), axis=0), scores)


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


def classification_metrics(scores, labels) -> dict:
  """Top-1/top-5, mean class accuracy and per-class accuracy of per-video scores."""
  pca = per_class_accuracy(scores, labels, scores.shape[-1])
  return {'top1': topk_accuracy(scores, labels, 1), 'top5': topk_accuracy(scores, labels, 5),
          'mean_class_accuracy': float(np.nanmean(pca)) if np.isfinite(pca).any() else 0.0,
          'per_class_accuracy': [None if np.isnan(a) else a for a in pca.tolist()]}

"""Multi-label classification (Charades): per-class sigmoid, mean average precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from avslowfast_jax.metrics import video as metrics_lib
from avslowfast_jax.models.heads import PooledLinearHead
from avslowfast_jax.tasks.base import Task, register
from avslowfast_jax.losses import classification as losses


@register('multilabel')
class MultiLabel(Task):
  """Sigmoid cross-entropy on a multi-hot ``label`` ``[B, C]``; mAP over the split.

  No training metric: mAP needs the whole split (evaluation computes it).
  """

  def head(self):
    m = self.config.model
    return PooledLinearHead((('classifier', m.num_classes),), m.dropout_rate)

  def loss(self, logits, batch):
    loss = losses.sigmoid_cross_entropy(logits, batch['label'])
    return loss, {'loss_cls': loss}

  def scores(self, logits):
    return jax.nn.sigmoid(logits.astype(jnp.float32))

  def video_metrics(self, scores, labels):
    return {'mAP': metrics_lib.mean_average_precision(scores, labels)}

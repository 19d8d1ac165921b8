"""Single-label classification (Kinetics, Kinetics-Sounds, UCF101, HMDB51): softmax."""

from __future__ import annotations

import jax.numpy as jnp

from avslowfast_jax.metrics import video as metrics_lib
from avslowfast_jax.models.heads import PooledLinearHead
from avslowfast_jax.tasks.base import Task, register, softmax_scores
from avslowfast_jax.losses import classification as losses


@register('classification')
class Classification(Task):
  """Softmax cross-entropy on ``label`` ``[B]`` int32; top-1/top-5 and per-class accuracy."""

  def head(self):
    m = self.config.model
    return PooledLinearHead((('classifier', m.num_classes),), m.dropout_rate)

  def loss(self, logits, batch):
    loss = losses.softmax_cross_entropy(logits, batch['label'], logits.shape[-1],
                                        self.config.train.label_smoothing)
    return loss, {'loss_cls': loss}

  def train_metrics(self, logits, batch):
    return {'top1': jnp.mean(losses.topk_correct(logits, batch['label'], 1)),
            'top5': jnp.mean(losses.topk_correct(logits, batch['label'], 5))}

  def scores(self, logits):
    return softmax_scores(logits)

  def video_metrics(self, scores, labels):
    return metrics_lib.classification_metrics(scores, labels)

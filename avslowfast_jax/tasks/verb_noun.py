"""EPIC-Kitchens: verb and noun classification, by one network with two softmax heads
(``verb_noun``) or by a noun-only network (``noun``; the verb-only network is
``classification``, whose ``label`` is the verb). The paper trains separate verb
and noun models (appendix A.5); ``tools/epic.py`` combines them into actions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from avslowfast_jax.metrics import video as metrics_lib
from avslowfast_jax.models.heads import PooledLinearHead
from avslowfast_jax.tasks.base import Task, register, softmax_scores
from avslowfast_jax.tasks.classification import Classification
from avslowfast_jax.losses import classification as losses
from data_pipelines.errors import UserError


@register('verb_noun')
class VerbNoun(Task):
  """Heads ``verb`` (``model.num_classes``) and ``noun`` (``model.num_nouns``) on ``label``
  and ``noun_label``; the loss is the sum of both cross-entropies. An action is
  right when both are (``action_top1``)."""
  label_keys = ('label', 'noun_label')
  label_classes = {'labels': 'num_classes', 'nouns': 'num_nouns'}

  def head(self):
    m = self.config.model
    if m.num_nouns <= 0:
      raise UserError("task 'verb_noun' needs config.model.num_nouns > 0")
    return PooledLinearHead((('verb', m.num_classes), ('noun', m.num_nouns)), m.dropout_rate)

  def loss(self, logits, batch):
    smoothing = self.config.train.label_smoothing
    verb = losses.softmax_cross_entropy(logits['verb'], batch['label'],
                                        logits['verb'].shape[-1], smoothing)
    noun = losses.softmax_cross_entropy(logits['noun'], batch['noun_label'],
                                        logits['noun'].shape[-1], smoothing)
    return verb + noun, {'loss_verb': verb, 'loss_noun': noun}

  def train_metrics(self, logits, batch):
    return {'verb_top1': jnp.mean(losses.topk_correct(logits['verb'], batch['label'], 1)),
            'noun_top1': jnp.mean(losses.topk_correct(logits['noun'], batch['noun_label'], 1))}

  def scores(self, logits):
    return softmax_scores(logits)

  def labels(self, batch):
    return {'verb': batch['label'], 'noun': batch['noun_label']}

  def video_metrics(self, scores, labels):
    verb_ok = np.argmax(scores['verb'], -1) == labels['verb']
    noun_ok = np.argmax(scores['noun'], -1) == labels['noun']
    return {'verb_top1': float(verb_ok.mean()), 'noun_top1': float(noun_ok.mean()),
            'action_top1': float((verb_ok & noun_ok).mean()),
            'verb_top5': metrics_lib.topk_accuracy(scores['verb'], labels['verb'], 5),
            'noun_top5': metrics_lib.topk_accuracy(scores['noun'], labels['noun'], 5)}

  def class_names(self, label_map):
    return {'verb': list(label_map.get('labels', [])), 'noun': list(label_map.get('nouns', []))}


@register('noun')
class Noun(Classification):
  """Softmax over ``model.num_classes`` nouns on ``noun_label`` ``[B]`` int32: the noun model
  of EPIC-Kitchens. Reports top-1/top-5 and per-class accuracy, as ``classification``."""
  label_keys = ('noun_label',)
  label_classes = {'nouns': 'num_classes'}

  def loss(self, logits, batch):
    loss = losses.softmax_cross_entropy(logits, batch['noun_label'], logits.shape[-1],
                                        self.config.train.label_smoothing)
    return loss, {'loss_cls': loss}

  def train_metrics(self, logits, batch):
    return {'top1': jnp.mean(losses.topk_correct(logits, batch['noun_label'], 1)),
            'top5': jnp.mean(losses.topk_correct(logits, batch['noun_label'], 5))}

  def labels(self, batch):
    return batch['noun_label']

  def class_names(self, label_map):
    return list(label_map.get('nouns', []))

"""Classification heads on the pooled pathway features."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

# PySlowFast initialises the classifier with std 0.01.
_classifier_init = nn.initializers.normal(0.01)


class ClassifierHead(nn.Module):
  """Concatenated pooled features -> dropout -> linear classifier(s).

  ``head``: 'softmax' and 'sigmoid' return ``[B, num_classes]`` logits (the
  loss decides how to read them); 'verb_noun' returns
  ``{'verb': [B, num_classes], 'noun': [B, num_nouns]}`` (EPIC-Kitchens).
  Submodules ``classifier`` or ``verb`` and ``noun``. Logits are fp32.

  A detection head (AVA) is a different module: it takes the res5 feature maps
  (``aux['res5']``) and boxes, not these pooled features.
  """
  head: str = 'softmax'
  num_classes: int = 400
  num_nouns: int = 0
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, features: jax.Array, train: bool):
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(features.astype(jnp.float32))
    dense = lambda n, name: nn.Dense(n, kernel_init=_classifier_init, name=name)(x)
    if self.head in ('softmax', 'sigmoid'):
      return dense(self.num_classes, 'classifier')
    if self.head == 'verb_noun':
      if self.num_nouns <= 0:
        raise ValueError("head 'verb_noun' needs model.num_nouns > 0")
      return {'verb': dense(self.num_classes, 'verb'), 'noun': dense(self.num_nouns, 'noun')}
    raise ValueError(f'unknown head {self.head!r}')

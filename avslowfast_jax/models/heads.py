"""Head modules: called by the network as ``head(aux, inputs, train)``.

Tasks (``avslowfast_jax/tasks``) decide which head a model gets.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import linen as nn

# PySlowFast initialises the classifier with std 0.01.
classifier_init = nn.initializers.normal(0.01)


class PooledLinearHead(nn.Module):
  """``aux['pool5']`` (the concatenated pooled features) -> dropout -> linear layer(s).

  ``outputs`` names each linear layer and its size: one layer returns its
  ``[B, n]`` logits, several return ``{name: [B, n]}``. Logits are fp32.
  Submodules are named as the outputs (``classifier``; ``verb``, ``noun``).
  """
  outputs: Sequence[tuple[str, int]] = (('classifier', 400),)
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, aux: dict, inputs: dict, train: bool):
    del inputs
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(aux['pool5'].astype(jnp.float32))
    logits = {name: nn.Dense(size, kernel_init=classifier_init, name=name)(x)
              for name, size in self.outputs}
    return next(iter(logits.values())) if len(logits) == 1 else logits


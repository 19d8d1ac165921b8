"""optax optimizer of the paper's recipes: SGD with momentum and masked weight decay."""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
import optax


def weight_decay_mask(params):
  """True for the leaves that get weight decay: kernels, not BN scales/offsets or biases.

  Every BatchNorm parameter and every bias is one-dimensional, every conv or
  dense kernel has two or more dimensions, so the rank decides.
  """
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(train: ml_collections.ConfigDict, lr_fn: Callable) -> optax.GradientTransformation:
  """Clip (optional) -> decoupled-in-gradient weight decay (masked) -> SGD momentum.

  Weight decay is added to the gradient before momentum, as in PyTorch's SGD
  that the paper used.
  """
  parts = []
  if train.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(train.grad_clip_norm))
  if train.weight_decay > 0:
    parts.append(optax.add_decayed_weights(train.weight_decay, mask=weight_decay_mask))
  parts.append(optax.sgd(lr_fn, momentum=train.momentum or None, nesterov=train.nesterov))
  return optax.chain(*parts)

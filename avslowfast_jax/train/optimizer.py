"""optax optimizers: the paper's SGD with momentum and masked weight decay, or AdamW.

AdamW (``train.optimizer = 'adamw'``) is for short schedules from scratch, such
as the quickstart's few hundred CPU steps, where SGD has not yet got going.
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
import optax

from data_pipelines.errors import UserError


def weight_decay_mask(params):
  """True for the leaves that get weight decay: kernels, not BN scales/offsets or biases.

  Every BatchNorm parameter and every bias is one-dimensional, every conv or
  dense kernel has two or more dimensions, so the rank decides.
  """
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(train: ml_collections.ConfigDict, lr_fn: Callable) -> optax.GradientTransformation:
  """Clip (optional) -> the optimizer of ``train.optimizer``.

  ``'sgd'``: weight decay (masked) added to the gradient before momentum, as in
  PyTorch's SGD that the paper used. ``'adamw'``: Adam with decoupled weight
  decay (masked the same way, scaled by the learning rate as in optax).
  """
  parts = []
  if train.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(train.grad_clip_norm))
  name = train.get('optimizer', 'sgd')
  if name == 'sgd':
    if train.weight_decay > 0:
      parts.append(optax.add_decayed_weights(train.weight_decay, mask=weight_decay_mask))
    parts.append(optax.sgd(lr_fn, momentum=train.momentum or None, nesterov=train.nesterov))
  elif name == 'adamw':
    parts.append(optax.adamw(lr_fn, b1=0.9, b2=0.999, weight_decay=train.weight_decay,
                             mask=weight_decay_mask))
  else:
    raise UserError(f"train.optimizer must be 'sgd' or 'adamw', got {name!r}")
  tx = optax.chain(*parts)
  if train.get('linear_probe', False):
    # Only the head trains: the frozen backbone gets no update, not even weight decay.
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, head_labels)
  return tx


def head_labels(params):
  """``'train'`` for the leaves under ``head``, ``'frozen'`` for the backbone (linear probe)."""
  return {k: jax.tree.map(lambda _, k=k: 'train' if k == 'head' else 'frozen', v)
          for k, v in params.items()}

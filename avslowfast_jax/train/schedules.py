"""Learning-rate schedules and step/epoch bookkeeping.

Durations in the config are in epochs (the paper's unit) unless the matching
``*_steps`` field is set; :class:`StepPlan` turns them into step counts once.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax.numpy as jnp
import ml_collections

from data_pipelines.errors import UserError


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """Step counts of one training run, derived from the config and dataset size."""
  steps_per_epoch: float
  total_steps: int
  warmup_steps: int
  decay_steps: tuple
  base_lr: float  # already scaled to the global batch
  warmup_start_lr: float


def make_plan(train: ml_collections.ConfigDict, num_train_examples: int) -> StepPlan:
  """Resolves epochs to steps and scales the lr linearly with the global batch.

  The warm-up start lr is scaled by the same factor, so the shape of the
  schedule does not depend on the batch size.
  """
  if num_train_examples <= 0 and train.total_steps <= 0:
    raise UserError('Need train.num_train_examples (or dataset metadata) or train.total_steps')
  steps_per_epoch = (num_train_examples / train.batch_size if num_train_examples > 0
                     else train.total_steps / max(train.num_epochs, 1e-9))
  total = train.total_steps if train.total_steps > 0 else int(round(train.num_epochs * steps_per_epoch))
  warmup = (train.warmup_steps if train.warmup_steps > 0
            else int(round(train.warmup_epochs * steps_per_epoch)))
  if train.lr_decay_steps:
    decay = tuple(int(s) for s in train.lr_decay_steps)
  else:
    decay = tuple(int(round(e * steps_per_epoch)) for e in train.lr_decay_epochs)
  scale = train.batch_size / train.reference_batch_size
  return StepPlan(steps_per_epoch=steps_per_epoch, total_steps=max(total, 1),
                  warmup_steps=min(warmup, max(total, 1)), decay_steps=decay,
                  base_lr=train.base_lr * scale, warmup_start_lr=train.warmup_start_lr * scale)


def cosine_value(step, base_lr: float, total_steps: int):
  """Half-period cosine from ``base_lr`` at step 0 to 0 at ``total_steps``."""
  progress = jnp.clip(step / total_steps, 0.0, 1.0)
  return base_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def steps_value(step, base_lr: float, decay_steps: Sequence[int]):
  """``base_lr`` divided by 10 at each of ``decay_steps``."""
  passed = sum((step >= s).astype(jnp.float32) for s in decay_steps) if decay_steps else 0.0
  return base_lr * jnp.power(0.1, passed)


def create_learning_rate_fn(kind: str, plan: StepPlan) -> Callable:
  """lr(step) with linear warm-up.

  As in the SlowFast recipes, the warm-up line runs from ``warmup_start_lr`` to
  the main schedule's value at the end of warm-up, so the curve is continuous.
  """
  if kind == 'cosine':
    main = lambda s: cosine_value(s, plan.base_lr, plan.total_steps)
  elif kind == 'steps':
    main = lambda s: steps_value(s, plan.base_lr, plan.decay_steps)
  else:
    raise UserError(f"train.schedule must be 'cosine' or 'steps', got {kind!r}")

  def lr_fn(step):
    step = jnp.asarray(step, jnp.float32)
    if plan.warmup_steps <= 0:
      return main(step)
    end = main(jnp.float32(plan.warmup_steps))
    warm = plan.warmup_start_lr + (end - plan.warmup_start_lr) * step / plan.warmup_steps
    return jnp.where(step < plan.warmup_steps, warm, main(step))

  return lr_fn


def itstime(step: int, every: int, total: int, first: bool = False) -> bool:
  """Whether a periodic action (log, eval, checkpoint) is due after ``step`` steps.

  Also true at the last step, so a run always ends with the action done.
  """
  if every <= 0:
    return step == total
  return (step % every == 0 and (first or step > 0)) or step == total

"""The training step: a pure function closed over the model, its task and the config."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from avslowfast_jax import clip_finish, drop_pathway, model_builder
from avslowfast_jax.losses import avs
from avslowfast_jax.tasks import Task
from avslowfast_jax.train.state import TrainState


def step_keys(rng, step):
  """The step's keys for (DropPathway, dropout, AVS negatives), from ``fold_in(rng, step)``."""
  return jax.random.split(jax.random.fold_in(rng, step), 3)


def transform_key(rng, step):
  """The key of the task's input transform (:meth:`Task.transform_inputs`) at ``step``."""
  return jax.random.fold_in(jax.random.fold_in(rng, step), 3)


def make_train_step(config: ml_collections.ConfigDict, model, task: Task,
                    tx: optax.GradientTransformation, lr_fn: Callable,
                    total_steps: int) -> Callable:
  """Returns ``train_step(state, batch, rng) -> (state, metrics)``.

  ``rng`` is the run's base key; the step's key is ``fold_in(rng, state.step)``
  and DropPathway, dropout and the choice of AVS negatives all derive from it,
  so a resumed run repeats the draws of an uninterrupted one. ``batch`` is the
  global batch: every reduction (BN groups, losses, the negatives' roll) is
  over it, so the result does not depend on how it is split over devices.

  With ``train.linear_probe`` the backbone is frozen: the network runs in
  inference mode (running BN statistics, which stay as they are), no gradient
  flows into it, and only the ``head`` parameters change (the optimizer masks
  the rest, see ``optimizer.create_optimizer``).
  """
  frozen = bool(config.train.linear_probe)
  drop_start, drop_end = drop_pathway.rates(config.train)
  if config.model.arch != 'avslowfast' or frozen:
    drop_start = drop_end = 0.0
  sync = avs.SyncObjective(config, total_steps)

  def train_step(state: TrainState, batch: Mapping[str, Any], rng):
    k_drop, k_dropout, k_negative = step_keys(rng, state.step)
    dropped = drop_pathway.draw(k_drop, drop_start, drop_end, state.step, total_steps)
    batch = clip_finish.finish_clips(config, batch)
    batch = task.transform_inputs(batch, transform_key(rng, state.step))
    inputs = model_builder.model_inputs(config, batch)

    negatives, is_hard = None, None
    if sync.enabled:
      negatives, is_hard = sync.negatives(k_negative, batch, state.step)

    def loss_fn(params):
      if frozen:
        # No gradient into the backbone: autodiff then traces no backward pass through it.
        params = {k: v if k == 'head' else jax.lax.stop_gradient(v) for k, v in params.items()}
        logits, aux = model.apply({'params': params, 'batch_stats': state.batch_stats}, inputs,
                                  train=False, drop_audio=False, audio_negative=negatives)
        new_vars = {}
      else:
        (logits, aux), new_vars = model.apply(
            {'params': params, 'batch_stats': state.batch_stats}, inputs, train=True,
            drop_audio=dropped, audio_negative=negatives, rngs={'dropout': k_dropout},
            mutable=['batch_stats'])
      loss, terms = task.loss(logits, batch)
      if sync.enabled:
        avs_total, avs_terms = sync.loss(aux, batch, negatives, is_hard, dropped)
        terms.update(avs_terms)
        loss = loss + avs_total
      return loss, (logits, new_vars, terms)

    (loss, (logits, new_vars, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=new_vars.get('batch_stats', state.batch_stats),
                              opt_state=opt_state)

    metrics = dict(terms)
    metrics['loss'] = loss
    metrics['lr'] = lr_fn(state.step)
    metrics['grad_norm'] = optax.global_norm(grads)
    metrics['drop_pathway'] = jnp.asarray(dropped, jnp.float32)
    if sync.enabled:
      metrics['hard_negative_fraction'] = jnp.mean(is_hard)
    metrics.update(task.train_metrics(logits, batch))
    return new_state, metrics

  return train_step


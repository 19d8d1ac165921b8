"""The training step: a pure function closed over the model, its task and the config."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from avslowfast_jax import clip_finish, inference
from avslowfast_jax.tasks import Task
from avslowfast_jax.train import losses
from avslowfast_jax.train.state import TrainState


def _per_clip_variance(x):
  return jnp.var(x.reshape(x.shape[0], -1).astype(jnp.float32), axis=-1)


def step_keys(rng, step):
  """The step's keys for (DropPathway, dropout, AVS negatives), from ``fold_in(rng, step)``."""
  return jax.random.split(jax.random.fold_in(rng, step), 3)


def transform_key(rng, step):
  """The key of the task's input transform (:meth:`Task.transform_inputs`) at ``step``."""
  return jax.random.fold_in(jax.random.fold_in(rng, step), 3)


def draw_drop_pathway(key, prob: float, step=None, total_steps: int = 0, ramp: float = 0.0):
  """One Bernoulli draw for the whole global batch: True = drop the audio pathway.

  The rate is ``prob``; with a ``ramp`` it moves linearly from ``prob + ramp``
  at step 0 to ``prob - ramp`` at ``total_steps`` (clipped to [0, 1]), so its
  mean over training stays ``prob`` when nothing clips. With a rate of 0 and
  no ramp it is a static Python ``False``, so the model traces no conditional
  at all.
  """
  if not ramp:
    if prob <= 0:
      return False
    return jax.random.bernoulli(key, prob)
  frac = jnp.asarray(step, jnp.float32) / max(total_steps, 1)
  rate = jnp.clip(prob + ramp * (1.0 - 2.0 * frac), 0.0, 1.0)
  return jax.random.bernoulli(key, rate)


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
  arch = config.model.arch
  uses_audio = arch == 'avslowfast'
  frozen = bool(config.train.linear_probe)
  drop_prob = float(config.train.drop_pathway_prob) if uses_audio and not frozen else 0.0
  drop_ramp = float(config.train.drop_pathway_ramp) if drop_prob else 0.0
  avs_on = bool(uses_audio and config.avs.enabled and config.avs.junctions)
  hard_start_step = int(round(config.avs.hard_start * total_steps))
  min_var = config.avs.min_audio_var

  def train_step(state: TrainState, batch: Mapping[str, Any], rng):
    k_drop, k_dropout, k_negative = step_keys(rng, state.step)
    dropped = draw_drop_pathway(k_drop, drop_prob, state.step, total_steps, drop_ramp)
    batch = clip_finish.finish_clips(config, batch)
    batch = task.transform_inputs(batch, transform_key(rng, state.step))
    inputs = inference.model_inputs(config, batch)

    negatives, is_hard = None, None
    if avs_on:
      use_hard = state.step >= hard_start_step
      negatives, is_hard = losses.choose_audio_negatives(
          k_negative, batch['audio'], batch.get('audio_shifted'), use_hard,
          config.avs.hard_fraction)

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
      if avs_on:
        audio_var = aux.get('audio_var', None)
        if audio_var is None:
          audio_var = _per_clip_variance(batch['audio'])
        real = batch.get('audio_mask', jnp.ones_like(audio_var))
        pair_mask = (audio_var >= min_var).astype(jnp.float32) * real
        # A negative is informative only if it carries sound: a silent
        # negative can be told apart without looking at synchronisation.
        neg_real = jnp.where(is_hard > 0, real, jnp.roll(real, 1))
        negative_mask = pair_mask * neg_real * (_per_clip_variance(negatives) >= min_var)
        avs_total, avs_terms = losses.avs_loss(aux['avs'], config.avs.junctions, pair_mask,
                                               negative_mask, config.avs.margin)
        # No audio pathway on a dropped step, hence nothing to synchronise.
        keep = 1.0 - jnp.asarray(dropped, jnp.float32)
        avs_total = avs_total * keep * config.avs.weight
        terms['loss_avs'] = avs_total
        # 0 on a dropped step: the logged mean over a window is the accuracy times the share
        # of steps that ran the audio pathway (1 - train/drop_pathway_rate).
        terms['avs_top1'] = keep * losses.avs_accuracy(aux['avs'], config.avs.junctions,
                                                       pair_mask * negative_mask)
        for name, value in avs_terms.items():
          terms[f'loss_avs_{name}'] = value * keep
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
    if avs_on:
      metrics['hard_negative_fraction'] = jnp.mean(is_hard)
    metrics.update(task.train_metrics(logits, batch))
    return new_state, metrics

  return train_step


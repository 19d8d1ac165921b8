"""Schedules, weight-decay masking, AVS loss, negatives curriculum, DropPathway draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avslowfast_jax import drop_pathway
from avslowfast_jax.losses import avs
from avslowfast_jax.train import optimizer, schedules, step
from configs import common
from data_pipelines.errors import UserError


def _plan(**overrides):
  c = common.base_config()
  for k, v in overrides.items():
    setattr(c.train, k, v)
  return c, schedules.make_plan(c.train, num_train_examples=6400)


def test_cosine_schedule_with_warmup_values():
  # 6400 clips / batch 64 = 100 steps per epoch; 10 epochs, 2 of warm-up.
  c, plan = _plan(batch_size=64, reference_batch_size=64, base_lr=0.1, num_epochs=10.0,
                  warmup_epochs=2.0, warmup_start_lr=0.01)
  assert (plan.total_steps, plan.warmup_steps) == (1000, 200)
  lr = schedules.create_learning_rate_fn('cosine', plan)
  cos_at_200 = 0.1 * 0.5 * (1 + np.cos(np.pi * 0.2))
  np.testing.assert_allclose(lr(0), 0.01, rtol=1e-6)
  np.testing.assert_allclose(lr(100), 0.01 + (cos_at_200 - 0.01) * 0.5, rtol=1e-5)
  np.testing.assert_allclose(lr(200), cos_at_200, rtol=1e-5)
  np.testing.assert_allclose(lr(500), 0.05, rtol=1e-5)  # half-way down the cosine
  np.testing.assert_allclose(lr(1000), 0.0, atol=1e-8)


def test_lr_scales_linearly_with_global_batch():
  _, plan = _plan(batch_size=1024, reference_batch_size=64, base_lr=0.1, warmup_start_lr=0.01)
  np.testing.assert_allclose(plan.base_lr, 1.6, rtol=1e-6)  # the paper's 1.6 at 1024
  np.testing.assert_allclose(plan.warmup_start_lr, 0.16, rtol=1e-6)


def test_step_schedule_and_steps_override_epochs():
  _, plan = _plan(batch_size=64, base_lr=0.1, total_steps=300, warmup_steps=0, warmup_epochs=0.0,
                  schedule='steps', lr_decay_steps=(200, 250))
  assert plan.total_steps == 300
  lr = schedules.create_learning_rate_fn('steps', plan)
  np.testing.assert_allclose([lr(0), lr(199), lr(200), lr(249), lr(250)],
                             [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-5)
  with pytest.raises(UserError, match='cosine'):
    schedules.create_learning_rate_fn('linear', plan)


def test_itstime():
  assert [s for s in range(0, 11) if schedules.itstime(s, 4, 10)] == [4, 8, 10]


def test_weight_decay_skips_bn_and_bias():
  params = {'conv': {'kernel': jnp.ones((3, 3, 2, 4))}, 'bn': {'scale': jnp.ones(4),
                                                                'bias': jnp.ones(4)},
            'head': {'kernel': jnp.ones((4, 5)), 'bias': jnp.ones(5)}}
  c = common.base_config()
  c.train.weight_decay, c.train.momentum, c.train.nesterov = 0.1, 0.0, False
  tx = optimizer.create_optimizer(c.train, lambda s: 1.0)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  # With zero gradients only weight decay moves a parameter: -lr * wd * p.
  np.testing.assert_allclose(updates['conv']['kernel'], -0.1)
  np.testing.assert_allclose(updates['head']['kernel'], -0.1)
  for leaf in (updates['bn']['scale'], updates['bn']['bias'], updates['head']['bias']):
    np.testing.assert_allclose(leaf, 0.0)


def test_adamw_option_decays_only_kernels():
  params = {'conv': {'kernel': jnp.ones((3, 3, 2, 4))}, 'bn': {'scale': jnp.ones(4)}}
  c = common.base_config()
  c.train.optimizer, c.train.weight_decay = 'adamw', 0.1
  tx = optimizer.create_optimizer(c.train, lambda s: 1.0)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  # Zero gradients: Adam's step is 0, decoupled weight decay gives -lr * wd * p.
  np.testing.assert_allclose(updates['conv']['kernel'], -0.1)
  np.testing.assert_allclose(updates['bn']['scale'], 0.0)
  c.train.optimizer = 'lamb'
  with pytest.raises(UserError, match='sgd.*adamw'):
    optimizer.create_optimizer(c.train, lambda s: 1.0)


def test_gradient_clipping():
  c = common.base_config()
  c.train.weight_decay, c.train.momentum, c.train.grad_clip_norm = 0.0, 0.0, 1.0
  tx = optimizer.create_optimizer(c.train, lambda s: 1.0)
  p = {'w': jnp.zeros((2, 2))}
  u, _ = tx.update({'w': jnp.full((2, 2), 10.0)}, tx.init(p), p)
  np.testing.assert_allclose(optax.global_norm(u), 1.0, rtol=1e-5)


def _unit(x):
  return 0.5 * x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_avs_loss_prefers_in_sync_pairs():
  rng = np.random.default_rng(0)
  visual = _unit(rng.normal(size=(8, 16)))
  in_sync_audio = _unit(visual + 0.05 * rng.normal(size=(8, 16)))
  unrelated = _unit(rng.normal(size=(8, 16)))
  ones = jnp.ones(8)
  # Loss with the true pairs as positives and unrelated audio as negatives
  # must be lower than the other way round.
  good = avs.contrastive_sync_loss(visual, in_sync_audio, unrelated, ones, ones)
  bad = avs.contrastive_sync_loss(visual, unrelated, in_sync_audio, ones, ones)
  assert float(good) < float(bad)
  # Hand-computed value for one pair: pos d^2, neg hinge^2 at 0.99, halved.
  v = np.array([[0.5, 0.0]])
  a = np.array([[0.3, 0.4]])  # distance^2 = 0.04 + 0.16 = 0.2
  n = np.array([[-0.5, 0.0]])  # distance 1.0 -> beyond the margin, no loss
  np.testing.assert_allclose(avs.contrastive_sync_loss(v, a, n, jnp.ones(1), jnp.ones(1)),
                             0.1, rtol=1e-5)
  n_close = np.array([[0.5, 0.49]])  # distance 0.49 -> hinge 0.5^2 = 0.25
  np.testing.assert_allclose(avs.contrastive_sync_loss(v, a, n_close, jnp.ones(1),
                                                          jnp.ones(1)), (0.2 + 0.25) / 2,
                             rtol=1e-5)


def test_avs_loss_masks_silent_pairs():
  v = np.array([[0.5, 0.0], [0.5, 0.0]])
  a = np.array([[0.3, 0.4], [-0.5, 0.0]])
  n = np.array([[-0.5, 0.0], [0.5, 0.0]])
  # Second clip (silent) is masked: only the first pair counts.
  masked = avs.contrastive_sync_loss(v, a, n, jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(masked, 0.1, rtol=1e-5)


def test_negatives_curriculum_switch():
  audio = jnp.arange(8.0).reshape(8, 1, 1, 1)
  shifted = -audio
  key = jax.random.PRNGKey(3)
  easy, is_hard = avs.choose_audio_negatives(key, audio, shifted, jnp.bool_(False), 0.25)
  np.testing.assert_array_equal(easy[:, 0, 0, 0], np.roll(np.arange(8.0), 1))
  assert float(is_hard.sum()) == 0
  mixed, is_hard = avs.choose_audio_negatives(key, audio, shifted, jnp.bool_(True), 0.25)
  assert float(is_hard.sum()) == 2  # exactly a quarter of the batch
  hard_rows = np.flatnonzero(np.asarray(is_hard))
  np.testing.assert_array_equal(mixed[hard_rows, 0, 0, 0], -np.arange(8.0)[hard_rows])
  easy_rows = np.flatnonzero(np.asarray(is_hard) == 0)
  np.testing.assert_array_equal(mixed[easy_rows, 0, 0, 0], np.roll(np.arange(8.0), 1)[easy_rows])


def test_drop_pathway_rate_over_many_steps():
  base = jax.random.PRNGKey(0)

  def drawn(s, p):
    k_drop, _, _ = step.step_keys(base, s)
    return drop_pathway.draw(k_drop, p, p)

  steps = jnp.arange(4000)
  for p in (0.2, 0.8):
    rate = float(jnp.mean(jax.vmap(lambda s: drawn(s, p))(steps)))
    assert abs(rate - p) < 0.03, (p, rate)
  assert drop_pathway.draw(base, 0.0, 0.0) is False
  # Same step, same draw: what a resumed run relies on.
  assert bool(drawn(17, 0.5)) == bool(drawn(17, 0.5))


def test_drop_pathway_rate_moves_linearly_from_start_to_end():
  base = jax.random.PRNGKey(0)
  total = 4000

  def drawn(s):
    k_drop, _, _ = step.step_keys(base, s)
    return drop_pathway.draw(k_drop, 1.0, 0.6, s, total)

  dropped = np.asarray(jax.vmap(drawn)(jnp.arange(total)), np.float32)
  assert dropped[:200].mean() > 0.97  # ~1 at the start
  assert abs(dropped[-1000:].mean() - 0.65) < 0.04  # ~0.65 over the last quarter
  assert abs(dropped.mean() - 0.8) < 0.03  # the mean of 1.0 and 0.6


@pytest.mark.parametrize('value,rates', [((0.8,), (0.8, 0.8)), ((1.0, 0.4), (1.0, 0.4)),
                                         ((0.2, 0.0), (0.2, 0.0))])
def test_drop_pathway_setting_is_a_rate_or_a_start_and_end(value, rates):
  c = common.base_config()
  c.train.drop_pathway_prob = value
  assert drop_pathway.rates(c.train) == rates


@pytest.mark.parametrize('value', [(1.5,), (0.8, 0.4, 0.2), ()])
def test_drop_pathway_setting_out_of_range_is_refused(value):
  c = common.base_config()
  c.train.drop_pathway_prob = value
  with pytest.raises(UserError, match='drop_pathway_prob'):
    drop_pathway.rates(c.train)


def test_library_info_logs_are_filtered_but_not_ours_or_warnings():
  import logging as std_logging
  import os
  from absl import logging as absl_logging
  from avslowfast_jax import main as main_lib

  def record(path, level):
    return std_logging.LogRecord('absl', level, path, 1, 'msg', None, None)

  ours = os.path.join(os.path.dirname(main_lib.__file__), 'train', 'trainer.py')
  orbax = os.path.join(os.path.dirname(optax.__file__), '..', 'orbax', 'checkpoint', 'x.py')
  handler = absl_logging.get_absl_handler()
  before = list(handler.filters)
  try:
    handler.filters[:] = []  # as in a fresh process
    assert handler.filter(record(orbax, std_logging.INFO))
    main_lib.quiet_library_logs()
    main_lib.quiet_library_logs()  # a second call adds no second filter
    assert len(handler.filters) == 1
    assert handler.filter(record(ours, std_logging.INFO))
    assert not handler.filter(record(orbax, std_logging.INFO))
    assert handler.filter(record(orbax, std_logging.WARNING))
    assert handler.filter(record(orbax, std_logging.ERROR))
  finally:
    handler.filters[:] = before

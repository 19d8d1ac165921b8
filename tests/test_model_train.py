"""Group BatchNorm independent of how the batch is split; a tiny model learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from avslowfast_jax import model_builder
from avslowfast_jax.models.norm import GroupBatchNorm
from data_pipelines.errors import UserError
from model_testing import assert_gradients_close, init, tiny_inputs, tiny_model_config


def _bn_apply(x, group_size=2):
  bn = GroupBatchNorm(group_size=group_size)
  v = bn.init(jax.random.key(0), x, True)
  v = {'params': {'scale': jnp.linspace(0.5, 2.0, x.shape[-1]),
                  'bias': jnp.linspace(-1.0, 1.0, x.shape[-1])},
       'batch_stats': v['batch_stats']}
  y, state = bn.apply(v, x, True, mutable=['batch_stats'])
  return y, state['batch_stats']


def test_group_bn_same_however_the_batch_is_split():
  assert len(jax.devices()) == 8, 'conftest.py sets 8 fake CPU devices'
  rng = np.random.default_rng(0)
  # Per-clip offsets make every group's statistics different.
  x = rng.standard_normal((8, 3, 4, 4, 5)).astype(np.float32) * 2 + np.arange(8)[:, None, None,
                                                                                    None, None]
  x = jnp.asarray(x)
  single, stats = jax.jit(_bn_apply)(x)
  mesh = Mesh(np.array(jax.devices()), ('data',))
  sharded_x = jax.device_put(x, NamedSharding(mesh, P('data')))
  sharded, sharded_stats = jax.jit(_bn_apply)(sharded_x)
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(sharded_stats['mean'], stats['mean'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sharded_stats['var'], stats['var'], rtol=1e-5, atol=1e-6)
  # The same as normalising each group of 2 clips on its own ...
  manual = jnp.concatenate([_bn_apply(x[i:i + 2])[0] for i in range(0, 8, 2)])
  np.testing.assert_allclose(single, manual, rtol=1e-5, atol=1e-5)
  # ... and not the same as whole-batch statistics.
  assert not np.allclose(single, _bn_apply(x, group_size=8)[0], atol=1e-3)
  # Running statistics are those of the whole batch (PyTorch: unbiased var).
  flat = np.asarray(x).reshape(-1, 5)
  np.testing.assert_allclose(stats['mean'], 0.1 * flat.mean(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-4)


def test_frozen_bn_uses_running_statistics():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3, 5)), jnp.float32)
  bn = GroupBatchNorm(frozen=True)
  v = bn.init(jax.random.key(0), x, True)
  v['batch_stats'] = {'mean': jnp.full((5,), 0.5), 'var': jnp.full((5,), 4.0)}
  y, state = bn.apply(v, x, True, mutable=['batch_stats'])
  np.testing.assert_allclose(y, (x - 0.5) / np.sqrt(4.0 + 1e-5), rtol=1e-5)
  np.testing.assert_array_equal(state['batch_stats']['mean'], v['batch_stats']['mean'])


@pytest.mark.slow
def test_tiny_model_loss_falls():
  config = tiny_model_config(dropout_rate=0.0)
  model = model_builder.build(config)[0]
  inputs = tiny_inputs(batch=4, seed=2)
  labels = jnp.asarray([0, 1, 2, 3])
  variables = init(model, inputs)
  tx = optax.sgd(0.05, momentum=0.9)

  @jax.jit
  def step(params, batch_stats, opt_state, drop):
    def loss_fn(p):
      (logits, aux), state = model.apply(
          {'params': p, 'batch_stats': batch_stats}, inputs, train=True, drop_audio=drop,
          rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), state
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state['batch_stats'], opt_state, loss

  params, batch_stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  losses = []
  for i in range(6):
    # DropPathway on odd steps: both branches of the cond get exercised.
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state,
                                                jnp.asarray(i % 2 == 1))
    losses.append(float(loss))
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


def test_bf16_compute_keeps_fp32_params():
  bf16 = model_builder.build(tiny_model_config(dtype='bfloat16'))[0]
  inputs = tiny_inputs()
  variables = jax.eval_shape(lambda x: init(bf16, x), inputs)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  logits, aux = jax.eval_shape(lambda v, x: bf16.apply(v, x), variables, inputs)
  assert logits.dtype == jnp.float32
  res5 = jax.eval_shape(lambda v, x: bf16.apply(v, x)[1]['res5']['slow'], variables, inputs)
  assert res5.dtype == jnp.bfloat16


def _count_remat(jaxpr) -> int:
  """Rematerialised regions (``jax.checkpoint`` equations) in ``jaxpr``, nested ones included."""
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name.startswith(('checkpoint', 'remat'))
    for value in eqn.params.values():
      for v in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(v, jax.extend.core.ClosedJaxpr):
          n += _count_remat(v.jaxpr)
        elif isinstance(v, jax.extend.core.Jaxpr):
          n += _count_remat(v)
  return n


def test_remat_wraps_every_stage_or_block():
  # Traced only: the checkpointed regions of the forward pass of the full tiny model.
  inputs = tiny_inputs(batch=2, seed=3, size=16)
  counts = {}
  for remat in ('none', 'stages', 'blocks'):
    model = model_builder.build(tiny_model_config(remat=remat, stage_blocks=(2, 1, 1, 1),
                                        dropout_rate=0.0))[0]
    variables = jax.eval_shape(lambda x, model=model: init(model, x), inputs)
    jaxpr = jax.make_jaxpr(lambda v, x, model=model: model.apply(
        v, x, train=True, mutable=['batch_stats']))(variables, inputs)
    counts[remat] = _count_remat(jaxpr.jaxpr)
  # Slow, Fast and Audio: 4 stages each, 5 blocks each (two in res2).
  assert counts == {'none': 0, 'stages': 12, 'blocks': 15}, counts


@pytest.mark.slow  # three gradient compiles
def test_remat_gives_the_same_gradients():
  # The Audio pathway alone (the quickest to compile); one shared init.
  base = dict(arch='audio', dropout_rate=0.0, stage_blocks=(2, 1, 1, 1))
  inputs = {'audio': tiny_inputs(batch=2, seed=3)['audio']}
  labels = jnp.asarray([0, 1])
  variables = init(model_builder.build(tiny_model_config(**base))[0], inputs)
  grads = {}
  for remat in ('none', 'stages', 'blocks'):
    model = model_builder.build(tiny_model_config(remat=remat, **base))[0]

    def loss_fn(params, model=model):
      logits, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                              inputs, train=True, mutable=['batch_stats'])[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads[remat] = jax.jit(jax.grad(loss_fn))(variables['params'])
  for remat in ('stages', 'blocks'):
    assert_gradients_close(grads[remat], grads['none'])
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads['none']))


def test_remat_is_validated():
  with pytest.raises(UserError, match='remat'):
    model_builder.build(tiny_model_config(remat='layers'))

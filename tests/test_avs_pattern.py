"""Which AVS junctions count on a step, as the authors' code decides (DropPathway and
the earliest fusion), and which pairs are left out (near-silent, near-duplicate)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import model_builder, trees
from avslowfast_jax.losses import avs
from configs import kinetics


def _config(**model):
  c = kinetics.get_config('tiny_avslowfast_8x8_r50')
  c.model.num_classes = 5
  c.model.dropout_rate = 0.0
  for key, value in model.items():
    c.model[key] = value
  return c


def _batch(batch=4, seed=0):
  rng = np.random.default_rng(seed)
  fast = rng.standard_normal((batch, 8, 32, 32, 3)).astype(np.float32)
  return {'slow': jnp.asarray(fast[:, ::4]), 'fast': jnp.asarray(fast),
          'audio': jnp.asarray(rng.standard_normal((batch, 32, 16, 1)), jnp.float32),
          'label': jnp.arange(batch, dtype=jnp.int32) % 5}


def _step_fn(config):
  """``f(dropped) -> (terms, grads of the classification loss, grads of the AVS loss)`` of
  one training step of the tiny model, jitted (one compilation for both draws)."""
  model, task = model_builder.build(config)
  batch = _batch()
  inputs = model_builder.model_inputs(config, batch)
  variables = jax.jit(lambda k: model_builder.init_variables(config, model, k))(
      jax.random.key(0))
  objective = avs.SyncObjective(config, total_steps=10)
  negatives, is_hard = objective.negatives(jax.random.key(1), batch, 0)

  def run(params, dropped):
    (logits, aux), _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                                   inputs, train=True, drop_audio=dropped,
                                   audio_negative=negatives, rngs={'dropout': jax.random.key(2)},
                                   mutable=['batch_stats'])
    cls, _ = task.loss(logits, batch)
    total, terms = objective.loss(aux, batch, negatives, is_hard, dropped)
    return cls, total, terms

  @jax.jit
  def step(dropped):
    terms = run(variables['params'], dropped)[2]
    cls_grads = jax.grad(lambda p: run(p, dropped)[0])(variables['params'])
    avs_grads = jax.grad(lambda p: run(p, dropped)[1])(variables['params'])
    return terms, cls_grads, avs_grads

  return lambda dropped: step(jnp.asarray(dropped))


@pytest.fixture(scope='module')
def default_step():
  return _step_fn(_config())


def _norm(tree):
  return float(sum(np.sum(np.square(v)) for v in trees.flatten(tree).values()))


def test_a_dropped_step_counts_every_junction_and_trains_the_audio_by_avs_alone(default_step):
  assert tuple(_config().avs.junctions) == ('res3', 'res4', 'pool5')
  terms, cls_grads, avs_grads = default_step(True)
  for junction in ('res3', 'res4', 'pool5'):
    assert float(terms[f'loss_avs_{junction}']) > 0, junction
  assert float(terms['avs_junctions']) == 3
  # Dropped altogether from the head (mode 'pathway'): the classification loss does not
  # reach the audio pathway, the AVS loss does.
  assert _norm(cls_grads['audio']) == 0.0
  assert _norm(avs_grads['audio']) > 0.0


def test_a_kept_step_counts_the_junctions_up_to_the_earliest_fusion(default_step):
  terms, _, avs_grads = default_step(False)
  assert float(terms['loss_avs_res3']) > 0
  assert float(terms['loss_avs_res4']) == 0.0 and float(terms['loss_avs_pool5']) == 0.0
  assert float(terms['avs_junctions']) == 1
  np.testing.assert_allclose(float(terms['loss_avs']), float(terms['loss_avs_res3']),
                             rtol=1e-6)
  # Only res3's projections learn: the later ones get no gradient on this step.
  assert _norm(avs_grads['avs_visual_res3']) > 0
  assert _norm(avs_grads['avs_visual_res4']) == 0.0
  assert _norm(avs_grads['avs_visual_pool5']) == 0.0


@pytest.mark.parametrize('stages,fusion,counted', [
    (('res3', 'res4'), 'a_fs', ('res3',)),
    (('res4',), 'a_fs', ('res3', 'res4')),
    ((), 'a_fs', ('res3', 'res4', 'pool5')),           # late fusion only: nothing is trivial
    (('res3', 'res4'), 'a_f_s', ()),                   # audio reaches Slow at res3 already
    (('res3', 'res4'), 'av_nonlocal', ('res3',)),
])
def test_junctions_counted_on_a_kept_step(stages, fusion, counted):
  objective = avs.SyncObjective(_config(audio_lateral_stages=stages, fusion=fusion), 10)
  kept = objective.junction_weights(('res3', 'res4', 'pool5'), False)
  assert tuple(j for j, w in kept.items() if float(w) == 1.0) == counted
  dropped = objective.junction_weights(('res3', 'res4', 'pool5'), True)
  assert all(float(w) == 1.0 for w in dropped.values())


def test_near_duplicate_and_silent_pairs_are_left_out():
  config = _config()
  objective = avs.SyncObjective(config, 10)
  rng = np.random.default_rng(0)
  audio = jnp.asarray(rng.standard_normal((4, 32, 16, 1)), jnp.float32)
  negatives = jnp.roll(audio, 1, axis=0)
  negatives = negatives.at[2].set(audio[2] * 1.001 + 1e-4)  # clip 2: a near-duplicate
  near = avs.near_duplicates(audio, negatives, config.avs.duplicate_threshold)
  np.testing.assert_array_equal(near, [False, False, True, False])
  emb = lambda seed: jnp.asarray(avs_unit(np.random.default_rng(seed).normal(size=(4, 8))))
  aux = {'avs': {'res3': {'visual': emb(1), 'audio': emb(2), 'audio_negative': emb(3)}},
         'audio_var': jnp.var(audio.reshape(4, -1), axis=-1)}
  batch = {'audio': audio}
  is_hard = jnp.zeros(4)
  _, terms = objective.loss(aux, batch, negatives, is_hard, False)
  # The same loss with clip 2 masked by hand: the near-duplicate pair does not count.
  masks = jnp.array([1.0, 1.0, 0.0, 1.0])
  expected = avs.contrastive_sync_loss(aux['avs']['res3']['visual'], aux['avs']['res3']['audio'],
                                       aux['avs']['res3']['audio_negative'], masks, masks,
                                       config.avs.margin)
  np.testing.assert_allclose(float(terms['loss_avs_res3']), float(expected), rtol=1e-6)
  # A silent clip (variance below avs.min_audio_var) leaves out its pair, and the
  # negative term of the clip whose negative it is.
  silent = audio.at[0].set(0.0)
  aux['audio_var'] = jnp.var(silent.reshape(4, -1), axis=-1)
  _, terms = objective.loss(aux, {'audio': silent}, jnp.roll(silent, 1, axis=0), is_hard, False)
  pos_masks = jnp.array([0.0, 1.0, 1.0, 1.0])
  neg_masks = jnp.array([0.0, 0.0, 1.0, 1.0])
  expected = avs.contrastive_sync_loss(aux['avs']['res3']['visual'], aux['avs']['res3']['audio'],
                                       aux['avs']['res3']['audio_negative'], pos_masks, neg_masks,
                                       config.avs.margin)
  np.testing.assert_allclose(float(terms['loss_avs_res3']), float(expected), rtol=1e-6)


def avs_unit(x):
  return 0.5 * x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_without_avs_a_dropped_step_computes_no_audio():
  """Mode 'pathway' without AVS: the dropped step's audio pathway is under a
  conditional, so its compute is saved; with AVS it runs every step."""
  config = _config()
  model, _ = model_builder.build(config)
  batch = _batch()
  inputs = model_builder.model_inputs(config, batch)
  variables = jax.eval_shape(lambda k: model_builder.init_variables(config, model, k),
                             jax.random.key(0))

  def forward(negative):
    def f(v, drop):
      return model.apply(v, inputs, train=True, drop_audio=drop,
                         audio_negative=negative, rngs={'dropout': jax.random.key(2)},
                         mutable=['batch_stats'])[0][1]['features']['audio']
    return str(jax.make_jaxpr(f)(variables, jnp.asarray(True)))

  assert 'cond' in forward(None)
  assert 'cond' not in forward(batch['audio'][::-1])

"""Laterals' time alignment, DropPathway in both modes, audio negatives."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avslowfast_jax import model_builder
from avslowfast_jax.models.conv import Conv
from avslowfast_jax.models.fusion import AudioToVisual, FastToSlow
from avslowfast_jax.models.norm import GroupBatchNorm
from model_testing import init, tiny_inputs, tiny_model_config


def _identity_centre(kernel):
  """A kernel that copies channel c to channel c from its centre time tap."""
  k = np.zeros(kernel.shape, np.float32)
  centre = kernel.shape[0] // 2
  for c in range(min(kernel.shape[-2:])):
    k[(centre,) + (0,) * (kernel.ndim - 3) + (c, c)] = 1.0
  return jnp.asarray(k)


def test_fast_to_slow_is_aligned_with_slow_frames():
  """Output step t is centred on Fast frame alpha * t (the frame Slow sees)."""
  alpha = 4
  fast = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 3, 3, 5)), jnp.float32)
  module = FastToSlow(5, alpha, Conv, GroupBatchNorm, kernel_size=5)
  v = module.init(jax.random.key(0), fast, False)
  v = jax.tree_util.tree_map_with_path(
      lambda p, x: _identity_centre(x) if 'kernel' in jax.tree_util.keystr(p) else x, v)
  out = module.apply(v, fast, False)
  scale = 1 / np.sqrt(1 + 1e-5)  # eval BN with fresh statistics
  np.testing.assert_allclose(out, jax.nn.relu(fast[:, ::alpha]) * scale, rtol=1e-5, atol=1e-6)


def test_audio_lateral_is_aligned_with_visual_steps():
  """A->FS output step t is centred on audio step t * (T_a / T_visual)."""
  audio = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 6, 4)), jnp.float32)
  module = AudioToVisual(4, 4, target_length=4, conv=Conv, norm=GroupBatchNorm)
  v = module.init(jax.random.key(0), audio, False)
  v = jax.tree_util.tree_map_with_path(
      lambda p, x: _identity_centre(x) if 'kernel' in jax.tree_util.keystr(p) else x, v)
  out = module.apply(v, audio, False)
  assert out.shape == (2, 4, 4)
  scale = 1 / (1 + 1e-5)  # two eval BNs with fresh statistics
  expected = jax.nn.relu(jnp.mean(audio, axis=2))[:, ::8] * scale
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _visual_params(variables):
  """The variables of a SlowFast model inside an AVSlowFast's variables."""
  keep = lambda tree: {k: v for k, v in tree.items()
                       if k != 'audio' and not k.startswith(('avs_', 'av_nonlocal')) and k != 'head'}
  return {col: keep(tree) for col, tree in variables.items()}


@pytest.fixture(scope='module')
def inputs():
  return tiny_inputs()


@pytest.mark.parametrize('fusion,modes', [
    pytest.param('a_fs', ('laterals', 'pathway'), marks=pytest.mark.slow),
    ('a_f_s', ('pathway',)), ('av_nonlocal', ('pathway',))])
def test_dropped_audio_gives_the_slowfast_output(fusion, modes, inputs):
  """Both DropPathway modes: with the audio dropped, the visual features are
  those of a SlowFast (zero-audio) model with the same weights, whatever the
  audio; without dropping they are not. In 'pathway' mode the pooled audio
  and AVS audio embeddings are zeros too."""
  key = {'dropout': jax.random.key(3)}
  models = {mode: model_builder.build(tiny_model_config(fusion=fusion, drop_pathway_mode=mode))[0]
            for mode in modes}
  slowfast = model_builder.build(tiny_model_config('slowfast'))[0]
  v = init(models[modes[0]], inputs)
  other_audio = dict(inputs, audio=inputs['audio'][::-1] * 3.0)

  # The fusion blocks start as the identity (zero-init BN); make them act.
  v = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.ones_like(x) if re.search(r'av_nonlocal.*bn.*scale', jax.tree_util.keystr(p))
      else x, v)
  compiled = {}

  def features(model, variables, x, drop):
    if model not in compiled:
      compiled[model] = jax.jit(lambda variables, x, drop: model.apply(
          variables, x, train=True, drop_audio=drop, rngs=key, mutable=['batch_stats'])[0][1])
    return compiled[model](variables, x, drop)

  sf_v = dict(_visual_params(v), params=dict(_visual_params(v)['params']))
  sf_v['params']['head'] = init(slowfast, inputs)['params']['head']
  reference = features(slowfast, sf_v, inputs, jnp.asarray(False))['features']
  for model in models.values():
    for x in (inputs, other_audio):
      aux = features(model, v, x, jnp.asarray(True))
      for p in ('slow', 'fast'):
        np.testing.assert_allclose(aux['features'][p], reference[p], rtol=1e-5, atol=1e-5)
    kept = features(model, v, inputs, jnp.asarray(False))['features']
    assert not np.allclose(kept['slow'], reference['slow'], atol=1e-4)
  dropped = features(models['pathway'], v, inputs, jnp.asarray(True))
  assert not np.any(dropped['features']['audio'])
  assert not any(np.any(j['audio']) for j in dropped['avs'].values())
  if 'laterals' in models:
    assert np.any(features(models['laterals'], v, inputs, jnp.asarray(True))['features']['audio'])


def _count_ops(jaxpr, names):
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name in names
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else [value]):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          n += _count_ops(sub.jaxpr, names)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          n += _count_ops(sub, names)
  return n


def test_pathway_mode_skips_all_audio_compute(inputs):
  """The dropped branch of the cond has no conv or matmul; the other has the
  whole audio pathway. A dropped step leaves the audio BN statistics alone."""
  model = model_builder.build(tiny_model_config(drop_pathway_mode='pathway'))[0]
  v = init(model, inputs)

  def step(drop):
    return model.apply(v, inputs, train=True, drop_audio=drop,
                       rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
  jaxpr = jax.make_jaxpr(step)(jnp.asarray(True)).jaxpr
  conds = [e for e in jaxpr.eqns if e.primitive.name == 'cond']
  assert len(conds) == 1
  heavy = ('conv_general_dilated', 'dot_general')
  counts = sorted(_count_ops(b.jaxpr, heavy) for b in conds[0].params['branches'])
  assert counts[0] == 0 and counts[1] > 20
  # Audio blocks have 4 BNs in the factorised res2/res3 blocks, 3 later; all
  # their statistics move only when the pathway runs.
  _, dropped_state = step(jnp.asarray(True))
  _, kept_state = step(jnp.asarray(False))
  before = v['batch_stats']['audio']['stem']['bn']['mean']
  np.testing.assert_array_equal(dropped_state['batch_stats']['audio']['stem']['bn']['mean'],
                                before)
  assert not np.allclose(kept_state['batch_stats']['audio']['stem']['bn']['mean'], before)


def test_audio_negatives_run_with_positives(inputs):
  """Negatives get their own AVS embeddings; with BN groups of the batch size,
  the positives' outputs do not change when negatives are added."""
  model = model_builder.build(tiny_model_config())[0]  # bn_group_size 2 == batch
  v = init(model, inputs)
  negative = inputs['audio'][::-1] + 1.0
  run = lambda neg: model.apply(v, inputs, train=True, drop_audio=jnp.asarray(False),
                                audio_negative=neg, rngs={'dropout': jax.random.key(0)},
                                mutable=['batch_stats'])[0]
  logits_neg, aux_neg = run(negative)
  logits, aux = run(None)
  np.testing.assert_allclose(logits_neg, logits, rtol=1e-5, atol=1e-5)
  for junction, emb in aux_neg['avs'].items():
    assert emb['audio_negative'].shape == emb['audio'].shape
    np.testing.assert_allclose(emb['audio'], aux['avs'][junction]['audio'], rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(emb['audio_negative'], emb['audio'])
    np.testing.assert_allclose(np.linalg.norm(emb['audio'], axis=-1), 0.5, rtol=1e-4)


def test_running_mean_fill_feeds_what_the_audio_gave_on_average(inputs):
  """``drop_pathway_fill='running_mean'``: a step that runs the audio pathway
  records the batch mean of the pooled audio features and of each lateral; a
  dropped step feeds those means (bias-corrected) in place of zeros and
  records nothing; outside training the model is the zero-fill one."""
  key = {'dropout': jax.random.key(0)}
  model = model_builder.build(tiny_model_config(drop_pathway_fill='running_mean'))[0]
  zeros_model = model_builder.build(tiny_model_config())[0]
  v = init(model, inputs)
  stats = v['batch_stats']
  names = sorted(k for k in stats if k.startswith('audio_mean_'))
  assert names == ['audio_mean_lateral_res3', 'audio_mean_lateral_res3_steps',
                   'audio_mean_lateral_res4', 'audio_mean_lateral_res4_steps',
                   'audio_mean_pool5', 'audio_mean_pool5_steps']
  step = jax.jit(lambda v, drop: model.apply(v, inputs, train=True, drop_audio=drop, rngs=key,
                                             mutable=['batch_stats']))
  (_, ran), state = step(v, jnp.asarray(False))
  after_run = state['batch_stats']
  assert float(after_run['audio_mean_pool5_steps']) == 1.0
  v_run = dict(v, batch_stats=after_run)
  (_, dropped), state = step(v_run, jnp.asarray(True))
  for name in names:  # a dropped step records nothing
    np.testing.assert_array_equal(state['batch_stats'][name], after_run[name])
  mean_audio = np.mean(np.asarray(ran['features']['audio']), axis=0)
  np.testing.assert_allclose(dropped['features']['audio'],
                             np.broadcast_to(mean_audio, dropped['features']['audio'].shape),
                             rtol=1e-5, atol=1e-6)
  # The laterals' means reach the visual side: not the zero-fill features.
  zero_v = dict(v_run, batch_stats={k: s for k, s in after_run.items() if k not in names})
  (_, zero_dropped), _ = zeros_model.apply(zero_v, inputs, train=True,
                                           drop_audio=jnp.asarray(True), rngs=key,
                                           mutable=['batch_stats'])
  assert not np.allclose(dropped['features']['slow'], zero_dropped['features']['slow'],
                         atol=1e-4)
  # Evaluation: the audio itself, exactly as the zero-fill model.
  np.testing.assert_array_equal(model.apply(v_run, inputs, train=False)[0],
                                zeros_model.apply(zero_v, inputs, train=False)[0])


def test_eval_scale_multiplies_the_laterals_outside_training_only(inputs):
  """``eval.scale_audio_laterals``: with the last DropPathway rate 1 (scale 0) an
  evaluated AVSlowFast has the visual features of SlowFast with the same weights, at
  0.5 neither those nor the unscaled ones; training steps ignore the scale."""

  def scaled_model(scale):
    c = tiny_model_config()
    c.eval.scale_audio_laterals = True
    c.train.drop_pathway_prob = (1.0 - scale,)
    return model_builder.build(c)[0]

  models = {s: scaled_model(s) for s in (0.0, 0.5, 1.0)}
  assert [m.eval_lateral_scale for m in models.values()] == [0.0, 0.5, 1.0]
  v = init(models[1.0], inputs)
  evaluated = {s: m.apply(v, inputs, train=False)[1]['features']['slow']
               for s, m in models.items()}
  slowfast = model_builder.build(tiny_model_config('slowfast'))[0]
  sf_v = dict(_visual_params(v), params=dict(_visual_params(v)['params']))
  sf_v['params']['head'] = init(slowfast, inputs)['params']['head']
  reference = slowfast.apply(sf_v, inputs, train=False)[1]['features']['slow']
  np.testing.assert_allclose(evaluated[0.0], reference, rtol=1e-5, atol=1e-5)
  for s in (0.5, 1.0):
    assert not np.allclose(evaluated[s], reference, atol=1e-4)
  assert not np.allclose(evaluated[0.5], evaluated[1.0], atol=1e-4)
  train = lambda m: m.apply(v, inputs, train=True, drop_audio=jnp.asarray(False),
                            rngs={'dropout': jax.random.key(0)},
                            mutable=['batch_stats'])[0][1]['features']['slow']
  np.testing.assert_array_equal(train(models[0.0]), train(models[1.0]))
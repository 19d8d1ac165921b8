"""bf16 compute (``model.dtype='bfloat16'``) executed on CPU: train steps track fp32, and an
evaluation of the same weights on the built-in data gives the same top-1.

Tolerance (docs/accelerators.md, "bf16"): bf16 keeps 8 significant bits, so each
rounding moves a value by up to 2^-9 relative (0.2%). The first step's loss
differs from fp32 by forward rounding alone: within 2% (a few roundings'
worth, accumulated over the ~15 layers of the tiny model). Later steps start
from parameters that bf16 gradients moved, and the difference grows with the
training itself: within 15% of the fp32 loss at that step, or 2% of the first
loss once the loss is near zero.
"""

import jax
import numpy as np
import optax
import pytest

from avslowfast_jax import model_builder, parallel
from avslowfast_jax.evaluation import evaluator
from data_pipelines import input_pipeline
from train_testdata import tiny_train_config

STEPS = 6
FIRST_RTOL = 0.02
LATER_RTOL = 0.15


def _config(shards, dtype):
  return tiny_train_config(shards, **{'model.dtype': dtype, 'model.dropout_rate': 0.0})


def _train(config, variables, batches):
  """Losses of ``len(batches)`` SGD steps (classification loss, no DropPathway) and the
  final variables."""
  model, task = model_builder.build(config)
  tx = optax.sgd(0.05, momentum=0.9)

  @jax.jit
  def step(params, batch_stats, opt_state, batch):
    def loss_fn(p):
      logits, state = model.apply(
          {'params': p, 'batch_stats': batch_stats}, model_builder.model_inputs(config, batch),
          train=True, drop_audio=False, rngs={'dropout': jax.random.key(0)},
          mutable=['batch_stats'])
      return task.loss(logits[0], batch)[0], state['batch_stats']
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  params, stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  losses = []
  for batch in batches:
    params, stats, opt_state, loss = step(params, stats, opt_state, batch)
    losses.append(float(loss))
  return losses, {'params': params, 'batch_stats': stats}


@pytest.mark.slow
def test_bf16_train_steps_track_fp32_and_evaluation_agrees(train_data):
  shards, _ = train_data
  fp32, bf16 = _config(shards, 'float32'), _config(shards, 'bfloat16')
  data = input_pipeline.create_train_iterator(fp32, shards, 'train', fp32.train.batch_size,
                                              seed=0)
  # One batch (8 of the 9 training videos) for every step: the loss then falls smoothly
  # and the two runs differ by their arithmetic only, not by which batch a step drew.
  batches = [dict(next(data))] * STEPS
  model, _ = model_builder.build(fp32)
  variables = model_builder.init_variables(fp32, model, jax.random.key(0))
  variables = {k: variables[k] for k in ('params', 'batch_stats')}
  losses32, trained = _train(fp32, variables, batches)
  losses16, _ = _train(bf16, variables, batches)
  print(f'\nfp32 losses {np.round(losses32, 3).tolist()}\nbf16 losses '
        f'{np.round(losses16, 3).tolist()}')
  assert abs(losses16[0] - losses32[0]) <= FIRST_RTOL * losses32[0]
  for l16, l32 in zip(losses16[1:], losses32[1:]):
    assert abs(l16 - l32) <= max(LATER_RTOL * l32, FIRST_RTOL * losses32[0]), (l16, l32)
  assert losses16[-1] < 0.5 * losses16[0]  # bf16 trains

  # The fp32-trained weights evaluated both ways on the built-in data.
  mesh = parallel.create_mesh()
  replicated = jax.device_put(trained, parallel.replicated(mesh))
  results = {}
  for config in (fp32, bf16):
    model, task = model_builder.build(config)
    results[config.model.dtype] = evaluator.evaluate(config, model, task, replicated, mesh,
                                                     split='train')
  (m32, a32), (m16, a16) = results['float32'], results['bfloat16']
  print(f'top-1 fp32 {m32["top1"]:.3f} bf16 {m16["top1"]:.3f} over {m32["num_videos"]} videos; '
        f'max |score difference| {np.abs(a32["scores"] - a16["scores"]).max():.4f}')
  assert m32['top1'] > 1 / 3  # better than chance: the comparison is not of noise
  assert m16['top1'] == m32['top1']
  np.testing.assert_array_equal(a16['video_index'], a32['video_index'])
  np.testing.assert_array_equal(np.argmax(a16['scores'], -1), np.argmax(a32['scores'], -1))
  assert np.abs(a16['scores'] - a32['scores']).max() < 0.05

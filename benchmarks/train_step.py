r"""Throughput of one full SGD training step on random inputs.

  python benchmarks/train_step.py --config configs/kinetics.py:avslowfast_8x8_r50 \
      --batch_size 2 --steps 5 [--image_size 224] [--drop_audio] [--config.model.dtype=bfloat16]

Prints one JSON line: ``clips_per_sec``, ``step_seconds`` (median over
``--steps`` timed steps, after ``--warmup_steps`` untimed ones, the first compiling), ``compile_seconds``,
the device and the model. The step is self-contained (forward, backward,
optax SGD with momentum, BN statistics update) so it measures the model, not
the trainer. The audio pathway is computed on every step unless
``--drop_audio`` (DropPathway 'pathway' mode then skips it).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from avslowfast_jax import host_memory
from avslowfast_jax.models import build_model
from avslowfast_jax.tools.model_stats import model_stats, view_inputs

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].')
_BATCH = flags.DEFINE_integer('batch_size', 2, 'Clips per step (global).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps.')
_IMAGE = flags.DEFINE_integer('image_size', 224, 'Training crop size.')
_DROP = flags.DEFINE_boolean('drop_audio', False, 'Drop the audio pathway on every step.')
_WARMUP = flags.DEFINE_integer('warmup_steps', 2, 'Untimed steps (the first one compiles).')
_KEEP = flags.DEFINE_boolean(
    'keep_host_memory', True,
    'CPU: run the step on the calling thread and keep freed heap pages '
    '(avslowfast_jax.host_memory), as avslowfast_jax.main does by default.')


def make_train_step(model, tx, num_classes: int):
  """A jitted ``(params, batch_stats, opt_state, inputs, labels, key) -> ...`` step."""

  def loss_fn(params, batch_stats, inputs, labels, key, drop):
    (logits, _), new_state = model.apply(
        {'params': params, 'batch_stats': batch_stats}, inputs, train=True, drop_audio=drop,
        rngs={'dropout': key}, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, new_state['batch_stats']

  @jax.jit
  def step(params, batch_stats, opt_state, inputs, labels, key, drop):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, inputs, labels, key, drop)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return step


def main(argv):
  del argv
  kept = host_memory.keep_host_memory() if _KEEP.value else False
  config = _CONFIG.value
  model = build_model(config.model)
  b = _BATCH.value
  shapes = view_inputs(config, b, _IMAGE.value)
  rng = np.random.default_rng(0)
  inputs = {k: jnp.asarray(rng.standard_normal(s.shape, np.float32)) for k, s in shapes.items()}
  labels = jnp.asarray(rng.integers(0, config.model.num_classes, b), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  tx = optax.sgd(0.01, momentum=0.9, nesterov=True)
  params, batch_stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  step = make_train_step(model, tx, config.model.num_classes)
  drop = jnp.asarray(_DROP.value)

  t0 = time.perf_counter()
  params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, inputs, labels,
                                              jax.random.key(1), drop)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t0
  for _ in range(_WARMUP.value - 1):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, inputs, labels,
                                                jax.random.key(1), drop)
    jax.block_until_ready(loss)
  times, cpu_times, faults = [], [], []
  for i in range(_STEPS.value):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.process_time()
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, inputs, labels,
                                                jax.random.key(2 + i), drop)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
    cpu_times.append(time.process_time() - c0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
  median = statistics.median(times)
  stats = model_stats(config)
  print(json.dumps({
      'clips_per_sec': round(b / median, 3),
      'step_seconds': round(median, 3),
      'step_seconds_all': [round(t, 3) for t in times],
      # CPU time of the whole process per step (all threads): on a shared
      # machine it moves far less with other load than the wall-clock time.
      'cpu_seconds_per_step': round(statistics.median(cpu_times), 3),
      'load_average_1min': round(os.getloadavg()[0], 2),
      'keep_host_memory': kept,
      # Minor page faults of the process per step (median): ~1.3e6 for 8x8 R50
      # at batch 2 when XLA's temporaries are mmapped afresh every step.
      'page_faults_per_step': int(statistics.median(faults)),
      'compile_seconds': round(compile_s, 1),
      'batch_size': b,
      'image_size': _IMAGE.value,
      'drop_audio': _DROP.value,
      'dtype': config.model.dtype,
      'arch': config.model.arch,
      'params': stats['params'],
      'gflops_per_view_test': stats['gflops'],
      'device': str(jax.devices()[0].device_kind),
      'platform': jax.default_backend(),
      'num_devices': jax.device_count(),
      'loss': float(loss),
  }))


if __name__ == '__main__':
  app.run(main)

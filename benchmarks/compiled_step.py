"""A compiled train step on random inputs, timed step by step.

Shared by ``benchmarks/train_step.py`` (its command line) and
``benchmarks/device_check.py``; this module defines no flags, so either may be
imported beside the trainer's entry point.
"""

from __future__ import annotations

import resource
import time

import jax
import numpy as np

from avslowfast_jax import model_builder, parallel
from avslowfast_jax.train import setup as setup_lib
from avslowfast_jax.train import state as state_lib


def random_batch(config, batch: int) -> dict:
  """Random inputs and labels of the config's training shapes."""
  rng = np.random.default_rng(0)
  specs = model_builder.input_specs(config, batch)
  out = {k: rng.standard_normal(s.shape, np.float32) for k, s in specs.items()}
  out['label'] = rng.integers(0, config.model.num_classes, batch).astype(np.int32)
  out['noun_label'] = rng.integers(0, max(1, config.model.num_nouns), batch).astype(np.int32)
  out['audio_mask'] = np.ones(batch, np.float32)
  if 'audio' in out:
    out['audio_shifted'] = rng.standard_normal(out['audio'].shape, np.float32)
  return out


class CompiledStep:
  """One variant: its state, batch and compiled train step."""

  def __init__(self, config, mesh):
    self.config = config
    model, task, plan, lr_fn, tx = setup_lib.setup(config)
    self.state, shardings = state_lib.create_train_state(
        config, model, tx, mesh, jax.random.PRNGKey(config.seed))
    self.batch = parallel.host_to_global(random_batch(config, config.train.batch_size), mesh)
    self.key = jax.random.PRNGKey(1)
    step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
    start = time.perf_counter()
    self.step = step.lower(self.state, self.batch, self.key).compile()
    self.compile_seconds = time.perf_counter() - start
    self.times, self.cpu_times, self.faults = [], [], []
    self.loss = float('nan')

  def run(self, timed: bool) -> None:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.process_time()
    self.state, metrics = self.step(self.state, self.batch, self.key)
    self.loss = float(jax.block_until_ready(metrics['loss']))
    if timed:
      self.times.append(time.perf_counter() - t0)
      self.cpu_times.append(time.process_time() - c0)
      self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)

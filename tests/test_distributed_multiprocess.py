"""Two processes x 4 CPU devices with jax.distributed, each reading its own shard files.

The loss sequence of the steps of ``main`` (6, checkpoints at 3 and 6) must match a
single-process run that feeds the same global batch (process 0's rows, then process 1's)
to the same step on 8 devices, to 1e-4 relative at every step.

Both use the tiny model with ``td.TOPOLOGY`` (one BN group of 8 clips, learning rate
10x below ``td.TINY``'s; tests/train_testdata.py says why), so they differ by fp32
round-off only (``-s`` prints the differences).
"""

import os
import socket
import subprocess

import jax
import numpy as np
import pytest

import train_testdata as td
from avslowfast_jax import parallel
from avslowfast_jax.train import state as state_lib
from avslowfast_jax.train import setup as setup_lib

STEPS = {**td.STEPS, 'train.eval_every_steps': -1, **td.TOPOLOGY}


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def reference_losses(data_dir):
  from data_pipelines import input_pipeline  # pylint: disable=g-import-not-at-top
  config = td.tiny_train_config(data_dir, **STEPS)
  mesh = parallel.create_mesh()
  model, task, plan, lr_fn, tx = setup_lib.setup(config)
  state, shardings = state_lib.create_train_state(config, model, tx, mesh,
                                                  jax.random.PRNGKey(config.seed))
  step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
  hosts = [input_pipeline.create_train_iterator(config, data_dir, 'train', 4, seed=config.seed,
                                                process_index=i, process_count=2)
           for i in range(2)]
  losses = []
  for _ in range(STEPS['train.total_steps']):
    parts = [next(h) for h in hosts]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    state, metrics = step(state, parallel.host_to_global(batch, mesh), jax.random.PRNGKey(0))
    losses.append(float(metrics['loss']))
  return losses


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path, train_data):
  shards, cache = train_data
  workdir = str(tmp_path / 'run')
  address = f'localhost:{free_port()}'
  procs = []
  for pid in range(2):
    cmd = td.main_command(workdir, shards, *td.step_flags(**STEPS),
                          f'--coordinator_address={address}', '--num_processes=2',
                          f'--process_id={pid}', cache_dir=cache)
    log = open(tmp_path / f'proc{pid}.log', 'w')
    procs.append((subprocess.Popen(cmd, env=td.subprocess_env(4), stdout=log,
                                   stderr=subprocess.STDOUT), log))
  for proc, log in procs:
    proc.wait(timeout=900)
    log.close()
  logs = [open(tmp_path / f'proc{i}.log').read() for i in range(2)]
  for (proc, _), text in zip(procs, logs):
    assert proc.returncode == 0, text[-4000:]
  assert 'process 0/2, 4 local / 8 global devices' in logs[0]
  # Only process 0 writes metrics: one TensorBoard file, one line per step.
  assert len([f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')]) == 1
  losses = td.read_losses(workdir)
  steps = list(range(1, STEPS['train.total_steps'] + 1))
  assert sorted(losses) == steps
  # Every process took part in the saves.
  assert sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints'))
                if d.isdigit()) == [3, 6]
  td.enable_compilation_cache(cache)
  reference = reference_losses(shards)
  got = [losses[s] for s in steps]
  print('two-process losses', got)
  print('reference losses  ', reference)
  print('relative difference', [abs(g - r) / abs(r) for g, r in zip(got, reference)])
  # At every step.
  np.testing.assert_allclose(got, reference, rtol=1e-4)

"""Results do not depend on the device topology: 8 devices vs 1, FSDP, restore on M.

The tiny model trains 3 steps on the same 3 global batches of the real tiny
shards on 8 devices, on 1 device and on 8 devices with FSDP-sharded
parameters; losses and parameters must agree to 1e-4 relative. A checkpoint
written on 8 devices restores on 1 and on 4 (subprocesses with other device counts).

The config is ``td.topology_config``: the tests' tiny model with one BN group of 8
clips and a learning rate 10x below ``td.TINY``'s (tests/train_testdata.py says
why), so the topologies differ by fp32 round-off only (``-s`` prints the differences).
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from avslowfast_jax import parallel, trees
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train import state as state_lib
from avslowfast_jax.train import setup as setup_lib
import train_testdata as td

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shard_batches(config, data_dir, n):
  """The first ``n`` global batches of the real tiny shards (one host reads all files)."""
  from data_pipelines import input_pipeline  # pylint: disable=g-import-not-at-top
  it = input_pipeline.create_train_iterator(config, data_dir, 'train', config.train.batch_size,
                                            seed=config.seed, process_index=0, process_count=1)
  return [next(it) for _ in range(n)]


def run_steps(config, devices, batches):
  mesh = parallel.create_mesh(devices)
  model, task, plan, lr_fn, tx = setup_lib.setup(config)
  state, shardings = state_lib.create_train_state(config, model, tx, mesh,
                                                  jax.random.PRNGKey(config.seed))
  step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
  losses = []
  for batch in batches:
    state, metrics = step(state, parallel.host_to_global(batch, mesh), jax.random.PRNGKey(0))
    losses.append(float(metrics['loss']))
  return losses, jax.device_get(state.params), state, shardings


def relative_differences(a, b) -> list:
  return [abs(x - y) / abs(y) for x, y in zip(a, b)]


def relative_tree_difference(a, b) -> float:
  """||a - b|| / ||a|| over all parameters together."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  diff = sum(float(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  norm = sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in jax.tree.leaves(a))
  return (diff / norm) ** 0.5


@pytest.mark.slow
def test_same_losses_and_params_on_8_devices_1_device_and_fsdp(tmp_path, train_data):
  assert jax.device_count() == 8, 'tests/conftest.py should give 8 CPU devices'
  shards, cache = train_data
  td.enable_compilation_cache(cache)
  config = td.topology_config()
  batches = shard_batches(config, shards, 3)
  losses8, params8, _, _ = run_steps(config, jax.devices(), batches)
  losses1, params1, _, _ = run_steps(config, jax.devices()[:1], batches)
  print('8 devices', losses8, '1 device', losses1)
  print('8 vs 1: losses', relative_differences(losses8, losses1),
        'params', relative_tree_difference(params8, params1))
  np.testing.assert_allclose(losses8, losses1, rtol=1e-4)
  assert len(set(losses8)) == 3  # it really trained
  assert relative_tree_difference(params8, params1) < 1e-4

  fsdp = td.topology_config(fsdp=True)
  losses_f, params_f, state_f, _ = run_steps(fsdp, jax.devices(), batches)
  sharded = [x for x in jax.tree.leaves(state_f.params)
             if not x.sharding.is_fully_replicated]
  assert sharded, 'FSDP left every parameter replicated'
  print('FSDP vs 8: losses', relative_differences(losses_f, losses8),
        'params', relative_tree_difference(params8, params_f))
  np.testing.assert_allclose(losses_f, losses8, rtol=1e-4)
  assert relative_tree_difference(params8, params_f) < 1e-4

  # Save on 8 devices (FSDP-sharded state), restore on 1 and 4 in fresh processes.
  ckpts = ckpt_lib.CheckpointIO(str(tmp_path / 'run'), keep=1)
  ckpts.save(state_f)
  ckpts.wait()
  ckpts.close()
  expected = {k: np.asarray(v) for k, v in trees.flatten(params_f).items()}
  np.savez(tmp_path / 'expected.npz', **expected)
  for devices in (1, 4):
    restore_in_subprocess(tmp_path, devices)


RESTORE = textwrap.dedent('''
    import sys, numpy as np, jax
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from train_testdata import topology_config
    from avslowfast_jax import checkpoints, parallel, trees
    from avslowfast_jax.train import setup as setup_lib, state as state_lib
    assert jax.device_count() == {devices}, jax.devices()
    config = topology_config(fsdp={fsdp})
    mesh = parallel.create_mesh()
    model, task, plan, lr_fn, tx = setup_lib.setup(config)
    abstract, _ = state_lib.abstract_train_state(config, model, tx, mesh)
    ckpts = checkpoints.CheckpointIO({workdir!r})
    state = ckpts.restore(abstract)
    assert int(state.step) == 3, int(state.step)
    expected = np.load({expected!r})
    got = trees.flatten(jax.device_get(state.params))
    assert set(got) == set(expected.files)
    for k in expected.files:
      np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    print('RESTORED_OK', len(jax.devices()))
''')


def restore_in_subprocess(tmp_path, devices):
  code = RESTORE.format(repo=REPO, tests=os.path.join(REPO, 'tests'), devices=devices,
                        fsdp=devices > 1, workdir=str(tmp_path / 'run'),
                        expected=str(tmp_path / 'expected.npz'))
  env = dict(os.environ, XLA_FLAGS=td.xla_flags(devices), JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0 and 'RESTORED_OK' in result.stdout, result.stderr[-3000:]

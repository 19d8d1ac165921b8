"""Test-wide settings: 8 fake CPU devices for sharding tests, no TF GPU."""

import os

from train_testdata import xla_flags

# Must be set before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', xla_flags(8))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


# The slow tests first, the longest of them (by module) first of all:
# pytest-xdist hands the first tests out to the workers in turn, so the long
# end-to-end runs start at once on both workers instead of one worker
# finishing a long run alone at the end.
LONGEST_FIRST = ('test_quickstart.py', 'test_main_e2e.py', 'test_pretrain_transfer.py',
                 'test_distributed_multiprocess.py', 'test_bf16.py', 'test_ava_e2e.py',
                 'test_distributed_topology.py', 'test_benchmarks.py', 'test_remote_fs.py')


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item):
    if not item.get_closest_marker('slow'):
      return (2, 0)
    if item.path.name in LONGEST_FIRST:
      return (0, LONGEST_FIRST.index(item.path.name))
    return (1, 0)

  items.sort(key=rank)  # stable: the order within each rank is kept

"""Test-wide settings: 8 fake CPU devices for sharding tests, no TF GPU; the shared
training data and prepared videos as fixtures; the order of tests on xdist workers."""

import os

import pytest

import train_testdata
from train_testdata import xla_flags

# Must be set before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', xla_flags(8))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


@pytest.fixture(scope='session')
def train_data(tmp_path_factory):
  """``(shards_dir, compilation_cache_dir)``: the tiny real shards (3 classes) and the
  persistent XLA cache shared by every training test of the session."""
  return train_testdata.session_dirs(tmp_path_factory)


# The slow tests first, the longest of them (by module) first of all, in an
# order that pairs long and shorter runs: each xdist worker holds its running
# test and the next one (see pytest_configure), so the first two go to one
# worker and the next two to the other; the rest go to whichever is free.
LONGEST_FIRST = ('test_quickstart.py', 'test_distributed_topology.py', 'test_main_e2e.py',
                 'test_distributed_multiprocess.py', 'test_pretrain_transfer.py',
                 'test_benchmarks.py', 'test_bf16.py', 'test_ava_e2e.py', 'test_ablate.py',
                 'test_remote_fs.py')


def pytest_configure(config):
  # pytest-xdist first hands each worker a chunk of consecutive tests (a quarter
  # of its share, ~50 here): the long tests, ordered first, would all go to one
  # worker. With chunks of one, a worker is given a test when it has one left.
  if getattr(config.option, 'maxschedchunk', 0) is None:
    config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item):
    if not item.get_closest_marker('slow'):
      return (2, 0)
    if item.path.name in LONGEST_FIRST:
      return (0, LONGEST_FIRST.index(item.path.name))
    return (1, 0)

  items.sort(key=rank)  # stable: the order within each rank is kept


@pytest.fixture(scope='session')
def pipeline_dir(tmp_path_factory):
  """A prepared folder of small videos (data_testing.prepare_pipeline_videos): one without
  audio, one shorter than a window. Read-only: a test that changes it works on a copy."""
  import data_testing  # pylint: disable=import-outside-toplevel  # TensorFlow, on first use
  return data_testing.prepare_pipeline_videos(tmp_path_factory.mktemp('pipeline'))

"""Test-wide settings: 8 fake CPU devices for sharding tests, no TF GPU; the shared
training data as a fixture; the order and grouping of tests on xdist workers."""

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


# Modules whose tests share module-scoped fixtures of expensive runs (test_main_e2e.py's
# training runs): under xdist all of such a module's tests go to one worker as one unit
# of the schedule, counted as one test in the order above, so each run is made once.
ONE_WORKER = ('test_main_e2e.py',)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  if config.getvalue('dist') != 'load':
    return None
  from xdist.scheduler import LoadScheduling  # pylint: disable=g-import-not-at-top

  class ModuleUnitScheduling(LoadScheduling):
    """xdist's ``load`` schedule, with a ONE_WORKER module's tests sent together."""

    def _unit(self, index):
      path = self.collection[index].split('::')[0]
      return path if os.path.basename(path) in ONE_WORKER else index

    def _send_tests(self, node, num):
      units = []
      for index in self.pending:
        unit = self._unit(index)
        if unit not in units:
          if len(units) == num:
            break
          units.append(unit)
      chosen = [index for index in self.pending if self._unit(index) in units]
      if chosen:
        self.pending[:] = [index for index in self.pending if self._unit(index) not in units]
        self.node2pending[node].extend(chosen)
        node.send_runtest_some(chosen)

  return ModuleUnitScheduling(config, log)

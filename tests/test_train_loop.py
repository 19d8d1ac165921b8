"""The training loop runs ahead of the device: one compile, no host reads between log steps.

``train_and_evaluate`` runs in-process on the tiny Audio-pathway model (the
quickest to compile) with random batches (the data iterator is replaced;
tests/test_main_e2e.py covers real shards), one of which is NaN.
Every read of a device value through Python (``device_get``, ``float()``,
``bool()``, ``tolist()``: all go through ``jax.Array._value``) is recorded with
the step the loop is at. ``np.asarray`` of a CPU array reads the buffer
directly and cannot be seen from Python; the loop reads device values only
through ``trainer.fetch``, which the test also counts.
"""

import json
import os
import signal

import jax
import numpy as np
import pytest
from jax._src import array as jax_array

from avslowfast_jax import model_builder
from avslowfast_jax.train import step as step_lib
from avslowfast_jax.train import trainer
import train_testdata as td

TOTAL, LOG_EVERY, CKPT_EVERY = 8, 4, 3


def loop_config(workdir):
  return td.tiny_train_config('', **{
      'train.total_steps': TOTAL, 'train.warmup_steps': 2, 'train.num_train_examples': 64,
      'train.log_every_steps': LOG_EVERY, 'train.checkpoint_every_steps': CKPT_EVERY,
      'train.eval_every_steps': -1, 'train.async_checkpoints': False,
      'train.keep_checkpoints': 10, 'train.drop_pathway_prob': (0.0,), 'avs.enabled': False,
      'model.arch': 'audio', 'model.dropout_rate': 0.0})


def checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def logged_rows(workdir):
  """The rows of the run's ``train_metrics.jsonl``."""
  with open(os.path.join(workdir, 'train_metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def random_batches(config, nan_at_step=None):
  """Endless random training batches of the config's shapes (NaN frames at one step)."""
  batch = config.train.batch_size
  specs = model_builder.input_specs(config, batch)
  rng = np.random.default_rng(0)
  step = 0
  while True:
    step += 1
    out = {k: rng.standard_normal(s.shape).astype(np.float32) for k, s in specs.items()}
    out['label'] = rng.integers(0, config.model.num_classes, batch).astype(np.int32)
    out['audio_mask'] = np.ones(batch, np.float32)
    out['video_index'] = np.arange(batch, dtype=np.int32)
    if step == nan_at_step:
      for key in specs:
        out[key][:] = np.nan
    yield out


@pytest.fixture
def instrumented(monkeypatch, tmp_path_factory):
  """Patches the loop's data, records its host reads and step traces; returns the records."""
  td.enable_compilation_cache(str(tmp_path_factory.getbasetemp() / 'jax_compilation_cache'))
  rec = {'step': 0, 'reads': [], 'fetches': [], 'traces': 0, 'nan_at_step': None,
         'sigterm_at_step': None}

  def batches(config, start_step):
    for i, batch in enumerate(random_batches(config, rec['nan_at_step'])):
      rec['step'] = start_step + i + 1  # the step this batch trains
      if rec['step'] == rec['sigterm_at_step']:
        os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler turns it into a flag
      yield batch

  def iterator(config, *args, **kwargs):
    return trainer.input_pipeline.ClosingIterator(batches(config, kwargs.get('start_step', 0)))

  monkeypatch.setattr(trainer.input_pipeline, 'create_train_iterator', iterator)
  monkeypatch.setattr(trainer.preflight, 'check_data', lambda *args, **kwargs: {})  # no data_dir

  value = jax_array.ArrayImpl._value

  def recorded_value(self):
    rec['reads'].append(rec['step'])
    return value.fget(self)

  monkeypatch.setattr(jax_array.ArrayImpl, '_value', property(recorded_value))
  fetch = trainer.fetch

  def recorded_fetch(tree):
    rec['fetches'].append(rec['step'])
    return fetch(tree)

  monkeypatch.setattr(trainer, 'fetch', recorded_fetch)
  make_train_step = step_lib.make_train_step

  def counting_make_train_step(*args, **kwargs):
    step_fn = make_train_step(*args, **kwargs)

    def counted(state, batch, rng):
      rec['traces'] += 1  # runs only when jax traces the step
      return step_fn(state, batch, rng)
    return counted

  monkeypatch.setattr(step_lib, 'make_train_step', counting_make_train_step)
  return rec


@pytest.mark.slow  # nearly all of it compiling init and the step
def test_loop_reads_the_device_only_at_checks_and_stops_on_nan(instrumented, tmp_path):
  rec = instrumented
  rec['nan_at_step'] = 7
  workdir = str(tmp_path / 'run')
  with pytest.raises(trainer.NonFiniteLossError) as err:
    trainer.train_and_evaluate(loop_config(workdir), workdir)
  # Host reads only before the loop (step 0: the resumed step number) and at
  # the log/checkpoint steps 3, 4 and 6; then the check at step 8 stops the run.
  assert set(rec['fetches']) == {0, 3, 4, 6, 8}, rec['fetches']
  assert set(rec['reads']) <= {0, 3, 4, 6, 8}, sorted(set(rec['reads']))
  # The step was traced (hence compiled) once for the whole run.
  assert rec['traces'] == 1
  # Step 7 went bad; the check at step 8 (a log and checkpoint step) caught it
  # before saving, and names the log window (steps 5-8) and the first bad step.
  message = str(err.value)
  assert 'at step 7, in the window of steps 5-8' in message, message
  assert 'gradient norm nan' in message, message
  assert 'the last good checkpoint is step 6' in message, message
  assert checkpoint_steps(workdir) == [3, 6]
  logged = logged_rows(workdir)
  assert [row['step'] for row in logged] == [4]
  assert np.isfinite(logged[0]['train/loss']) and logged[0]['train/loss'] > 0


def test_random_numbers_do_not_depend_on_sharding():
  # jax's default since 0.5 (asserted here, not set): keys split and drawn the
  # same on any mesh, so the step's DropPathway/dropout draws are topology-free.
  assert jax.config.jax_threefry_partitionable


@pytest.mark.slow  # two in-process runs of the tiny Audio model (the second from the cache)
def test_sigterm_saves_then_stops_the_process_and_a_rerun_resumes(instrumented, tmp_path):
  rec = instrumented
  rec['sigterm_at_step'] = 2
  workdir = str(tmp_path / 'run')
  # A SystemExit with status 0: what chains after training (an evaluation, the next
  # run of a sweep) does not run on the unfinished model, and the process exits cleanly.
  with pytest.raises(trainer.Preempted) as stopped:
    trainer.train_and_evaluate(loop_config(workdir), workdir)
  assert isinstance(stopped.value, SystemExit) and stopped.value.code == 0
  assert stopped.value.step == 2
  assert checkpoint_steps(workdir) == [2]
  rec['sigterm_at_step'] = None
  last = trainer.train_and_evaluate(loop_config(workdir), workdir)
  assert np.isfinite(last['loss'])
  logged = logged_rows(workdir)
  assert [row['step'] for row in logged] == [4, 8]  # resumed at 3: the log steps of 3..8

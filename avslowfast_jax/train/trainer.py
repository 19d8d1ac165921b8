"""The training loop: resume, train, log, evaluate, checkpoint, stop cleanly.

Resume order: the workdir's latest checkpoint, then
``train.init_from``, then scratch. The data iterator is started at the
resumed step and the step keys are ``fold_in(base_key, step)``, so a killed and
resumed run sees the same batches and makes the same random draws as an
uninterrupted one.
"""

from __future__ import annotations

import json
import signal
import time

from absl import logging
from clu import metric_writers
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avslowfast_jax import parallel, preflight
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train import schedules
from avslowfast_jax.train import setup as setup_lib
from avslowfast_jax.train import state as state_lib
from data_pipelines import fs, input_pipeline
from data_pipelines.errors import UserError


class NonFiniteLossError(RuntimeError):
  """The loss or the gradient norm became NaN or inf; the last good checkpoint is kept."""


def fetch(tree):
  """``jax.device_get``: the loop's one way of reading device values (tests count its calls)."""
  return jax.device_get(tree)


@jax.jit
def _accumulate(window, metrics, step):
  """Adds one step's metrics into the window's sums, on the device.

  ``first_bad`` is the first step of the window whose loss or gradient norm
  was not finite (-1: none yet) and ``at_bad`` that step's metrics. (A NaN
  input can give NaN gradients with a finite loss.)
  """
  bad = ~(jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm']))
  if window is None:
    return {'sum': metrics, 'first_bad': jnp.where(bad, step, -1), 'at_bad': metrics}
  newly_bad = bad & (window['first_bad'] < 0)
  return {'sum': jax.tree.map(jnp.add, window['sum'], metrics),
          'first_bad': jnp.where(newly_bad, step, window['first_bad']),
          'at_bad': jax.tree.map(lambda old, new: jnp.where(newly_bad, new, old),
                                 window['at_bad'], metrics)}


def _stop_on_non_finite(fetched, first, last, ckpts, workdir):
  """Raises :class:`NonFiniteLossError` for a fetched window that went bad."""
  ckpts.wait()
  ckpts.close()
  good = ckpts.latest_step()
  bad_step = int(fetched['first_bad'])
  at_bad = fetched['at_bad']
  terms = {k: float(v) for k, v in at_bad.items() if k.startswith('loss')}
  raise NonFiniteLossError(
      f'Loss became {float(at_bad["loss"])} (gradient norm {float(at_bad["grad_norm"])}) at '
      f'step {bad_step}, in the window of steps {first}-{last} (checked at step {last}; terms '
      f'at step {bad_step}: {terms}). '
      f'Stopped; the last good checkpoint is step {good} in {workdir}/checkpoints. '
      'Lower train.base_lr, raise train.warmup_epochs or set train.grad_clip_norm.')


class Preempted(SystemExit):
  """Training stopped on SIGTERM after saving its checkpoint.

  A ``SystemExit`` with status 0: a process that trains exits cleanly and its
  scheduler restarts it to resume; a process that chains work after training
  (an evaluation, the next run of a sweep) stops too instead of going on with
  an unfinished model.
  """

  def __init__(self, step: int, workdir: str):
    super().__init__(0)
    self.step, self.workdir = step, workdir


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. in some test runners)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and stopping after this step')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def initial_state(config, model, tx, mesh, ckpts: ckpt_lib.CheckpointIO):
  """Latest checkpoint of the workdir, else ``train.init_from``, else scratch."""
  rng = jax.random.PRNGKey(config.seed)
  abstract, shardings = state_lib.abstract_train_state(config, model, tx, mesh, rng)
  resumed = ckpts.restore_newest_intact(abstract)
  if resumed is not None:
    return resumed, shardings
  state, shardings = state_lib.create_train_state(config, model, tx, mesh, rng)
  if config.train.init_from:
    params, stats, report = ckpt_lib.load_pretrained(
        config.train.init_from, jax.device_get(state.params), jax.device_get(state.batch_stats),
        config.train.init_skip, strict=config.train.init_strict)
    if not report['loaded']:
      raise UserError(f'train.init_from={config.train.init_from!r} matched no parameter of '
                       'this model (check the path and train.init_skip)')
    for line in ckpt_lib.describe_report(report):
      logging.info('init_from %s: %s', config.train.init_from, line)
    if jax.process_index() == 0:
      fs.write_json(fs.join(ckpts.workdir, 'init_report.json'),
                    {'init_from': config.train.init_from, **report,
                     'summary': ckpt_lib.describe_report(report)})
    params = jax.device_put(params, shardings.params)
    stats = jax.device_put(stats, shardings.batch_stats)
    # Fresh optimizer state for the new parameters.
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    state = state.replace(params=params, batch_stats=stats, opt_state=opt_state)
  return state, shardings


def _metric_writer(workdir: str, is_main: bool):
  """clu's default writers: the log everywhere, TensorBoard event files from process 0.

  Built here rather than by ``create_default_writer``, which routes the folder
  through etils.epath (local and gs:// only); TensorFlow's summary writer takes
  any of its filesystems.
  """
  writers = [metric_writers.LoggingWriter()]
  if is_main:
    writers.append(metric_writers.SummaryWriter(workdir))
  return metric_writers.AsyncMultiWriter(writers)


def _eval_every(config, plan) -> int:
  if config.train.eval_every_steps:
    return config.train.eval_every_steps
  return max(1, int(round(config.train.eval_every_epochs * plan.steps_per_epoch)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config`` in ``workdir`` until ``total_steps``; returns the mean metrics of
  the last log window. On SIGTERM it saves a checkpoint and raises ``Preempted``."""
  preflight.check_training(config, workdir)  # before anything is built or written
  mesh = parallel.create_mesh()
  parallel.log_topology(mesh)
  is_main = jax.process_index() == 0
  per_host = parallel.per_process_batch(config.train.batch_size)
  model, task, plan, lr_fn, tx = setup_lib.setup(config)
  logging.info('Plan: %s', plan)
  if is_main:
    fs.makedirs(workdir)
    fs.write_text(fs.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
    logging.info('Config: %s', fs.join(workdir, 'config.json'))

  ckpts = ckpt_lib.CheckpointIO(ckpt_lib.checkpoint_root(config, workdir),
                                config.train.keep_checkpoints, config.train.best_metric,
                                async_save=config.train.async_checkpoints)
  state, shardings = initial_state(config, model, tx, mesh, ckpts)
  start = int(fetch(state.step))
  train_step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
  base_key = jax.random.PRNGKey(config.seed)

  writer = _metric_writer(workdir, is_main)
  if start == 0 and is_main:
    writer.write_hparams({k: v for k, v in _flat_config(config).items()})
  eval_every = _eval_every(config, plan)
  total = plan.total_steps
  if start >= total:
    logging.info('Already trained %d/%d steps', start, total)
    ckpts.close()
    return {}

  data = input_pipeline.create_train_iterator(
      config, config.data.data_dir, config.data.train_split, per_host, seed=config.seed,
      start_step=start, process_index=jax.process_index(), process_count=jax.process_count())

  # The loop never waits for a step: each step's metrics are added into a
  # window sum on the device, and the host fetches that sum (the only
  # device-to-host transfer of the loop) at log, checkpoint and evaluation
  # steps, where it also checks the loss. A NaN is thus caught at the next of
  # those steps, always before a checkpoint of the NaN state is written.
  window, window_first, window_start, window_steps = None, start + 1, time.time(), 0
  last = {}
  with _Preemption() as preemption:
    for step in range(start, total):
      batch = parallel.host_to_global(next(data), mesh)
      t0 = time.time()
      state, metrics = train_step(state, batch, base_key)
      dispatch_time = time.time() - t0
      done = step + 1
      window = _accumulate(window, metrics, done)
      window_steps += 1

      # Read the flag once: a signal landing between two reads would stop
      # the run without the checkpoint.
      stop = preemption.requested
      log_now = schedules.itstime(done, config.train.log_every_steps, total)
      save_now = schedules.itstime(done, config.train.checkpoint_every_steps, total) or stop
      eval_now = (eval_every > 0 and config.train.eval_every_steps >= 0 and
                  schedules.itstime(done, eval_every, total))
      if not (log_now or save_now or eval_now):
        continue
      fetched = fetch(window)
      if fetched['first_bad'] >= 0:
        _stop_on_non_finite(fetched, window_first, done, ckpts, ckpts.workdir)

      if log_now:
        elapsed = time.time() - window_start
        means = {k: float(v) / window_steps for k, v in fetched['sum'].items()}
        last = means
        summary = {f'train/{k}': v for k, v in means.items()}
        summary['train/drop_pathway_rate'] = summary.pop('train/drop_pathway', 0.0)
        summary['train/step_time'] = elapsed / window_steps
        summary['train/clips_per_sec'] = config.train.batch_size * window_steps / elapsed
        summary['train/last_step_dispatch_time'] = dispatch_time
        writer.write_scalars(done, summary)
        if is_main:
          # Plain-text copy of the logged scalars: easy to compare across runs.
          fs.append_text(fs.join(workdir, 'train_metrics.jsonl'), json.dumps(
              {'step': done, **{k: float(v) for k, v in summary.items()}}) + '\n')
        eta = (total - done) * elapsed / window_steps
        if is_main:
          logging.info('step %d/%d  loss %.4f  %s lr %.5f  %.1f clips/s  ETA %s', done, total,
                       summary['train/loss'],
                       ''.join(f'{k[6:]} {summary[k]:.3f}  ' for k in ('train/top1', 'train/top5')
                               if k in summary),
                       summary['train/lr'], summary['train/clips_per_sec'],
                       time.strftime('%H:%M:%S', time.gmtime(eta)))
        window, window_first, window_start, window_steps = None, done + 1, time.time(), 0

      if save_now:
        ckpts.save(state, force=stop)

      if eval_now:
        # An async save overlapping the evaluation failed inside orbax now and
        # then ("cannot schedule new futures after shutdown"): let it finish.
        ckpts.wait()
        eval_metrics = evaluator.evaluate_during_training(config, model, task, state.variables,
                                                          mesh)
        if eval_metrics:
          writer.write_scalars(done, {f'eval/{k}': v for k, v in eval_metrics.items()
                                      if np.isscalar(v)})
          ckpts.save_best(state, eval_metrics)
      writer.flush()

      if stop:
        logging.warning('Stopped at step %d on SIGTERM; checkpoint saved', done)
        break
  # The pipeline's teardown can take up to a minute (input_pipeline.ClosingIterator):
  # in the background, while the caller goes on (e.g. to evaluate).
  data.close(wait=False)
  ckpts.wait()
  ckpts.close()
  writer.close()
  if preemption.requested and done < total:
    raise Preempted(done, workdir)
  return last


def _flat_config(config) -> dict:
  flat = {}

  def visit(prefix, node):
    for k, v in node.items():
      if isinstance(v, ml_collections.ConfigDict):
        visit(f'{prefix}{k}.', v)
      elif isinstance(v, (int, float, str, bool)):
        flat[f'{prefix}{k}'] = v
      else:
        flat[f'{prefix}{k}'] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)

  visit('', config)
  return flat

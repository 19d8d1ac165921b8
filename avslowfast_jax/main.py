r"""Entry point: train, evaluate or export one experiment config.

  python -m avslowfast_jax.main --config configs/kinetics.py:avslowfast_4x16_r50 \
      --workdir /tmp/k400 [--mode train|eval|export] [--config.train.batch_size=128 ...]

The config is locked: an override of a field that does not exist is an error
naming it. Multi-process runs pass ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or run on a Cloud TPU pod slice or
under SLURM, where they are detected); every process runs the same command.
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from avslowfast_jax import cli, export, host_memory, model_builder, parallel, preflight
from avslowfast_jax.evaluation import evaluator
from avslowfast_jax.models import ops
from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax.train import trainer
from data_pipelines import fs, shards

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with :variant.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'export'], 'What to do.')
_EXPORT_DIR = flags.DEFINE_string('export_dir', None,
                                  'Where --mode export writes (default WORKDIR/export).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process.')
_CACHE = flags.DEFINE_string('compilation_cache_dir', os.environ.get('JAX_COMPILATION_CACHE_DIR'),
                             'Persistent XLA compilation cache (speeds up restarts).')
_LIBRARY_LOGS = flags.DEFINE_bool(
    'library_logs', False,
    'Also log the INFO messages of libraries (orbax writes dozens per checkpoint, clu repeats '
    'every logged metric). By default only their warnings and errors are logged; this '
    "project's own INFO messages (progress, evaluation, checkpoints restored) always are.")

_KEEP_HOST_MEMORY = flags.DEFINE_bool(
    'keep_host_memory', True,
    'CPU runs: run each step on the calling thread and keep freed heap pages in the process '
    '(avslowfast_jax.host_memory), so XLA\'s per-step temporaries are not page-faulted anew '
    'every step (docs/cpu.md, "Host memory"). No effect on accelerator computations.')

flags.mark_flags_as_required(['config', 'workdir'])

# Where this project's code lives: INFO records from anywhere else are library chatter.
_OWN_CODE = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package, '')
    for package in ('avslowfast_jax', 'data_pipelines', 'configs'))


def _own_or_important(record) -> bool:
  """A ``logging`` filter: warnings and errors from anywhere, INFO only from this project."""
  return (record.levelno >= std_logging.WARNING
          or os.path.abspath(record.pathname).startswith(_OWN_CODE))


def quiet_library_logs() -> None:
  """Drops the INFO (and DEBUG) records of libraries from the absl log handler.

  orbax, clu, jax and tensorflow all log through absl (or the root logger, which
  absl's handler serves), so one filter on that handler covers them. absl's
  per-module verbosity cannot do this: every absl call shares the 'absl' logger.
  """
  handler = logging.get_absl_handler()
  if _own_or_important not in handler.filters:
    handler.addFilter(_own_or_important)


def _read_json(path: str) -> dict:
  return shards.read_json(path) if fs.exists(path) else {}


def export_checkpoint(config, workdir: str, out_dir: str) -> str:
  """``--mode export``: the ``eval.checkpoint`` of ``workdir`` as an inference export."""
  preflight.check_model(config)
  fs.check_access(out_dir)  # a bucket that cannot be reached: now, not after the tracing
  ckpt_lib.resolve_checkpoint(ckpt_lib.checkpoint_root(config, workdir), config.eval.checkpoint)
  mesh = parallel.create_mesh(jax.local_devices()[:1])
  model, task = model_builder.build(config)
  variables, item_dir = ckpt_lib.restore_variables(config, model, workdir, mesh,
                                                   config.eval.checkpoint)
  data_dir = config.data.data_dir
  meta = _read_json(fs.join(data_dir, 'shards.json')) if data_dir else {}
  label_map = _read_json(fs.join(data_dir, 'label_map.json')) if data_dir else {}
  specs = model_builder.input_specs(config, 1, train=False)
  path = export.export_inference(
      lambda conv_impl: model_builder.make_predict_fn(model_builder.build(config, conv_impl)[0], task),
      variables, {k: tuple(v.shape[1:]) for k, v in specs.items()}, out_dir,
      task=task.name, class_names=task.class_names(label_map),
      config_json=config.to_json_best_effort(indent=2),
      cpu_conv_impl=ops.resolve(config.model.conv_impl, 'cpu'),
      extra_signature={'prepared_short_side': meta.get('short_side')})
  print(f'Exported {item_dir} to {path}')
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _LIBRARY_LOGS.value:
    quiet_library_logs()
  config = _CONFIG.value
  if _KEEP_HOST_MEMORY.value:
    host_memory.run_cpu_computations_on_calling_thread()  # before the CPU backend exists
  # Before any device is touched: the runtime must be up before jax.devices().
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _KEEP_HOST_MEMORY.value and jax.default_backend() == 'cpu':
    host_memory.keep_freed_memory()
  # Whole records (evaluation; training on shards without a frame index) and a clip's frame
  # buffers are megabytes each: serve them from the heap.
  host_memory.serve_from_heap(config.data.malloc_mmap_threshold)
  if _CACHE.value:
    jax.config.update('jax_compilation_cache_dir', _CACHE.value)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  # tf.data must not grab an accelerator.
  tf.config.set_visible_devices([], 'GPU')
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)

  workdir = _WORKDIR.value
  # The config is written into the workdir (config.json; eval_config.json for --mode eval;
  # the export's config.json), not to the console.
  logging.info('mode=%s workdir=%s config=%s', _MODE.value, workdir,
               config_flags.get_config_filename(flags.FLAGS[_CONFIG.name]))
  if _MODE.value == 'train':
    trainer.train_and_evaluate(config, workdir)
  elif _MODE.value == 'eval':
    evaluator.run_eval_mode(config, workdir)
  else:
    export_checkpoint(config, workdir, _EXPORT_DIR.value or fs.join(workdir, 'export'))


if __name__ == '__main__':
  cli.run_absl(main)

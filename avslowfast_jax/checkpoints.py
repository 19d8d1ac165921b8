"""Checkpoints with orbax: the last K steps (async) plus the best by an eval metric.

Layout under the workdir::

  checkpoints/<step>/   the last ``train.keep_checkpoints`` saves (resume from here)
  best/<step>/          the single best save by ``train.best_metric``

Restores take the *target* shardings, so a checkpoint written on N devices
loads on M devices (orbax reshards on read).

A resume skips a damaged step (a file truncated or missing, e.g. after a crash
during a write on a filesystem without atomic renames): it restores the newest
step that reads back whole and moves the damaged one, untouched, to
``damaged_checkpoints/<step>/`` beside ``checkpoints/`` so that the step can be
saved again. A step that reads back whole but does not fit the model is not
damage: that is a config mistake, reported as one.

``train.checkpoint_dir`` puts these folders elsewhere than the workdir. Orbax
reads and writes local paths and ``gs://`` buckets (etils.epath for files,
tensorstore's ``file`` and ``gcs`` drivers for arrays); other schemes that
the rest of the project handles through TensorFlow's filesystems (``ram://``,
``s3://``, ...) are refused with a message, since tensorstore would write them
to a local folder named after the scheme.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from avslowfast_jax import model_builder, parallel, trees
from data_pipelines import fs
from data_pipelines.errors import UserError

# Path schemes orbax can write (besides local paths).
ORBAX_SCHEMES = ('gs://',)


def checkpoint_root(config, workdir: str) -> str:
  """The folder holding ``checkpoints/`` and ``best/``: ``train.checkpoint_dir`` or the workdir."""
  return config.train.checkpoint_dir or workdir


def check_orbax_path(path: str) -> None:
  """A ``UserError`` for a path on a filesystem orbax cannot write."""
  if fs.is_remote(path) and not str(path).startswith(ORBAX_SCHEMES):
    raise UserError(f'{path}: orbax checkpoints go to a local path or {" ".join(ORBAX_SCHEMES)}; '
                    'set --config.train.checkpoint_dir to one of those')


_ONE_PROCESS_SAVING = False


def _array_saving_for_this_job() -> None:
  """In a one-process job, orbax writes each replicated array from one device.

  orbax's default on CPU and TPU ("replica-parallel") splits every replicated
  array into one slice per replica so that several hosts share its writing;
  in one process there is no other host to share with, and each slice is an
  eager ``slice`` (a program compiled per array shape) dispatched per device
  and array at every save. Multi-process jobs keep orbax's default.
  """
  global _ONE_PROCESS_SAVING
  if jax.process_count() == 1 and not _ONE_PROCESS_SAVING:
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax logs every handler override as a warning
    try:
      ocp.type_handlers.register_type_handler(
          jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
    finally:
      logging.set_verbosity(verbosity)
    _ONE_PROCESS_SAVING = True


class CheckpointIO:
  """The two managers of one workdir. Every process must call ``save`` (collective)."""

  def __init__(self, workdir: str, keep: int = 3, best_metric: str = 'top1',
               async_save: bool = True):
    check_orbax_path(workdir)
    _array_saving_for_this_job()
    self.workdir = fs.abspath(workdir)
    self.best_metric = best_metric
    self._latest_options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, keep), create=True, enable_async_checkpointing=async_save)
    self.latest = self._latest_manager()
    self.best = ocp.CheckpointManager(
        fs.join(self.workdir, 'best'),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                             best_fn=lambda m: float(m[best_metric]),
                                             best_mode='max',
                                             keep_checkpoints_without_metrics=False,
                                             # Rare (once per eval) and must not overlap
                                             # an async save of the other manager:
                                             # two concurrent orbax saves in one
                                             # process raced at shutdown here.
                                             enable_async_checkpointing=False))

  def _latest_manager(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(fs.join(self.workdir, 'checkpoints'),
                                 options=self._latest_options)

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def save(self, state, force: bool = False) -> None:
    step = int(jax.device_get(state.step))
    if step in self.latest.all_steps():
      return
    saved = self.latest.save(step, args=ocp.args.StandardSave(state), force=force)
    if not saved:
      logging.warning('orbax did not save step %d (force=%s)', step, force)

  def save_best(self, state, metrics: Mapping[str, float]) -> None:
    if self.best_metric not in metrics:
      logging.warning('best_metric %r not among eval metrics %s; no best checkpoint kept',
                      self.best_metric, sorted(metrics))
      return
    step = int(jax.device_get(state.step))
    if step in self.best.all_steps():
      return
    self.latest.wait_until_finished()
    self.best.save(step, args=ocp.args.StandardSave(state),
                   metrics={k: float(v) for k, v in metrics.items() if np.isscalar(v)})

  def restore(self, abstract_state, step: Optional[int] = None):
    """The full train state at ``step`` (default latest), in the abstract state's shardings."""
    step = self.latest.latest_step() if step is None else step
    return self.latest.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_newest_intact(self, abstract_state):
    """The train state of the newest step that reads back whole, or None without steps.

    Damaged newer steps are logged and moved to ``damaged_checkpoints/``
    (see the module docstring); nothing is deleted.
    """
    for step in sorted(self.latest.all_steps(), reverse=True):
      # Read through the step's own folder, not the manager: the manager infers
      # the layout of every step from what it finds, and a damaged step misleads it.
      item_dir = _item_dir(fs.join(self.workdir, 'checkpoints', str(step)))
      try:
        with ocp.StandardCheckpointer() as checkpointer:
          state = checkpointer.restore(item_dir, abstract_state)
      except Exception as error:  # pylint: disable=broad-except  # classified below
        damage = _damage(item_dir)
        if damage is None:  # reads back whole: the model, not the files, differs
          raise UserError(
              f'{self.workdir}/checkpoints/{step} does not fit this config (was it written with '
              f'another model or optimizer?): {_first_line(error)}') from None
        logging.warning('Checkpoint step %d is damaged (%s); skipping it. Kept, untouched, '
                        'in %s', step, damage, self._set_aside(step))
        continue
      logging.info('Resuming from %s/checkpoints/%d', self.workdir, step)
      return state
    return None

  def _set_aside(self, step: int) -> str:
    """Moves ``checkpoints/<step>`` to ``damaged_checkpoints/<step>`` (process 0)."""
    source = epath.Path(self.workdir) / 'checkpoints' / str(step)
    target = epath.Path(self.workdir) / 'damaged_checkpoints' / str(step)
    if jax.process_count() > 1:  # every process has finished reading the step
      multihost_utils.sync_global_devices(f'damaged checkpoint {step}')
    if jax.process_index() == 0:
      if target.exists():  # damaged twice at the same step: keep both
        target = target.parent / f'{step}.{len(list(target.parent.iterdir()))}'
      target.parent.mkdir(parents=True, exist_ok=True)
      source.rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'damaged checkpoint {step} moved')
    self.latest.close()
    self.latest = self._latest_manager()
    return str(target)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def resolve_checkpoint(workdir: str, which: str) -> str:
  """Path of the item dir of a checkpoint: ``latest``, ``best``, a step number, or a path."""
  which = str(which)
  if which in ('latest', 'best'):
    root = fs.join(workdir, 'checkpoints' if which == 'latest' else 'best')
    steps = _steps_in(root)
    if not steps:
      raise UserError(f'no {which} checkpoint under {root}: train into this workdir first '
                      "(--mode train), or set --config.eval.checkpoint to 'latest', 'best', a "
                      'step or a checkpoint path')
    return _item_dir(fs.join(root, str(max(steps))))
  if which.isdigit():
    path = fs.join(workdir, 'checkpoints', which)
    if not fs.isdir(path):
      raise UserError(f'no checkpoint for step {which} in {workdir}/checkpoints '
                      f'(have {sorted(_steps_in(fs.join(workdir, "checkpoints")))})')
    return _item_dir(path)
  if not fs.exists(which):
    raise UserError(f'checkpoint path {which} does not exist')
  if fs.isdir(fs.join(which, 'checkpoints')):  # another run's workdir
    return resolve_checkpoint(which, 'latest')
  return _item_dir(which)


def _steps_in(root: str) -> list:
  if not fs.isdir(root):
    return []
  # Unfinished async saves live in temporary dirs whose names are not digits.
  return [int(d) for d in fs.listdir(root) if d.isdigit()]


def _item_dir(step_dir: str) -> str:
  default = fs.join(step_dir, 'default')
  return default if fs.isdir(default) else step_dir


def checkpoint_step(item_dir: str) -> Optional[int]:
  name = fs.basename(fs.dirname(item_dir.rstrip('/')))
  return int(name) if name.isdigit() else None


def restore_subtree(item_dir: str, abstract: Mapping[str, Any]) -> dict:
  """Restores only the top-level entries of ``abstract`` (e.g. params, batch_stats).

  ``abstract`` holds ``ShapeDtypeStruct``s with target shardings; the rest of
  the checkpoint (optimizer state, step) is not read.
  """
  return ocp.PyTreeCheckpointer().restore(
      item_dir, args=ocp.args.PyTreeRestore(
          dict(abstract), restore_args=ocp.checkpoint_utils.construct_restore_args(dict(abstract)),
          partial_restore=True))


def checkpoint_shapes(item_dir: str) -> dict:
  """Nested dict of the (shape, dtype) metadata of every array in a checkpoint."""
  meta = ocp.StandardCheckpointer().metadata(item_dir).item_metadata
  tree = dict(meta.tree) if hasattr(meta, 'tree') else dict(meta)
  return tree


def load_pretrained(path: str, params, batch_stats, skip_prefixes: Iterable[str] = (),
                    strict: bool = False):
  """Partial restore for fine-tuning: takes every parameter/statistic of ``path`` whose
  name and shape match, except names starting with one of ``skip_prefixes``.

  ``path`` is a checkpoint (step dir or workdir) or an export dir
  (``weights.npz``). Returns ``(params, batch_stats, report)`` as host arrays;
  the report lists what was taken, skipped and missing, and under ``unused``
  what the checkpoint holds that this model has no place for (a pretext head,
  for one; :func:`describe_report` says so in words). With ``strict``, a
  parameter outside ``skip_prefixes`` that is missing from the checkpoint or
  has another shape there is a ``UserError`` that lists every such name: the
  checkpoint is of another architecture.
  """
  skip_prefixes = tuple(skip_prefixes)
  source = read_weights(path)
  report = {'loaded': [], 'skipped': [], 'missing': [], 'shape_mismatch': [], 'unused': []}
  out = []
  for collection, tree in (('params', params), ('batch_stats', batch_stats)):
    flat = trees.flatten(tree)
    src = source.get(collection, {})
    new = {}
    for name, value in flat.items():
      full = f'{collection}/{name}'
      if any(name.startswith(p) or full.startswith(p) for p in skip_prefixes):
        report['skipped'].append(full)
        new[name] = value
      elif name not in src:
        report['missing'].append(full)
        new[name] = value
      elif tuple(src[name].shape) != tuple(value.shape):
        report['shape_mismatch'].append(f'{full}: {src[name].shape} vs {value.shape}')
        new[name] = value
      else:
        report['loaded'].append(full)
        new[name] = np.asarray(src[name], dtype=value.dtype)
    out.append(trees.unflatten(new))
    report['unused'] += sorted(f'{collection}/{name}' for name in src if name not in flat)
  logging.info('init_from %s: loaded %d, skipped %d, missing %d, shape mismatch %d, unused %d',
               path, len(report['loaded']), len(report['skipped']), len(report['missing']),
               len(report['shape_mismatch']), len(report['unused']))
  if strict and (report['missing'] or report['shape_mismatch']):
    lines = [f'  shape differs: {m}' for m in report['shape_mismatch']]
    lines += [f'  not in the checkpoint: {m}' for m in report['missing']]
    raise UserError(
        f'{path} is a checkpoint of another architecture: {len(lines)} of this model\'s arrays '
        f'(outside init_skip {list(skip_prefixes)}) do not match (shapes: checkpoint vs '
        'model):\n' + '\n'.join(lines[:40]) + (f'\n  ... and {len(lines) - 40} more'
                                                 if len(lines) > 40 else '') +
        f'\n({len(report["loaded"])} arrays matched; the checkpoint also holds '
        f'{len(report["unused"])} arrays this model lacks)' + _run_model_hint(path))
  return out[0], out[1], report


def _run_model_hint(path: str) -> str:
  """How to take the model of a training run (its ``config.json``), if ``path`` is one."""
  if not fs.exists(fs.join(str(path), 'config.json')):
    return ''
  return (f'\n{path}/config.json holds the model it was trained with: python -m '
          f'avslowfast_jax.tools.transfer --pretrained {path} --dataset DATASET --data_dir DIR '
          '--workdir DIR --print_main_commands prints the main commands with it as --config '
          'overrides (tools.transfer itself takes it from there)')


def describe_report(report: Mapping[str, Any]) -> list:
  """Readable lines of a :func:`load_pretrained` report (a run logs them)."""
  lines = [f'loaded {len(report["loaded"])} arrays from the checkpoint']
  if report['skipped']:
    lines.append(f'kept the new model\'s {len(report["skipped"])} arrays under init_skip '
                 f'({_prefixes(report["skipped"])})')
  for key, what in (('missing', 'not in the checkpoint, left at their initial values'),
                    ('shape_mismatch', 'of another shape in the checkpoint, left at their '
                     'initial values')):
    if report[key]:
      lines.append(f'{len(report[key])} arrays {what}: {", ".join(report[key][:5])}'
                   + (' ...' if len(report[key]) > 5 else ''))
  heads = [n for n in report['unused'] if n.split('/')[1:2] == ['head']]
  if heads:
    lines.append(f'dropped the checkpoint\'s head ({_prefixes(heads)}: {len(heads)} arrays, '
                 'a pretext or another task\'s head)')
  rest = [n for n in report['unused'] if n not in heads]
  if rest:
    lines.append(f'dropped {len(rest)} other checkpoint arrays this model lacks: '
                 f'{", ".join(rest[:5])}' + (' ...' if len(rest) > 5 else ''))
  return lines


def _prefixes(names) -> str:
  """``params/head/rotation/kernel`` ... -> ``head/rotation``: the modules the names are in."""
  return ', '.join(sorted({'/'.join(n.split('/')[1:3]) for n in names}))


# Files one of which every orbax checkpoint item holds (their names across orbax versions).
_ORBAX_MARKERS = ('_METADATA', '_CHECKPOINT_METADATA', 'manifest.ocdbt', 'checkpoint')


def check_weights_source(path: str, what: str) -> None:
  """A ``UserError`` unless ``path`` holds weights :func:`load_pretrained` can read.

  Checked before any model is built (a few small reads): a training workdir
  with at least one checkpoint step, a step or item folder of one, an export
  (``weights.npz``), or the ``variables`` folder ``tools.import_weights``
  writes. ``what`` names where the path came from (a flag or config field).
  """
  path = str(path)
  expected = ('expected a training workdir (with checkpoints/), a checkpoint step folder, an '
              'export folder (weights.npz) or the variables folder of tools.import_weights')
  if not fs.exists(path):
    raise UserError(f'{what}={path}: no such file or folder; {expected}')
  if not fs.isdir(path):
    raise UserError(f'{what}={path}: a file, not a checkpoint folder; {expected}')
  if fs.exists(fs.join(path, 'weights.npz')):
    return
  if fs.isdir(fs.join(path, 'checkpoints')):
    if not _steps_in(fs.join(path, 'checkpoints')):
      raise UserError(f'{what}={path}: a workdir without checkpoints ({path}/checkpoints holds '
                      'no step): train into it first, or give another checkpoint')
    return
  item = _item_dir(path)
  if any(fs.exists(fs.join(item, name)) for name in _ORBAX_MARKERS):
    return
  steps = _steps_in(path)
  hint = (f' (it holds checkpoint steps {sorted(steps)[-3:]}: give one of them, '
          f'e.g. {fs.join(path, str(max(steps)))}, or the workdir above it)' if steps else '')
  raise UserError(f'{what}={path}: not a checkpoint{hint}; {expected}')


def read_weights(path: str) -> dict:
  """``{'params': {name: array}, 'batch_stats': {...}}`` of a checkpoint or an export dir."""
  npz = fs.join(path, 'weights.npz')
  if fs.exists(npz):
    flat = fs.load_npz(npz)
    out = {'params': {}, 'batch_stats': {}}
    for key, value in flat.items():
      collection, _, name = key.partition('/')
      out.setdefault(collection, {})[name] = value
    return out
  item = resolve_checkpoint(path, 'latest') if fs.isdir(fs.join(path, 'checkpoints')) \
      else _item_dir(path)
  shapes = checkpoint_shapes(item)
  device = jax.local_devices()[0]
  wanted = {k: shapes[k] for k in ('params', 'batch_stats') if k in shapes}
  abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(device)), wanted)
  restored = restore_subtree(item, abstract)
  return {k: trees.flatten(v) for k, v in jax.device_get(restored).items()}


def restore_variables(config, model, workdir: str, mesh, which: str):
  """``({'params', 'batch_stats'}, item_dir)`` of checkpoint ``which`` of ``workdir``
  (``train.checkpoint_dir`` when set; ``latest``, ``best``, a step or a path),
  replicated on ``mesh``; the optimizer state is not read."""
  item_dir = resolve_checkpoint(checkpoint_root(config, workdir), which)
  replicated = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          model_builder.abstract_variables(config, model))
  try:
    variables = restore_subtree(item_dir, abstract)
  except Exception as error:  # pylint: disable=broad-except  # reported with the directory
    raise UserError(f'{item_dir}: cannot restore the model variables (a damaged checkpoint, or '
                    f'one of another model): {_first_line(error)}') from None
  logging.info('Restored %s', item_dir)
  return variables, item_dir


def _damage(item_dir: str) -> Optional[str]:
  """Why the checkpoint in ``item_dir`` cannot be read back as it was written, or None."""
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.restore(item_dir)
  except Exception as error:  # pylint: disable=broad-except  # any failure to read is damage
    return _first_line(error)
  return None


def _first_line(error: BaseException) -> str:
  """The gist of a restore error (tensorstore appends its whole spec to messages)."""
  text = str(error).strip()
  text = text.splitlines()[0] if text else ''
  return f'{type(error).__name__}: {text.split(" [tensorstore_spec=")[0][:400]}'

"""What a run checks before it builds a model or writes anything.

A mistake in the data, the checkpoint to start from or the output folder
ends a run within seconds, as one ``UserError`` naming the field and the path,
with nothing written: the trainer and the evaluator (so ``main`` and every tool that
trains) call these before their first model is built (docs/design.md, "Mistakes and damage").
Each check reads a few small files (``shards.json``, ``label_map.json``,
a checkpoint's metadata) and probes remote paths once (``fs.check_access``).
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from avslowfast_jax import checkpoints as ckpt_lib
from avslowfast_jax import tasks
from avslowfast_jax.models import ModelConfig
from data_pipelines import fs, shards
from data_pipelines.errors import UserError


def check_data(config: ml_collections.ConfigDict, split_fields: Sequence[str],
               purpose: str) -> dict:
  """``shards.json`` of ``config.data.data_dir``, checked for a run that reads the splits
  named by ``split_fields`` (``'train_split'``, ``'eval_split'``: fields of
  ``config.data``) and whose model must score every class of the data.

  ``purpose`` (e.g. ``'training'``) says in the message what needs the data.
  """
  data_dir = config.data.data_dir
  if not data_dir:
    raise UserError(f'config.data.data_dir is not set: {purpose} needs prepared data; give '
                    '--config.data.data_dir=DIR (python -m data_pipelines.prepare or '
                    'python -m data_pipelines.synthetic make one)')
  fs.check_access(data_dir)
  meta = shards.read_metadata(data_dir)
  for field in split_fields:
    split = config.data[field]
    if split not in meta['splits']:
      raise UserError(f'config.data.{field}={split!r}: {data_dir} has no such split (it has '
                      f'{", ".join(sorted(meta["splits"]))})')
  labels_path = fs.join(data_dir, 'label_map.json')
  if fs.exists(labels_path):
    label_map = shards.read_json(labels_path)
    if isinstance(label_map, dict):
      tasks.get_task(config).check_labels(label_map, labels_path)
  return meta


def resumes(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether a training run in ``workdir`` resumes from a checkpoint of its own."""
  root = fs.join(ckpt_lib.checkpoint_root(config, workdir), 'checkpoints')
  return fs.isdir(root) and any(name.isdigit() for name in fs.listdir(root))


def check_output(path: str, field: str, checkpoints: bool = True) -> None:
  """An output folder (workdir, checkpoint_dir) that can be written: local or a reachable
  remote location, and one orbax writes to if it is to hold ``checkpoints``."""
  if not path:
    raise UserError(f'{field} is not set: give the folder this run writes to')
  if checkpoints:
    ckpt_lib.check_orbax_path(path)
  fs.check_access(path)
  if fs.exists(path) and not fs.isdir(path):
    raise UserError(f'{field}={path}: a file, not a folder')


def check_outputs(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The workdir, and ``train.checkpoint_dir`` where the checkpoints go instead."""
  check_output(workdir, '--workdir', checkpoints=not config.train.checkpoint_dir)
  if config.train.checkpoint_dir:
    check_output(config.train.checkpoint_dir, 'config.train.checkpoint_dir')


def check_model(config: ml_collections.ConfigDict) -> None:
  """The task and the ``config.model`` fields (names and values), without building anything."""
  tasks.get_task(config)
  ModelConfig.from_config(config.model)


def check_training(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Everything ``trainer.train_and_evaluate`` needs, checked before it builds the model."""
  check_model(config)
  check_outputs(config, workdir)
  check_data(config, ['train_split'], 'training')
  if config.train.init_from and not resumes(config, workdir):
    ckpt_lib.check_weights_source(config.train.init_from, 'config.train.init_from')


def check_evaluation(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Everything ``--mode eval`` needs, checked before it builds the model; returns the item
  folder of the checkpoint ``config.eval.checkpoint`` names."""
  check_model(config)
  check_outputs(config, workdir)
  check_data(config, ['eval_split'], 'evaluation')
  return ckpt_lib.resolve_checkpoint(ckpt_lib.checkpoint_root(config, workdir),
                                     config.eval.checkpoint)

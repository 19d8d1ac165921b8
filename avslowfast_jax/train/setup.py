"""What a training run is made of: model, task, schedule, optimizer, and the jitted step.

Shared by the trainer, the benchmarks and the tools. Nothing here reads data
or imports TensorFlow (the dataset's size is read only when the config does
not give it), so the step can be built and timed where no input pipeline is
installed.
"""

from __future__ import annotations

import jax
import ml_collections

from avslowfast_jax import model_builder, parallel
from avslowfast_jax.train import optimizer as optimizer_lib
from avslowfast_jax.train import schedules
from avslowfast_jax.train import step as step_lib
from data_pipelines.errors import UserError


def num_train_examples(config: ml_collections.ConfigDict) -> int:
  if config.train.num_train_examples > 0:
    return config.train.num_train_examples
  from data_pipelines import input_pipeline  # pylint: disable=import-outside-toplevel
  info = input_pipeline.dataset_info(config.data.data_dir)
  try:
    return int(info['num_examples'][config.data.train_split])
  except KeyError as e:
    raise UserError(f'Dataset {config.data.data_dir} has no split '
                     f'{config.data.train_split!r}: {info.get("num_examples")}') from e


def setup(config: ml_collections.ConfigDict):
  """``(model, task, plan, lr_fn, tx)``: the same on every topology (that is the point)."""
  model, task = model_builder.build(config)
  n_train = config.train.num_train_examples
  if n_train <= 0 and (config.data.data_dir or config.train.total_steps <= 0):
    n_train = num_train_examples(config)
  plan = schedules.make_plan(config.train, n_train)
  lr_fn = schedules.create_learning_rate_fn(config.train.schedule, plan)
  tx = optimizer_lib.create_optimizer(config.train, lr_fn)
  return model, task, plan, lr_fn, tx


def jit_train_step(config, model, task, tx, lr_fn, plan, mesh, state_shardings):
  """The train step of ``config``, jitted with its state and batch shardings."""
  train_step = step_lib.make_train_step(config, model, task, tx, lr_fn, plan.total_steps)
  return jax.jit(train_step,
                 in_shardings=(state_shardings, parallel.batch_sharding(mesh),
                               parallel.replicated(mesh)),
                 out_shardings=(state_shardings, parallel.replicated(mesh)),
                 donate_argnums=0)

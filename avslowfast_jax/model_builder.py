"""The model of a config as every part of the project builds and calls it.

Training, evaluation, export, ``predict``, ``model_stats`` and
``import_weights`` all take from here: the network with its task's head
(:func:`build`), the shapes of its inputs (:func:`input_specs`), its
variables (:func:`init_variables`, :func:`abstract_variables`) and its
inference function (:func:`make_predict_fn`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections

from avslowfast_jax import drop_pathway, tasks
from avslowfast_jax.models import AVSlowFast, ModelConfig, build_model


def build(config: ml_collections.ConfigDict, conv_impl: Optional[str] = None):
  """``(model, task)`` of ``config``: the network with the task's head.

  ``conv_impl`` replaces ``config.model.conv_impl`` (export traces the
  accelerator artifact with ``'native'`` on any machine).
  """
  task = tasks.get_task(config)
  model_config = ModelConfig.from_config(config.model)
  if conv_impl is not None:
    model_config = dataclasses.replace(model_config, conv_impl=conv_impl)
  return build_model(model_config, task.head(), drop_pathway.eval_lateral_scale(config)), task


def input_specs(config: ml_collections.ConfigDict, batch, train: bool = True,
                image_size: Optional[Union[int, Tuple[int, int]]] = None) -> dict:
  """``ShapeDtypeStruct`` of each model input; ``batch`` may be symbolic.

  The view is the task's training or test view (the square crops; a detection
  task's test canvas), unless ``image_size`` (a side, or ``(height, width)``)
  is given. The task adds what its head reads (detection: ``boxes``,
  ``box_mask``).
  """
  data, arch = config.data, config.model.arch
  height, width = task_view(config, image_size, train)
  specs = {}
  if arch in ('avslowfast', 'slowfast'):
    t_fast = data.num_frames
    specs['slow'] = jax.ShapeDtypeStruct(
        (batch, t_fast // config.model.alpha_f, height, width, 3), jnp.float32)
    specs['fast'] = jax.ShapeDtypeStruct((batch, t_fast, height, width, 3), jnp.float32)
  if arch in ('avslowfast', 'audio'):
    specs['audio'] = jax.ShapeDtypeStruct((batch, data.audio.num_frames, data.audio.num_mels, 1),
                                          jnp.float32)
  specs.update(tasks.get_task(config).extra_input_specs(batch, train))
  return specs


def task_view(config: ml_collections.ConfigDict,
              image_size: Optional[Union[int, Tuple[int, int]]] = None,
              train: bool = False) -> Tuple[int, int]:
  """``(height, width)`` of ``image_size`` (a side or a pair), else of the task's view."""
  if image_size is None:
    return tuple(int(v) for v in tasks.get_task(config).view_size(train))
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = image_size
  return int(height), int(width)


def dummy_inputs(config: ml_collections.ConfigDict, batch: int = 1, train: bool = True) -> dict:
  """Zero model inputs of the configured shapes."""
  return {k: jnp.zeros(v.shape, v.dtype) for k, v in input_specs(config, batch, train).items()}


def model_inputs(config: ml_collections.ConfigDict, batch: Mapping[str, Any]) -> dict:
  """The inputs the model of ``config`` takes, picked out of a pipeline batch."""
  keys = input_specs(config, 1).keys()
  missing = [k for k in keys if k not in batch]
  if missing:
    raise KeyError(f'Batch lacks {missing} needed by model.arch={config.model.arch!r}; '
                   f'it has {sorted(batch)}')
  return {k: batch[k] for k in keys}


def init_variables(config: ml_collections.ConfigDict, model: AVSlowFast, rng) -> dict:
  """``{'params', 'batch_stats'}`` of a fresh model (traceable; batch = one BN group)."""
  batch = max(1, config.model.bn_group_size)
  variables = model.init({'params': rng, 'dropout': rng}, dummy_inputs(config, batch),
                         train=False, drop_audio=False)
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def abstract_variables(config: ml_collections.ConfigDict, model: AVSlowFast) -> dict:
  """Shapes and dtypes of :func:`init_variables`, computing nothing."""
  return jax.eval_shape(lambda rng: init_variables(config, model, rng), jax.random.PRNGKey(0))


def make_predict_fn(model: AVSlowFast, task: tasks.Task) -> Callable:
  """``predict(variables, inputs) -> {'logits', 'scores'}`` in inference mode
  (running BN statistics); scores as the task reads them."""

  def predict(variables, inputs):
    logits, _ = model.apply(variables, inputs, train=False, drop_audio=False)
    return {'logits': logits, 'scores': task.scores(logits)}

  return predict

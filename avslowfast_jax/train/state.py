"""Train state, built abstractly and materialised directly in its shardings."""

from __future__ import annotations

from typing import Any, Callable, Tuple

import flax
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from avslowfast_jax import parallel


class TrainState(struct.PyTreeNode):
  """Everything a checkpoint must hold to continue training exactly."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def dummy_inputs(config: ml_collections.ConfigDict, batch: int = 1, train: bool = True):
  """Zero model inputs of the configured shapes (for init and export tracing)."""
  return {k: jnp.zeros(v.shape, v.dtype) for k, v in input_specs(config, batch, train).items()}


def input_specs(config: ml_collections.ConfigDict, batch, train: bool = True):
  """``ShapeDtypeStruct`` of each model input; ``batch`` may be symbolic."""
  data, arch = config.data, config.model.arch
  size = data.train_crop_size if train else data.test_crop_size
  specs = {}
  if arch in ('avslowfast', 'slowfast'):
    t_fast = data.num_frames
    specs['slow'] = jax.ShapeDtypeStruct((batch, t_fast // config.model.alpha_f, size, size, 3),
                                         jnp.float32)
    specs['fast'] = jax.ShapeDtypeStruct((batch, t_fast, size, size, 3), jnp.float32)
  if arch in ('avslowfast', 'audio'):
    specs['audio'] = jax.ShapeDtypeStruct((batch, data.audio.num_frames, data.audio.num_mels, 1),
                                          jnp.float32)
  return specs


def model_inputs(config: ml_collections.ConfigDict, batch):
  """The inputs the model of ``config`` takes, picked out of a pipeline batch."""
  keys = input_specs(config, 1).keys()
  missing = [k for k in keys if k not in batch]
  if missing:
    raise KeyError(f'Batch lacks {missing} needed by model.arch={config.model.arch!r}; '
                   f'it has {sorted(batch)}')
  return {k: batch[k] for k in keys}


def create_train_state(config: ml_collections.ConfigDict, model, tx: optax.GradientTransformation,
                       mesh: Mesh, rng) -> Tuple[TrainState, Any]:
  """Initialises the state straight into its shardings (replicated, or FSDP).

  Returns ``(state, shardings)``; shapes come from ``jax.eval_shape`` so no
  full copy is ever made on one device and moved.
  """
  init = make_init_fn(config, model, tx)
  abstract = jax.eval_shape(init, rng)
  shardings = parallel.state_shardings(abstract, mesh, config.train.fsdp)
  state = jax.jit(init, out_shardings=shardings)(rng)
  return state, shardings


def make_init_fn(config, model, tx) -> Callable:
  # A batch of one BN group: the smallest batch any model variant accepts.
  batch = max(1, config.model.bn_group_size)

  def init(rng):
    variables = model.init({'params': rng, 'dropout': rng}, dummy_inputs(config, batch),
                           train=False, drop_audio=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))

  return init


def abstract_train_state(config, model, tx, mesh: Mesh, rng=None):
  """Shapes, dtypes and shardings of the state, without computing anything."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  abstract = jax.eval_shape(make_init_fn(config, model, tx), rng)
  shardings = parallel.state_shardings(abstract, mesh, config.train.fsdp)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings), shardings


def flatten_names(tree) -> dict:
  """``{'a/b/c': leaf}`` of a nested dict (FrozenDicts included)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')
  return dict(flat)

"""Train state, built abstractly and materialised directly in its shardings."""

from __future__ import annotations

from typing import Any, Callable, Tuple

from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from avslowfast_jax import model_builder, parallel


class TrainState(struct.PyTreeNode):
  """Everything a checkpoint must hold to continue training exactly."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def create_train_state(config: ml_collections.ConfigDict, model, tx: optax.GradientTransformation,
                       mesh: Mesh, rng) -> Tuple[TrainState, Any]:
  """Initialises the state straight into its shardings (replicated, or FSDP).

  Returns ``(state, shardings)``; shapes come from ``jax.eval_shape`` so no
  full copy is ever made on one device and moved.
  """
  init = make_init_fn(config, model, tx)
  abstract = jax.eval_shape(init, rng)
  shardings = parallel.state_shardings(abstract, mesh, config.train.fsdp)
  init = jax.jit(init, out_shardings=shardings)
  if jax.default_backend() == 'cpu':
    # It runs once: on XLA's CPU backend, compiling it without LLVM's optimisations
    # takes about a quarter of the time and draws the same weights up to float rounding
    # (one ulp in some tensors).
    return init.lower(rng).compile({'xla_backend_optimization_level': 0})(rng), shardings
  return init(rng), shardings


def make_init_fn(config, model, tx) -> Callable:
  """``init(rng) -> TrainState`` of a fresh model (see ``model_builder.init_variables``)."""

  def init(rng):
    variables = model_builder.init_variables(config, model, rng)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables['batch_stats'], opt_state=tx.init(params))

  return init


def abstract_train_state(config, model, tx, mesh: Mesh, rng=None):
  """Shapes, dtypes and shardings of the state, without computing anything."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  abstract = jax.eval_shape(make_init_fn(config, model, tx), rng)
  shardings = parallel.state_shardings(abstract, mesh, config.train.fsdp)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings), shardings


"""Device mesh, shardings and host-local -> global arrays.

One mesh axis, ``data``, spans every device of every process. The batch is
split over it; parameters are replicated, or (``train.fsdp``) each large
parameter is split over it along one dimension so that parameter and optimizer
memory per device shrinks with the device count.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from data_pipelines.errors import UserError

DATA_AXIS = 'data'

# Parameters smaller than this stay replicated under FSDP: splitting them buys
# no memory and costs a collective each.
FSDP_MIN_SIZE = 2**12


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
  """Starts JAX's multi-controller runtime where there is more than one process.

  Explicit arguments win. Without them, Cloud TPU pod slices (``TPU_WORKER_HOSTNAMES``
  with more than one host) and SLURM jobs with more than one task are detected
  and ``jax.distributed.initialize()`` finds the rest itself. Returns whether
  it initialised. Must run before anything touches a device.
  """
  if coordinator_address or (num_processes is not None and num_processes > 1):
    if not coordinator_address or num_processes is None or process_id is None:
      raise UserError('Multi-process runs need all of --coordinator_address, --num_processes '
                       f'and --process_id; got {coordinator_address!r}, {num_processes!r}, '
                       f'{process_id!r}')
    if _platform_is_cpu():
      # CPU collectives across processes need an implementation (tests, laptops).
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  slurm_tasks = int(os.environ.get('SLURM_NTASKS', '1') or 1)
  if len([h for h in hosts.split(',') if h]) > 1 or slurm_tasks > 1:
    jax.distributed.initialize()
    return True
  return False


def _platform_is_cpu() -> bool:
  platforms = os.environ.get('JAX_PLATFORMS', '') or str(jax.config.jax_platforms or '')
  return platforms.strip().lower() == 'cpu'


def create_mesh(devices=None) -> Mesh:
  """A 1-D ``data`` mesh over all devices of all processes (or ``devices``)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the ``data`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def fsdp_spec(shape, num_shards: int) -> P:
  """Splits the largest dimension divisible by ``num_shards``; small arrays stay whole."""
  if num_shards <= 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
    return P()
  order = sorted(range(len(shape)), key=lambda i: -shape[i])
  for dim in order:
    if shape[dim] % num_shards == 0:
      spec = [None] * len(shape)
      spec[dim] = DATA_AXIS
      return P(*spec)
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool) -> Any:
  """Shardings for every leaf of a (abstract) train state."""
  n = mesh.shape[DATA_AXIS]

  def one(leaf):
    shape = getattr(leaf, 'shape', ())
    if fsdp and len(shape) > 0:
      return NamedSharding(mesh, fsdp_spec(shape, n))
    return NamedSharding(mesh, P())

  return jax.tree.map(one, abstract_state)


def host_to_global(batch: Any, mesh: Mesh) -> Any:
  """Assembles per-process numpy batches into global arrays split over ``data``.

  Every process passes its own rows (``global batch / process_count`` of them);
  no process ever holds the whole batch.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      batch)


def per_process_batch(global_batch: int) -> int:
  """This process' share of a global batch, checking it divides evenly."""
  if global_batch % jax.process_count():
    raise UserError(f'Global batch {global_batch} does not split over '
                     f'{jax.process_count()} processes')
  per_host = global_batch // jax.process_count()
  if global_batch % jax.device_count():
    raise UserError(f'Global batch {global_batch} does not split over {jax.device_count()} '
                     'devices; pick a multiple of the device count')
  return per_host


def log_topology(mesh: Mesh) -> None:
  logging.info('process %d/%d, %d local / %d global devices, mesh %s', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               dict(mesh.shape))

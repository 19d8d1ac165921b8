"""The one place that chooses how the model's heavy primitives are computed.

``model.conv_impl`` names an implementation: ``native`` (plain XLA operations
and autodiff, :mod:`avslowfast_jax.models.native`: what GPUs and TPUs run),
``cpu`` (the same functions in forms XLA's CPU backend runs faster,
:mod:`avslowfast_jax.models.cpu`) or ``auto`` (``cpu`` when the computation
is for the CPU backend, ``native`` otherwise). :func:`select` turns that name
into an :class:`Ops`, and the model passes it to every convolution, the stem
max-pool and every BatchNorm, in every pathway.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax

from avslowfast_jax.models import cpu, native
from data_pipelines.errors import UserError

IMPLS = ('auto', 'native', 'cpu')


@dataclasses.dataclass(frozen=True)
class Ops:
  """One implementation of the model's primitives (signatures of :mod:`native`)."""
  name: str
  conv: Callable
  max_pool_hw: Callable
  group_normalize: Callable


NATIVE = Ops('native', native.conv, native.max_pool_hw, native.group_normalize)
CPU = Ops('cpu', cpu.conv, cpu.max_pool_hw, cpu.group_normalize)


def resolve(impl: str, platform: Optional[str] = None) -> str:
  """``'native'`` or ``'cpu'`` for ``model.conv_impl`` on ``platform``.

  ``platform`` is the one the computation is for (``'cpu'``, ``'cuda'``,
  ``'rocm'``, ``'tpu'``); by default the process's default backend.
  """
  if impl not in IMPLS:
    raise UserError(f'model.conv_impl={impl!r}: expected one of {IMPLS}')
  if impl != 'auto':
    return impl
  platform = platform or jax.default_backend()
  return 'cpu' if platform == 'cpu' else 'native'


def select(impl: str, platform: Optional[str] = None) -> Ops:
  """The :class:`Ops` of ``model.conv_impl`` (see :func:`resolve`)."""
  return CPU if resolve(impl, platform) == 'cpu' else NATIVE

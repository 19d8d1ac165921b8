"""DropPathway's rate over training, and the evaluation rule derived from it.

DropPathway (paper section 3.4) drops the Audio pathway on a training step
with probability P_d, one draw per step for the whole global batch; the paper
trains with a constant P_d (0.8 is best, Table 5c). ``train.drop_pathway_prob``
gives the rate over training: one number for a constant rate, or
``(start, end)`` for a rate that moves linearly from ``start`` at the first
step to ``end`` at the last.

``eval.scale_audio_laterals`` multiplies the audio laterals outside training
by the share of the last training steps that had them, ``1 - end``: the
test-time rule of dropout and stochastic depth, applied to DropPathway. The
paper has no such rule, and every paper config leaves it off.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp

from data_pipelines.errors import UserError


def rates(train) -> Tuple[float, float]:
  """``(start, end)`` of ``train.drop_pathway_prob`` (equal for a constant rate)."""
  value = train.drop_pathway_prob
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  if len(values) not in (1, 2) or not all(
      isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values):
    raise UserError(f'config.train.drop_pathway_prob={value!r}: expected a rate in [0, 1], or '
                    'two of them (start, end) for a linear change over training, e.g. '
                    '--config.train.drop_pathway_prob=0.8 or "(1.0,0.4)"')
  return float(values[0]), float(values[-1])


def draw(key, start: float, end: float, step=None, total_steps: int = 0):
  """One Bernoulli draw for the whole global batch: True = drop the audio pathway.

  The rate at ``step`` is linear from ``start`` (step 0) to ``end`` (step
  ``total_steps``). A rate that is 0 throughout is a static Python ``False``,
  so the model traces no conditional at all.
  """
  if start == end:
    if start <= 0:
      return False
    return jax.random.bernoulli(key, start)
  frac = jnp.asarray(step, jnp.float32) / max(total_steps, 1)
  return jax.random.bernoulli(key, start + (end - start) * frac)


def eval_lateral_scale(config) -> float:
  """What the audio laterals are multiplied by outside training (1: the paper's model)."""
  if not config.eval.get('scale_audio_laterals', False):
    return 1.0
  return 1.0 - rates(config.train)[1]

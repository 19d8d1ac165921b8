r"""Parameter count and GFLOPs (multiply-adds) of a configured model.

  python -m avslowfast_jax.tools.model_stats \
      --config configs/kinetics.py:avslowfast_4x16_r50 [--config.model.beta_a=0.25]

prints one JSON line: ``params``, ``gflops`` (multiply-adds per view at the
test view, ``data.test_crop_size``; the SlowFast papers' convention, which
counts convolutions and matrix products, not BN/ReLU/pooling) and the split
per pathway. The count is exact for the traced program: every
``conv_general_dilated`` and ``dot_general`` of the jaxpr of an eval forward
pass (batch 1) of the native implementation (``model.conv_impl=native``: one
convolution per conv layer) is counted from its shapes, and attributed to a
pathway by the flax module path in its name stack. Nothing is compiled or
executed.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import jax
from ml_collections import config_flags

from avslowfast_jax import inference
from data_pipelines import errors


def _eqn_macs(eqn) -> int:
  """Multiply-adds of one conv or dot_general equation (0 for anything else)."""
  name = eqn.primitive.name
  if name == 'conv_general_dilated':
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    out = eqn.outvars[0].aval
    dn = eqn.params['dimension_numbers']
    kernel_spatial = [rhs.shape[d] for d in dn.rhs_spec[2:]]
    cin_per_group = rhs.shape[dn.rhs_spec[1]]
    return math.prod(out.shape) * math.prod(kernel_spatial) * cin_per_group
  if name == 'dot_general':
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval
    contracted = math.prod(lhs.shape[d] for d in lhs_contract)
    return math.prod(eqn.outvars[0].aval.shape) * contracted
  return 0


def _subjaxprs(eqn):
  for value in eqn.params.values():
    for v in (value if isinstance(value, (list, tuple)) else [value]):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def pathway_of(scope: str) -> str:
  """Which part a flax module path belongs to (for the per-pathway split)."""
  top = scope.split('/')
  # Drop jax transform scopes and flax method scopes ('AVSlowFast._run_audio').
  names = [n for n in top
           if n and '.' not in n and not n.startswith(('jit(', 'jvp(', 'transpose(', 'cond'))]
  # The first component is the top-level module's class name.
  path = '/'.join(names[1:]) if len(names) > 1 else ''
  if path.startswith('audio/to_visual') or path.startswith('av_nonlocal'):
    return 'audio_laterals'
  if path.startswith('audio/avs') or path.startswith('avs_'):
    return 'avs'
  if path.startswith('audio'):
    return 'audio'
  if path.startswith('fast_to_slow'):
    return 'fast_to_slow'
  if path.startswith('slow'):
    return 'slow'
  if path.startswith('fast'):
    return 'fast'
  if path.startswith('head'):
    return 'head'
  return 'other'


def count_macs(jaxpr, split: dict, prefix: str = '') -> None:
  """Adds the multiply-adds of ``jaxpr`` (recursively) into ``split``."""
  for eqn in jaxpr.eqns:
    scope = prefix + str(eqn.source_info.name_stack)
    macs = _eqn_macs(eqn)
    if macs:
      split[pathway_of(scope)] += macs
    for sub in _subjaxprs(eqn):
      count_macs(sub, split, scope + '/')


def model_stats(config, image_size: int | None = None) -> dict:
  """``{'params', 'gflops', 'gflops_split', 'params_split'}`` of ``config``."""
  model, _ = inference.build(config, conv_impl='native')
  inputs = inference.input_specs(config, 1, train=False, image_size=image_size)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), inputs)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, inputs)
  split = defaultdict(int)
  count_macs(jaxpr.jaxpr, split)
  params_split = defaultdict(int)
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables['params']):
    top = jax.tree_util.keystr(path[:2], simple=True, separator='/')
    params_split[pathway_of('AVSlowFast/' + top)] += math.prod(leaf.shape)
  return {
      'params': int(sum(params_split.values())),
      'gflops': round(sum(split.values()) / 1e9, 3),
      'gflops_split': {k: round(v / 1e9, 3) for k, v in sorted(split.items())},
      'params_split': dict(sorted(params_split.items())),
  }


def main(argv):
  del argv
  config = _CONFIG.value
  stats = model_stats(config)
  stats['arch'] = config.model.arch
  stats['view'] = [config.data.num_frames, config.data.test_crop_size]
  print(json.dumps(stats))


if __name__ == '__main__':
  # Defined here, not at import: other tools that import this module have their own --config.
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].',
                                            lock_config=True)
  errors.run_absl(main)

r"""Parameter count and GFLOPs (multiply-adds) of a configured model.

  python -m avslowfast_jax.tools.model_stats \
      --config configs/kinetics.py:avslowfast_4x16_r50 [--config.model.beta_a=0.25]

  # Memory of the compiled training step at a per-device batch, fp32 and bf16,
  # with and without rematerialisation (compiles each: minutes for big models on CPU):
  python -m avslowfast_jax.tools.model_stats --memory --batch_size 2 \
      --config configs/kinetics.py:avslowfast_8x8_r50 [--remat none,blocks]

prints one JSON line: ``params``, ``gflops`` (multiply-adds per view at the
task's test view, ``data.test_crop_size``, or ``--view``; the SlowFast papers' convention, which
counts convolutions and matrix products, not BN/ReLU/pooling) and the split
per pathway. The count is exact for the traced program: every
``conv_general_dilated`` and ``dot_general`` of the jaxpr of an eval forward
pass (batch 1) of the native implementation (``model.conv_impl=native``: one
convolution per conv layer) is counted from its shapes, and attributed to a
pathway by the flax module path in its name stack. Nothing is compiled or
executed.

``--memory`` prints one JSON line per (dtype, remat): the train step of
``avslowfast_jax.train.setup`` (the config's own losses and DropPathway),
lowered for one device at ``--batch_size`` clips and compiled for this
machine's backend, with ``compiled.memory_analysis()``'s argument, output,
temporary and generated-code sizes in bytes.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from avslowfast_jax import cli, model_builder, parallel
from avslowfast_jax.models.config import DTYPES, REMATS
from avslowfast_jax.train import state as state_lib
from avslowfast_jax.train import setup as setup_lib
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


def model_stats(config, image_size=None) -> dict:
  """``{'params', 'gflops', 'gflops_split', 'params_split'}`` of ``config`` at the task's test
  view, or ``image_size`` (a side or ``(height, width)``)."""
  model, _ = model_builder.build(config, conv_impl='native')
  inputs = model_builder.input_specs(config, 1, train=False, image_size=image_size)
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


def train_flops_per_clip(config) -> float:
  """Model FLOPs of one training clip: forward multiply-adds at the training crop x 2 x 3.

  2 FLOPs per multiply-add; the backward pass counted as twice the forward.
  The AVS negatives' extra audio forward and DropPathway's skipped steps are
  not counted.
  """
  return model_stats(config, image_size=config.data.train_crop_size)['gflops'] * 1e9 * 2 * 3


def abstract_batch(config, batch: int) -> dict:
  """``ShapeDtypeStruct`` of a training batch of ``batch`` clips (every key the step may read)."""
  specs = dict(model_builder.input_specs(config, batch))
  specs['label'] = jax.ShapeDtypeStruct((batch,), jnp.int32)
  specs['noun_label'] = jax.ShapeDtypeStruct((batch,), jnp.int32)
  specs['audio_mask'] = jax.ShapeDtypeStruct((batch,), jnp.float32)
  if 'boxes' in specs:  # detection: per-box multi-hot labels
    specs['box_labels'] = jax.ShapeDtypeStruct(
        (*specs['box_mask'].shape, config.model.num_classes), jnp.float32)
  if 'audio' in specs:
    specs['audio_shifted'] = specs['audio']
  return specs


def train_step_memory(config: ml_collections.ConfigDict, per_device_batch: int) -> dict:
  """``compiled.memory_analysis()`` of the config's train step on one device, in bytes."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.batch_size = per_device_batch
  config.train.reference_batch_size = per_device_batch
  if config.train.total_steps <= 0:
    config.train.total_steps = 1000
  mesh = parallel.create_mesh(jax.devices()[:1])
  model, task, plan, lr_fn, tx = setup_lib.setup(config)
  state, shardings = state_lib.abstract_train_state(config, model, tx, mesh)
  step = setup_lib.jit_train_step(config, model, task, tx, lr_fn, plan, mesh, shardings)
  compiled = step.lower(state, abstract_batch(config, per_device_batch),
                        jax.ShapeDtypeStruct((2,), jnp.uint32)).compile()
  m = compiled.memory_analysis()
  sizes = {name: int(getattr(m, f'{name}_size_in_bytes'))
           for name in ('argument', 'output', 'temp', 'generated_code', 'alias')}
  # Donated state: its output aliases its argument and is not allocated twice.
  sizes['total'] = sizes['argument'] + sizes['output'] - sizes['alias'] + sizes['temp']
  return sizes


def memory_report(config, per_device_batch: int, dtypes=('float32', 'bfloat16'),
                  remats=('none', 'blocks')) -> list:
  """One dict per (dtype, remat): the train step's memory, labelled with the backend."""
  rows = []
  for dtype in dtypes:
    for remat in remats:
      c = ml_collections.ConfigDict(config.to_dict())
      c.model.dtype = dtype
      c.model.remat = remat
      rows.append({'arch': c.model.arch, 'view': [c.data.num_frames, c.data.train_crop_size],
                   'per_device_batch': per_device_batch, 'dtype': dtype, 'remat': remat,
                   'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind,
                   'bytes': train_step_memory(c, per_device_batch)})
  return rows


def parse_view(values):
  """``--view`` (absl's list of its comma-separated texts) -> a side, ``(height, width)`` or
  None."""
  if not values:
    return None
  text = ','.join(values)
  try:
    view = tuple(int(v) for v in values)
  except ValueError:
    view = ()
  if len(view) not in (1, 2) or min(view) <= 0:
    raise errors.UserError(f'--view={text}: expected SIZE or HEIGHT,WIDTH in pixels, e.g. '
                           '--view=224 or --view=256,320')
  return view[0] if len(view) == 1 else view


def _check_choices(flag: str, values, allowed) -> None:
  unknown = [v for v in values if v not in allowed]
  if unknown or not values:
    raise errors.UserError(f'--{flag}={",".join(values)}: expected a comma-separated list of '
                           f'{", ".join(allowed)}')


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f'unexpected arguments {argv[1:]} (flags are written --name=value)')
  config = _CONFIG.value
  if config is None:
    raise errors.UserError('--config is required, e.g. '
                           '--config configs/kinetics.py:avslowfast_4x16_r50')
  if _MEMORY.value:
    _check_choices('dtypes', _DTYPES.value, DTYPES)
    _check_choices('remat', _REMATS.value, REMATS)
    if _BATCH.value <= 0:
      raise errors.UserError(f'--batch_size={_BATCH.value}: expected a positive number of clips')
    for row in memory_report(config, _BATCH.value, tuple(_DTYPES.value), tuple(_REMATS.value)):
      print(json.dumps(row), flush=True)
    return
  size = parse_view(_VIEW.value)
  stats = model_stats(config, image_size=size)
  stats['arch'] = config.model.arch
  height, width = model_builder.task_view(config, size)
  stats['view'] = [config.data.num_frames, height, width]
  print(json.dumps(stats))


if __name__ == '__main__':
  # Defined here, not at import: other tools that import this module have their own --config.
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].',
                                            lock_config=True)
  _MEMORY = flags.DEFINE_boolean('memory', False, 'Compile the train step and print its memory.')
  _BATCH = flags.DEFINE_integer('batch_size', 2, '--memory: clips per device.')
  _DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], '--memory: model.dtype values.')
  _REMATS = flags.DEFINE_list('remat', ['none', 'blocks'], '--memory: model.remat values.')
  _VIEW = flags.DEFINE_list('view', None, 'SIZE or HEIGHT,WIDTH of the counted view (default: '
                            "the task's test view; AVA's Table 7 counts 256,320).")
  cli.run_absl(main)
